"""The kill decision (sans-I/O): which endpoints, which exact segments, follow-ups and caps.

Packets are real frames (scapy) through the real decoder and the real flow
table, so each case pins the values the forged segments must carry from what
the flows room recorded (per-direction next_seq, last_ack, window, segment
size, ttl, l2).
"""

from __future__ import annotations

import pytest
from scapy.all import GRE, IP, TCP, UDP, Dot1Q, Ether, IPv6
from scapy.contrib.mpls import MPLS

from mirrorwatch.core.decode.decoder import Decoder
from mirrorwatch.core.decode.packet import ACK, FIN, RST
from mirrorwatch.core.events import Alert, Kill
from mirrorwatch.core.flows.table import FlowTable
from mirrorwatch.core.kill import (
    BOTH,
    TO_CLIENT,
    TO_SERVER,
    KillConfig,
    KillConfigError,
    Killer,
    rule_targets,
)
from mirrorwatch.core.settings import Settings
from mirrorwatch.sinks.injector import build_frame

C4, S4 = "198.51.100.1", "198.51.100.2"
C6, S6 = "2001:db8::1", "2001:db8::2"
CMAC, SMAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
CPORT, SPORT = 40000, 80
CISN, SISN = 1000, 5000_000
MSS = 1448


class FakeRule:
    def __init__(self, action="reject", sid=1000001):
        self.action, self.sid, self.gid = action, sid, 1


_dec = Decoder(Settings(), checksum_mode="all")


def pkt(to_server=True, seq=0, ack=0, flags="A", payload=b"", ipv=4, ttl=None, vlan=None, ts=1.0, win=8192,
        wscale=None):
    if to_server:
        eth = Ether(src=CMAC, dst=SMAC)
        ip = IP(src=C4, dst=S4, ttl=ttl or 64) if ipv == 4 else IPv6(src=C6, dst=S6, hlim=ttl or 64)
        sp, dp = CPORT, SPORT
    else:
        eth = Ether(src=SMAC, dst=CMAC)
        ip = IP(src=S4, dst=C4, ttl=ttl or 60) if ipv == 4 else IPv6(src=S6, dst=C6, hlim=ttl or 60)
        sp, dp = SPORT, CPORT
    opts = [("WScale", wscale)] if wscale is not None else []
    l4 = TCP(sport=sp, dport=dp, seq=seq, ack=ack, flags=flags, window=win, options=opts)
    frame = eth / Dot1Q(vlan=vlan) / ip / l4 / payload if vlan else eth / ip / l4 / payload
    p = _dec.decode(ts, 1, bytes(frame), 1)
    assert p is not None and p.csum_ok
    return p


def see(f, p):
    """The flow table records ``p`` (as the engine runs it before the killer); returns the packet's flow."""
    flow, _ = f.table.process(p, [])
    return flow


def first(p):
    """A new flow table and the session ``p`` starts."""
    flow, _ = FlowTable(Settings()).process(p, [])
    return flow


def established(ipv=4, vlan=None, wscale=None):
    """A session after the handshake and one request/response exchange (the server's reply: 100 bytes)."""
    f = first(pkt(True, CISN, 0, "S", ipv=ipv, vlan=vlan, wscale=wscale))
    see(f, pkt(False, SISN, CISN + 1, "SA", ipv=ipv, vlan=vlan, wscale=wscale))
    see(f, pkt(True, CISN + 1, SISN + 1, "A", ipv=ipv, vlan=vlan))
    see(f, pkt(False, SISN + 1, CISN + 1, "PA", b"x" * 100, ipv=ipv, vlan=vlan))
    assert (f.state, f.tcp_state) == ("established", "established")
    assert f.next_seq == [CISN + 1, SISN + 101] and f.last_ack == [SISN + 1, CISN + 1]
    return f


def streaming(n=10, win=0xFFFF, wscale=7):
    """A session whose server is streaming MSS-sized segments to the client (window ``win << wscale``)."""
    f = established(wscale=wscale)
    for i in range(n):
        see(f, pkt(False, SISN + 101 + MSS * i, CISN + 1, "A", b"d" * MSS, ts=1.5 + 1e-4 * i))
        see(f, pkt(True, CISN + 1, SISN + 101 + MSS * (i + 1), "A", win=win, ts=1.5 + 1e-4 * i + 5e-5))
    return f, SISN + 101 + MSS * n


