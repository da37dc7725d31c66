"""Independent oracles for the application-layer tests: tshark and the openssl CLI.

- ``cert_oracle``: a certificate's subject, issuer, serial, SHA-1 fingerprint and
  dates per ``openssl x509``, re-spelt the way Suricata (x509-parser) writes them;
- ``tshark_hello_oracle``: SNI, JA3, JA3S and the selected version per TCP stream;
- ``ja4_oracle``: JA4 recomputed from tshark's hello fields (FoxIO's recipe with
  Suricata's conventions: highest of the legacy and first supported version,
  empty lists hashed as empty strings);
- ``dns_oracle``: each DNS message's id and records per tshark's PDML dissection,
  ``dns_disagreement`` / ``dns_disagreement_reason`` to compare and explain.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import struct
import subprocess
import xml.etree.ElementTree as ET
from datetime import datetime
from functools import cache
from pathlib import Path

from applayer_corpus import tshark_fields

GREASE = {0x0A0A + 0x1010 * i for i in range(16)}
OPENSSL_NAMES = {"emailAddress": "Email", "street": "streetAddress", "SN": "surname",
                 "GN": "givenName", "UID": "uid", "jurisdictionC": "msJurisdictionCountry",
                 "jurisdictionST": "msJurisdictionStateOrProvince",
                 "jurisdictionL": "msJurisdictionLocality"}


def openssl(*args: str, data: bytes | None = None) -> str:
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout.decode()


def _openssl_name(text: str) -> str:
    """openssl's RFC 2253-escaped one-line name, re-spelt as x509-parser writes it."""
    rdns = []
    for rdn in re.split(r"(?<!\\), ", text):
        attributes = []
        for attribute in re.split(r"(?<!\\) \+ ", rdn):
            key, _, value = attribute.partition("=")
            value = re.sub(r"\\(.)", r"\1", value)
            attributes.append(f"{OPENSSL_NAMES.get(key, key)}={value}")
        rdns.append(" + ".join(attributes))
    return ", ".join(rdns)


def _der_integer(value: int) -> bytes:
    """The content octets of a DER INTEGER (two's complement, minimal)."""
    size = (value + (value < 0)).bit_length() // 8 + 1
    return value.to_bytes(size, "big", signed=True)


def cert_oracle(der: bytes) -> dict:
    """Subject, issuer, serial, fingerprint and dates of a DER certificate per the openssl CLI."""
    text = openssl("x509", "-inform", "DER", "-noout", "-subject", "-issuer", "-serial", "-dates",
                   "-fingerprint", "-sha1", "-nameopt", "sep_comma_plus_space,sname,utf8,esc_2253",
                   data=der)
    fields = dict(line.split("=", 1) for line in text.splitlines())
    stamp = lambda t: datetime.strptime(t, "%b %d %H:%M:%S %Y GMT").strftime("%Y-%m-%dT%H:%M:%S")
    return {"subject": _openssl_name(fields["subject"]), "issuerdn": _openssl_name(fields["issuer"]),
            "serial": ":".join(f"{b:02X}" for b in _der_integer(int(fields["serial"], 16))),
            "fingerprint": fields["sha1 Fingerprint"].lower(),
            "notbefore": stamp(fields["notBefore"]), "notafter": stamp(fields["notAfter"])}


def tshark_hello_oracle(pcap: Path) -> dict[int, dict]:
    """Per TCP stream: tshark's SNI, JA3, JA3S and the ServerHello version of the first hellos."""
    out: dict[int, dict] = {}
    for stream, sni, ja3_full, ja3 in tshark_fields(
            pcap, "tcp && tls.handshake.type == 1", ["tcp.stream", "tls.handshake.extensions_server_name",
                                                     "tls.handshake.ja3_full", "tls.handshake.ja3"],
            occurrence="f"):
        out.setdefault(int(stream), {"sni": sni, "ja3": (ja3_full, ja3)})
    for stream, ja3s_full, ja3s, version, selected in tshark_fields(
            pcap, "tcp && tls.handshake.type == 2", ["tcp.stream", "tls.handshake.ja3s_full",
                                                     "tls.handshake.ja3s", "tls.handshake.version",
                                                     "tls.handshake.extensions.supported_version"],
            occurrence="f"):
        entry = out.setdefault(int(stream), {})
        if "ja3s" not in entry:
            entry["ja3s"] = (ja3s_full, ja3s)
            entry["version"] = int(selected or version, 16)
    return out


def _ja4_from_tshark(ciphers, exts, sigalgs, versions, legacy, alpn) -> str:
    """JA4 of a TCP ClientHello from its field values."""
    ciphers = [c for c in ciphers if c not in GREASE]
    exts = [e for e in exts if e not in GREASE]
    first_valid = next((v for v in versions if v not in GREASE), None)
    version = max(v for v in (legacy, first_valid) if v is not None)
    code = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3"}.get(version, "00")
    alpn_code = "00"
    if alpn:
        alpn_code = alpn[0] + alpn[-1] if (alpn[0] + alpn[-1]).isalnum() and alpn.isascii() else "??"
    sha = lambda text: hashlib.sha256(text.encode()).hexdigest()[:12]
    hashed = sorted(e for e in exts if e not in (0, 16))
    return (f"t{code}{'d' if 0 in exts else 'i'}{min(len(ciphers), 99):02d}{min(len(exts), 99):02d}"
            f"{alpn_code}_{sha(','.join(f'{c:04x}' for c in sorted(ciphers)))}_"
            f"{sha(','.join(f'{e:04x}' for e in hashed) + '_' + ','.join(f'{s:04x}' for s in sigalgs if s not in GREASE))}")


