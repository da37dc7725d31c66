"""The session table and the TCP state machine, on real captures and crafted sessions.

``run_pcap`` (also used by the reassembly and streamdump tests) drives a capture
through the real decoder and flow table.
"""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given, settings as hsettings, strategies as hst
from scapy.all import ICMP, IP, TCP, UDP, Dot1Q, Ether, Raw

from mirrorwatch.sources.pcapfile import PcapFiles
from mirrorwatch.core.decode.decoder import Decoder
from mirrorwatch.core.events import FlowEmergency, FlowEnded
from mirrorwatch.core.flows.table import FLOW_STATE, TCP_TRANSITIONS, FlowTable
from mirrorwatch.core.flows.tcp import GUARDS
from mirrorwatch.core.decode.packet import ACK, FIN, PSH, SYN
from mirrorwatch.core.settings import Settings


def run_pcap(path, checksum_mode="none", on_packet=None, on_new_stream=None, **overrides):
    """Replay ``path`` through Decoder + FlowTable; returns (table, ended flows, events)."""
    st = Settings(overrides)
    dec = Decoder(st, checksum_mode=checksum_mode)
    ft = FlowTable(st)
    ft.on_new_stream = on_new_stream
    events: list = []
    for n, (ts, lt, frame, wl) in enumerate(PcapFiles([str(path)]), 1):
        p = dec.decode(ts, lt, frame, n)
        if p is None or not p.ipv:
            continue
        f, to_server = ft.process(p, events)
        if on_packet is not None:
            on_packet(p, f, to_server)
    return ft, ft.flush_all(), events


def sv(corpus, name):
    return corpus / "reassembly" / "suricata-verify" / name


class Wire:
    """Crafted TCP session between 198.51.100.1:40000 (client) and 198.51.100.2:80."""

    def __init__(self, checksum_mode="none", **overrides):
        self.settings = Settings(overrides)
        self.dec = Decoder(self.settings, checksum_mode=checksum_mode)
        self.ft = FlowTable(self.settings)
        self.events: list = []
        self.n = 0
        self.ts = 1000.0

    def send(self, to_server, flags, seq, ack=0, data=b"", win=8192, ts=None, vlan=None, bad_csum=False, **ipkw):
        a, b = ("198.51.100.1", "198.51.100.2") if to_server else ("198.51.100.2", "198.51.100.1")
        sp, dp = (40000, 80) if to_server else (80, 40000)
        l4 = TCP(sport=sp, dport=dp, flags=flags, seq=seq & 0xFFFFFFFF, ack=ack & 0xFFFFFFFF, window=win)
        if bad_csum:
            l4.chksum = 0x1234
        ip = IP(src=a, dst=b, **ipkw) / l4 / Raw(data)
        pkt = Ether() / Dot1Q(vlan=vlan) / ip if vlan else Ether() / ip
        return self.frame(bytes(pkt), ts)

    def frame(self, raw, ts=None):
        self.n += 1
        self.ts = ts if ts is not None else self.ts + 0.001
        p = self.dec.decode(self.ts, 1, raw, self.n)
        assert p is not None
        return self.ft.process(p, self.events)

    def handshake(self, isn_c=1000, isn_s=5000):
        self.send(True, "S", isn_c)
        self.send(False, "SA", isn_s, isn_c + 1)
        return self.send(True, "A", isn_c + 1, isn_s + 1)


# -- keys, roles, counters --------------------------------------------------------
def test_both_directions_share_one_flow_with_exact_counters(corpus):
    path = corpus / "reassembly" / "pcapplusplus" / "one_http_stream_fin.pcap"
    ft, flows, _ = run_pcap(path)
    assert len(flows) == 1
    f = flows[0]
    # tshark's own count, per direction
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "tcp.srcport", "-e", "frame.cap_len"],
                         capture_output=True, text=True, check=True).stdout.split("\n")
    rows = [r.split("\t") for r in out if r.strip()]
    to_srv = [int(b) for p, b in rows if p == "49486"]
    to_cli = [int(b) for p, b in rows if p == "80"]
    assert f.pkts == [len(to_srv), len(to_cli)] and f.bytes == [sum(to_srv), sum(to_cli)]
    assert f.cport == 49486 and f.sport == 80
    assert f.tcp_state == "closed" and f.state == "closed" and f.end_reason == "shutdown"
    assert f.tcp_flags == f.tcp_flags_ts | f.tcp_flags_tc and f.tcp_flags_ts & SYN and f.tcp_flags_tc & SYN