def trigger(f, killer, action="reject", to_server=True, payload=b"GET /forbidden", ipv=4, vlan=None, ts=2.0,
            server_next=SISN + 101):
    if to_server:
        p = pkt(True, CISN + 1, server_next, "PA", payload, ipv=ipv, vlan=vlan, ts=ts)
    else:
        p = pkt(False, server_next, CISN + 1, "PA", payload, ipv=ipv, vlan=vlan, ts=ts)
    see(f, p)
    alert = Alert(p, f, to_server, FakeRule(action))
    events = [alert]
    killer.on_packet(p, f, to_server, [alert], events)
    return alert, [e for e in events if isinstance(e, Kill)]


def follow(f, k, to_server, p):
    """A later packet of the session: the flow table sees it, then the killer; the Kill events."""
    flow = see(f, p)
    events = []
    k.on_packet(p, flow, to_server, [], events)
    return events


def killer(**kw):
    settings = Settings()
    for k in [k for k in kw if k.startswith("inject_")]:
        settings.set("inject." + k[len("inject_"):].replace("_", "-"), kw.pop(k))
    return Killer(KillConfig(seed=1, **kw), settings)


def test_rule_actions_map_to_endpoints():
    assert rule_targets("reject", True) == BOTH
    assert rule_targets("rejectboth", False) == BOTH
    assert rule_targets("drop", True) == BOTH  # passive: drop is rejectboth
    assert rule_targets("rejectsrc", True) == TO_CLIENT  # source of a to_server packet is the client
    assert rule_targets("rejectsrc", False) == TO_SERVER
    assert rule_targets("rejectdst", True) == TO_SERVER
    assert rule_targets("rejectdst", False) == TO_CLIENT
    assert rule_targets("alert", True) == 0
    assert rule_targets("pass", True) == 0


def test_first_burst_carries_exact_sequence_numbers_macs_and_ttls():
    f = established()
    k = killer()
    alert, kills = trigger(f, k)
    assert len(kills) == 1
    segs = kills[0].frames
    assert [s.to_server for s in segs] == [True, False]
    to_srv, to_cli = segs
    req_end = CISN + 1 + len(b"GET /forbidden")
    # to the server, as the client: seq = client's next byte (trigger included), ack = server's next byte
    assert (to_srv.seq, to_srv.ack, to_srv.flags) == (req_end, SISN + 101, RST | ACK)
    assert (to_srv.src, to_srv.dst, to_srv.sport, to_srv.dport) == (f.client, f.server, CPORT, SPORT)
    cmac, smac = (bytes.fromhex(m.replace(":", "")) for m in (CMAC, SMAC))
    assert (to_srv.src_mac, to_srv.dst_mac) == (cmac, smac)
    assert to_srv.ttl == 64
    # to the client, as the server
    assert (to_cli.seq, to_cli.ack, to_cli.flags) == (SISN + 101, req_end, RST | ACK)
    assert (to_cli.src, to_cli.dst, to_cli.sport, to_cli.dport) == (f.server, f.client, SPORT, CPORT)
    assert to_cli.src_mac == bytes.fromhex(SMAC.replace(":", "")) and to_cli.ttl == 60
    assert to_srv.ip_id != to_cli.ip_id
    assert kills[0].trigger == "sid:1000001" and kills[0].pcap_cnt == 1 and not kills[0].dry_run
    assert alert.action == "blocked"
    assert alert.verdict == {"action": "alert", "reject-target": "both", "reject": ["tcp-reset"]}
    assert f.killed == "sid:1000001 reject"
    assert k.counters()["sessions_killed"] == 1 and k.counters()["frames"] == 2


def test_vlan_stack_copied_and_reverse_direction_swapped_when_unseen():
    # only the client's side was seen (one-sided capture): the server-bound L2 is swapped for the client
    f = first(pkt(True, CISN, 0, "S", vlan=42))
    see(f, pkt(True, CISN + 1, SISN + 1, "A", vlan=42))
    _, kills = trigger(f, killer(), vlan=42)
    to_srv, to_cli = kills[0].frames
    assert to_srv.vlans == to_cli.vlans == ((0x8100, 42),)
    assert (to_cli.src_mac, to_cli.dst_mac) == (to_srv.dst_mac, to_srv.src_mac)
    # no server packet seen: the client's ack field (of the trigger) is the server's next byte
    assert to_cli.seq == SISN + 101 and to_srv.ack == SISN + 101