def _ints(text: str) -> list[int]:
    return [int(v, 16) if v.startswith("0x") else int(v) for v in text.split(",") if v]


def ja4_oracle(pcap: Path) -> dict[int, str]:
    """Per TCP stream: the JA4 of its first ClientHello, from tshark's fields."""
    fields = ["tcp.stream", "tls.handshake.ciphersuite", "tls.handshake.extension.type",
              "tls.handshake.sig_hash_alg", "tls.handshake.extensions.supported_version",
              "tls.handshake.version", "tls.handshake.extensions_alpn_str"]
    out = {}
    for stream, ciphers, exts, sigalgs, versions, legacy, alpn in tshark_fields(
            pcap, "tcp && tls.handshake.type == 1", fields):
        # delegated_credentials (34) and signature_algorithms_cert (50) carry signature
        # algorithm lists too, which tshark folds into the same field: no oracle there.
        if "," in stream or {34, 50} & set(_ints(exts)):
            continue
        out.setdefault(int(stream), _ja4_from_tshark(
            _ints(ciphers), _ints(exts), _ints(sigalgs), _ints(versions),
            _ints(legacy)[0], alpn.split(",")[0]))
    return out


SECTION_TITLES = {"Queries": "queries", "Answers": "answers", "Authoritative nameservers": "ns"}
RDATA_FIELDS = ("dns.a", "dns.aaaa", "dns.cname", "dns.ptr.domain_name", "dns.ns",
                "dns.mx.mail_exchange")


def _field(node, name):
    found = node.find(f".//field[@name='{name}']")
    return None if found is None else found.get("show")


def _rr_oracle(rr) -> tuple:
    value = next((_field(rr, f) for f in RDATA_FIELDS if _field(rr, f) is not None), None)
    return (_field(rr, "dns.resp.name") or _field(rr, "dns.qry.name"),
            int(_field(rr, "dns.resp.type") or _field(rr, "dns.qry.type")),
            _field(rr, "dns.resp.ttl"), value, _field(rr, "dns.resp.len"))


@cache
def dns_oracle(pcap) -> dict[int, dict]:
    """Per frame: tshark's DNS id and its question / answer / authority records."""
    xml = subprocess.run(["tshark", "-n", "-r", str(pcap), "-Y", "dns && udp", "-T", "pdml"],
                         capture_output=True, check=False).stdout
    frames = {}
    for packet in ET.fromstring(xml).iter("packet"):
        protos = {p.get("name") for p in packet.iter("proto")}
        dns = [p for p in packet.iter("proto") if p.get("name") == "dns"]
        if len(dns) != 1 or "_ws.malformed" in protos or "icmp" in protos:
            continue
        entry = {"id": int(_field(dns[0], "dns.id"), 16), "frame": int(_field(packet, "frame.number")),
                 "queries": [], "answers": [], "ns": []}
        for section in dns[0].findall("field"):
            key = SECTION_TITLES.get(section.get("show"))
            if key:
                entry[key] = [_rr_oracle(rr) for rr in section.findall("field")]
        frames[entry["frame"]] = entry
    return frames


def _printable(text: str | None) -> bool:
    return text is None or all(0x20 < ord(c) < 0x7F for c in text)


def _mine_rr(record) -> tuple:
    return (record.rrname.decode("latin-1") or "<Root>", record.rrtype, str(record.ttl))


def _same_value(rrtype: int, mine: str | None, theirs: str | None) -> bool:
    if theirs is None:
        return True
    if rrtype in (1, 28):
        return mine and ipaddress.ip_address(mine) == ipaddress.ip_address(theirs)
    return mine == theirs


def dns_disagreement(msg, oracle: dict) -> str | None:
    """None when a parsed message equals tshark's dissection, else the section that differs.

    TXT records our parser splits per character-string are joined back; records
    with empty rdata (which Suricata drops) are left out of tshark's side."""
    if msg.dns_id != oracle["id"]:
        return "id"
    qs = [(q.rrname.decode("latin-1") or "<Root>", q.rrtype) for q in msg.queries]
    if qs != [q[:2] for q in oracle["queries"]]:
        return "queries"
    for key, records in (("answers", msg.answers), ("ns", msg.authorities)):
        theirs = [rr for rr in oracle[key] if rr[4] != "0"]
        merged = [r for i, r in enumerate(records) if not (r.rrtype == 16 and i and
                                                           records[i - 1][:3] == r[:3])]
        mine = [_mine_rr(r) for r in merged]
        if [(m[0], m[1], m[2] if rr[2] is not None else None) for m, rr in zip(mine, theirs)] \
                != [rr[:3] for rr in theirs] or len(mine) != len(theirs):
            return key
        if not all(_same_value(r.rrtype, r.rdata, rr[3]) for r, rr in zip(merged, theirs)):
            return key + " rdata"
    return None


def dns_disagreement_reason(payload: bytes, oracle: dict) -> str:
    """Why a message may rightly differ from tshark; "unexplained" otherwise."""
    names = [q[0] for q in oracle["queries"]] + [rr[0] for rr in oracle["answers"]]
    if not all(_printable(n) for n in names):
        return "tshark replaces non-printable name bytes"
    counts = struct.unpack_from("!6H", payload)[2:]
    flags = struct.unpack_from("!H", payload, 2)[0]
    if not flags & 0x8000 and counts[0] == 0:
        return "request without a question (Suricata's header check refuses it)"
    if sum(counts) == 0 and len(payload) > 12:
        return "no records but trailing bytes (Suricata's header check refuses it)"
    return "unexplained"
