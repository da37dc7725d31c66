"""Inline decisions without a kernel: the core's verdicts (Engine.process_inline + InlineJudge), the
verdict writer, the firewall's counter parsing, and how a bypass switch is rendered.

Packets are real IP packets (scapy) through the real decoder, flow table, reassembly and detect, as an
NFQUEUE hands them over (no link header).
"""

from __future__ import annotations

import json

import pytest
from scapy.all import IP, TCP, UDP, IPv6

from mirrorwatch.core.decode.numbers import LINKTYPE_IPV4, LINKTYPE_IPV6
from mirrorwatch.core.engine import Engine
from mirrorwatch.core.events import (
    ACCEPT,
    ACCEPTED,
    DROP_FLOW,
    PASS_FLOW,
    REJECT,
    Alert,
    BypassSwitch,
    Kill,
    Verdict,
)
from mirrorwatch.core.inline import InlineJudge, KillConfigError
from mirrorwatch.core.settings import Settings
from mirrorwatch.inline import firewall as fwm
from mirrorwatch.inline import verdicts as vm
from mirrorwatch.rules import RuleContext, parse_rule
from mirrorwatch.sinks.eve import EveWriter
from mirrorwatch.sinks.fastlog import format_alert
from mirrorwatch.sinks.injector import build_packet
from mirrorwatch.sources import nfnetlink, nfqueue

C4, S4, C6, S6 = "198.51.100.1", "203.0.113.2", "2001:db8:1::1", "2001:db8:2::2"
CPORT, SPORT, CISN, SISN = 40000, 8080, 1000, 500_000
RULES = """
drop tcp any any -> any 8080 (msg:"EVIL"; flow:established,to_server; content:"EVIL"; sid:1;)
reject tcp any any -> any 8080 (msg:"BAD"; flow:established,to_server; content:"BADREQ"; sid:2;)
rejectsrc tcp any any -> any 8080 (msg:"SRC"; flow:established,to_server; content:"ONLYSRC"; sid:3;)
rejectdst tcp any any -> any 8080 (msg:"DST"; flow:established,to_server; content:"ONLYDST"; sid:4;)
pass ip 192.0.2.7 any -> any any (msg:"trusted"; sid:5;)
alert tcp any any -> any 8080 (msg:"note"; flow:established,to_server; content:"NOTE"; sid:6;)
drop udp any any -> any 53 (msg:"DNS drop"; content:"evil"; sid:7;)
drop ip 192.0.2.66 any -> any any (msg:"blocked host"; sid:8;)
"""


def inline_engine(mode: str = "rst", **overrides) -> Engine:
    s = Settings({"stream.inline": True, "stream.midstream": True, "stream.bypass": True, **overrides})
    ctx = RuleContext(s, {})
    rules = [parse_rule(line, ctx)[0] for line in RULES.strip().splitlines()]
    return Engine(s, rules, checksum_mode="all", killer=InlineJudge.from_settings(s, mode))


class Session:
    """One TCP session through an inline engine: each packet's (verdict, events)."""

    def __init__(self, eng: Engine, ipv: int = 4, client: str | None = None):
        self.eng, self.ipv, self.ts = eng, ipv, 1000.0
        self.c, self.s = (client or C4, S4) if ipv == 4 else (client or C6, S6)
        self.cseq, self.sseq = CISN, SISN

    def send(self, to_server: bool, flags: str, payload: bytes = b"", csum_ready: bool = True, bad_csum=False):
        ip = IP if self.ipv == 4 else IPv6
        src, dst = (self.c, self.s) if to_server else (self.s, self.c)
        sp, dp = (CPORT, SPORT) if to_server else (SPORT, CPORT)
        seq, ack = (self.cseq, self.sseq) if to_server else (self.sseq, self.cseq)
        tcp = TCP(sport=sp, dport=dp, seq=seq, ack=ack if "A" in flags else 0, flags=flags)
        if bad_csum:
            tcp.chksum = 0x1234
        frame = bytes(ip(src=src, dst=dst) / tcp / payload)
        n = len(payload) + ("S" in flags) + ("F" in flags)
        if to_server:
            self.cseq += n
        else:
            self.sseq += n
        self.ts += 0.001
        return self.eng.process_inline(self.ts, LINKTYPE_IPV4 if self.ipv == 4 else LINKTYPE_IPV6, frame, csum_ready)

    def handshake(self):
        for args in ((True, "S"), (False, "SA"), (True, "A")):
            assert self.send(*args)[0] is ACCEPTED
        return self