@pytest.mark.parametrize("action,to_server,expect", [
    ("rejectsrc", True, [False]), ("rejectsrc", False, [True]),
    ("rejectdst", True, [True]), ("rejectdst", False, [False]),
])
def test_one_sided_rejects(action, to_server, expect):
    f = established()
    alert, kills = trigger(f, killer(), action=action, to_server=to_server)
    assert [s.to_server for s in kills[0].frames] == expect
    assert alert.verdict["reject-target"] == ("to_server" if expect == [True] else "to_client")


def test_drop_is_rejectboth_and_alert_rules_never_kill():
    f = established()
    _, kills = trigger(f, killer(), action="drop")
    assert len(kills[0].frames) == 2
    f2 = established()
    alert, kills = trigger(f2, killer(), action="alert")
    assert kills == [] and alert.action == "allowed" and alert.verdict is None and f2.killed is None


def test_challenge_ack_answered_in_the_same_step_with_its_ack_number():
    f = established()
    k = killer()
    trigger(f, k)
    # the client had not received 300 bytes we saw: our RST was in-window, it answers with its RCV.NXT
    p = pkt(True, CISN + 15, SISN + 401, "A", ts=2.001)
    events = follow(f, k, True, p)
    assert len(events) == 1 and events[0].trigger == "challenge-ack"
    (seg,) = events[0].frames
    assert seg.to_server is False and seg.seq == SISN + 401 and seg.ack == CISN + 15 and seg.flags == RST | ACK
    assert (seg.src_mac, seg.dst_mac) == (p.dst_mac, p.src_mac)
    assert k.counters()["challenge_ack_replies"] == 1


def test_identical_segment_not_repeated():
    f = established()
    k = killer()
    trigger(f, k)
    # an ACK sent before our RST arrived: it asks for exactly what we already sent
    p = pkt(True, CISN + 15, SISN + 101, "A", ts=2.001)
    events = follow(f, k, True, p)
    assert events == [] and k.counters()["duplicate_suppressed"] == 1


def test_data_after_kill_answers_the_sender_and_bursts_toward_its_receiver():
    f = established()
    k = killer()
    trigger(f, k)
    # the server keeps streaming 1000 bytes more; it also got 5 client bytes the sensor missed
    p = pkt(False, SISN + 101, CISN + 20, "PA", b"y" * 1000, ts=2.01)
    (kill,) = follow(f, k, False, p)
    assert kill.trigger == "refire"
    to_srv, to_cli, *predicted = kill.frames
    # the server is alive: its RCV.NXT is the ack field of its own segment
    assert (to_srv.to_server, to_srv.seq, to_srv.ack) == (True, CISN + 20, SISN + 1101)
    # its data outran the first burst toward the client: the client gets one from the new end of the stream,
    # then RSTs at the next 1000-byte boundaries, up to the client's window (8192 past its last ack)
    assert (to_cli.to_server, to_cli.seq, to_cli.ack, to_cli.flags) == (False, SISN + 1101, CISN + 20, RST | ACK)
    assert [s.seq for s in predicted] == [SISN + 1101 + 1000 * i for i in range(1, 8)]
    assert all(not s.to_server and s.flags == RST | ACK and s.ack == CISN + 20 for s in predicted)
    assert k.counters()["predicted_frames"] == 7
    # the client's ACK for it asks for what the client was just sent: not repeated
    assert follow(f, k, True, pkt(True, CISN + 20, SISN + 1101, "A", ts=2.011)) == []
    assert k.counters()["duplicate_suppressed"] == 1
    # more data within the reach of that burst, acknowledging the same client bytes: nothing new to send
    assert follow(f, k, False, pkt(False, SISN + 1101, CISN + 20, "PA", b"y" * 1000, ts=2.02)) == []


def test_never_answers_a_reset():
    f = established()
    k = killer()
    trigger(f, k)
    p = pkt(False, SISN + 101, 0, "R", ts=2.01)
    events = follow(f, k, False, p)
    assert events == [] and k.counters()["rst_not_answered"] == 1
    # a killing alert on a RST packet sends nothing either
    f2 = established()
    p = pkt(True, CISN + 1, SISN + 101, "RA")
    a = Alert(p, f2, True, FakeRule())
    events = [a]
    k.on_packet(p, f2, True, [a], events)
    assert events == [a] and a.action == "allowed" and f2.killed is None


