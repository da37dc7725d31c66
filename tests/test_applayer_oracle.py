"""A real dissector as oracle: mirrorwatch's EVE http/dns/tls records against tshark's dissection.

Each corpus capture with HTTP, DNS or TLS is replayed as a user would (``mirrorwatch replay``
with ``--eve-types http,dns,tls,fileinfo``, midstream pick-up on, checksums not verified, as
tshark does neither: ``applayer_oracles.replay_eve``, one replay per capture and session, shared
with test_fileinfo) and compared, as multisets, with tshark's fields (``applayer_oracles.dissection``,
one pass per capture and session, each frame selected by the display filter named beside it):

- http: (method, uri, host) per request, and the status code of each response;
- dns: each query name of each query message;
- tls: the SNI and the JA3 hash of each ClientHello.

The agreement is the share of tshark's items mirrorwatch also reports; it must be at least
99% over all captures, and every disagreement is printed.  tshark's items are taken where
Suricata's parsers would see a transaction too, each difference of scope named here:

- HTTP over TCP only (tshark also dissects SSDP's HTTP-over-UDP ``M-SEARCH``);
- final responses only (libhtp and Suricata fold a ``100 Continue`` into its transaction);
- DNS over UDP on port 53 and over TCP (mDNS on 5353 and LLMNR on 5355 are other protocols
  for Suricata: its DNS probing ports are 53);
- for a request without a Host header (``CONNECT host:port``), the host is not compared:
  Suricata's ``hostname`` comes from the authority-form target there.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from conftest import CORPUS
from applayer_corpus import require_tshark
from applayer_oracles import TCP, CLIENT_HELLO, Dissection, dissect, for_each, hello, replay_eve, tcp

pytestmark = pytest.mark.slow

CAPTURES = [CORPUS / "bench" / "http-tests-merged.pcap", *sorted((CORPUS / "suricata-verify" / "tests").glob("*/*.pcap"))]
THRESHOLD = 0.99


def ours(records: list[dict]) -> Counter:
    items: Counter = Counter()
    for ev in records:
        kind = ev["event_type"]
        rec = ev[kind]
        if kind == "http":
            if "http_method" in rec:
                items[("http", rec.get("http_method"), rec.get("url"))] += 1
                items[("host", rec.get("hostname"))] += 1
            if "status" in rec:
                items[("status", str(rec["status"]))] += 1
        elif kind == "dns" and rec.get("type") == "request":  # version 3: every question of the message
            for query in rec.get("queries", ()):
                items[("dns", query.get("rrname", "").lower())] += 1
        elif kind == "dns" and rec.get("type") == "query":  # version 2 (the default): a record per question
            items[("dns", rec.get("rrname", "").lower())] += 1
        elif kind == "tls":
            if rec.get("sni"):
                items[("sni", rec["sni"])] += 1
            if rec.get("ja3", {}).get("hash"):
                items[("ja3", rec["ja3"]["hash"])] += 1
    return items


def tshark_rows(pcap: Path, display_filter: str, fields: list[str]) -> list[list[list[str]]]:
    """Per matching frame, each field's values (JSON output: no separator can collide with a URI)."""
    cmd = ["tshark", "-n", "-r", str(pcap), "-Y", display_filter, "-T", "json"]
    for f in fields:
        cmd += ["-e", f]
    # a cut-short or fuzzed capture makes tshark exit non-zero after dissecting what it could
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    frames = json.loads(out) if out.strip() else []
    return [[fr["_source"]["layers"].get(f, []) for f in fields] for fr in frames]


def request(frame) -> bool:
    """http.request and tcp"""
    return "http.request" in frame and tcp(frame)


def final_response(frame) -> bool:
    """http.response and tcp and (http.response.code >= 200 or http.response.code == 101)"""
    codes = frame.get("http.response.code", ())
    return "http.response" in frame and tcp(frame) and any(int(c) >= 200 or c == "101" for c in codes)


def dns_query(frame) -> bool:
    """dns.flags.response == 0 and (udp.port == 53 or tcp)"""
    return "0" in frame.get("dns.flags.response", ()) and ("53" in frame.get("udp.port", ()) or TCP in frame)


def theirs(seen: Dissection) -> Counter:
    items: Counter = Counter()
    for methods, uris, hosts in seen.values(request, ["http.request.method", "http.request.uri", "http.host"]):
        for i, method in enumerate(methods):
            items[("http", method, uris[i] if i < len(uris) else None)] += 1
            if i < len(hosts):
                items[("host", hosts[i].split(":")[0].lower())] += 1
    for (codes,) in seen.values(final_response, ["http.response.code"]):
        for code in codes:
            items[("status", code)] += 1
    for (names,) in seen.values(dns_query, ["dns.qry.name"]):
        for name in names:
            items[("dns", name.lower())] += 1
    for snis, ja3s in seen.values(lambda f: hello(f, CLIENT_HELLO),
                                  ["tls.handshake.extensions_server_name", "tls.handshake.ja3"]):
        for sni in snis:
            items[("sni", sni)] += 1
        for ja3 in ja3s:
            items[("ja3", ja3)] += 1
    return items


def test_eve_app_records_agree_with_tshark():
    require_tshark()
    total = agreed = 0
    missing: list[str] = []
    for pcap, seen, records in for_each(CAPTURES, dissect, replay_eve):
        want, got = theirs(seen), ours(records)
        if not want:
            continue
        both = want & got
        total += sum(want.values())
        agreed += sum(both.values())
        for item, n in (want - got).items():
            missing.append(f"{pcap.parent.name}/{pcap.name}: tshark {item} x{n}")
    share = agreed / total if total else 1.0
    print(f"agreement {agreed}/{total} = {share:.2%}")
    for m in missing:
        print(m)
    assert total > 500, "the corpus should hold hundreds of transactions"
    assert share >= THRESHOLD, f"{share:.2%} agreement\n" + "\n".join(missing[:60])
