"""The kill decision (sans-I/O): which endpoints, which exact segments, follow-ups and caps.

Packets are real frames (scapy) through the real decoder; the session record
is built here with the fields the flows room fills (per-direction next_seq,
last_ack, ttl, l2), so each case pins the values the forged segments must carry.
"""

from __future__ import annotations

import ipaddress

import pytest
from scapy.all import IP, TCP, UDP, Dot1Q, Ether, IPv6

from mirrorwatch.core.decode.decoder import Decoder
from mirrorwatch.core.events import Alert, Kill
from mirrorwatch.core.events import ForgedSegment
from mirrorwatch.sinks.injector import build_frame
from mirrorwatch.core.kill import BOTH, TO_CLIENT, TO_SERVER, KillConfig, KillConfigError, Killer, rule_targets
from mirrorwatch.core.decode.packet import ACK, FIN, PSH, RST
from mirrorwatch.core.settings import Settings

C4, S4 = "198.51.100.1", "198.51.100.2"
C6, S6 = "2001:db8::1", "2001:db8::2"
CMAC, SMAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
CPORT, SPORT = 40000, 80
CISN, SISN = 1000, 5000_000


class FakeRule:
    def __init__(self, action="reject", sid=1000001):
        self.action, self.sid, self.gid = action, sid, 1


class SessionRecord:
    """The Flow fields the killer reads, as the flows room fills them."""

    def __init__(self, ipv=4, proto=6):
        self.flow_id = 7
        self.proto, self.ipv = proto, ipv
        c, s = (C4, S4) if ipv == 4 else (C6, S6)
        self.client, self.server = ipaddress.ip_address(c).packed, ipaddress.ip_address(s).packed
        self.cport, self.sport = CPORT, SPORT
        self.next_seq = [None, None]
        self.last_ack = [None, None]
        self.win = [0, 0]
        self.ttl = [0, 0]
        self.l2 = [None, None]
        self.killed = None
        self.kill = None

    def see(self, pkt, to_server):
        """What FlowTable.process records per direction (the contract in the brief)."""
        d = 0 if to_server else 1
        end = (pkt.seq + len(pkt.payload) + (1 if pkt.flags & 0x02 else 0) + (1 if pkt.flags & FIN else 0)) % 2**32
        if self.next_seq[d] is None or ((end - self.next_seq[d]) % 2**32) < 2**31:
            self.next_seq[d] = end
        if pkt.flags & ACK:
            self.last_ack[d] = pkt.ack
        self.win[d], self.ttl[d] = pkt.win, pkt.ttl
        self.l2[d] = (pkt.src_mac, pkt.dst_mac, pkt.vlans)


_dec = Decoder(Settings(), checksum_mode="all")


def pkt(to_server=True, seq=0, ack=0, flags="A", payload=b"", ipv=4, ttl=None, vlan=None, ts=1.0, proto="tcp"):
    if to_server:
        eth = Ether(src=CMAC, dst=SMAC)
        ip = IP(src=C4, dst=S4, ttl=ttl or 64) if ipv == 4 else IPv6(src=C6, dst=S6, hlim=ttl or 64)
        sp, dp = CPORT, SPORT
    else:
        eth = Ether(src=SMAC, dst=CMAC)
        ip = IP(src=S4, dst=C4, ttl=ttl or 60) if ipv == 4 else IPv6(src=S6, dst=C6, hlim=ttl or 60)
        sp, dp = SPORT, CPORT
    l4 = TCP(sport=sp, dport=dp, seq=seq, ack=ack, flags=flags) if proto == "tcp" else UDP(sport=sp, dport=dp)
    frame = eth / Dot1Q(vlan=vlan) / ip / l4 / payload if vlan else eth / ip / l4 / payload
    p = _dec.decode(ts, 1, bytes(frame), 1)
    assert p is not None and p.csum_ok
    return p


