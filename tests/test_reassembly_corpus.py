"""The reassembler against other projects' ground truth, on every capture of the corpus.

- PcapPlusPlus ``*_output.txt``: the exact bytes, both directions in delivery order;
- suricata-verify ``eve-overlap-payload-*``: the stream alert's payload is the
  reassembled stream under the policy the case names (default bsd: "GOOD");
- suricata-verify ``tcp-data.log`` (lua-output-http): per-direction hexdumps;
- missed bytes (Zeek's conn.log ``missed_bytes``) against the holes tshark's
  own dissection shows in each direction whose SYN was seen.
Cases are found through ``index.json``, so held-back captures run the same checks.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import CORPUS
from test_flows import run_pcap

CORPUS_DIR = CORPUS / "reassembly"


def _index():
    try:
        return json.loads((CORPUS_DIR / "index.json").read_text())["files"]
    except OSError:
        return []


def _cases(pred):
    return [pytest.param(e, id=Path(e["file"]).stem) for e in _index() if pred(e)]


def _expected(entry, pattern):
    return [CORPUS_DIR / x["file"] for x in entry["expected"] if re.search(pattern, x["file"])]


def _midstream():
    return {"stream.midstream": True, "stream.async-oneside": True}


# -- PcapPlusPlus: exact bytes ------------------------------------------------------
def arrival_order(path, **settings):
    """Per flow, both directions' bytes concatenated in the order they became in-order."""
    out: dict = {}
    seen: dict = {}

    def on_packet(p, f, to_server):
        for s in f.streams:
            if s is None:
                continue
            prev = seen.get(id(s), 0)
            if s.end > prev:
                out.setdefault(f.flow_id, bytearray()).extend(s.buf[prev - s.buf_base:])
                seen[id(s)] = s.end

    run_pcap(path, on_packet=on_packet, **settings)
    return out


@pytest.mark.parametrize("entry", _cases(lambda e: e["source"]["repo"].endswith("PcapPlusPlus")
                                         and any(x["file"].endswith("_output.txt") for x in e["expected"])))
def test_pcapplusplus_expected_output(corpus, entry):
    got = arrival_order(corpus / "reassembly" / entry["file"])
    want = [p.read_bytes() for p in _expected(entry, r"_output\.txt$")]
    # several expected files map to several connections; compare as multisets
    assert sorted(bytes(v) for v in got.values() if v) == sorted(want)


# -- suricata-verify overlap cases: GOOD under the default policy, EVIL where named -----------
def _overlap_expectations():
    for e in _index():
        for y in _expected(e, r"eve-overlap-payload.*test\.yaml$"):
            m = re.search(r"policy-([a-z0-9]+)", y.name)
            policy = {"oldlinux": "old-linux"}.get(m.group(1), m.group(1)) if m else "bsd"
            text = y.read_text()
            # the stream alert (raised on the reassembled stream at flow timeout) carries the stream bytes
            for block in re.split(r"\n\s*- filter:", text):
                if "stream (flow timeout)" in block and not re.search(r"count:\s*0", block):
                    payload = re.search(r'payload:\s*"([^"]+)"', block).group(1)
                    yield pytest.param(e["file"], policy, base64.b64decode(payload),
                                       id=f"{Path(e['file']).stem}-{policy}")


@pytest.mark.parametrize("pcap,policy,want", list(_overlap_expectations()))
def test_suricata_verify_overlap_payload(corpus, pcap, policy, want):
    _, flows, _ = run_pcap(corpus / "reassembly" / pcap, **{"stream.reassembly.policy": policy})
    (f,) = flows
    assert bytes(f.streams[0].buf) == want


def test_overlap_policy_really_matters(corpus):
    # the same capture gives GOOD under bsd and EVIL under old-linux: the policy is applied, not ignored
    pcap = corpus / "reassembly" / "suricata-verify" / "eve-overlap-payload-01__tcp-overlap.pcap"
    got = {p: bytes(run_pcap(pcap, **{"stream.reassembly.policy": p})[1][0].streams[0].buf)
           for p in ("bsd", "old-linux", "first", "last")}
    assert got == {"bsd": b"GOOD", "old-linux": b"EVIL", "first": b"GOOD", "last": b"EVIL"}


# -- suricata-verify tcp-data.log: per-direction bytes ----------------------------------
def _parse_tcp_data_log(text):
    out: dict = {}
    cur = None
    for line in text.splitlines():
        m = re.match(r"^(\S+)-(ts|tc):\s*$", line)
        if m:
            cur = out.setdefault(m.group(2), bytearray())
            continue
        m = re.match(r"^\s*[0-9A-Fa-f]{4}\s+((?:[0-9A-Fa-f]{2}\s+){1,16})", line)
        if m and cur is not None:
            cur.extend(bytes.fromhex(m.group(1).replace(" ", "")))
    return out


