"""Detect room: rule compilation, prefilter, alert semantics (Suricata's), on crafted traffic.

Frames are built with scapy and fed through the real Engine (decode -> flows ->
reassembly -> detect), so every test exercises the same path as a replay.
"""

from __future__ import annotations

import hyperscan as hs
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether

from mirrorwatch.core.detect import Detector
from mirrorwatch.core.detect.compile import pattern_strength, select_fast_pattern
from mirrorwatch.core.detect.hsdb import BlockScanner, LiteralSet
from mirrorwatch.core.engine import Engine
from mirrorwatch.core.events import Alert
from mirrorwatch.core.decode.packet import Packet
from mirrorwatch.rules import RuleContext, parse_rule
from mirrorwatch.rules.matches import Content
from mirrorwatch.core.settings import Settings

CLI, SRV = "10.0.0.1", "192.0.2.80"


def ETH():
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def rules_of(text: str, settings: Settings | None = None) -> list:
    ctx = RuleContext(settings or Settings(), {})
    return [parse_rule(line, ctx)[0] for line in text.strip().splitlines() if line.strip()]


def compiled(det: Detector) -> list:
    """Every rule of ``det`` compiled, in rule number order."""
    return [det.crule(n) for n in range(len(det.crules))]


def engine(text: str, **overrides) -> Engine:
    s = Settings(overrides)
    return Engine(s, rules_of(text, s), checksum_mode="none")


def run(eng: Engine, frames, finish: bool = True) -> list:
    out = []
    for i, f in enumerate(frames):
        out.extend(eng.process(1000.0 + i * 0.01, 1, bytes(f)))
    if finish:
        out.extend(eng.finish())
    return [e for e in out if isinstance(e, Alert)]


def sids(alerts) -> list:
    return [a.rule.sid for a in alerts]


class Conv:
    """A TCP conversation with correct sequence numbers, both directions."""

    def __init__(self, sport=40000, dport=80, cli=CLI, srv=SRV):
        self.c = ETH() / IP(src=cli, dst=srv)
        self.s = ETH() / IP(src=srv, dst=cli)
        self.sport, self.dport = sport, dport
        self.cseq, self.sseq = 1000, 5000

    def handshake(self):
        f = [self.c / TCP(sport=self.sport, dport=self.dport, flags="S", seq=self.cseq),
             self.s / TCP(sport=self.dport, dport=self.sport, flags="SA", seq=self.sseq, ack=self.cseq + 1),
             self.c / TCP(sport=self.sport, dport=self.dport, flags="A", seq=self.cseq + 1, ack=self.sseq + 1)]
        self.cseq += 1
        self.sseq += 1
        return f

    def client(self, data: bytes, flags="PA"):
        f = self.c / TCP(sport=self.sport, dport=self.dport, flags=flags, seq=self.cseq, ack=self.sseq) / data
        self.cseq += len(data)
        return f

    def server(self, data: bytes, flags="PA"):
        f = self.s / TCP(sport=self.dport, dport=self.sport, flags=flags, seq=self.sseq, ack=self.cseq) / data
        self.sseq += len(data)
        return f

    def ack_from_server(self):
        return self.s / TCP(sport=self.dport, dport=self.sport, flags="A", seq=self.sseq, ack=self.cseq)

    def ack_from_client(self):
        return self.c / TCP(sport=self.sport, dport=self.dport, flags="A", seq=self.cseq, ack=self.sseq)

    def close(self):
        f = [self.c / TCP(sport=self.sport, dport=self.dport, flags="FA", seq=self.cseq, ack=self.sseq),
             self.s / TCP(sport=self.dport, dport=self.sport, flags="FA", seq=self.sseq, ack=self.cseq + 1),
             self.c / TCP(sport=self.sport, dport=self.dport, flags="A", seq=self.cseq + 1, ack=self.sseq + 1)]
        return f


# -- compilation ------------------------------------------------------------------

def test_fast_pattern_is_explicit_else_longest_positive_strongest():
    a, b, c = Content(b"abcd"), Content(b"zz\x00\x01\xff"), Content(b"longest!!", negated=True)
    assert select_fast_pattern([a, b, c]) == (b"zz\x00\x01\xff", False)
    a.fast_pattern = True
    assert select_fast_pattern([a, b, c]) == (b"abcd", False)
    # equal length: the stronger (rarer-looking) literal wins
    assert pattern_strength(b"\x90\x91") > pattern_strength(b"aa")
    assert select_fast_pattern([Content(b"aa"), Content(b"\x90\x91")]) == (b"\x90\x91", False)
    # only negated contents: no prefilter literal
    assert select_fast_pattern([Content(b"x", negated=True)]) is None
    # chop
    assert select_fast_pattern([Content(b"0123456789", fast_pattern=True, fast_pattern_chop=(2, 3))]) == (b"234", False)