def test_one_sided_midstream_flow_matches_suricata_eve(corpus):
    # bug-2491-02 test.yaml: Suricata's own flow record for this capture
    ft, flows, _ = run_pcap(sv(corpus, "bug-2491-02__simple_http_download.onesided.nosyn.pcap"),
                            **{"stream.midstream": True, "stream.async-oneside": True})
    (f,) = flows
    assert (f.pkts, f.bytes) == ([11, 0], [1787, 0])
    assert f.age == 10 and f.state == "established" and f.end_reason == "shutdown"
    assert (f.tcp_flags, f.tcp_flags_ts, f.tcp_flags_tc) == (0x19, 0x19, 0) and f.tcp_state == "close_wait"
    assert f.streams[0] is not None and f.streams[0].end == 397 + 398 + 398


def test_capture_starting_with_the_response_puts_the_server_on_port_80(corpus):
    # tcp-stream-after-swap test.yaml: dest_port 80, bytes_toserver 608, bytes_toclient 1037
    ft, flows, _ = run_pcap(sv(corpus, "tcp-stream-after-swap__http-start-from-response.pcap"),
                            **{"stream.midstream": True})
    (f,) = flows
    assert f.sport == 80 and f.bytes == [608, 1037]
    assert bytes(f.streams[0].buf).startswith(b"GET ") and bytes(f.streams[1].buf).startswith(b"HTTP/1.1")


def test_arkime_packet_and_byte_counts(corpus):
    # arkime http-tcp-seq-issue.test: source 3 packets / 1259 bytes, destination 4 / 1696
    ft, flows, _ = run_pcap(corpus / "reassembly" / "arkime" / "http-tcp-seq-issue.pcap")
    (f,) = flows
    assert f.pkts == [3, 4] and f.bytes == [1259, 1696] and f.sport == 80


def test_vlan_is_part_of_the_key_and_icmp_echo_is_one_flow():
    w = Wire()
    a, _ = w.send(True, "S", 1, vlan=10)
    b, _ = w.send(True, "S", 1, vlan=20)
    assert a is not b and a.vlan_id == (10,) and b.vlan_id == (20,)
    c, _ = w.send(True, "S", 1)  # untagged: a session of its own, found from both sides
    assert c is not a and c is not b and c.vlan_id == ()
    assert w.send(False, "SA", 5000, 2)[0] is c and w.send(False, "SA", 5000, 2, vlan=10)[0] is a
    req = Ether() / IP(src="198.51.100.9", dst="198.51.100.8") / ICMP(type=8, id=77, seq=1)
    rep = Ether() / IP(src="198.51.100.8", dst="198.51.100.9") / ICMP(type=0, id=77, seq=1)
    f1, ts1 = w.frame(bytes(rep))  # the reply is seen first: the requester is still the client
    f2, ts2 = w.frame(bytes(req))
    assert f1 is f2 and f1.client == bytes([198, 51, 100, 9]) and ts2 and not ts1
    assert f1.state == "established"


def test_udp_client_by_port_class_then_first_sender():
    w = Wire()
    resp = Ether() / IP(src="198.51.100.53", dst="198.51.100.7") / UDP(sport=53, dport=51000) / Raw(b"r")
    f, to_server = w.frame(bytes(resp))
    assert not to_server and f.sport == 53 and f.state == "new"
    f2, to_server = w.frame(bytes(Ether() / IP(src="198.51.100.7", dst="198.51.100.53") / UDP(sport=51000, dport=53)))
    assert f2 is f and to_server and f.state == "established" and f.pkts == [1, 1]
    g, to_server = w.frame(bytes(Ether() / IP(src="198.51.100.7", dst="198.51.100.8") / UDP(sport=5000, dport=6000)))
    assert to_server and g.cport == 5000  # same class: the first sender is the client