@pytest.mark.parametrize("entry", _cases(lambda e: any(x["file"].endswith("tcp-data.log") for x in e["expected"])))
def test_suricata_tcp_data_log(corpus, entry):
    want = _parse_tcp_data_log(_expected(entry, r"tcp-data\.log$")[0].read_text())
    _, flows, _ = run_pcap(corpus / "reassembly" / entry["file"])
    (f,) = flows
    assert bytes(f.streams[0].buf) == bytes(want["ts"]) and bytes(f.streams[1].buf) == bytes(want["tc"])


# -- missed bytes against tshark's view of the holes -------------------------------------
def _tshark_holes(path):
    """{(src addr, src port): missed bytes} for directions whose SYN tshark saw; None if truncated frames."""
    out = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport",
         "-e", "tcp.seq", "-e", "tcp.len", "-e", "tcp.flags", "-e", "tcp.stream", "-e", "frame.cap_len",
         "-e", "frame.len"], capture_output=True, text=True, check=True).stdout
    dirs: dict = {}
    for line in out.splitlines():
        a4, a6, sp, seq, ln, fl, stream, caplen, wirelen = line.split("\t")
        if caplen != wirelen:
            return None
        if not seq:
            continue
        d = dirs.setdefault((stream, a4 or a6, int(sp)), {"iv": [], "fin": None, "syn": False})
        seq, ln, fl = int(seq), int(ln), int(fl, 16)
        if fl & 0x02:
            d["syn"] = True
            seq += 1
        if ln:
            d["iv"].append((seq, seq + ln))
        if fl & 0x01:
            d["fin"] = seq + ln
    holes = {}
    for (_, addr, port), d in dirs.items():
        if not d["syn"]:
            continue
        pos, miss = 1, 0  # relative sequence 1 = first data byte
        for a, b in sorted(d["iv"]):
            miss += max(0, a - pos)
            pos = max(pos, b)
        if d["fin"] is not None and d["fin"] > pos:
            miss += d["fin"] - pos
        holes[(addr, port)] = miss
    return holes


@pytest.mark.parametrize("entry", _cases(lambda e: True))
def test_missed_bytes_match_holes(corpus, entry):
    import ipaddress

    path = corpus / "reassembly" / entry["file"]
    holes = _tshark_holes(path)
    if holes is None:
        pytest.skip("truncated frames: the decoder drops them, tshark still counts their data")
    _, flows, _ = run_pcap(path, **_midstream())
    ours = {}
    for f in flows:
        for d, s in enumerate(f.streams):
            if s is not None and f.isn[d] is not None:
                src, port = (f.client, f.cport) if d == 0 else (f.server, f.sport)
                ours[(str(ipaddress.ip_address(src)), port)] = s.missed_bytes
    for k, miss in holes.items():
        if k in ours:
            assert ours[k] == miss, k


def test_gap_breaks_continuity_and_reassembly_goes_on(corpus):
    _, (f,), _ = run_pcap(corpus / "reassembly" / "suricata-verify" / "http-gap-simple__input.pcap")
    s = f.streams[1]
    assert s.missed_bytes == 14 and s.epoch == 1 and s.end > s.buf_base
    assert bytes(f.streams[0].buf).startswith(b"GET ")


def test_urgent_data_is_ordinary_data(corpus):
    _, (f,), _ = run_pcap(corpus / "reassembly" / "suricata-verify" / "tcp-urgp-01-oob__tcp-urgent1.pcap")
    sent = subprocess.run(["tshark", "-r", str(corpus / "reassembly" / "suricata-verify" / "tcp-urgp-01-oob__tcp-urgent1.pcap"),
                           "-T", "fields", "-e", "tcp.srcport", "-e", "tcp.len"], capture_output=True, text=True,
                          check=True).stdout
    per_port: dict = {}
    for line in sent.splitlines():
        p, n = line.split("\t")
        per_port[int(p)] = per_port.get(int(p), 0) + int(n)
    assert f.streams[0].end == per_port[f.cport] and f.streams[1].end == per_port[f.sport]


def test_wraparound_gives_the_same_bytes(corpus):
    a = arrival_order(corpus / "reassembly" / "pcapplusplus" / "one_tcp_stream.pcap")
    b = arrival_order(corpus / "reassembly" / "pcapplusplus" / "one_tcp_stream_max_seq.pcap")
    assert list(a.values()) == list(b.values())