def alerts(events) -> list:
    return [e for e in events if type(e) is Alert]


# -- the core's verdicts -------------------------------------------------------------------

def test_benign_packets_are_accepted_with_the_shared_value():
    s = Session(inline_engine()).handshake()
    for k in range(5):
        v, ev = s.send(True, "PA", b"GET /%d HTTP/1.0\r\n" % k)
        assert v is ACCEPTED and not alerts(ev)


@pytest.mark.parametrize("ipv", [4, 6])
def test_drop_rule_drops_the_packet_and_the_rest_of_the_flow(ipv):
    eng = inline_engine()
    s = Session(eng, ipv).handshake()
    assert s.send(True, "PA", b"hello ")[0] is ACCEPTED
    v, ev = s.send(True, "PA", b"GET /EVIL HTTP/1.0\r\n\r\n")
    assert (v.action, v.reason) == (DROP_FLOW, "sid:1 drop")
    (a,) = alerts(ev)
    assert a.action == "blocked" and a.verdict == {"action": "drop"}
    assert format_alert(a).split("  ", 1)[1].startswith("[Drop] [**] [1:1:0] EVIL")
    assert not [e for e in ev if type(e) is Kill], "drop sends no reset"
    for to_server, flags in ((False, "A"), (True, "PA"), (True, "FA")):  # queued before the kernel knew
        assert s.send(to_server, flags, b"more" if flags == "PA" else b"")[0].action == DROP_FLOW
    c = eng.killer.counters()
    assert (c["flows_dropped"], c["flow_packets_dropped"], c["blocked_remembered"]) == (1, 3, 1)


@pytest.mark.parametrize("payload", [b"GET /EVIL HTTP/1.0\r\n\r\n", b"BADREQ!"])
def test_a_dropped_flow_is_no_longer_inspected_and_its_later_packets_are_dropped(payload):
    """Suricata stops inspecting a flow it dropped: a later packet that an alert rule would match
    (sid 6, NOTE) raises nothing, and is dropped all the same."""
    eng = inline_engine()
    s = Session(eng).handshake()
    v, ev = s.send(True, "PA", payload)
    assert v.action in (DROP_FLOW, REJECT) and alerts(ev)
    (flow,) = eng.flows.flows.values()
    assert flow.no_inspection and flow.streams == [None, None]
    for to_server, flags, data in ((True, "PA", b"NOTE"), (False, "PA", b"x" * 50), (True, "PA", b"NOTE EVIL")):
        v, ev = s.send(to_server, flags, data)
        assert v.action == DROP_FLOW and not alerts(ev)
    assert eng.detector.counters()["alerts"] == 1
    c = eng.killer.counters()
    assert (c["flows_dropped"] + c["flows_rejected"], c["flow_packets_dropped"]) == (1, 3)


def test_reject_resets_both_ends_at_their_exact_next_byte():
    eng = inline_engine()
    s = Session(eng).handshake()
    s.send(True, "PA", b"hello ")
    s.send(False, "PA", b"x" * 100)
    bad_seq, server_next = s.cseq, s.sseq
    v, ev = s.send(True, "PA", b"BADREQ!")
    assert v.action == REJECT
    (kill,) = [e for e in ev if type(e) is Kill]
    by_dir = {seg.to_server: seg for seg in kill.frames}
    # the server never got the bad packet: its next byte is the packet's own seq
    assert (by_dir[True].seq, by_dir[True].ack, by_dir[True].flags) == (bad_seq, server_next, 0x14)
    # the client's next byte is the server's next_seq; the reset acknowledges the bad packet
    assert (by_dir[False].seq, by_dir[False].ack) == (server_next, bad_seq + 7)
    (a,) = alerts(ev)
    assert a.verdict == {"action": "drop", "reject-target": "both", "reject": ["tcp-reset"]}
    packet = build_packet(by_dir[True])
    assert IP(packet)[TCP].seq == bad_seq and IP(packet)[TCP].flags == "RA"
    assert s.send(True, "PA", b"retransmit")[0].action == DROP_FLOW


