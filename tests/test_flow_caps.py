"""Issue 13: floods must neither exhaust memory nor blind the sensor -- each mechanism at small scale.

Evicted and ended sessions are freed at once (a weak reference to the flow
is dead right after its FlowEnded event is dropped, with the cycle collector
off), ``flow.memcap`` and ``flow.max-sessions`` hold and are counted, emergency
mode enters and leaves as Suricata's, the least valuable sessions go first,
and a session without payload costs its flow record only.
"""

from __future__ import annotations

import gc
import io
import json
import sys
import tracemalloc
import weakref
from pathlib import Path

import pytest

from mirrorwatch.cli.pipeline import Pipeline, load_ruleset
from mirrorwatch.core.decode.packet import ACK, PSH, SYN, Packet
from mirrorwatch.core.engine import Engine
from mirrorwatch.core.events import FlowEmergency, FlowEnded
from mirrorwatch.core.flows.caps import FLOW_BYTES_OTHER, FLOW_BYTES_TCP, STREAM_BYTES
from mirrorwatch.core.flows.table import FlowTable
from mirrorwatch.core.settings import Settings
from mirrorwatch.sinks.caps import CapWatch, EmergencyNotices, cap_lines
from mirrorwatch.sinks.eve import EveWriter
from mirrorwatch.sinks.table import LiveTable
from mirrorwatch.sources.pcapfile import PcapFiles

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pcaps"))
import gen_floods  # noqa: E402

SERVER = bytes([192, 0, 2, 80])


def pkt(ts: float, i: int, flags: int = SYN, seq: int = 1000, ack: int = 0, data: bytes = b"", to_server=True,
        proto: int = 6) -> Packet:
    """A packet of session ``i`` (client 10.x.y.z:(1024 + i % 60000)) with the server 192.0.2.80:80."""
    p = Packet(ts, 0, 1, b"\0" * (54 + len(data)))
    p.ipv, p.proto = 4, proto
    client = (0x0A000000 + 1 + i).to_bytes(4, "big")
    cport = 1024 + i % 60000
    p.src, p.dst, p.sport, p.dport = (client, SERVER, cport, 80) if to_server else (SERVER, client, 80, cport)
    p.flags, p.seq, p.ack, p.win, p.payload = flags, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 65535, data
    return p


def handshake(ft: FlowTable, ev: list, ts: float, i: int):
    f, _ = ft.process(pkt(ts, i, SYN, 1000), ev)
    ft.process(pkt(ts, i, SYN | ACK, 5000, 1001, to_server=False), ev)
    ft.process(pkt(ts, i, ACK, 1001, 5001), ev)
    return f


@pytest.fixture(scope="module")
def bad_rules(tmp_path_factory):
    p = tmp_path_factory.mktemp("rules") / "bad.rules"
    p.write_text(gen_floods.BAD_RULE)
    return p


@pytest.mark.parametrize("kind", gen_floods.KINDS)
def test_evicted_sessions_are_released_at_once(tmp_path, bad_rules, kind):
    """A flood through the whole engine and its sinks: every session ended to make room is freed
    by reference counting before the next packet (no index keeps it), and the bad one alerts."""
    pcap = tmp_path / f"{kind}.pcap"
    gen_floods.generate(kind, 1500, pcap)
    s = Settings({"flow.max-sessions": 1000, "stream.midstream": kind == "onesided"})
    eng = Engine(s, load_ruleset([bad_rules], s))
    eve = tmp_path / "eve.json"
    pipe = Pipeline(eng, [EveWriter(str(eve)), LiveTable(eng)])
    refs = []
    alerts = 0
    gc.collect()
    gc.disable()
    try:
        for ts, lt, frame, wl in PcapFiles([pcap]):
            events = eng.process(ts, lt, frame, wl)
            pipe.dispatch(events)
            alerts += sum(1 for e in events if type(e).__name__ == "Alert")
            refs += [weakref.ref(e.flow) for e in events if type(e) is FlowEnded]
            del events
            assert all(r() is None for r in refs), "an ended session is still referenced"
    finally:
        gc.enable()
    assert len(refs) == 501 and alerts == 1  # 1,500 flood sessions and the bad one, 1,000 at a time
    assert eng.flows.counters()["evicted"] == len(refs) and len(eng.flows.wheel) == len(eng.flows.flows)


def test_timed_out_and_reused_sessions_are_released_at_once():
    ft = FlowTable(Settings({}))
    ev: list = []
    f = handshake(ft, ev, 0.0, 1)
    ft.process(pkt(0.1, 1, 0x04, 1001), ev)  # RST: closed
    g, _ = ft.process(pkt(0.2, 1, SYN, 777), ev)  # a new SYN with another ISN: tcp_reuse
    assert g is not f and [e.reason for e in ev] == ["tcp_reuse"]
    ref = weakref.ref(f)
    del f, ev[:]
    assert ref() is None
    ref = weakref.ref(g)
    del g
    gone = ft.expire(1000.0)
    assert len(gone) == 1 and len(ft.wheel) == 0
    del gone
    assert ref() is None


