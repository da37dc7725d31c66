"""EVE flow records as a flood writes them: complete, and the same text in both builds.

The flow record is formatted from a template (``sinks.eve_flow``), not through a
dict and ``json.dumps``.  Here:

- for any flow the writer's line is byte for byte ``json.dumps`` of Suricata's record
  built as a dict in Suricata's field order (``_record_dict``, the form the writer had
  before: SIEMs ingest this order and these values), whatever the protocol, addresses,
  VLANs, application protocol, odd strings, gaps, sensor name and interface;
- a generated SYN flood through ``mirrorwatch replay`` (the flow table capped so most
  sessions are ended to make room) gives one complete flow record per session, and the
  compiled and the interpreted builds write the same bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from ipaddress import ip_address
from pathlib import Path
from types import SimpleNamespace

import pytest
from flow_records import make_flow
from hypothesis import given, settings
from hypothesis import strategies as st

from mirrorwatch.core.events import FlowEnded
from mirrorwatch.sinks.eve import EveWriter
from mirrorwatch.sinks.fmt import addr, iso_time, proto_name

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "pcaps"))
import gen_floods

FLOOD_SESSIONS = 3_000
FLOOD_MAX_SESSIONS = 1_000  # flow.max-sessions for the flood: two thirds of it end "forced"
TIMEOUT_S = 300
SENSOR = "flood-sensor"


class _Lines:
    """An EVE output that keeps what is written."""

    def __init__(self):
        self.lines: list[str] = []

    def write(self, line: str) -> None:
        self.lines.append(line)

    def flush(self) -> None:
        pass

    close = reopen = flush


def _ip(packed: bytes, compress: bool) -> str:
    """Suricata's text of an address: IPv6 in full (PrintInet), or compressed with ipv6-compress."""
    a = ip_address(packed)
    return a.compressed if compress else a.exploded


_ICMP_ANSWERS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMPV6_ANSWERS = {128: 129, 129: 128, 135: 136, 136: 135, 133: 134, 134: 133, 130: 131, 131: 130, 139: 140,
                   140: 139, 144: 145, 145: 144, 146: 147, 147: 146, 148: 149, 149: 148, 151: 152, 152: 151,
                   157: 158, 158: 157}


def _record_dict(f, reason: str, host, in_iface, compress: bool, log_eps: bool = False) -> dict:
    """Suricata's flow record (output-json-flow.c) as a dict, in its field order."""
    ports = f.proto in (6, 17, 132)
    ev: dict = {"timestamp": iso_time(f.start), "flow_id": f.flow_id, "event_type": "flow"}
    if f.vlan_id:
        ev["vlan"] = list(f.vlan_id)
    ev["src_ip"] = _ip(f.client, compress)
    if ports:
        ev["src_port"] = f.cport
    ev["dest_ip"] = _ip(f.server, compress)
    if ports:
        ev["dest_port"] = f.sport
    ev["ip_v"] = 6 if len(f.client) == 16 else 4
    ev["proto"] = proto_name(f.proto)
    if f.proto in (1, 58):
        t = max(f.icmp_type, 0)
        ev["icmp_type"], ev["icmp_code"] = t, max(f.icmp_code, 0)
        if f.pkts[1]:
            ev["response_icmp_type"] = (_ICMPV6_ANSWERS if f.proto == 58 else _ICMP_ANSWERS).get(t, 0)
            ev["response_icmp_code"] = 0
    if f.app is not None and f.app.proto is not None:
        ev["app_proto"] = f.app.proto
    end = max(f.last_ts, f.start)
    fo = {"pkts_toserver": f.pkts[0], "pkts_toclient": f.pkts[1], "bytes_toserver": f.bytes[0],
          "bytes_toclient": f.bytes[1], "start": iso_time(f.start), "end": iso_time(end),
          "age": int(end) - int(f.start)}
    if f.bypassed:
        fo["bypass"] = "local"
    fo.update({"state": "bypassed" if f.bypassed else f.state, "reason": reason, "alerted": bool(f.alerted)})
    if f.action is not None:
        fo["action"] = f.action
    if log_eps and f.eps:
        fo["exception_policy"] = [{"target": t, "policy": p} for t, p in f.eps]
    if f.killed:
        fo["killed"] = f.killed
    ev["flow"] = fo
    if f.proto == 6:
        ev["tcp"] = _tcp_dict(f)
    if in_iface is not None:
        ev["in_iface"] = in_iface
    if host is not None:
        ev["host"] = host
    return ev