def test_per_flow_response_cap_and_min_interval():
    f = established()
    k = killer(inject_max_responses=2, inject_min_interval=0.5, inject_response_window=0.05)
    trigger(f, k, ts=10.0)
    n = []
    for i, ts in enumerate((10.1, 10.6, 11.2, 11.8)):
        # the server goes on talking, acknowledging client bytes the sensor never saw
        p = pkt(False, SISN + 101 + 10 * i, CISN + 16 + i, "PA", b"z" * 10, ts=ts)
        events = follow(f, k, False, p)
        n.append(len(events))
    assert n == [0, 1, 1, 0]  # too soon, fired, fired, cap of 2 reached
    c = k.counters()
    assert c["interval_suppressed"] == 1 and c["cap_reached"] == 1 and c["refires"] == 2


def test_global_rate_cap_on_packet_time():
    k = killer(inject_max_per_second=3)
    sent = []
    for i in range(3):
        f = established()
        _, kills = trigger(f, k, ts=100.0)
        sent.append(len(kills))
    assert sent == [1, 0, 0] and k.counters()["rate_limited"] == 2
    f = established()
    _, kills = trigger(f, k, ts=101.0)  # a second later the bucket has refilled
    assert len(kills) == 1


def test_dry_run_decides_the_same_frames_but_blocks_nothing():
    f = established()
    alert, kills = trigger(f, killer(dry_run=True))
    assert len(kills) == 1 and kills[0].dry_run and len(kills[0].frames) == 2
    assert alert.action == "allowed" and alert.verdict["reject"] == []
    assert f.killed == "sid:1000001 reject (dry-run)"


def test_never_kill_networks():
    f = established()
    alert, kills = trigger(f, killer(never_kill=["198.51.100.2/32"]))
    assert kills == [] and alert.action == "allowed" and f.killed is None
    f6 = established(ipv=6)
    _, kills = trigger(f6, killer(never_kill=["198.51.100.0/24", "2001:db8::/32"]), ipv=6)
    assert kills == []
    with pytest.raises(KillConfigError, match="--never-kill"):
        killer(never_kill=["10.0.0.300/8"])


def test_fin_and_both_modes():
    f = established()
    alert, kills = trigger(f, killer(mode="fin"))
    assert {s.flags for s in kills[0].frames} == {FIN | ACK}
    assert alert.verdict["reject"] == ["tcp-fin"]
    f = established()
    _, kills = trigger(f, killer(mode="both"))
    segs = kills[0].frames
    assert [s.flags for s in segs] == [FIN | ACK, RST | ACK, FIN | ACK, RST | ACK]
    assert segs[1].seq == segs[0].seq + 1 and segs[3].seq == segs[2].seq + 1  # the FIN takes one number
    with pytest.raises(KillConfigError):
        killer(mode="psh")


def test_ipv6_session():
    f = established(ipv=6)
    _, kills = trigger(f, killer(), ipv=6)
    to_srv, to_cli = kills[0].frames
    assert to_srv.ipv == 6 and to_srv.ip_id == 0 and to_srv.seq == CISN + 15 and to_cli.ttl == 60


def _alert_on(p, k):
    """The killer's answer to a killing alert on ``p``, the first packet of its session: (events, alert)."""
    f = first(p)
    a = Alert(p, f, True, FakeRule())
    events = [a]
    k.on_packet(p, f, True, [a], events)
    return events, a


@pytest.mark.parametrize("outer,counter", [
    (lambda inner: Ether(src=CMAC, dst=SMAC) / inner[IP], "not_tcp"),  # UDP: nothing to reset
    (lambda inner: Ether(src=CMAC, dst=SMAC) / IP(src="10.9.0.1", dst="10.9.0.2") / GRE() / inner[IP],
     "unsupported_encap"),  # a plain frame to the inner addresses would not reach the endpoints
    (lambda inner: Ether(src=CMAC, dst=SMAC, type=0x8847) / MPLS(label=16, s=1) / inner[IP], "unsupported_encap"),
])
def test_udp_tunnelled_and_mpls_sessions_are_not_killed(outer, counter):
    inner = Ether() / IP(src=C4, dst=S4) / (UDP(sport=CPORT, dport=53) if counter == "not_tcp" else
                                            TCP(sport=CPORT, dport=SPORT, flags="PA", seq=CISN, ack=SISN)) / b"bad"
    p = _dec.decode(1.0, 1, bytes(outer(inner)), 1)
    assert p is not None and (counter != "unsupported_encap" or p.tunnel or p.l2_proto == 0x8847)
    k = killer()
    events, a = _alert_on(p, k)
    assert events == [a] and a.action == "allowed" and a.verdict is None
    assert k.counters()[counter] == 1 and k.counters()["frames"] == 0