def test_max_sessions_enters_emergency_mode_and_leaves_it():
    ft = FlowTable(Settings({"flow.max-sessions": 1000, "flow-timeouts.tcp.new": 60}))
    ev: list = []
    for i in range(1200):
        ft.process(pkt(i * 0.001, i), ev)
    entered = [e for e in ev if type(e) is FlowEmergency]
    assert len(entered) == 1 and entered[0].entered and entered[0].cap == "flow.max-sessions"
    assert entered[0].active == 1000 and ft.emergency
    c = ft.counters()
    assert c["max_sessions"] == 200 and c["evicted"] == 200 and c["emerg_mode_entered"] == 1
    assert len(ft.flows) == 1000 and sum(type(e) is FlowEnded for e in ev) == 200
    # emergency timeouts: an unanswered SYN lives flow-timeouts.tcp.emergency-new (5 s), not 60
    assert ft.expire(1.199 + 4.0) == [] and not ft.pop_notices()
    gone = ft.expire(1.199 + 5.0 + 1.0)  # (the wheel's buckets are whole seconds)
    assert len(gone) == 1000 and all(f.end_reason == "timeout" for f in gone)
    (over,) = ft.pop_notices()
    assert not over.entered and not ft.emergency and ft.counters()["emerg_mode_over"] == 1
    f, _ = ft.process(pkt(10.0, 5000), ev)
    assert ft.timeout_of(f) == 60  # normal timeouts again


def test_emergency_mode_ends_only_when_the_recovery_share_is_free():
    ft = FlowTable(Settings({"flow.max-sessions": 100, "flow.emergency-recovery": 30}))
    ev: list = []
    for i in range(101):
        ft.process(pkt(0.0, i), ev)
    for i in range(101, 175):  # answered sessions, active later: 74 of them stay when the SYNs time out
        handshake(ft, ev, 4.0, i)
    assert ft.emergency
    ft.expire(5.5)  # the unanswered SYNs of t=0 are gone, 74 sessions remain: 26% free < 30%
    assert ft.emergency and not ft.pop_notices()
    for f in list(ft.flows.values())[:5]:
        del ft.flows[f.key]
        ft._end(f, "forced")
    ft.expire(5.6)
    assert not ft.emergency and len(ft.pop_notices()) == 1


def test_least_valuable_sessions_are_ended_first():
    ft = FlowTable(Settings({"flow.max-sessions": 10}))
    keep = set()
    ft.holds_state = lambda f: f in keep
    ev: list = []
    alerted = handshake(ft, ev, 0.0, 2)
    alerted.alerted = True
    killed = handshake(ft, ev, 0.0, 3)
    killed.mark_killed("sid:1 reject", dry_run=True)
    flowbits = handshake(ft, ev, 0.0, 4)
    keep.add(flowbits)
    answered = handshake(ft, ev, 0.0, 1)
    for i in range(100, 200):  # a SYN flood: the unanswered one-packet sessions make room
        ft.process(pkt(1.0, i), ev)
    survivors = set(ft.flows.values())
    assert {answered, alerted, killed, flowbits} <= survivors
    ended = [e.flow for e in ev if type(e) is FlowEnded]
    assert len(ended) == 94 and all(f.pkts == [1, 0] for f in ended)
    for i in range(300, 307):  # now only answered sessions are left to end: the idle one goes first
        handshake(ft, ev, 2.0 + i, i)
    assert answered not in ft.flows.values() and {alerted, killed, flowbits} <= set(ft.flows.values())
    assert ft.counters()["get_used_eval_reject"] == 3  # the three protected ones, passed over once


def test_flow_memcap_bounds_the_table_and_is_counted():
    cap = 50 * FLOW_BYTES_TCP + FLOW_BYTES_OTHER
    ft = FlowTable(Settings({"flow.memcap": cap}))
    ev: list = []
    for i in range(200):
        ft.process(pkt(0.0, i), ev)
        assert ft.memuse <= cap
    for i in range(200, 260):
        ft.process(pkt(0.0, i, SYN | 0, proto=17), ev)  # UDP: cheaper records
        assert ft.memuse <= cap
    c = ft.counters()
    assert c["memcap"] >= 150 and c["memuse"] == ft.memuse and ft.emergency
    ft.flush_all()
    assert ft.memuse == 0