@pytest.mark.parametrize("payload, target, toward", [(b"ONLYSRC", "to_client", [False]),
                                                    (b"ONLYDST", "to_server", [True])])
def test_rejectsrc_and_rejectdst_reset_one_side(payload, target, toward):
    s = Session(inline_engine()).handshake()
    v, ev = s.send(True, "PA", payload)
    (kill,) = [e for e in ev if type(e) is Kill]
    assert v.action == REJECT and [seg.to_server for seg in kill.frames] == toward
    assert alerts(ev)[0].verdict["reject-target"] == target


def test_kill_with_fin_sends_fin():
    s = Session(inline_engine("fin")).handshake()
    _, ev = s.send(True, "PA", b"BADREQ")
    (kill,) = [e for e in ev if type(e) is Kill]
    assert {seg.flags for seg in kill.frames} == {0x11}  # FIN+ACK
    assert alerts(ev)[0].verdict["reject"] == ["tcp-fin"]


def test_a_match_split_over_two_packets_holds_the_packet_that_completes_it():
    """stream.inline: the new bytes are inspected on the packet that brought them, before its verdict."""
    s = Session(inline_engine()).handshake()
    assert s.send(True, "PA", b"GET /EV")[0] is ACCEPTED
    v, ev = s.send(True, "PA", b"IL HTTP/1.0\r\n")
    assert v.action == DROP_FLOW and alerts(ev)[0].stream == 1


def test_pass_rule_bypasses_the_flow():
    eng = inline_engine()
    s = Session(eng, client="192.0.2.7")
    v, _ = s.send(True, "S")
    assert (v.action, v.reason) == (PASS_FLOW, "pass rule")
    s.send(False, "SA")
    assert s.send(True, "PA", b"EVIL")[0].action == PASS_FLOW  # passed flows are not inspected
    assert eng.killer.counters()["flows_passed"] == 1


def test_flow_past_the_stream_depth_is_bypassed_after_its_last_inspected_packet():
    eng = inline_engine(**{"stream.reassembly.depth": 3000})
    s = Session(eng).handshake()
    assert s.send(True, "PA", b"a" * 1400)[0] is ACCEPTED
    assert s.send(True, "PA", b"b" * 1400)[0] is ACCEPTED
    v, _ = s.send(True, "PA", b"c" * 1400)  # reaches the depth: inspected, then bypassed
    assert (v.action, v.reason) == (PASS_FLOW, "stream depth")
    assert eng.killer.counters()["flows_depth_bypassed"] == 1
    off = inline_engine(**{"stream.reassembly.depth": 3000, "stream.bypass": False})
    s = Session(off).handshake()
    assert {s.send(True, "PA", b"a" * 1400)[0].action for _ in range(4)} == {ACCEPT}


def test_udp_drop_and_flowless_drop():
    eng = inline_engine()
    frame = bytes(IP(src=C4, dst=S4) / UDP(sport=5555, dport=53) / b"\x12\x34evil")
    assert eng.process_inline(1.0, LINKTYPE_IPV4, frame)[0].action == DROP_FLOW
    # a TCP header too short to read: no flow, IP-only rules still apply; its decoder event is reported
    bad = bytes(IP(src=C4, dst=S4, proto=6) / b"\x00\x01")
    verdict, events = eng.process_inline(1.1, LINKTYPE_IPV4, bad)
    assert verdict is ACCEPTED and [type(e).__name__ for e in events] == ["DecodeAnomaly"]
    v, ev = eng.process_inline(1.2, LINKTYPE_IPV4, bytes(IP(src="192.0.2.66", dst=S4, proto=6) / b"\x00\x01"))
    (a,) = alerts(ev)
    assert (v.action, v.reason) == (DROP_FLOW, "sid:8 drop") and a.flow is None and a.action == "blocked"
    assert eng.killer.counters()["flowless_dropped"] == 1