def _tcp_dict(f) -> dict:
    flags = f.tcp_flags or 0
    tcp: dict = {"tcp_flags": f"{flags:02x}", "tcp_flags_ts": f"{(f.tcp_flags_ts or 0):02x}",
                 "tcp_flags_tc": f"{(f.tcp_flags_tc or 0):02x}"}
    for bit, name in ((0x02, "syn"), (0x01, "fin"), (0x04, "rst"), (0x08, "psh"),
                      (0x10, "ack"), (0x20, "urg"), (0x40, "ecn"), (0x80, "cwr")):
        if flags & bit:
            tcp[name] = True
    if f.tcp_state:
        tcp["state"] = f.tcp_state
    missed = [getattr(s, "missed_bytes", 0) if s is not None else 0 for s in (f.streams or ())[:2]]
    missed += [0] * (2 - len(missed))
    if missed[1]:
        tcp["tc_gap"] = True
    if missed[0]:
        tcp["ts_gap"] = True
    if f.tcp_state:
        regions = [getattr(s, "max_regions", 1) if s is not None else 1 for s in (f.streams or ())[:2]]
        tcp["ts_max_regions"], tcp["tc_max_regions"] = (regions + [1, 1])[:2]
    if missed[0]:
        tcp["missed_bytes_ts"] = missed[0]
    if missed[1]:
        tcp["missed_bytes_tc"] = missed[1]
    return tcp


_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
_flags = st.integers(0, 255)
_stream = st.one_of(st.none(), st.builds(SimpleNamespace, missed_bytes=st.integers(0, 10**6),
                                          max_regions=st.integers(1, 9)))


@st.composite
def _flows(draw):
    v6 = draw(st.booleans())
    size = 16 if v6 else 4
    start = draw(st.floats(1e9, 2e9, allow_nan=False))
    return make_flow(
        flow_id=draw(st.integers(0, 2**63 - 1)), proto=draw(st.sampled_from((6, 17, 1, 58, 132, 47, 250))),
        client=draw(st.binary(min_size=size, max_size=size)), server=draw(st.binary(min_size=size, max_size=size)),
        cport=draw(st.integers(0, 65535)), sport=draw(st.integers(0, 65535)),
        vlan_id=tuple(draw(st.lists(st.integers(0, 4095), max_size=2))),
        start=start, last_ts=start + draw(st.floats(-5, 1e5, allow_nan=False)),
        pkts=draw(st.lists(st.integers(0, 2**40), min_size=2, max_size=2)),
        bytes=draw(st.lists(st.integers(0, 2**50), min_size=2, max_size=2)),
        state=draw(st.one_of(st.sampled_from(("new", "established", "closed")), _text)),
        tcp_state=draw(st.one_of(st.none(), st.sampled_from(("syn_sent", "closed")), _text)),
        tcp_flags_ts=draw(_flags), tcp_flags_tc=draw(_flags),
        app=draw(st.one_of(st.none(), st.builds(SimpleNamespace, proto=st.one_of(st.none(), _text)))),
        alerted=draw(st.booleans()), killed=draw(st.one_of(st.none(), _text)),
        streams=draw(st.one_of(st.none(), st.lists(_stream, max_size=2))),
        icmp_type=draw(st.integers(-1, 255)), icmp_code=draw(st.integers(-1, 255)),
        action=draw(st.sampled_from((None, "pass", "drop"))), bypassed=draw(st.booleans()),
        eps=draw(st.sampled_from(((), (("stream_midstream", "ignore"),), (("stream_midstream", "bypass"),)))),
    )


@settings(max_examples=400, deadline=None)
@given(_flows(), st.one_of(st.sampled_from(("timeout", "forced", "shutdown")), _text),
       st.one_of(st.none(), _text), st.one_of(st.none(), _text), st.booleans(), st.booleans())