def test_hyperscan_literals_with_nul_and_regex_bytes_and_nocase():
    ls = LiteralSet()
    ls.add(b"ab\x00c", False, 0)
    ls.add(b"a.b*(", False, 1)
    ls.add(b"GeT", True, 2)
    ls.add(b"get", True, 3)  # same literal caseless: shares the pattern id
    assert len(ls) == 3
    sc = BlockScanner(ls.compile(hs.HS_MODE_BLOCK))
    rules = ls.rule_tuples()
    hit = lambda data: sorted(r for i in sc.scan(data) for r in rules[i])  # noqa: E731
    assert hit(b"xxab\x00cxx") == [0]
    assert hit(b"ab\x01c axb*( ") == []  # '.' is a literal dot
    assert hit(b"a.b*(") == [1]
    assert hit(b"..gEt..") == [2, 3]


def test_rule_kinds_and_stream_requirements():
    det = Detector(rules_of("""
alert ip 10.0.0.0/8 any -> any any (sid:1;)
alert tcp any any -> any any (content:"abc"; sid:2;)
alert tcp any any -> any any (content:"abc"; depth:10; sid:3;)
alert tcp-pkt any any -> any any (content:"abc"; sid:4;)
alert tcp-stream any any -> any any (content:"abc"; sid:5;)
alert tcp any any -> any 80 (flags:S; sid:6;)
alert tcp any any -> any any (pcre:"/a+b/"; sid:7;)
alert udp any any -> any any (content:"abc"; sid:8;)
alert tcp any any -> any any (content:"abc"; dsize:>3; sid:9;)
alert tcp any any -> any any (content:"abc"; stream_size:client,>,3; sid:10;)
"""), Settings())
    k = {cr.key[1]: cr for cr in compiled(det)}
    assert k[1].kind == "iponly" and k[6].kind == "pkt" and k[7].kind == "pkt" and k[2].kind == "mpm"
    assert (k[2].req_stream, k[2].req_packet) == (True, False)
    assert (k[3].req_stream, k[3].req_packet) == (True, True)
    assert (k[4].req_stream, k[4].req_packet) == (False, True)
    assert (k[5].req_stream, k[5].stream_only) == (True, True)
    assert (k[8].req_stream, k[8].req_packet) == (False, True)
    assert (k[9].req_stream, k[9].req_packet) == (False, True)  # dsize: packets only
    assert (k[10].req_stream, k[10].req_packet) == (True, True)  # stream_size: both
    # header-only rules are pre-selected by the TCP flags byte (exact 'S' = SYN alone)
    # (then split by port like literal hits: sid 6 is bound to destination port 80)
    assert det.flags_tbl[0x02] == ((), {80: (k[6].num,)}, None) and det.flags_tbl[0x12] == ((), None, None)


def test_iponly_rules_indexed_by_their_narrow_side():
    det = Detector(rules_of("""
alert ip [198.51.100.7,203.0.113.0/24] any -> $HOME_NET any (sid:1;)
alert ip $HOME_NET any -> 203.0.113.9 any (sid:2;)
alert ip any any -> any any (sid:3;)
alert ip 198.51.100.0/24 any <> 10.9.9.9 any (sid:4;)
"""), Settings())
    num = {cr.key[1]: cr.num for cr in compiled(det)}
    a = lambda s: bytes(map(int, s.split(".")))  # noqa: E731
    assert det.ipo_src.lookup(a("203.0.113.50")) == (num[1],)
    assert det.ipo_src.lookup(a("198.51.100.7")) == (num[1],)
    assert det.ipo_src.lookup(a("198.51.100.8")) == ()
    assert det.ipo_dst.lookup(a("203.0.113.9")) == (num[2],)
    # bidirectional: the narrow side (10.9.9.9) is indexed as source and as destination
    assert det.ipo_src.lookup(a("10.9.9.9")) == det.ipo_dst.lookup(a("10.9.9.9")) == (num[4],)
    assert det.iponly[6] == (num[3],)


def test_unsupported_buffer_rule_is_skipped_with_reason():
    rules = rules_of('alert tcp any any -> any any (content:"a"; sid:1;)')
    rules[0].matches[0].buffer = "smb.named_pipe"
    det = Detector(rules, Settings())
    assert det.crules == [] and det.skipped[0][1] == "sticky buffer smb.named_pipe"


def test_a_buffer_rule_becomes_a_transaction_rule_of_its_protocol():
    rules = rules_of('alert tcp any any -> any any (content:"/x"; sid:1;)')
    rules[0].matches[0].buffer = "http.uri"
    det = Detector(rules, Settings())
    (cr,) = compiled(det)
    assert (cr.kind, cr.app_proto, cr.protos, cr.tx.sides) == ("tx", "http", (6,), (0,))
    assert det.tx_patterns == 1 and det.tx_pref[("http", 0)][0].group.name == "http.uri"