def established(ipv=4, vlan=None, proto="tcp"):
    """A session after the handshake and one request/response exchange."""
    f = SessionRecord(ipv, 6 if proto == "tcp" else 17)
    f.see(pkt(True, CISN, 0, "S", ipv=ipv, vlan=vlan), True)
    f.see(pkt(False, SISN, CISN + 1, "SA", ipv=ipv, vlan=vlan), False)
    f.see(pkt(True, CISN + 1, SISN + 1, "A", ipv=ipv, vlan=vlan), True)
    f.see(pkt(False, SISN + 1, CISN + 1, "PA", b"x" * 100, ipv=ipv, vlan=vlan), False)
    return f


def trigger(f, killer, action="reject", to_server=True, payload=b"GET /forbidden", ipv=4, vlan=None, ts=2.0):
    if to_server:
        p = pkt(True, CISN + 1, SISN + 101, "PA", payload, ipv=ipv, vlan=vlan, ts=ts)
    else:
        p = pkt(False, SISN + 101, CISN + 1, "PA", payload, ipv=ipv, vlan=vlan, ts=ts)
    f.see(p, to_server)
    alert = Alert(p, f, to_server, FakeRule(action))
    events = [alert]
    killer.on_packet(p, f, to_server, [alert], events)
    return alert, [e for e in events if isinstance(e, Kill)]


def follow(f, k, to_server, p):
    """A later packet of the session: the flow record sees it, then the killer; the Kill events."""
    f.see(p, to_server)
    events = []
    k.on_packet(p, f, to_server, [], events)
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
    assert to_srv.src_mac == bytes.fromhex(CMAC.replace(":", "")) and to_srv.dst_mac == bytes.fromhex(SMAC.replace(":", ""))
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
    f = SessionRecord()
    # only the client's side was seen (one-sided capture): the server-bound L2 is swapped for the client
    f.see(pkt(True, CISN, 0, "S", vlan=42), True)
    f.see(pkt(True, CISN + 1, SISN + 1, "A", vlan=42), True)
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


def test_data_after_kill_answers_the_sender_and_the_receivers_final_ack():
    f = established()
    k = killer()
    trigger(f, k)
    # the server keeps streaming 1000 bytes more; it also got 5 client bytes the sensor missed
    p = pkt(False, SISN + 101, CISN + 20, "PA", b"y" * 1000, ts=2.01)
    events = follow(f, k, False, p)
    (kill,) = events
    assert kill.trigger == "refire"
    (seg,) = kill.frames  # the server is alive: its RCV.NXT is the ack field of its own segment
    assert (seg.to_server, seg.seq, seg.ack) == (True, CISN + 20, SISN + 1101)
    # the client's ACK for it has every byte the server sent: final, answered exactly
    p = pkt(True, CISN + 20, SISN + 1101, "A", ts=2.011)
    events = follow(f, k, True, p)
    (seg,) = events[0].frames
    assert (seg.to_server, seg.seq, seg.ack) == (False, SISN + 1101, CISN + 20)
    # more data acknowledging the same client bytes: nothing new for the server, the client waits for its ACK
    p = pkt(False, SISN + 1101, CISN + 20, "PA", b"y" * 1000, ts=2.02)
    events = follow(f, k, False, p)
    assert events == []


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
    assert f.killed.endswith("(dry-run)")


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


def test_udp_and_tunnels_are_not_killed():
    f = established(proto="udp")
    p = pkt(True, proto="udp", payload=b"bad")
    a = Alert(p, f, True, FakeRule())
    events = [a]
    k = killer()
    k.on_packet(p, f, True, [a], events)
    assert events == [a] and k.counters()["not_tcp"] == 1 and a.action == "allowed"


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
    f = established()
    for i in range(5):  # 5 kills x 2 frames through the bucket
        f.kill = None
        f.killed = None
        trigger(f, k, ts=2.0 + i)
    assert len(k._sent) <= 4 and len(k._sent_order) == 4