def test_alert_rule_keeps_accepting_and_its_verdict_is_alert():
    s = Session(inline_engine()).handshake()
    v, ev = s.send(True, "PA", b"NOTE")
    (a,) = alerts(ev)
    assert v is ACCEPTED and a.action == "allowed" and a.verdict is None


def test_kernel_not_ready_checksums_are_not_judged():
    """-k all: a wrong checksum the kernel has not computed yet (CHECKSUM_PARTIAL) is inspected;
    the same bytes claimed ready are a bad checksum, not inspected (and the packet is accepted)."""
    s = Session(inline_engine()).handshake()
    v, ev = s.send(True, "PA", b"EVIL", csum_ready=False, bad_csum=True)
    assert v.action == DROP_FLOW
    s = Session(inline_engine()).handshake()
    v, ev = s.send(True, "PA", b"EVIL", bad_csum=True)
    assert v is ACCEPTED and not alerts(ev)
    assert s.eng.decoder.check == 1, "the decoder's mode is back after an unverified packet"


def test_stop_resets_every_blocked_session_at_both_ends_and_memory_is_bounded():
    eng = inline_engine(**{"inline.reset-memory": 2})
    for k in range(3):
        s = Session(eng, client=f"198.51.100.{10 + k}").handshake()
        s.send(True, "PA", b"EVIL")
    kills = eng.killer.stop_resets(2000.0)
    assert len(kills) == 2 and all(k.trigger == "shutdown" and len(k.frames) == 2 for k in kills)
    assert {k.flow.client for k in kills} == {bytes([198, 51, 100, 11]), bytes([198, 51, 100, 12])}
    c = eng.killer.counters()
    assert (c["reset_memory_full"], c["shutdown_resets"], c["blocked_remembered"]) == (1, 2, 0)
    assert eng.killer.stop_resets(2001.0) == []


def test_a_dropped_syn_resets_only_its_sender():
    eng = inline_engine()
    eng.reload_rules([parse_rule('drop tcp any any -> any 8080 (msg:"no"; flags:S; sid:9;)',
                                 RuleContext(eng.settings, {}))[0]])
    s = Session(eng)
    assert s.send(True, "S")[0].action == DROP_FLOW
    (kill,) = eng.killer.stop_resets(2000.0)
    (seg,) = kill.frames
    assert not seg.to_server and seg.ack == CISN + 1  # acknowledges the SYN: the client in SYN-SENT takes it


def test_bad_kill_mode_and_memory():
    with pytest.raises(KillConfigError):
        InlineJudge("rst+fin")
    with pytest.raises(KillConfigError):
        InlineJudge(reset_memory=-1)


# -- the verdict writer --------------------------------------------------------------------

class FakeQueue:
    def __init__(self):
        self.sent = []

    def verdict(self, packet_id, accept, mark=None, repeat=False):
        self.sent.append(("one", packet_id, accept, mark, repeat))

    def verdict_batch(self, up_to_id, accept):
        self.sent.append(("batch", up_to_id, accept))


def queued(pid: int, mark: int = 0x5):
    return nfnetlink.QueuedPacket(pid, 0x0800, 2, b"", mark, 1, 2, False, False, 0)


def test_writer_batches_accepts_and_flushes_before_other_verdicts():
    q = FakeQueue()
    w = vm.VerdictWriter(q, 0x40, 0x20, batch=3)
    for pid in range(1, 5):
        w.apply(queued(pid), ACCEPTED)
    w.apply(queued(5), Verdict(DROP_FLOW, "x"))
    w.apply(queued(6), ACCEPTED)
    w.apply(queued(7), Verdict(PASS_FLOW, "y"))
    w.apply(queued(8), Verdict(REJECT, "z"))
    w.apply(queued(9), ACCEPTED)
    w.flush()
    assert q.sent == [("batch", 3, True), ("batch", 4, True), ("one", 5, True, 0x45, True),
                      ("batch", 6, True), ("one", 7, True, 0x25, True), ("one", 8, True, 0x45, True),
                      ("batch", 9, True)]
    assert w.counts == {ACCEPT: 6, DROP_FLOW: 1, REJECT: 1, PASS_FLOW: 1}
    w.final = True
    w.apply(queued(10), Verdict(DROP_FLOW, "x"))
    w.apply(queued(11), Verdict(PASS_FLOW, "x"))
    assert q.sent[-2:] == [("one", 10, False, None, False), ("one", 11, True, None, False)]
    with pytest.raises(ValueError):
        vm.VerdictWriter(q, 1, 2, batch=0)