# -- packet semantics ---------------------------------------------------------------

def test_udp_content_nocase_ports_and_one_alert_per_sid():
    eng = engine("""
alert udp any any -> any 53 (content:"EXAMPLE"; nocase; sid:1;)
alert udp any any -> any 54 (content:"example"; sid:2;)
alert udp any any -> any any (content:"ex"; content:"le"; sid:3;)
""")
    frame = ETH() / IP(src=CLI, dst=SRV) / UDP(sport=5555, dport=53) / b"..example..example.."
    alerts = run(eng, [frame])
    assert sids(alerts) == [1, 3]
    assert all(a.stream == 0 and bytes(a.payload) == b"..example..example.." for a in alerts)


def test_packet_alert_max_keeps_first_rules_in_order():
    text = "\n".join(f'alert udp any any -> any any (content:"X"; sid:{i};)' for i in range(1, 8))
    alerts = run(engine(text, **{"detect.packet-alert-max": 3}), [ETH() / IP() / UDP() / b"X"])
    assert sids(alerts) == [1, 2, 3]


def test_bad_checksum_packets_are_not_inspected():
    s = Settings()
    eng = Engine(s, rules_of('alert udp any any -> any any (content:"X"; sid:1;)', s), checksum_mode="all")
    bad = ETH() / IP(src=CLI, dst=SRV) / UDP(sport=1, dport=2, chksum=0x1234) / b"X"
    good = ETH() / IP(src=CLI, dst=SRV) / UDP(sport=1, dport=2) / b"X"
    assert sids(run(eng, [bad, good])) == [1]
    assert eng.detector.counters()["csum_skipped"] == 1


def test_iponly_rule_fires_once_per_flow_direction():
    conv = Conv()
    frames = conv.handshake() + [conv.client(b"hello"), conv.server(b"world")]
    alerts = run(engine("alert ip any any -> any any (sid:1;)"), frames)
    assert len(alerts) == 2
    assert {a.to_server for a in alerts} == {True, False}


def test_header_keywords_icmp_ttl_flags_dsize():
    eng = engine("""
alert icmp any any -> any any (itype:8; icode:0; icmp_seq:7; sid:1;)
alert icmp any any -> any any (itype:0; sid:2;)
alert ip any any -> any any (ttl:<10; sid:3;)
alert tcp any any -> any any (flags:S,12; sid:4;)
alert tcp any any -> any any (dsize:>2; sid:5;)
alert tcp any any -> any any (dsize:!9; sid:6;)
""")
    frames = [ETH() / IP(src=CLI, dst=SRV, ttl=5) / ICMP(type=8, code=0, id=1, seq=7) / b"ping",
              ETH() / IP(src=CLI, dst=SRV) / TCP(sport=1, dport=2, flags="SE"),
              ETH() / IP(src=CLI, dst=SRV) / TCP(sport=3, dport=4, flags="PA") / b"abc"]
    alerts = run(eng, frames)
    assert sorted((a.pkt.pcap_cnt, a.rule.sid) for a in alerts) == [(1, 1), (1, 3), (2, 4), (3, 5), (3, 6)]


# -- flow state ------------------------------------------------------------------------

def test_flowbits_order_set_before_isset_and_noalert():
    # detect-flowbits semantics: set-only rules run first, then set+read, then read-only
    eng = engine("""
alert tcp-pkt any any -> any any (flowbits:isset,fb1; content:"GET"; sid:1;)
alert tcp-pkt any any -> any any (flowbits:set,fb1; flowbits:noalert; content:"GET"; sid:2;)
alert tcp-pkt any any -> any any (flowbits:isnotset,fb1; content:"GET"; sid:3;)
alert tcp-pkt any any -> any any (flowbits:isset,fb1|fbx; content:"POST"; sid:4;)
alert tcp-pkt any any -> any any (flowbits:toggle,fb1; content:"POST"; sid:5;)
alert tcp-pkt any any -> any any (flowbits:isnotset,fb1; content:"POST"; sid:6;)
""")
    conv = Conv()
    frames = conv.handshake() + [conv.client(b"GET /"), conv.ack_from_server(), conv.client(b"POST /")]
    alerts = run(eng, frames)
    # GET: sid 2 sets fb1 (silently) before the read-only sids 1 and 3 look;
    # POST: sid 5 toggles fb1 off before sids 4 and 6 look
    assert [(a.pkt.pcap_cnt, a.rule.sid) for a in alerts] == [(4, 1), (6, 5), (6, 6)]