def test_session_without_payload_costs_its_flow_record_only():
    ft = FlowTable(Settings({}))
    ev: list = []
    f = handshake(ft, ev, 0.0, 1)
    assert f.streams == [None, None] and f.sseq == [1001, 5001] and ft.memuse == FLOW_BYTES_TCP
    ft.process(pkt(0.1, 1, PSH | ACK, 1001, 5001, b"GET / HTTP/1.0\r\n\r\n"), ev)
    assert f.streams[1] is None and bytes(f.streams[0].buf) == b"GET / HTTP/1.0\r\n\r\n"
    assert ft.memuse == FLOW_BYTES_TCP + STREAM_BYTES


@pytest.mark.parametrize("proto, per_flow", [(6, FLOW_BYTES_TCP), (17, FLOW_BYTES_OTHER)])
def test_memuse_estimate_is_what_a_record_costs(proto, per_flow):
    """The per-record costs flow.memcap counts are within 25% of what tracemalloc measures."""
    ft = FlowTable(Settings({}))
    ev: list = []
    pkts = [pkt(0.0, i, proto=proto) for i in range(5000)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for p in pkts:
        ft.process(p, ev)
    measured = (tracemalloc.get_traced_memory()[0] - before) / len(ft.flows)
    tracemalloc.stop()
    assert 0.75 * measured <= per_flow <= 1.25 * measured, measured


def test_caps_in_stats_summary_live_header_and_eve(tmp_path, bad_rules):
    s = Settings({"flow.max-sessions": 100})
    eng = Engine(s, load_ruleset([bad_rules], s))
    eve = tmp_path / "eve.json"
    notices = io.StringIO()
    table = LiveTable(eng)
    pipe = Pipeline(eng, [EveWriter(str(eve)), EmergencyNotices(notices), table])
    pcap = tmp_path / "syn.pcap"
    gen_floods.generate("syn", 300, pcap)
    for ts, lt, frame, wl in PcapFiles([pcap]):
        pipe.dispatch(eng.process(ts, lt, frame, wl))
    assert "caps hit: flow.max-sessions, flow emergency mode" in table.header(table.sample(0.0), 0.0).plain
    pipe.dispatch(eng.tick(2e9))  # much later: every session timed out, emergency mode over
    pipe.finish()
    pipe.close()
    lines = notices.getvalue().splitlines()
    assert len(lines) == 2 and "emergency mode entered: flow.max-sessions" in lines[0] and "over" in lines[1]
    records = [json.loads(line) for line in eve.read_text().splitlines()]
    engine = [r["engine"] for r in records if r["event_type"] == "engine"]
    assert [e["emergency"] for e in engine] == ["entered", "over"] and engine[0]["cap"] == "flow.max-sessions"
    flow = records[-1]["stats"]["flow"]
    assert flow["max_sessions"] == 201 and flow["emerg_mode_entered"] == 1 and flow["emerg_mode_over"] == 1
    text = "\n".join(cap_lines(pipe.stats.counters))
    assert "flow.max-sessions reached" in text and "entered 1 time, left 1" in text


def test_cap_watch_holds_a_hit_for_a_while():
    now = [0.0]
    w = CapWatch(clock=lambda: now[0])
    assert w.hit({"flow": {"max_sessions": 0}}) == []
    assert w.hit({"flow": {"max_sessions": 3}}) == ["flow.max-sessions"]
    now[0] = 4.0
    assert w.hit({"flow": {"max_sessions": 3}}) == ["flow.max-sessions"]
    now[0] = 9.5
    assert w.hit({"flow": {"max_sessions": 3}}) == []


@pytest.mark.slow
def test_reassembly_memcap_holds_with_100k_sessions_each_leaving_a_hole():
    """100k sessions, each with one segment beyond a hole the receiver never ACKs: the held
    out-of-order bytes never exceed stream.reassembly.memcap, and every give-up is counted."""
    memcap = 8 * 1024 * 1024
    ft = FlowTable(Settings({"flow.max-sessions": 200_000, "stream.reassembly.memcap": memcap}))
    ev: list = []
    data = b"z" * 1000
    r = ft.reasm
    for i in range(100_000):
        handshake(ft, ev, i * 1e-5, i)
        ft.process(pkt(i * 1e-5, i, PSH | ACK, 1001 + 500, 5001, data), ev)  # 500 bytes missing before it
        assert r.ooo_bytes + r.buf_bytes <= memcap
    held = sum(s._ooo_bytes for f in ft.flows.values() for s in f.streams if s is not None)
    assert held == r.ooo_bytes <= memcap and len(ft.flows) == 100_000
    assert r.stats["memcap_skips"] >= 100_000 - memcap // 1000
    assert ft.counters()["reassembly"]["memcap_skips"] == r.stats["memcap_skips"]