def test_own_frames_recognised_when_they_come_back():
    f = established()
    k = killer()
    _, kills = trigger(f, k)
    for seg in kills[0].frames:
        back = _dec.decode(3.0, 1, build_frame(seg), 9)
        assert k.own_frame(back)
    # the real endpoint's RST with other values is not ours
    assert not k.own_frame(pkt(False, SISN + 101, 0, "R"))
    assert k.counters()["own_frames_seen"] == 2


def test_own_frame_memory_is_bounded():
    settings = Settings({"inject.own-frame-memory": 4})
    k = Killer(KillConfig(seed=2), settings)
    kills = [trigger(established(), k, ts=2.0 + i)[1] for i in range(5)]  # 5 kills x 2 frames
    kills, last = kills[0], kills[-1]
    assert len(k.sent) <= 4
    assert sum(k.own_frame(_dec.decode(9.0, 1, build_frame(seg), 9)) for seg in kills[0].frames) == 0  # forgotten
    assert all(k.own_frame(_dec.decode(9.0, 1, build_frame(seg), 9)) for seg in last[0].frames)


def test_in_flight_acks_wait_for_the_final_one():
    """The client's ACKs behind the server's data in flight are not answered: those bytes arrive before any RST."""
    f = established()
    k = killer(inject_max_responses=1)
    trigger(f, k, ts=5.0)
    end = lambda i: SISN + 101 + 100 * (i + 1)  # noqa: E731 - the client's RCV.NXT after segment i
    answered = []
    for i in range(6):  # small segments (no predictions): each one outruns the last burst toward the client
        answered += [s.seq for e in follow(f, k, False, pkt(False, end(i) - 100, CISN + 15, "A", b"d" * 100,
                                                            ts=5.0 + 1e-4 * i)) for s in e.frames]
        if i % 2:  # the client ACKs every second segment; the mirror already shows the server's next one
            assert follow(f, k, True, pkt(True, CISN + 15, end(i - 1), "A", ts=5.0 + 1e-4 * i + 5e-5)) == []
    assert answered == [end(i) for i in range(6)]
    assert k.counters()["in_flight_acks"] == 3 and k.counters()["peer_data_bursts"] == 6
    # the server's own RCV.NXT never moved (6 duplicates); the client's ACK of the last segment asks for what
    # it was just sent: never repeated, nor when it comes again (stuck)
    for ts in (5.002, 6.0):
        assert follow(f, k, True, pkt(True, CISN + 15, end(5), "A", ts=ts)) == []
    assert k.counters()["duplicate_suppressed"] == 6 + 2


def test_streaming_peer_gets_a_burst_at_the_predicted_boundaries():
    """rejectsrc of a client receiving a stream: its RCV.NXT when the RST lands is the server's next byte or one of
    the next segment boundaries; the burst carries all of them, within the client's window."""
    f, nxt = streaming()
    alert, kills = trigger(f, killer(), action="rejectsrc", server_next=nxt)
    (kill,) = kills
    assert [s.seq for s in kill.frames] == [nxt + MSS * i for i in range(16)]
    assert all(not s.to_server and s.flags == RST | ACK and s.ack == CISN + 15 for s in kill.frames)
    assert alert.verdict["reject-target"] == "to_client"
    # bounded by the receiver's window: without scaling, the trigger's 8192 bytes past its ack hold 5 more segments
    f, nxt = streaming(wscale=None)
    _, kills = trigger(f, killer(), action="rejectsrc", server_next=nxt)
    assert [s.seq for s in kills[0].frames] == [nxt + MSS * i for i in range(6)]
    # picked up midstream (no SYN seen): the client's window scale is unknown, only the burst size bounds it
    f = first(pkt(False, SISN + 101, CISN + 1, "A", b"d" * MSS))
    see(f, pkt(True, CISN + 1, SISN + 101 + MSS, "A", win=100))
    _, kills = trigger(f, killer(), action="rejectsrc", server_next=SISN + 101 + MSS)
    assert len(kills[0].frames) == 16
    # the burst size is a setting of the killer; FIN segments are never predicted
    f, nxt = streaming()
    _, kills = trigger(f, killer(inject_rst_burst=3), action="rejectsrc", server_next=nxt)
    assert [s.seq for s in kills[0].frames] == [nxt, nxt + MSS, nxt + 2 * MSS]
    f, nxt = streaming()
    _, kills = trigger(f, killer(mode="fin"), action="rejectsrc", server_next=nxt)
    assert [(s.seq, s.flags) for s in kills[0].frames] == [(nxt, FIN | ACK)]
    with pytest.raises(KillConfigError, match="inject.rst-burst must be 1 or more"):
        killer(inject_rst_burst=0)