def test_pass_rule_silences_the_packet_or_the_flow():
    # a packet rule passes only its packet (Suricata's SIG_PROP_FLOW_ACTION_PACKET)
    eng = engine("""
pass tcp-pkt any any -> any 80 (content:"trusted"; sid:1;)
alert tcp-pkt any any -> any any (content:"evil"; sid:2;)
""")
    conv = Conv()
    frames = conv.handshake() + [conv.client(b"trusted evil"), conv.client(b"evil again")]
    assert [a.pkt.pcap_cnt for a in run(eng, frames)] == [5]
    # an ip-only pass rule passes the whole flow
    eng = engine("""
pass ip 10.0.0.1 any -> any any (sid:1;)
alert tcp-pkt any any -> any any (content:"evil"; sid:2;)
""")
    conv = Conv()
    assert run(eng, conv.handshake() + [conv.client(b"evil"), conv.server(b"evil")]) == []
    other = Conv(cli="10.0.0.2")
    assert sids(run(eng, other.handshake() + [other.client(b"evil")])) == [2]


def test_established_and_direction_keywords():
    eng = engine("""
alert tcp-pkt any any -> any any (flow:established,to_server; content:"req"; sid:1;)
alert tcp-pkt any any -> any any (flow:to_client; content:"req"; sid:2;)
alert tcp-pkt any any -> any any (flow:not_established; content:"req"; sid:3;)
""")
    conv = Conv()
    assert sids(run(eng, conv.handshake() + [conv.client(b"req")])) == [1]
    # no handshake seen (midstream off): never established
    lone = Conv(sport=41000)
    assert sids(run(engine('alert tcp-pkt any any -> any any (flow:not_established; content:"req"; sid:3;)'),
                    [lone.client(b"req")])) == [3]


# -- stream --------------------------------------------------------------------------------

def test_stream_match_across_segments_alerts_once_on_stream():
    eng = engine("""
alert tcp any any -> any any (content:"split-pattern"; sid:1;)
alert tcp-pkt any any -> any any (content:"split-pattern"; sid:2;)
""")
    conv = Conv()
    frames = conv.handshake() + [conv.client(b"xx split-"), conv.client(b"pattern yy split-pattern"),
                                 conv.ack_from_server()] + conv.close()
    alerts = run(eng, frames)
    stream_alerts = [a for a in alerts if a.rule.sid == 1]
    assert len(stream_alerts) == 1 and stream_alerts[0].stream == 1
    assert b"split-pattern" in bytes(stream_alerts[0].payload)
    # the packet rule only sees the second segment, which holds the whole literal once
    assert [a.stream for a in alerts if a.rule.sid == 2] == [0]


def test_unacked_stream_data_is_inspected_at_flow_end():
    eng = engine('alert tcp any any -> any any (content:"tail"; sid:1;)')
    conv = Conv()
    frames = conv.handshake() + [conv.client(b"the tail")]
    alerts = run(eng, frames, finish=False)
    assert alerts == []
    end = [e for e in eng.finish() if isinstance(e, Alert)]
    assert [(a.rule.sid, a.stream, a.kind, a.pkt.pcap_cnt) for a in end] == [(1, 1, "flow-timeout", 0)]


def test_stream_chunk_size_and_close_trigger_and_no_double_alert():
    eng = engine('alert tcp any any -> any any (content:"MARK"; sid:1;)',
                 **{"stream.reassembly.toserver-chunk-size": 100})
    conv = Conv()
    frames = conv.handshake()
    for _ in range(3):
        frames += [conv.client(b"MARK" + b"." * 60), conv.ack_from_server()]
    frames += conv.close()
    alerts = run(eng, frames)
    # 192 bytes in 3 segments: one chunk at >= 100 settled bytes, the rest when closing
    assert [a.stream for a in alerts] == [1, 1]
    assert eng.detector.counters()["stream_bytes"] == 192


def test_inline_mode_inspects_each_new_segment():
    eng = engine('alert tcp any any -> any any (content:"MARK"; sid:1;)', **{"stream.inline": "yes"})
    conv = Conv()
    frames = conv.handshake() + [conv.client(b"..MA"), conv.client(b"RK.."), conv.client(b"MARK")]
    alerts = run(eng, frames)
    assert [(a.pkt.pcap_cnt, a.stream) for a in alerts] == [(5, 1), (6, 1)]


# -- thresholds --------------------------------------------------------------------------------

def _icmp(n, src=CLI):
    return [ETH() / IP(src=src, dst=SRV) / ICMP(type=8, id=i, seq=i) for i in range(n)]


@pytest.mark.parametrize("opt,expect", [
    ("threshold:type limit, track by_src, count 2, seconds 60", 2),
    ("threshold:type threshold, track by_src, count 3, seconds 60", 3),
    ("threshold:type both, track by_src, count 3, seconds 60", 1),
    ("detection_filter:track by_src, count 4, seconds 60", 6),
    ("threshold:type backoff, track by_rule, count 2, multiplier 2", 3),
])
def test_threshold_types(opt, expect):
    # 10 matches from one source; by_src counts per source address
    eng = engine(f"alert icmp any any -> any any (itype:8; {opt}; sid:1;)")
    assert len(run(eng, _icmp(10))) == expect