# -- settings, firewall counters, rendering -------------------------------------------------

def test_settings_defaults_are_the_modules_defaults():
    from mirrorwatch.core.inline import DEFAULT_RESET_MEMORY
    from mirrorwatch.inline import watchdog

    s = Settings()
    assert (s["inline.drop-mark"], s["nfq.bypass-mark"], s["inline.injected-mark"]) == (
        fwm.MARK_FLOW_DROP, fwm.MARK_FLOW_BYPASS, fwm.MARK_INJECTED)
    assert (s["inline.queue-maxlen"], s["inline.rcvbuf"], s["inline.recv-batch"]) == (
        nfqueue.DEFAULT_QUEUE_MAXLEN, nfqueue.DEFAULT_RCVBUF, nfqueue.DEFAULT_BATCH_MAX)
    assert (s["inline.watchdog-timeout"], s["inline.watchdog-recovery"], s["inline.watchdog-poll"]) == (
        watchdog.DEFAULT_TIMEOUT, watchdog.DEFAULT_RECOVERY, watchdog.DEFAULT_POLL)
    assert (s["nfq.batchcount"], s["inline.reset-memory"]) == (vm.DEFAULT_BATCH, DEFAULT_RESET_MEMORY)
    assert s["nfq.fail-open"] is True and s["stream.bypass"] is False
    with pytest.raises(ValueError):
        Settings({"inline.drop-mark": "0"})


def test_fail_closed_rules_have_no_queue_bypass():
    rules = fwm.iptables_rules((0, 0), 0x40, 0x20, injected_bit=0x10, queue_bypass=False)
    assert rules[-1] == ["-j", "NFQUEUE", "--queue-num", "0"]
    assert fwm.nft_ruleset("forward", (2, 2), (4, 6), 4, 8, injected_bit=16, queue_bypass=False) \
        .splitlines()[-3].strip() == "counter queue num 2"
    with pytest.raises(ValueError):
        fwm.Firewall(0, backend="iptables", drop_bit=0x40, bypass_bit=0x20, injected_bit=0x40)


def test_counter_parsing():
    listing = """Chain MIRRORWATCH (1 references)
num      pkts      bytes target     prot opt in     out     source               destination
1           3      120 ACCEPT     0    --  *      *       0.0.0.0/0            0.0.0.0/0            mark match
2          11      660 CONNMARK   0    --  *      *       0.0.0.0/0            0.0.0.0/0
8        1234   999999 NFQUEUE    0    --  *      *       0.0.0.0/0            0.0.0.0/0            NFQUEUE num 0
"""
    assert fwm.parse_iptables_counters(listing) == [3, 11, 1234]
    nft = "table inet mirrorwatch {\n chain forward {\n  counter packets 7 bytes 9 accept\n" \
          "  jump bypass\n  counter packets 0 bytes 0 queue num 0 bypass\n }\n}\n"
    assert fwm.parse_nft_counters(nft) == [7, 0]


def test_bypass_switch_is_an_eve_engine_record_and_the_table_header(tmp_path):
    from mirrorwatch.sinks.table import LiveTable

    out = tmp_path / "eve.json"
    w = EveWriter(str(out), host="sensor1")
    change = BypassSwitch(1_700_000_000.0, "bypass", "engine stalled: no heartbeat for 0.210 s", 17, 0.0234)
    w.handle(change)
    w.close()
    (rec,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert rec["event_type"] == "engine" and rec["host"] == "sensor1"
    assert rec["engine"]["module"] == "inline" and rec["engine"]["state"] == "bypass"
    assert (rec["engine"]["released"], rec["engine"]["switch_ms"]) == (17, 23.4)
    assert "17 held packets released uninspected" in rec["engine"]["message"]
    table = LiveTable(inline_engine(), source="NFQUEUE 0")
    table.mode = "inline"
    assert "INLINE" in table.stats_line(1.0)
    table.handle(change)
    assert "BYPASS" in table.stats_line(2.0)
