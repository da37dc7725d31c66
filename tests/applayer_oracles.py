"""Independent oracles for the application-layer tests: tshark and the openssl CLI.

- ``cert_oracle``: a certificate's subject, issuer, serial, SHA-1 fingerprint and
  dates per ``openssl x509``, re-spelt the way Suricata (x509-parser) writes them;
- ``tshark_hello_oracle``: SNI, JA3, JA3S and the selected version per TCP stream;
- ``ja4_oracle``: JA4 recomputed from tshark's hello fields (FoxIO's recipe with
  Suricata's conventions: highest of the legacy and first supported version,
  empty lists hashed as empty strings);
- ``dns_oracle``: each DNS message's id and records per tshark's PDML dissection,
  ``dns_disagreement`` / ``dns_disagreement_reason`` to compare and explain;
- ``dissection``: one tshark pass over a capture with the union of the fields the corpus
  oracles read (TCP streams, first payload's protocols, HTTP/DNS/TLS frames), each frame
  selected afterwards by the display filter its oracle used to run on its own pass;
  ``replay_eve``: one ``mirrorwatch replay`` of a capture; ``for_each``: such per-capture
  results computed once per session, two subprocesses at a time.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import struct
import subprocess
import sys
import tempfile
import threading
import xml.etree.ElementTree as ET
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Callable, Iterator

from applayer_corpus import BENCH, SV_TESTS, TCP_STREAM_FIELDS, TcpStream, tcp_streams_from_rows

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
    seen = dissection(pcap)
    for stream, sni, ja3_full, ja3 in seen.rows(
            lambda f: tcp(f) and hello(f, CLIENT_HELLO), ["tcp.stream", "tls.handshake.extensions_server_name",
                                                         "tls.handshake.ja3_full", "tls.handshake.ja3"],
            occurrence="f"):
        out.setdefault(int(stream), {"sni": sni, "ja3": (ja3_full, ja3)})
    for stream, ja3s_full, ja3s, version, selected in seen.rows(
            lambda f: tcp(f) and hello(f, SERVER_HELLO), ["tcp.stream", "tls.handshake.ja3s_full",
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
    for stream, ciphers, exts, sigalgs, versions, legacy, alpn in dissection(pcap).rows(
            lambda f: tcp(f) and hello(f, CLIENT_HELLO), fields):
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


# --- one tshark pass and one replay per capture, shared by the session's tests --------------

WORKERS = 2  # the CI machine's cores: tshark and mirrorwatch subprocesses run two at a time
TCP, UDP = "tcp", "udp"  # protocols as fields: present (a summary line) where tshark dissected them
CLIENT_HELLO, SERVER_HELLO = "1", "2"
# the union of the display filters the oracles ran one pass each with; each selects again below
DISSECTION_FILTER = "tcp || udp || tls.handshake.type == 1"
APP_MARKERS = ("http.request", "http.response", "dns.flags.response", "tls.handshake.type")
DISSECTION_FIELDS = tuple(dict.fromkeys([
    TCP, UDP, "tcp.len", "frame.protocols", *TCP_STREAM_FIELDS, *APP_MARKERS, "udp.port",
    "http.request.method", "http.request.uri", "http.host", "http.response.code", "dns.qry.name",
    "tls.handshake.extensions_server_name", "tls.handshake.ja3_full", "tls.handshake.ja3",
    "tls.handshake.ja3s_full", "tls.handshake.ja3s", "tls.handshake.version",
    "tls.handshake.extensions.supported_version", "tls.handshake.ciphersuite",
    "tls.handshake.extension.type", "tls.handshake.sig_hash_alg", "tls.handshake.extensions_alpn_str"]))
Frame = dict[str, list[str]]


def tcp(frame: Frame) -> bool:
    """Display filter ``tcp``."""
    return TCP in frame


def hello(frame: Frame, kind: str) -> bool:
    """Display filter ``tls.handshake.type == kind`` (any of the frame's handshake messages)."""
    return kind in frame.get("tls.handshake.type", ())


@dataclass(frozen=True)
class Dissection:
    """What the corpus oracles read from one tshark pass over a capture.

    ``protocols``: every protocol in the stack of a frame with TCP payload or UDP (filter
    ``tcp.len > 0 || udp``); ``streams``: ``tcp_streams``' view (filter ``tcp``);
    ``first_protocols``: per TCP stream outside tunnels, ``frame.protocols`` of its first frame
    with payload (filter ``tcp.len > 0``);
    ``app``: the frames with an HTTP message, a DNS message or a TLS handshake message, as
    {field: values} (tshark's JSON: no separator can collide with a value)."""

    protocols: frozenset[str]
    streams: dict[int, TcpStream]
    first_protocols: dict[int, str]
    app: list[Frame]

    def values(self, keep: Callable[[Frame], bool], fields: list[str]) -> list[list[list[str]]]:
        """Per app frame ``keep`` selects (a display filter), each field's values."""
        unknown = set(fields) - set(DISSECTION_FIELDS)
        if unknown:
            raise KeyError(f"not in DISSECTION_FIELDS: {sorted(unknown)}")
        return [[frame.get(f, []) for f in fields] for frame in self.app if keep(frame)]

    def rows(self, keep: Callable[[Frame], bool], fields: list[str], occurrence: str = "a") -> list[list[str]]:
        """``applayer_corpus.tshark_fields``' rows: every occurrence joined by ',' or (``f``) the first."""
        pick = (lambda v: v[0] if v else "") if occurrence == "f" else ",".join
        return [[pick(v) for v in row] for row in self.values(keep, fields)]


def _tcp_payload(frame: Frame) -> bool:
    """Display filter ``tcp.len > 0``."""
    return any(int(n) > 0 for n in frame.get("tcp.len", ()))


def _protocols(frames: list[Frame]) -> frozenset[str]:
    return frozenset(name for frame in frames if _tcp_payload(frame) or UDP in frame
                     for stack in frame.get("frame.protocols", ()) for name in stack.split(":"))


def _first_protocols(frames: list[Frame]) -> dict[int, str]:
    first: dict[int, str] = {}
    for frame in frames:
        stream = frame.get("tcp.stream", [])
        if len(stream) == 1 and _tcp_payload(frame):
            first.setdefault(int(stream[0]), ",".join(frame.get("frame.protocols", [])))
    return first


def dissect(pcap: Path) -> Dissection:
    """One tshark pass over ``pcap`` (prefer ``dissection``: once per session)."""
    cmd = ["tshark", "-n", "-r", str(pcap), "-Y", DISSECTION_FILTER, "-T", "json"]
    for name in DISSECTION_FIELDS:
        cmd += ["-e", name]
    # a cut-short or fuzzed capture makes tshark exit non-zero after dissecting what it could
    out = subprocess.run(cmd, capture_output=True, check=False).stdout
    frames = [f["_source"]["layers"] for f in json.loads(out)] if out.strip() else []
    streams = tcp_streams_from_rows([[",".join(f.get(name, [])) for name in TCP_STREAM_FIELDS]
                                     for f in frames if tcp(f)])
    app = [{k: v for k, v in f.items() if k != "tcp.payload"} for f in frames
           if any(marker in f for marker in APP_MARKERS)]
    return Dissection(_protocols(frames), streams, _first_protocols(frames), app)


REPLAY_OPTIONS = ("-q", "-k", "none", "--set", "stream.midstream=true", "--set", "stream.async-oneside=true")
REPLAY_TYPES = "http,dns,tls,fileinfo"


def replay_eve(pcap: Path) -> list[dict]:
    """The EVE records of ``mirrorwatch replay`` over ``pcap``, run as a user would: midstream
    pick-up on, checksums not verified (tshark does neither); ``REPLAY_TYPES``, each test reading
    its own event types."""
    with tempfile.TemporaryDirectory(prefix="mw-oracle-") as folder:
        eve = Path(folder) / "eve.json"
        run = subprocess.run([sys.executable, "-m", "mirrorwatch", "replay", *REPLAY_OPTIONS, "--eve", str(eve),
                              "--eve-types", REPLAY_TYPES, str(pcap)], capture_output=True, text=True)
        assert run.returncode == 0, f"replay of {pcap} exited {run.returncode}: {run.stderr[-2000:]}"
        return [json.loads(line) for line in eve.read_text().splitlines()]


_POOL = ThreadPoolExecutor(WORKERS, thread_name_prefix="oracle")
_RESULTS: dict[tuple[Callable, Path], Future] = {}
_RESULTS_LOCK = threading.Lock()


def _shared(function: Callable[[Path], object], pcap: Path) -> Future:
    """``function(pcap)``, started once per session in the pool (``function`` must not wait on it)."""
    with _RESULTS_LOCK:
        key = (function, Path(pcap))
        if key not in _RESULTS:
            _RESULTS[key] = _POOL.submit(function, Path(pcap))
        return _RESULTS[key]


def for_each(pcaps, *functions: Callable[[Path], object]) -> Iterator[tuple]:
    """(pcap, function(pcap) for each function) in the order of ``pcaps``: all started at once,
    run two at a time, each computed once per session."""
    started = [(pcap, [_shared(f, pcap) for f in functions]) for pcap in pcaps]
    for pcap, futures in started:
        yield (pcap, *(f.result() for f in futures))


def dissection(pcap: Path) -> Dissection:
    return _shared(dissect, pcap).result()


def corpus_with(protocols: set[str]) -> list[Path]:
    """The corpus captures (bench, suricata-verify) where tshark dissects any of ``protocols``."""
    candidates = sorted(BENCH.glob("*.pcap")) + sorted(SV_TESTS.glob("*/*.pcap"))
    return [pcap for pcap, seen in for_each(candidates, dissect) if protocols & seen.protocols]


def stop_pool() -> None:
    """Drop the work not started (a session that ends early)."""
    _POOL.shutdown(wait=False, cancel_futures=True)