def test_threshold_tracks_sources_separately_and_detection_filter_unique_on():
    eng = engine("alert icmp any any -> any any (itype:8; threshold:type limit, track by_src, count 1, seconds 60; sid:1;)")
    assert len(run(eng, _icmp(3) + _icmp(3, src="10.0.0.2"))) == 2
    eng = engine("alert tcp any any -> any any (flags:S; flow:stateless; "
                 "detection_filter:track by_dst, count 2, seconds 60, unique_on dst_port; sid:1;)")
    syns = [ETH() / IP(src=CLI, dst=SRV) / TCP(sport=1000 + i, dport=p, flags="S")
            for i, p in enumerate((80, 80, 81, 81, 82, 83))]
    assert [a.pkt.pcap_cnt for a in run(eng, syns)] == [5, 6]


def test_threshold_window_resets_with_packet_time():
    eng = engine("alert icmp any any -> any any (itype:8; threshold:type limit, track by_src, count 1, seconds 10; sid:1;)")
    out = []
    for i, f in enumerate(_icmp(4)):
        out += eng.process(1000.0 + i * 6, 1, bytes(f))
    assert [a.pkt.pcap_cnt for a in out if isinstance(a, Alert)] == [1, 3]


def test_flowless_packet_detector_api():
    det = Detector(rules_of('alert tcp any any -> any 80 (content:"GET "; sid:1;)'), Settings())
    p = Packet(1.0, 1)
    p.ipv, p.src, p.dst, p.proto, p.sport, p.dport = 4, bytes(4), bytes(4), 6, 1234, 80
    p.payload = b"GET / HTTP/1.0\r\n"
    assert sids(det.inspect(p, None, None)) == [1]
    p.dport = 81
    assert det.inspect(p, None, None) == []


def test_gap_splits_stream_pieces_and_payload_shows_the_gap():
    eng = engine("""
alert tcp-stream any any -> any any (content:"VERY"; sid:1;)
alert tcp-stream any any -> any any (content:"DATA"; sid:2;)
alert tcp-stream any any -> any any (content:"VERYGOODDATA"; sid:3;)
""")
    conv = Conv()
    frames = conv.handshake() + [conv.client(b"VERY")]
    conv.cseq += 4  # "GOOD" never reaches the mirror
    frames.append(conv.client(b"DATA"))
    alerts = run(eng, frames)
    assert sorted(sids(alerts)) == [1, 2]
    assert {bytes(a.payload) for a in alerts} == {b"VERY[4 bytes missing]DATA"}
    assert {a.kind for a in alerts} == {"flow-timeout"}


def test_rule_reload_mid_flow_keeps_flowbits():
    s = Settings({"stream.inline": "yes"})
    eng = Engine(s, rules_of('alert tcp any any -> any any (content:"login"; flowbits:set,authed; sid:1;)', s),
                 checksum_mode="none")
    conv = Conv()
    alerts = run(eng, conv.handshake() + [conv.client(b"login ok")], finish=False)
    assert sids(alerts) == [1]
    eng.reload_rules(rules_of('alert tcp any any -> any any (flowbits:isset,authed; content:"secret"; sid:2;)', s))
    alerts = run(eng, [conv.client(b"the secret")])
    assert sids(alerts) == [2]


def test_stream_and_packet_rule_alerts_on_the_packet_and_again_on_the_stream():
    # depth makes a tcp rule inspect packets too (Suricata's REQUIRE_PACKET|REQUIRE_STREAM): the
    # packet alerts, and the stream inspection of the same bytes once ACKed alerts again, as
    # Suricata does (suricata-verify detect-bytetest-02: 2 alerts for such a rule on one packet)
    eng = engine('alert tcp any any -> any any (content:"USER root"; depth:9; sid:1;)')
    conv = Conv(dport=21)
    frames = conv.handshake() + [conv.client(b"USER root\r\n"), conv.ack_from_server()] + conv.close()
    alerts = run(eng, frames)
    assert [(a.pkt.pcap_cnt, a.stream) for a in alerts] == [(4, 0), (6, 1)]
    # split over two segments only the stream sees it: one stream alert, when closing
    eng = engine('alert tcp any any -> any any (content:"USER root"; depth:9; sid:1;)')
    conv = Conv(dport=21)
    frames = conv.handshake() + [conv.client(b"USE"), conv.client(b"R root\r\n"), conv.ack_from_server()]
    frames += conv.close()
    alerts = run(eng, frames)
    assert [(a.stream, a.kind) for a in alerts] == [(1, "packet")]