def test_stream_that_outruns_the_burst_gets_a_new_one_and_a_reset_target_gets_nothing_more():
    f, nxt = streaming()
    k = killer()
    trigger(f, k, action="rejectsrc", server_next=nxt, ts=3.0)
    reach = nxt + 15 * MSS
    # segments the first burst covers: nothing new
    for i in range(15):
        assert follow(f, k, False, pkt(False, nxt + MSS * i, CISN + 15, "A", b"d" * MSS, ts=3.0 + 1e-4 * i)) == []
    # the next one ends past the burst's last RST (the sensor is further behind than 16 segments): a new burst
    # from its end, reaching twice as far
    (kill,) = follow(f, k, False, pkt(False, reach, CISN + 15, "A", b"d" * MSS, ts=3.002))
    assert kill.trigger == "peer-data" and [s.seq for s in kill.frames] == [reach + MSS * i for i in range(1, 32)]
    reach += 31 * MSS  # the segment after the second burst's last RST
    (kill,) = follow(f, k, False, pkt(False, reach, CISN + 15, "A", b"d" * MSS, ts=3.0025))
    assert len(kill.frames) == 1 + 60
    # the client's kernel answers the next segment with its own RST: it is gone, nothing more goes to it
    follow(f, k, True, pkt(True, CISN + 15, 0, "R", ts=3.003))
    far = reach + 40 * MSS
    assert follow(f, k, False, pkt(False, far, CISN + 15, "A", b"d" * MSS, ts=3.004)) == []
    assert k.counters()["peer_data_bursts"] == 2 and k.counters()["rst_not_answered"] == 1


def test_acks_the_burst_covered_get_the_exact_segment_alone():
    f, nxt = streaming()
    k = killer()
    trigger(f, k, action="rejectsrc", server_next=nxt, ts=3.0)
    see(f, pkt(False, nxt, CISN + 15, "A", b"d" * 3 * MSS, ts=3.0001))  # the mirror shows 3 more segments
    # the client's ACK of them asks for a position the burst carried, early maybe: the server may have stopped
    # there, so that one segment again
    (kill,) = follow(f, k, True, pkt(True, CISN + 15, nxt + 3 * MSS, "A", ts=3.0002))
    assert kill.trigger == "challenge-ack" and [s.seq for s in kill.frames] == [nxt + 3 * MSS]
    assert k.counters()["covered_acks"] == 1
    # the same ACK again asks for the segment just sent: never repeated
    assert follow(f, k, True, pkt(True, CISN + 15, nxt + 3 * MSS, "A", ts=3.2)) == []


def test_chasing_a_stream_is_bounded_per_response():
    """A sensor too far behind a stream loses every race: it chases the streaming peer for inject.chase-bursts
    bursts per response, counts the rest, and answers the target's own exact RCV.NXT under a bound of its own."""
    f = established()
    k = killer(inject_chase_bursts=3, inject_answer_bursts=1)
    trigger(f, k, ts=7.0)
    # the server's data acknowledging client bytes the sensor missed is an answer: its own bound, not the chase's
    (kill,) = follow(f, k, False, pkt(False, SISN + 101, CISN + 20, "A", b"d" * 100, ts=7.0))
    assert kill.trigger == "refire" and k.counters()["answer_frames"] == 2
    sent = [len(follow(f, k, False, pkt(False, SISN + 201 + 100 * i, CISN + 21 + i, "A", b"d" * 100,
                                        ts=7.0 + 1e-4 * i))) for i in range(6)]
    # each segment would answer the server (spent: counted) and chase toward the client (the refire chased
    # once already: 2 more), then both are spent
    assert sent == [1, 1, 0, 0, 0, 0]
    c = k.counters()
    assert (c["peer_data_bursts"], c["chase_frames"], c["answers_suppressed"], c["chase_suppressed"]) == (2, 2, 2, 0)
    assert c["response_spent"] == 4
    # the next response (after inject.response-window) may answer and chase again
    (kill,) = follow(f, k, False, pkt(False, SISN + 901, CISN + 30, "A", b"d" * 100, ts=8.0))
    assert kill.trigger == "refire" and len(kill.frames) == 2
    # that refire was this response's one answer: the client's ACK (100 bytes the sensor missed) is counted
    assert follow(f, k, True, pkt(True, CISN + 30, SISN + 1101, "A", ts=8.0001)) == []
    assert k.counters()["answers_suppressed"] == 3
    assert k.counters()["first_shots"] == 1 and k.counters()["first_shot_frames"] == 2
    for key in ("inject.chase-bursts", "inject.answer-bursts", "inject.first-shot-reserve"):
        with pytest.raises(KillConfigError, match=f"{key} must be 0 or more"):
            killer(**{"inject_" + key[len("inject."):].replace("-", "_"): -1})
    with pytest.raises(KillConfigError, match="share of inject.max-per-second"):
        killer(inject_first_shot_reserve=1.5)