def test_flow_ids_positive_below_2_53_distinct_and_stable(corpus):
    ids = []
    ft, flows, _ = run_pcap(corpus / "reassembly" / "zeek" / "tcp__one-sided-2745.pcap")
    ft2, flows2, _ = run_pcap(corpus / "reassembly" / "zeek" / "tcp__one-sided-2745.pcap")
    ids = [f.flow_id for f in flows]
    assert all(0 < i < 2**53 for i in ids) and len(set(ids)) == len(ids) == 2
    assert ids == [f.flow_id for f in flows2]


# -- per-direction fields the injector needs --------------------------------------
@pytest.mark.parametrize("name", ["one_tcp_stream.pcap", "one_tcp_stream_max_seq.pcap"])
def test_next_seq_and_last_ack_are_exact(corpus, name):
    path = corpus / "reassembly" / "pcapplusplus" / name
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "tcp.srcport", "-e", "tcp.seq_raw",
                          "-e", "tcp.ack_raw", "-e", "tcp.len", "-e", "tcp.flags", "-e", "tcp.window_size_value",
                          "-e", "ip.ttl"], capture_output=True, text=True, check=True).stdout
    want_next, want_ack, want_win, want_ttl = {}, {}, {}, {}
    for line in out.splitlines():
        sp, seq, ack, ln, fl, win, ttl = line.split("\t")
        fl = int(fl, 16)
        end = (int(seq) + int(ln) + bool(fl & SYN) + bool(fl & FIN)) % 2**32
        cur = want_next.get(sp)
        if cur is None or (end - cur) % 2**32 < 2**31:
            want_next[sp] = end
        if fl & ACK:
            want_ack[sp] = int(ack)
        want_win[sp], want_ttl[sp] = int(win), int(ttl)
    ft, (f,), _ = run_pcap(path)
    for d, port in ((0, str(f.cport)), (1, str(f.sport))):
        assert f.next_seq[d] == want_next[port] and f.last_ack[d] == want_ack[port]
        assert f.win[d] == want_win[port] and f.ttl[d] == want_ttl[port]
        assert len(f.l2[d][0]) == 6 and len(f.l2[d][1]) == 6
    if "max_seq" in name:
        assert any(f.isn[d] > f.next_seq[d] for d in (0, 1))  # really wrapped


# -- the TCP state machine ---------------------------------------------------------
def test_transition_table_uses_only_known_states():
    for (st, who, ev), (new, guard) in TCP_TRANSITIONS.items():
        assert st in FLOW_STATE and new in FLOW_STATE and who in (0, 1)
        assert ev.split("+")[0] in ("syn", "synack", "ack", "fin")
        assert guard is None or guard in GUARDS


def test_full_lifecycle_server_closes_first():
    w = Wire()
    f, _ = w.handshake()
    assert f.tcp_state == "established" and f.state == "established"
    w.send(True, "PA", 1001, 5001, b"GET / HTTP/1.0\r\n\r\n")
    w.send(False, "PA", 5001, 1019, b"HTTP/1.0 200 OK\r\n\r\n")
    w.send(False, "FA", 5020, 1019)
    assert f.tcp_state == "fin_wait1"
    w.send(True, "A", 1019, 5021)
    assert f.tcp_state == "fin_wait2"
    w.send(True, "FA", 1019, 5021)
    assert f.tcp_state == "time_wait" and f.state == "closed"
    w.send(False, "A", 5021, 1020)
    assert f.tcp_state == "closed"
    assert bytes(f.streams[0].buf) == b"GET / HTTP/1.0\r\n\r\n" and bytes(f.streams[1].buf) == b"HTTP/1.0 200 OK\r\n\r\n"
    assert f.next_seq == [1020, 5021] and f.last_ack == [5021, 1020]


def test_client_closes_first_and_simultaneous_close():
    w = Wire()
    f, _ = w.handshake()
    w.send(True, "FA", 1001, 5001)
    assert f.tcp_state == "close_wait"
    w.send(False, "FA", 5001, 1002)
    assert f.tcp_state == "last_ack"
    w.send(True, "A", 1002, 5002)
    assert f.tcp_state == "closed"
    w2 = Wire()
    g, _ = w2.handshake()
    w2.send(False, "FA", 5001, 1001)
    w2.send(True, "FA", 1001, 5001)  # crosses: does not ack the server's FIN
    assert g.tcp_state == "closing"
    w2.send(True, "A", 1002, 5002)
    assert g.tcp_state == "time_wait"