def test_an_internal_error_is_counted_never_raised():
    det = Detector(rules_of('alert udp any any -> any any (content:"X"; sid:1;)'), Settings())
    p = Packet(1.0, 9)
    p.ipv, p.src, p.dst, p.proto, p.payload = 4, bytes(4), bytes(4), 17, object()  # not a buffer
    assert det.inspect(p, None, None) == []
    c = det.counters()
    assert c["errors"] == 1 and c["last_error"].startswith("packet 9: ")


def test_stream_bytes_are_released_when_nothing_inspects_them():
    # no stream rule at all, and a flow silenced by pass: settled bytes must not pile up
    for text in ('alert udp any any -> any any (content:"x"; sid:1;)',
                 'pass tcp-pkt any any -> any any (content:"hello"; sid:1;)'):
        eng = engine(text)
        conv = Conv()
        frames = conv.handshake() + [conv.client(b"hello" * 100), conv.ack_from_server(), conv.ack_from_client()]
        run(eng, frames, finish=False)
        (flow,) = eng.flows.flows.values()
        assert len(flow.streams[0].buf) == 0


def test_stream_size_counts_seq_space_like_suricata():
    eng = engine("""
alert tcp any any -> any any (flow:to_server; stream_size:client,>,10; sid:1;)
alert tcp any any -> any any (flow:to_server; stream_size:server,=,1; sid:2;)
""")
    conv = Conv()
    # client: SYN (1) + 5 + 5 data bytes = 11 after the second segment; server: SYN only = 1
    frames = conv.handshake() + [conv.client(b"aaaaa"), conv.client(b"bbbbb")]
    alerts = run(eng, frames)
    # on the SYN the server side is not known yet (size 0)
    assert sorted((a.pkt.pcap_cnt, a.rule.sid) for a in alerts) == [(3, 2), (4, 2), (5, 1), (5, 2)]


def test_packets_beyond_stream_depth_are_inspected_on_their_own():
    eng = engine('alert tcp any any -> any any (content:"LATE"; sid:1;)', **{"stream.reassembly.depth": 16})
    conv = Conv()
    frames = conv.handshake() + [conv.client(b"x" * 16), conv.ack_from_server(), conv.client(b"LATE data")]
    alerts = run(eng, frames)
    assert [(a.pkt.pcap_cnt, a.stream) for a in alerts] == [(6, 0)]


def test_negated_address_rules_are_judged_on_every_packet():
    # Suricata: IP-only rules with a negated address are SIG_TYPE_LIKE_IPONLY (packet engine)
    eng = engine("""
alert ip $EXTERNAL_NET any -> any any (sid:1;)
alert ip ![192.168.0.0/16] any -> any any (sid:2;)
alert ip 10.0.0.0/8 any -> any any (sid:3;)
""")
    conv = Conv()
    alerts = run(eng, conv.handshake() + [conv.client(b"a"), conv.client(b"b")])
    by_sid = {s: sids(alerts).count(s) for s in (1, 2, 3)}
    # 10.0.0.1 is in $HOME_NET: sid 1 only sees the server's packet; sid 2 every packet
    assert by_sid == {1: 1, 2: 5, 3: 1}


def test_flow_keywords_need_a_flow_except_stateless():
    det = Detector(rules_of("""
alert udp any any -> any any (flow:not_established; sid:1;)
alert udp any any -> any any (flow:stateless; sid:2;)
alert udp any any -> any any (flowbits:isnotset,x; sid:3;)
alert udp any any -> any any (dsize:>0; sid:4;)
"""), Settings())
    p = Packet(1.0, 1)
    p.ipv, p.src, p.dst, p.proto, p.sport, p.dport, p.payload = 4, bytes(4), bytes(4), 17, 1, 2, b"x"
    assert sids(det.inspect(p, None, None)) == [2, 4]


def test_inline_window_reaches_back_for_relative_matches():
    eng = engine('alert tcp any any -> any any (content:"HEAD"; content:"TAIL"; distance:0; sid:1;)',
                 **{"stream.inline": "yes"})
    conv = Conv()
    frames = conv.handshake() + [conv.client(b"HEAD" + b"." * 100), conv.client(b"..TAIL..")]
    alerts = run(eng, frames)
    assert [(a.pkt.pcap_cnt, a.stream) for a in alerts] == [(5, 1)]


def test_header_rules_are_grouped_by_port():
    det = Detector(rules_of("""
alert tcp any any -> any [22,2222] (dsize:>0; sid:1;)
alert udp any 53 -> any any (dsize:>0; sid:2;)
alert tcp any any -> any 1024: (dsize:>0; sid:3;)
"""), Settings())
    num = {cr.key[1]: cr.num for cr in compiled(det)}
    assert det.port_idx[6][0] == {22: (num[1],), 2222: (num[1],)}
    assert det.port_idx[17][1] == {53: (num[2],)}
    assert det.pkt_always[6] == (num[3],)  # a port range too wide to list: checked per packet