def test_in_flight_train_answered_from_the_receivers_final_ack():
    """Segments still in flight after the kill each move the client's RCV.NXT: only its final ACK is answered."""
    f = established()
    k = killer(inject_max_responses=1)
    trigger(f, k, ts=5.0)
    answered = []
    end = lambda i: SISN + 101 + 1448 * (i + 1)  # noqa: E731 - the client's RCV.NXT after segment i
    packets = []
    for i in range(12):  # the rest of a 16 KB write, 1448 bytes per segment
        packets.append((False, pkt(False, end(i) - 1448, CISN + 15, "A", b"d" * 1448, ts=5.0 + 0.0001 * i)))
        if i % 2:  # the client ACKs every second segment; the mirror already shows the server's next one
            packets.append((True, pkt(True, CISN + 15, end(i - 1), "A", ts=5.0 + 0.0001 * i + 0.00005)))
    packets.append((True, pkt(True, CISN + 15, end(11), "A", ts=5.002)))  # its ACK of the last segment
    for to_server, p in packets:
        f.see(p, to_server)
        events = []
        k.on_packet(p, f, to_server, [], events)
        answered += [(s.to_server, s.seq) for e in events for s in e.frames]
    assert answered == [(False, SISN + 101 + 1448 * 12)]  # exact: the end of the train
    assert k.counters()["in_flight_acks"] == 6 and f.kill.responses == 0
    # later on the same ACK again (stuck): it asks for the segment already sent, which is never repeated
    for ts, expect in ((6.0, 0), (7.0, 0)):
        p = pkt(True, CISN + 15, SISN + 101 + 1448 * 12, "A", ts=ts)
        events = follow(f, k, True, p)
        assert len(events) == expect  # the same segment again is never repeated
    assert k.counters()["duplicate_suppressed"] >= 2


def test_busy_killed_session_cannot_starve_a_new_kill():
    k = killer(inject_max_per_second=20)
    busy = established()
    trigger(busy, k, ts=9.0)
    sent = 0
    for i in range(40):  # a server that goes on talking: answered only while the bucket is above half
        p = pkt(False, SISN + 101 + 100 * i, CISN + 16 + i, "A", b"t" * 100, ts=9.0 + 0.00001 * (i + 1))
        busy.see(p, False)
        events = []
        k.on_packet(p, busy, False, [], events)
        sent += sum(len(e.frames) for e in events)
    assert sent == 8  # 20 - 2 (first burst) - 10 (reserve)
    f = established()
    _, kills = trigger(f, k, ts=9.001)
    assert len(kills) == 1 and len(kills[0].frames) == 2


def test_kill_on_a_bare_syn_then_the_handshake_answered():
    """A rule matching the SYN: the client (SYN-SENT) accepts a RST+ACK acking its ISN; if the handshake races
    ahead, the client's ACK of the SYN-ACK is answered exactly."""
    f = SessionRecord()
    syn = pkt(True, CISN, 0, "S")
    f.see(syn, True)
    a = Alert(syn, f, True, FakeRule())
    events = [a]
    k = killer()
    k.on_packet(syn, f, True, [a], events)
    to_srv, to_cli = events[1].frames
    assert (to_srv.seq, to_cli.ack) == (CISN + 1, CISN + 1)  # the server's RCV.NXT; the ack SYN-SENT checks
    sa = pkt(False, SISN, CISN + 1, "SA", ts=1.0001)
    events = follow(f, k, False, sa)
    assert events == []  # the server side got exactly this already; the client answers for itself
    ack = pkt(True, CISN + 1, SISN + 1, "A", ts=1.0002)
    f.see(ack, True)
    k.on_packet(ack, f, True, [], events)
    (seg,) = events[0].frames
    assert (seg.to_server, seg.seq, seg.ack) == (False, SISN + 1, CISN + 1)


def test_negative_bounds_rejected():
    with pytest.raises(KillConfigError, match="inject.max-per-second must be 0 or more"):
        killer(inject_max_per_second=-1)


def test_new_connection_on_the_same_ports_is_not_answered():
    f = established()
    k = killer()
    trigger(f, k)
    events = []
    for to_server, p in ((True, pkt(True, 77_000, 0, "S", ts=3.0)), (False, pkt(False, 88_000, 77_001, "SA", ts=3.001)),
                         (True, pkt(True, 77_001, 88_001, "A", ts=3.002))):
        f.see(p, to_server)
        k.on_packet(p, f, to_server, [], events)
    assert events == [] and f.kill is None and k.counters()["new_session_after_kill"] == 1