def test_first_shots_take_the_whole_bucket_follow_ups_leave_the_reserve():
    """A first burst's predictions may take every token; follow-ups stop at the first-shot reserve (exact
    segments) and half way above it (predicted ones); what the cap withholds is counted in frames."""
    f, nxt = streaming()
    k = killer(inject_max_per_second=10)
    _, kills = trigger(f, k, action="rejectsrc", server_next=nxt, ts=4.0)
    assert [s.seq for s in kills[0].frames] == [nxt + MSS * i for i in range(10)]  # 1 exact + 9 of 15 predicted
    c = k.counters()
    assert (c["predicted_frames"], c["frames_capped"], c["first_shot_frames"]) == (9, 6, 10)
    f, nxt = streaming()
    k = killer(inject_max_per_second=40, inject_first_shot_reserve=0.5)
    trigger(f, k, action="rejectsrc", server_next=nxt, ts=4.0)  # 16 frames: 24 tokens left
    reach = nxt + 15 * MSS
    (kill,) = follow(f, k, False, pkt(False, reach, CISN + 15, "A", b"d" * MSS, ts=4.0))
    # a chase may go down to 20 with its exact segment, to 30 with predicted ones: 24 - 30 < 0, exact alone
    assert [s.seq for s in kill.frames] == [reach + MSS] and k.counters()["frames_capped"] == 30


def test_busy_killed_session_cannot_starve_a_new_kill():
    """However many killed sessions keep streaming, the first-shot reserve is left to the first bursts of new
    kills, predictions included."""
    k = killer(inject_max_per_second=100, inject_chase_bursts=1000, inject_answer_bursts=1000)
    busy = established()
    trigger(busy, k, ts=9.0)
    sent = 0
    for i in range(100):  # a server that goes on talking: answered only while the bucket is above half
        p = pkt(False, SISN + 101 + 100 * i, CISN + 16 + i, "A", b"t" * 100, ts=9.0 + 0.00001 * (i + 1))
        sent += sum(len(e.frames) for e in follow(busy, k, False, p))
    assert sent == 48  # 100 - 2 (first burst) - 50 (the reserve), in bursts of 2
    assert k.counters()["rate_limited"] == 100 - 24 and k.counters()["frames_capped"] == 2 * (100 - 24)
    for _ in range(3):  # three new kills of streams, each with its whole first burst
        f, nxt = streaming()
        _, kills = trigger(f, k, action="rejectsrc", server_next=nxt, ts=9.001)
        assert [s.seq for s in kills[0].frames] == [nxt + MSS * i for i in range(16)]
    assert k.counters()["first_shots"] == 4


def test_kill_on_a_bare_syn_then_the_handshake_answered():
    """A rule matching the SYN: the client (SYN-SENT) accepts a RST+ACK acking its ISN; if the handshake races
    ahead, the client's ACK of the SYN-ACK is answered exactly."""
    syn = pkt(True, CISN, 0, "S")
    f = first(syn)
    a = Alert(syn, f, True, FakeRule())
    events = [a]
    k = killer()
    k.on_packet(syn, f, True, [a], events)
    to_srv, to_cli = events[1].frames
    assert (to_srv.seq, to_cli.ack) == (CISN + 1, CISN + 1)  # the server's RCV.NXT; the ack SYN-SENT checks
    sa = pkt(False, SISN, CISN + 1, "SA", ts=1.0001)
    events = follow(f, k, False, sa)
    assert events == []  # the server side got exactly this already; the client answers for itself
    (kill,) = follow(f, k, True, pkt(True, CISN + 1, SISN + 1, "A", ts=1.0002))
    (seg,) = kill.frames
    assert (seg.to_server, seg.seq, seg.ack) == (False, SISN + 1, CISN + 1)