def test_port_bound_literals_are_not_scanned_on_other_ports():
    """A database whose every rule is bound to port 21 is not scanned for port-80 packets
    (Suricata's per-port signature groups); on port 21 it is, and the rule still fires."""
    text = ('alert tcp any any -> any 21 (msg:"ftp root"; flow:established,to_server; content:"USER root"; '
            'depth:9; sid:1;)\n'
            'alert udp any any -> any 53 (msg:"dns"; content:"evil"; sid:2;)')
    out = {}
    for port in (80, 21):
        eng = engine(text)
        c = Conv(dport=port)
        alerts = run(eng, c.handshake() + [c.client(b"USER root\r\n"), c.ack_from_server()] + c.close())
        out[port] = (sids(alerts), eng.detector.c["scans"])
    assert out[80] == ([], 0)
    assert out[21][0] == [1, 1] and out[21][1] >= 1  # the packet, then the stream (depth: both)
    # a rule for any port in the same database: every packet with data is scanned again
    eng = engine(text + '\nalert tcp any any -> any any (msg:"x"; content:"zzz"; depth:3; sid:3;)')
    c = Conv(dport=80)
    run(eng, c.handshake() + [c.client(b"USER root\r\n")])
    assert eng.detector.c["scans"] == 1


def test_inline_window_remembers_literals_scanned_in_earlier_segments():
    """Stream mode scans each byte once: a fast pattern that arrived in an earlier segment still
    makes its rule a candidate while it lies in the inline window reaching back."""
    eng = engine('alert tcp any any -> any any (content:"LONG-FAST-PATTERN"; content:"end"; distance:0; sid:1;)',
                 **{"stream.inline": "yes"})
    conv = Conv()
    frames = conv.handshake() + [conv.client(b"..LONG-FAST-PATTERN.."), conv.client(b"...end")]
    alerts = run(eng, frames)
    assert [(a.pkt.pcap_cnt, a.stream) for a in alerts] == [(5, 1)]
    # each stream byte went through hyperscan once (no re-scan of the window's old bytes)
    assert eng.detector.counters()["stream_bytes"] == len(b"..LONG-FAST-PATTERN..") + len(b"...end")


def test_literal_out_of_the_inline_window_is_forgotten():
    eng = engine('alert tcp any any -> any any (content:"LONG-FAST-PATTERN"; content:"end"; distance:0; sid:1;)',
                 **{"stream.inline": "yes", "stream.reassembly.toserver-chunk-size": 64})
    conv = Conv()
    frames = conv.handshake() + [conv.client(b"LONG-FAST-PATTERN"), conv.client(b"." * 200), conv.client(b"end")]
    assert run(eng, frames) == []  # the window (64 bytes back) no longer holds the pattern


def test_hyperscan_streams_are_closed_when_flows_end():
    eng = engine('alert tcp any any -> any any (content:"needle"; sid:1;)', **{"stream.inline": "yes"})
    convs = [Conv(sport=40000 + i) for i in range(3)]
    frames = []
    for conv in convs:
        frames += conv.handshake() + [conv.client(b"hay hay"), conv.server(b"more hay")]
    run(eng, frames, finish=False)
    streams = [ls for f in eng.flows.flows.values() for ls in f.det.lits if ls is not None]
    assert len(streams) == 6 and all(ls.hs is not None for ls in streams)
    eng.finish()
    assert all(ls.hs is None for ls in streams)


def test_header_rules_follow_a_role_swap():
    """Detect keeps the header-decided candidates per flow direction; when a later SYN shows the
    other side is the client (the flows room swaps the roles), the directions swap with them."""
    eng = engine('alert tcp any any -> any 50000 (flags:S; sid:1;)')
    a = ETH() / IP(src=SRV, dst=CLI)
    b = ETH() / IP(src=CLI, dst=SRV)
    frames = [a / TCP(sport=50000, dport=50001, flags="A", seq=10, ack=20),  # guessed: SRV is the client
              b / TCP(sport=50001, dport=50000, flags="S", seq=100)]  # CLI opens: the roles swap
    alerts = run(eng, frames)
    assert [(a.rule.sid, a.pkt.pcap_cnt) for a in alerts] == [(1, 2)]
    assert eng.flows.counters()["role_swaps"] == 1