def test_a_flow_record_is_the_json_of_suricatas_record(flow, reason, host, in_iface, compress, log_eps):
    out = _Lines()
    w = EveWriter(types=("flow",), output=out, host=host, in_iface=in_iface, ipv6_compress=compress,
                  log_eps=log_eps)
    w.handle(FlowEnded(flow.last_ts, flow, reason))
    expected = json.dumps(_record_dict(flow, reason, host, in_iface, compress, log_eps),
                          separators=(",", ":")) + "\n"
    assert out.lines == [expected]


# -- a flood, both builds -----------------------------------------------------------------------

_SYN_KEYS = ["timestamp", "flow_id", "event_type", "src_ip", "src_port", "dest_ip", "dest_port", "ip_v", "proto",
             "flow", "tcp", "host"]
_SYN_FLOW_KEYS = ["pkts_toserver", "pkts_toclient", "bytes_toserver", "bytes_toclient", "start", "end", "age",
                  "state", "reason", "alerted"]
_SYN_TCP = {"tcp_flags": "02", "tcp_flags_ts": "02", "tcp_flags_tc": "00", "syn": True, "state": "syn_sent",
            "ts_max_regions": 1, "tc_max_regions": 1}


@pytest.fixture(scope="module")
def flood(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("synflood")
    pcap = tmp / "syn.pcap"
    gen_floods.generate("syn", FLOOD_SESSIONS, pcap)
    rules = tmp / "flood.rules"
    rules.write_text(gen_floods.BAD_RULE)
    return pcap, rules


def _replay(flood, out: Path, pure: str) -> bytes:
    pcap, rules = flood
    eve = out / f"eve-{pure}.json"
    cmd = [sys.executable, "-m", "mirrorwatch", "replay", "-q", "-k", "none", "--eve", str(eve),
           "--eve-types", "alert,flow", "--sensor-name", SENSOR, "--set", f"flow.max-sessions={FLOOD_MAX_SESSIONS}",
           "-r", str(rules), str(pcap)]
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, env=dict(os.environ, MIRRORWATCH_PURE=pure),
                       timeout=TIMEOUT_S, cwd=ROOT)
    assert p.returncode == 0, f"{' '.join(cmd)} (MIRRORWATCH_PURE={pure}):\n{p.stderr[-3000:]}"
    return eve.read_bytes()


def _check_complete(text: bytes) -> None:
    records = [json.loads(line) for line in text.splitlines()]
    flows = [r for r in records if r["event_type"] == "flow"]
    assert len(flows) == FLOOD_SESSIONS + 1  # every session of the flood, and the ordinary one
    assert len({r["flow_id"] for r in flows}) == len(flows)
    syn = [r for r in flows if r["src_ip"].startswith("10.")]
    assert sorted(r["src_ip"] for r in syn) == sorted(
        addr(gen_floods._source(i).addr) for i in range(FLOOD_SESSIONS))
    for r in syn:
        assert list(r) == _SYN_KEYS and list(r["flow"]) == _SYN_FLOW_KEYS
        assert (r["dest_ip"], r["dest_port"], r["proto"], r["host"]) == ("192.0.2.80", 80, "TCP", SENSOR)
        fo = r["flow"]
        assert (fo["pkts_toserver"], fo["pkts_toclient"], fo["bytes_toserver"], fo["state"], fo["alerted"]) == (
            1, 0, 54, "new", False)
        assert fo["start"] == fo["end"] == r["timestamp"] and fo["age"] == 0
        assert r["tcp"] == _SYN_TCP
    reasons = Counter(r["flow"]["reason"] for r in syn)
    assert set(reasons) == {"forced", "shutdown"} and reasons["forced"] >= FLOOD_SESSIONS - FLOOD_MAX_SESSIONS
    (bad,) = [r for r in flows if not r["src_ip"].startswith("10.")]
    assert bad["flow"]["alerted"] is True and bad["app_proto"] == "http" and bad["flow"]["reason"] == "shutdown"
    assert any(r["event_type"] == "alert" and r["alert"]["signature_id"] == gen_floods.BAD_SID for r in records)


def test_a_flood_writes_every_flow_record_the_same_in_both_builds(flood, tmp_path):
    compiled, interpreted = _replay(flood, tmp_path, "0"), _replay(flood, tmp_path, "1")
    _check_complete(interpreted)
    assert compiled == interpreted