def test_syn_ack_first_and_reordered_handshake(corpus):
    ft, (f,), _ = run_pcap(corpus / "reassembly" / "zeek" / "tcp__handshake-reorder.pcap")
    assert f.reasm and f.streams[0] is not None and f.streams[1] is not None
    assert f.pkts[0] > 0 and f.pkts[1] > 0 and f.state == "closed"


def test_split_handshake_is_established_and_reassembled(corpus):
    ft, (f,), _ = run_pcap(sv(corpus, "tcp-split-handshake-01-4whs__split-handshake-4whs.pcap"))
    assert f.split and any(s is not None and b"EVIL" in bytes(s.buf) for s in f.streams)


def test_midstream_off_tracks_but_does_not_reassemble(corpus):
    path = sv(corpus, "alert-testmyids-midstream__input.pcap")
    ft, (f,), _ = run_pcap(path)
    assert f.streams == [None, None] and f.state == "new" and f.pkts == [3, 2]
    assert ft.counters()["not_reassembled"] == 1
    ft, (f,), _ = run_pcap(path, **{"stream.midstream": True})
    assert f.sport == 80 and f.state == "closed" and b"uid=0(root)" in bytes(f.streams[1].buf)
    assert ft.counters()["midstream_pickups"] == 1


def test_no_handshake_session_is_never_established(corpus):
    seen = []
    run_pcap(sv(corpus, "alert-no-3whs-established__no-3whs.pcap"), on_packet=lambda p, f, ts: seen.append(f.state))
    assert "established" not in seen


def test_server_side_only_capture_is_picked_up_at_its_syn_ack(corpus):
    """SYN-ACK, ACK, data, FIN of the server only: Suricata picks the session up at the SYN-ACK
    with stream.midstream or stream.async-oneside (suricata-verify stream-async-6063-srv-03:
    established, fin_wait1), never without either."""
    path = sv(corpus, "alert-testmyids-async__input.pcap")
    ft, (f,), _ = run_pcap(path)
    assert f.state == "new" and f.streams == [None, None]
    for opts in ({"stream.midstream": True}, {"stream.async-oneside": True},
                 {"stream.midstream": True, "stream.async-oneside": True}):
        ft, (f,), _ = run_pcap(path, **opts)
        assert f.tcp_state == "fin_wait1" and f.state == "established", opts
        assert b"uid=0(root)" in bytes(f.streams[1].buf) and f.pkts == [0, 4]


def test_client_ack_without_syn_ack_needs_async():
    for async_on in (False, True):
        w = Wire(**{"stream.async-oneside": async_on})
        w.send(True, "S", 1000)
        f, _ = w.send(True, "PA", 1001, 5001, b"hello")
        assert (f.tcp_state == "established") == async_on
        st = f.streams[0]  # made by the first data the session takes
        assert (st is not None) == async_on and (st is None or bytes(st.buf) == b"hello")
        assert st is None or st.final == 5  # the peer is not visible: settled at once


# -- RST ---------------------------------------------------------------------
def test_exact_rst_closes():
    w = Wire()
    f, _ = w.handshake()
    w.send(True, "PA", 1001, 5001, b"abc")
    w.send(False, "R", 5001)
    assert f.tcp_state == "closed" and w.ft.counters()["rst_accepted"] == 1


def test_out_of_window_rst_is_ignored():
    w = Wire()
    f, _ = w.handshake()
    w.send(True, "PA", 1001, 5001, b"abc", win=1000)
    w.send(False, "R", 5001 + 100000)
    assert f.tcp_state == "established" and w.ft.counters()["rst_out_of_window"] == 1


def test_in_window_rst_resumes_when_receiver_keeps_talking():
    w = Wire()
    f, _ = w.handshake()
    w.send(False, "A", 5001, 1001, win=8192)
    w.send(True, "PA", 1001, 5001, b"first ")
    w.send(False, "R", 5001 + 10)  # in the client's window, not at RCV.NXT: RFC 5961 stacks ignore it
    assert f.tcp_state == "closed"
    w.send(True, "A", 1007, 5001)  # challenge ACK / the client goes on
    assert f.tcp_state == "established" and w.ft.counters()["rst_resumed"] == 1
    w.send(True, "PA", 1007, 5001, b"second")
    assert bytes(f.streams[0].buf) == b"first second"