def test_stream_bytes_dropped_under_memory_pressure_restart_the_literal_stream():
    """When the reassembly memcap takes a session's buffered bytes before detect saw them, the
    direction's hyperscan stream starts over where the bytes resume: later literals still match,
    and nothing is matched across the hole."""
    eng = engine('alert tcp any any -> any any (content:"needle-after"; sid:1;)\n'
                 'alert tcp any any -> any any (content:"lost-across"; sid:2;)',
                 **{"stream.reassembly.memcap": 4000, "stream.reassembly.toserver-chunk-size": 100000})
    a, b = Conv(sport=40001), Conv(sport=40002)
    frames = a.handshake() + b.handshake()
    frames += [a.client(b"x" * 3000 + b"lost-"), a.ack_from_server()]  # buffered, not inspected yet
    frames += [b.client(b"y" * 3000), b.ack_from_server()]  # over the memcap: a's bytes are released
    frames += [a.client(b"across " + b"needle-after"), a.ack_from_server()] + a.close() + b.close()
    alerts = run(eng, frames)
    assert sids(alerts) == [1]
    assert eng.detector.counters()["stream_lost_bytes"] > 0


def test_a_direction_ended_by_its_fin_gives_its_hyperscan_stream_back_at_once():
    """Closed sessions linger (flow-timeouts.tcp.closed): their hyperscan states need not."""
    eng = engine('alert tcp any any -> any any (content:"needle"; sid:1;)')
    conv = Conv()
    frames = conv.handshake() + [conv.client(b"GET / hay"), conv.server(b"200 hay")] + conv.close()
    run(eng, frames, finish=False)
    (flow,) = eng.flows.flows.values()
    assert flow.tcp_state == "closed"
    assert [ls.hs for ls in flow.det.lits] == [None, None]


def test_bytes_kept_from_before_a_gap_and_new_bytes_after_it_in_one_inspection():
    """A gap declared by the receiver's ACK: the bytes before it (held) and the bytes after it
    (new) are inspected together, as two pieces, each through the literal stream."""
    eng = engine('alert tcp-stream any any -> any any (content:"VERY"; sid:1;)\n'
                 'alert tcp-stream any any -> any any (content:"DATA-after"; sid:2;)',
                 **{"stream.reassembly.toserver-chunk-size": 16})
    conv = Conv()
    frames = conv.handshake() + [conv.client(b"VERY")]
    conv.cseq += 4  # "GOOD" never reaches the mirror
    frames += [conv.client(b"DATA-after-the-gap"),
               conv.ack_from_server(),  # acknowledges past the hole: the gap is declared, "VERY" kept
               conv.ack_from_server(),  # settles the bytes after the gap
               conv.client(b"+tail")]  # the client's direction is inspected: kept piece and new piece
    alerts = run(eng, frames, finish=False)
    assert sorted(sids(alerts)) == [1, 2]
    assert {bytes(a.payload) for a in alerts} == {b"VERY[4 bytes missing]DATA-after-the-gap"}
    assert {a.kind for a in alerts} == {"packet"}


def test_the_engine_counts_an_inspection_error_and_goes_on():
    """Engine.process guards the inspection itself (it calls ``inspect_unguarded``): a detect
    bug on one packet is counted and the next packets are inspected as usual."""
    eng = engine('alert tcp any any -> any any (content:"needle"; sid:1;)', **{"stream.inline": "yes"})
    real = eng.detector.inspect_unguarded
    calls = []

    def flaky(pkt, flow, to_server):
        calls.append(pkt.pcap_cnt)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return real(pkt, flow, to_server)

    eng.detector.inspect_unguarded = flaky
    conv = Conv()
    alerts = run(eng, conv.handshake() + [conv.client(b"the needle")])
    assert sids(alerts) == [1]
    c = eng.detector.counters()
    assert c["errors"] == 1 and c["last_error"] == "packet 2: RuntimeError: boom"


def test_iponly_ipv4_lookup_agrees_with_bisect_everywhere():
    """The C search of IPv4 interval starts gives what bisect over the Python integers gives, at every
    interval's edges, at both ends of the address space and at random addresses."""
    import random

    from mirrorwatch.core.detect.groups import _Segments

    rng = random.Random(7)
    entries = []
    for num in range(60):
        lo = rng.randrange(1 << 32)
        entries.append((lo, min(lo + rng.randrange(1 << rng.randrange(1, 25)), (1 << 32) - 1), num))
    entries.append((0xFFFFFF00, 0xFFFFFFFF, 60))  # up to 255.255.255.255: its end is 2**32
    entries.append((0, 0, 61))
    seg = _Segments(entries)
    probes = {0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF} | {rng.randrange(1 << 32) for _ in range(2000)}
    for lo, hi, _ in entries:
        probes.update(p for p in (lo - 1, lo, hi, hi + 1) if 0 <= p < 1 << 32)
    for n in sorted(probes):
        assert seg.lookup4(n.to_bytes(4, "big")) == seg.lookup(n), n
    again = _Segments.restore((tuple(seg.starts), tuple(seg.sets)))
    assert again.lookup4(b"\xff\xff\xff\xff") == seg.lookup(0xFFFFFFFF) == (60,)