def test_negative_bounds_rejected():
    with pytest.raises(KillConfigError, match="inject.max-per-second must be 0 or more"):
        killer(inject_max_per_second=-1)


def test_new_connection_on_the_same_ports_is_not_answered():
    # a session killed for real: the flow table starts a new session for the new SYN, with no kill state
    f = established()
    k = killer()
    trigger(f, k)
    events = []
    for to_server, p in ((True, pkt(True, 77_000, 0, "S", ts=3.0)), (False, pkt(False, 88_000, 77_001, "SA", ts=3.001)),
                         (True, pkt(True, 77_001, 88_001, "A", ts=3.002))):
        flow = see(f, p)
        assert flow is not f and flow.kill is None
        k.on_packet(p, flow, to_server, [], events)
    assert events == []
    # in dry-run the session goes on: the killer itself sees the new SYN and ends its kill
    f = established()
    k = killer(dry_run=True)
    trigger(f, k)
    for to_server, p in ((True, pkt(True, 77_000, 0, "S", ts=3.0)),
                         (False, pkt(False, 88_000, 77_001, "SA", ts=3.001))):
        assert follow(f, k, to_server, p) == []
    assert f.kill is None and k.counters()["new_session_after_kill"] == 1


def test_a_lagging_live_sensor_centres_its_predictions_where_the_stream_is_by_now():
    """Live, the killer knows how long ago the trigger was captured: the receiver has got what the streaming peer
    sent meanwhile, so the predicted boundaries are centred there (the exact segment still leads the burst)."""
    f, nxt = streaming()
    k = killer(inject_max_lag=500)  # a slow stream: its segments are seconds apart
    k.clock = lambda: 2.0 + 4.0  # four seconds behind the trigger (captured at 2.0)
    _, kills = trigger(f, k, action="rejectsrc", server_next=nxt, ts=2.0)
    # the server sent 14,581 sequence numbers in the session's first second: 40 segments of 1448 in 4 s; the
    # predictions span 40 +- (40 * inject.lag-spread + 15)
    assert [s.seq for s in kills[0].frames] == [nxt] + [nxt + MSS * i for i in range(15, 66)]
    # no lag (or a replay: no clock): the next 15 boundaries
    k.clock = lambda: 2.0
    f, nxt = streaming()
    _, kills = trigger(f, k, action="rejectsrc", server_next=nxt, ts=2.0)
    assert [s.seq for s in kills[0].frames] == [nxt + MSS * i for i in range(16)]
    # far behind: the burst stays MAX_PREDICTED segments wide, centred on the estimate
    k.clock = lambda: 2.0 + 50.0  # 503 segments ahead
    f, nxt = streaming()
    _, kills = trigger(f, k, action="rejectsrc", server_next=nxt, ts=2.0)
    seqs = [s.seq for s in kills[0].frames]
    assert len(seqs) == 256 and seqs[1] == nxt + MSS * (503 - 127) and seqs[-1] == nxt + MSS * (503 + 127)
    # 4027 segments ahead, past the client's window as last seen (8192 << 7 past its ack): the client has read
    # what it received meanwhile, its window moved on with it
    f, nxt = streaming()
    k.clock = lambda: 2.0 + 400.0
    _, kills = trigger(f, k, action="rejectsrc", server_next=nxt, ts=2.0)
    seqs = [s.seq for s in kills[0].frames]
    assert len(seqs) == 256 and seqs[1] == (nxt + MSS * (4027 - 127)) & 0xFFFFFFFF
    # beyond inject.max-lag (1 s by default) nothing is predicted: the exact segment alone
    k = killer()
    k.clock = lambda: 2.0 + 1.5
    f, nxt = streaming()
    _, kills = trigger(f, k, action="rejectsrc", server_next=nxt, ts=2.0)
    assert [s.seq for s in kills[0].frames] == [nxt] and k.counters()["lag_exceeded"] == 1