def test_reassembly_goes_on_after_an_rst(corpus):
    # RST before the data is ACKed: the data (and the RST's own payload, as Suricata) is still reassembled
    ft, (f,), _ = run_pcap(sv(corpus, "tcp-rst-unacked-stream-01-raw__input.pcap"))
    assert bytes(f.streams[1].buf) == b"Please Let Me In!" and bytes(f.streams[0].buf) == b"Access Denied"
    assert f.tcp_state == "closed" and f.streams[1].missed_bytes == 0


def test_handshake_continuing_after_rst_resumes(corpus):
    # bug-3286-03: RST and FIN with bogus timestamps during the handshake, then the real SYN-ACK
    ft, (f,), _ = run_pcap(sv(corpus, "bug-3286-03-windows-evasion__with_evasion_windows.pcap"))
    assert b"THIS_IS_A_TEST" in bytes(f.streams[1].buf).upper() and f.streams[1].missed_bytes == 0


# -- checksums -------------------------------------------------------------------
def test_bad_checksum_counted_not_reassembled():
    w = Wire(checksum_mode="all")
    f, _ = w.handshake()
    w.send(True, "PA", 1001, 5001, b"EVIL", bad_csum=True)
    w.send(True, "PA", 1001, 5001, b"good")
    assert bytes(f.streams[0].buf) == b"good" and f.pkts[0] == 4 and f.next_seq[0] == 1005
    assert w.ft.counters()["csum_bad_pkts"] == 1


# -- time, eviction, reuse ------------------------------------------------------------
_UDP_TEMPLATE = bytes(Ether() / IP(src="198.51.100.1", dst="198.51.100.2") / UDP(sport=1234, dport=53))


def _udp(i):
    """A UDP frame to the i-th address (checksums are not checked by these tests)."""
    return _UDP_TEMPLATE[:30] + bytes([198, 51, 100 + i // 250, i % 250 + 2]) + _UDP_TEMPLATE[34:]


def test_timeouts_follow_state_and_packet_time():
    w = Wire(**{"flow-timeouts.tcp.new": 10, "flow-timeouts.tcp.established": 100, "flow-timeouts.tcp.closed": 5})
    f, _ = w.handshake()
    t = w.ts
    assert w.ft.expire(t + 50) == []
    w.send(True, "R", 1001, ts=t + 60)
    assert f.tcp_state == "closed"
    assert w.ft.expire(t + 64) == []
    assert w.ft.expire(t + 66) == [f] and f.end_reason == "timeout" and not w.ft.flows


def test_expiry_touches_only_due_flows():
    w = Wire(**{"flow-timeouts.udp.new": 30})
    for i in range(3000):
        w.frame(_udp(i), ts=100.0)
    filed = {f: f.bucket for f in w.ft.flows.values()}  # the wheel's second of each flow
    keep, _ = w.frame(_udp(7), ts=120.0)
    assert keep.bucket == filed[keep]  # a packet costs no timer work: the flow stays where it was filed
    assert w.ft.expire(129.0) == [] and all(f.bucket == k for f, k in filed.items())
    gone = w.ft.expire(131.0)
    assert len(gone) == 2999 and keep not in gone and len(w.ft.flows) == 1
    assert all(f.bucket is None for f in gone) and keep.bucket > filed[keep]  # the active one refiled later
    assert w.ft.expire(151.0) == [keep]


def test_lru_eviction_is_counted_and_reported_forced():
    w = Wire(**{"flow.max-sessions": 3})
    a, _ = w.frame(_udp(1))
    b, _ = w.frame(_udp(2))
    c, _ = w.frame(_udp(3))
    w.frame(_udp(1))  # a is now the most recently used
    d, _ = w.frame(_udp(4))
    ended = [e for e in w.events if isinstance(e, FlowEnded)]
    assert [e.flow for e in ended] == [b]  # the least recently active of the least valuable
    assert ended[0].reason == "forced" and b.end_reason == "forced"
    assert set(w.ft.flows.values()) == {a, c, d} and w.ft.counters()["evicted"] == 1


def test_new_syn_on_finished_session_starts_a_new_flow():
    w = Wire()
    f, _ = w.handshake()
    w.send(True, "FA", 1001, 5001)
    w.send(False, "FA", 5001, 1002)
    w.send(True, "A", 1002, 5002)
    assert f.tcp_state == "closed"
    g, _ = w.send(True, "S", 90000)
    assert g is not f and g.tcp_state == "syn_sent" and f.end_reason == "tcp_reuse"
    assert [(e.flow, e.reason) for e in w.events] == [(f, "tcp_reuse")]


def test_new_syn_after_rst_close_starts_a_new_flow_but_a_retransmitted_syn_does_not():
    w = Wire()
    f, _ = w.handshake()
    w.send(True, "R", 1001)
    assert f.tcp_state == "closed"
    same, _ = w.send(True, "S", 1000)  # the old SYN again (same ISN): a retransmission, not a new session
    assert same is f and not w.events
    g, _ = w.send(True, "S", 777)
    assert g is not f and g.tcp_state == "syn_sent" and g.flow_id != f.flow_id
    assert [(e.flow, e.reason) for e in w.events] == [(f, "tcp_reuse")]


def test_new_syn_on_killed_session_starts_a_new_flow():
    w = Wire()
    f, _ = w.handshake()
    w.send(True, "PA", 1001, 5001, b"GET / HTTP/1.1\r\n\r\n")
    assert f.tcp_state == "established"
    f.killed = "sid 1"  # the killer reset it; our own RSTs are not tracked, so the state stays
    h, _ = w.send(True, "SA", 4242, 1)  # a SYN-ACK is no new session
    assert h is f and not w.events
    g, _ = w.send(True, "S", 31337)
    assert g is not f and g.killed is None and g.tcp_state == "syn_sent" and f.end_reason == "tcp_reuse"
    assert [(e.flow, e.reason) for e in w.events] == [(f, "tcp_reuse")]


def test_killed_session_waits_the_closed_timeout_dry_run_does_not():
    to = {"flow-timeouts.tcp.established": 3600, "flow-timeouts.tcp.closed": 20}
    w = Wire(**to)
    f, _ = w.handshake()
    f.killed = "sid 1"
    t = w.ts
    assert w.ft.expire(t + 19) == []
    assert w.ft.expire(t + 22) == [f] and f.end_reason == "timeout"
    w = Wire(**to)
    f, _ = w.handshake()
    f.mark_killed("sid 1", dry_run=True)  # only marked: the session goes on
    t = w.ts
    assert w.ft.expire(t + 22) == [] and w.ft.flows
    g, _ = w.send(True, "S", 31337)
    assert g is f


def test_killed_session_changing_state_keeps_the_closed_timeout():
    w = Wire(**{"flow-timeouts.tcp.established": 3600, "flow-timeouts.tcp.closed": 20})
    f, _ = w.send(True, "S", 1000)
    f.killed = "sid 1"  # killed in the handshake
    w.send(False, "SA", 5000, 1001)
    w.send(True, "A", 1001, 5001)
    assert f.state == "established" and w.ft.timeout_of(f) == 20
    assert w.ft.expire(w.ts + 22) == [f]


def test_flush_all_ends_everything_and_delivers_held_data():
    w = Wire()
    f, _ = w.handshake()
    w.send(True, "PA", 1011, 5001, b"after a hole")
    assert f.streams[0].end == 0
    flows = w.ft.flush_all()
    assert flows == [f] and f.end_reason == "shutdown" and bytes(f.streams[0].buf) == b"after a hole"
    assert f.streams[0].missed_bytes == 10 and not w.ft.flows



def test_global_memcap_releases_least_recent_sessions_first():
    w = Wire(**{"stream.reassembly.memcap": 10000, "flow-timeouts.tcp.established": 1e9})
    flows = []
    for i in range(6):  # six sessions with 3000 retained bytes each: 18000 > 10000
        f, _ = w.frame(bytes(Ether() / IP(src="198.51.100.1", dst="198.51.100.2")
                             / TCP(sport=41000 + i, dport=80, flags="S", seq=100)))
        w.frame(bytes(Ether() / IP(src="198.51.100.2", dst="198.51.100.1")
                      / TCP(sport=80, dport=41000 + i, flags="SA", seq=900, ack=101)))
        w.frame(bytes(Ether() / IP(src="198.51.100.1", dst="198.51.100.2")
                      / TCP(sport=41000 + i, dport=80, flags="PA", seq=101, ack=901) / Raw(b"z" * 3000)))
        flows.append(f)
        r = w.ft.reasm
        assert r.buf_bytes + r.ooo_bytes <= 10000
    assert len(flows[-1].streams[0].buf) == 3000  # the most recent keeps its bytes
    assert len(flows[0].streams[0].buf) == 0 and flows[0].streams[0].end == 3000  # the oldest gave them up
    assert w.ft.counters()["reassembly"]["memcap_released_bytes"] >= 8000
    w.ft.flush_all()
    assert w.ft.reasm.buf_bytes == 0 and w.ft.reasm.ooo_bytes == 0


def test_data_on_syn_tcp_fast_open():
    w = Wire()
    f, _ = w.send(True, "S", 1000, data=b"GET /tfo")
    w.send(True, "S", 1000, data=b"GET /tfo")  # retransmitted SYN with the same data
    w.send(False, "SA", 5000, 1009)
    w.send(True, "PA", 1009, 5001, b" HTTP/1.1\r\n")
    assert bytes(f.streams[0].buf) == b"GET /tfo HTTP/1.1\r\n" and f.next_seq[0] == 1009 + 11


def test_random_packets_never_raise_and_stay_bounded():
    """Garbage TCP/UDP/ICMP/other packets between a few hosts: no exception, bounds hold."""
    import random

    from mirrorwatch.core.decode.packet import Packet

    rng = random.Random(1234)
    st = Settings({"flow.max-sessions": 50, "stream.midstream": True, "stream.async-oneside": True,
                   "stream.reassembly.memcap": 200_000, "stream.reassembly.depth": 20_000,
                   "stream.reassembly.max-ooo-segments": 16})
    ft = FlowTable(st)
    hosts = [bytes([198, 51, 100, i]) for i in range(1, 6)] + [bytes(16)]
    events: list = []
    ts = 0.0
    for n in range(20000):
        p = Packet(ts, n, 1, b"\0" * 60)
        ts += rng.choice((0.0, 0.001, 0.5, 50.0))
        p.ipv = 4
        p.proto = rng.choice((6, 6, 6, 17, 1, 47))
        p.src, p.dst = rng.choice(hosts), rng.choice(hosts)
        p.sport, p.dport = rng.choice((80, 1234, 40000)), rng.choice((80, 1234, 40000))
        p.seq, p.ack = rng.choice((rng.getrandbits(32), 1000 + rng.randint(0, 5000))), rng.getrandbits(32)
        p.flags = rng.getrandbits(8)
        p.win = rng.getrandbits(16)
        p.icmp_type, p.icmp_id = rng.choice((0, 8, 3)), rng.randint(-1, 3)
        p.payload = rng.randbytes(rng.choice((0, 0, 10, 1400)))
        p.csum_ok = rng.choice((None, True, False))
        f, to_server = ft.process(p, events)
        assert f is not None and len(ft.flows) <= 50
        if n % 500 == 0:
            ended = ft.expire(ts)
            assert all(e.end_reason == "timeout" for e in ended)
        r = ft.reasm
        assert r.buf_bytes + r.ooo_bytes <= 200_000 + 1400
        assert r.buf_bytes == sum(len(s.buf) for fl in ft.flows.values() for s in fl.streams if s is not None)
    assert all(e.reason in ("forced", "tcp_reuse") for e in events if isinstance(e, FlowEnded))
    assert all(isinstance(e, (FlowEnded, FlowEmergency)) for e in events)
    ft.flush_all()
    assert ft.reasm.buf_bytes == 0 and ft.reasm.ooo_bytes == 0


def _tcp_pkt(ts, to_server, flags, seq, ack, data=b""):
    from mirrorwatch.core.decode.packet import Packet

    p = Packet(ts, 0, 1, b"\0" * (54 + len(data)))
    p.ipv, p.proto = 4, 6
    a, b = bytes([198, 51, 100, 1]), bytes([198, 51, 100, 2])
    p.src, p.dst, p.sport, p.dport = (a, b, 40000, 80) if to_server else (b, a, 80, 40000)
    p.flags, p.seq, p.ack, p.win, p.payload = flags, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 65535, data
    return p


@hsettings(max_examples=120, deadline=None)
@given(hst.binary(min_size=0, max_size=600), hst.binary(min_size=0, max_size=600),
       hst.integers(0, 2**32 - 1), hst.integers(0, 2**32 - 1), hst.randoms(use_true_random=False))
def test_property_whole_session_reassembles_both_directions(req, resp, isn_c, isn_s, rnd):
    """Handshake, both sides' data cut, reordered and duplicated in flight, ACKs of what
    arrived, FINs: every byte reaches each direction's observer once, in order."""
    class Rec:
        def __init__(self):
            self.out = {0: bytearray(), 1: bytearray()}

        def hook(self, flow, d, stream):
            out = self.out[d]

            class Obs:
                def data(self, s, off, b):
                    assert off == len(out)
                    out.extend(b)

                def gap(self, s, off, n):
                    raise AssertionError(f"unexpected gap at {off}")

                def end(self, s):
                    pass
            stream.observer = Obs()

    rec = Rec()
    ft = FlowTable(Settings({}))
    ft.on_new_stream = rec.hook
    ev: list = []
    ts = [0.0]

    def send(*a):
        ts[0] += 0.001
        return ft.process(_tcp_pkt(ts[0], *a), ev)

    f, _ = send(True, SYN, isn_c, 0)
    send(False, SYN | ACK, isn_s, isn_c + 1)
    send(True, ACK, isn_c + 1, isn_s + 1)

    def cut(data, base):
        segs, pos = [], 0
        while pos < len(data):
            k = rnd.randint(1, 200)
            segs.append((base + pos, data[pos:pos + k]))
            pos += k
        extra = [rnd.choice(segs) for _ in range(rnd.randint(0, 3))] if segs else []
        segs += extra
        rnd.shuffle(segs)
        return segs

    flights = [(True, s) for s in cut(req, isn_c + 1)] + [(False, s) for s in cut(resp, isn_s + 1)]
    rnd.shuffle(flights)
    got = {True: set(), False: set()}
    for to_server, (seq, chunk) in flights:
        other_base = isn_s + 1 if to_server else isn_c + 1
        # the sender acks the contiguous prefix it received from the other side so far
        have = got[not to_server]
        n = 0
        while n in have:
            n += 1
        send(to_server, ACK | PSH, seq, other_base + n, chunk)
        base = isn_c + 1 if to_server else isn_s + 1
        got[to_server].update(range((seq - base) % 2**32, (seq - base) % 2**32 + len(chunk)))
    send(True, FIN | ACK, isn_c + 1 + len(req), isn_s + 1 + len(resp))
    send(False, FIN | ACK, isn_s + 1 + len(resp), isn_c + 2 + len(req))
    send(True, ACK, isn_c + 2 + len(req), isn_s + 2 + len(resp))
    assert f.tcp_state == "closed"
    ft.flush_all()
    assert bytes(rec.out[0]) == req and bytes(rec.out[1]) == resp
    assert all(s is None or s.missed_bytes == 0 for s in f.streams)


def test_syn_after_handshakeless_packets_decides_the_roles():
    w = Wire()
    # data from the server's port first (midstream off: tracked, not reassembled), port classes say 80 is the server
    f, to_server = w.send(False, "PA", 5001, 1001, b"late response")
    assert not to_server and f.sport == 80 and f.streams == [None, None]
    # then a real handshake starts from the other side of what the ports suggested: the SYN sender is the client
    g, to_server = w.frame(bytes(Ether() / IP(src="198.51.100.2", dst="198.51.100.1")
                                 / TCP(sport=80, dport=40000, flags="S", seq=777)))
    assert g is f and to_server and f.cport == 80 and f.pkts == [2, 0]  # both came from port 80
    assert w.ft.counters()["role_swaps"] == 1 and f.tcp_state == "syn_sent"
