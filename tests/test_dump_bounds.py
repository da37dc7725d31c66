"""Issue 11: two packets must not make the sensor write gigabytes (``--dump-streams``).

Sequence numbers are attacker-chosen and span 4 GiB.  A gap in a dumped
stream is at most ``stream.dump-max-gap`` zero bytes; a segment far beyond
the receiver's window is not stored at all; all dumped files together stay
under ``stream.dump-max-bytes``.
"""

from __future__ import annotations

import json

from click.testing import CliRunner
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as hst
from scapy.all import IP, TCP, Ether, Raw, wrpcap
from test_flows import _tcp_pkt

from mirrorwatch.cli import main
from mirrorwatch.core.flows.table import FlowTable
from mirrorwatch.core.settings import Settings
from mirrorwatch.sinks.streamdump import DUMP_MAX_GAP, StreamDumper

JUMP = 251_658_112  # the sequence jump of the first capture
BEYOND = 50_000_000  # how far beyond the receiver's 8,192-byte window the second capture's segment is
CLIENT, SERVER = "198.51.100.7", "203.0.113.80"


def _seg(to_server: bool, flags: str, seq: int, ack: int = 0, data: bytes = b"", win: int = 8192, t: float = 0.0):
    a, b = (CLIENT, SERVER) if to_server else (SERVER, CLIENT)
    sp, dp = (40000, 80) if to_server else (80, 40000)
    p = Ether() / IP(src=a, dst=b) / TCP(sport=sp, dport=dp, flags=flags, seq=seq & 0xFFFFFFFF,
                                         ack=ack & 0xFFFFFFFF, window=win)
    if data:
        p = p / Raw(data)
    p.time = 1_700_000_000 + t
    return p


def syn_data_then_jump(path):
    """A SYN carrying 8 bytes, then one segment 251,658,112 sequence numbers further."""
    isn = 1000
    wrpcap(str(path), [_seg(True, "S", isn, data=b"AAAABBBB"),
                       _seg(True, "PA", isn + 1 + JUMP, ack=1, data=b"CCCCDDDD", t=0.01)])


def handshake_then_far_segment(path):
    """A normal handshake (the server's window: 8,192 bytes), then one segment 50,000,000 bytes
    beyond it, then an ordinary one."""
    c, s = 5000, 9000
    wrpcap(str(path), [
        _seg(True, "S", c, win=8192),
        _seg(False, "SA", s, c + 1, win=8192, t=0.001),
        _seg(True, "A", c + 1, s + 1, t=0.002),
        _seg(True, "PA", c + 1 + 8192 + BEYOND, s + 1, b"far away", t=0.003),
        _seg(True, "PA", c + 1, s + 1, b"GET / HTTP/1.0\r\n\r\n", t=0.004),
    ])


def replay(tmp_path, pcap, *sets):
    run = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
    run.mkdir()
    out = run / "streams"
    eve = run / "eve.json"
    args = ["replay", "-q", "-k", "none", "--eve", str(eve), "--eve-types", "stats", "--dump-streams", str(out)]
    for s in sets:
        args += ["--set", s]
    r = CliRunner().invoke(main, [*args, str(pcap)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    stats = [json.loads(line) for line in eve.read_text().splitlines()][-1]["stats"]
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    return r, stats, files


def test_sequence_jump_after_syn_data_is_a_bounded_gap(tmp_path):
    pcap = tmp_path / "jump.pcap"
    syn_data_then_jump(pcap)
    for sets in ((), ("stream.async-oneside=true", "stream.midstream=true")):
        _, stats, files = replay(tmp_path, pcap, *sets)
        assert sum(len(b) for b in files.values()) <= 16 + DUMP_MAX_GAP
        (data,) = files.values() or [b"AAAABBBB"]
        assert data.startswith(b"AAAABBBB")
        if sets:  # the far segment is taken (one-sided): its bytes follow the shortened gap
            assert data == b"AAAABBBB" + bytes(DUMP_MAX_GAP) + b"CCCCDDDD"
            dump = stats["streamdump"]
            assert dump["gaps"] == 1 and dump["gaps_shortened"] == 1
            assert dump["gap_bytes_skipped"] == JUMP - 8 - DUMP_MAX_GAP


def test_gap_marker_size_is_a_setting(tmp_path):
    pcap = tmp_path / "jump.pcap"
    syn_data_then_jump(pcap)
    _, _, files = replay(tmp_path, pcap, "stream.async-oneside=true", "stream.dump-max-gap=0")
    assert list(files.values()) == [b"AAAABBBBCCCCDDDD"]


def test_segment_far_beyond_the_window_is_not_stored(tmp_path):
    pcap = tmp_path / "far.pcap"
    handshake_then_far_segment(pcap)
    _, stats, files = replay(tmp_path, pcap)
    assert stats["flow"]["stream"]["est_packet_out_of_window"] == 1
    assert stats["flow"]["reassembly"]["gaps"] == 0 and stats["flow"]["reassembly"]["ooo_segments"] == 0
    assert list(files.values()) == [b"GET / HTTP/1.0\r\n\r\n"]


def test_window_slack_takes_a_segment_just_beyond_the_advertised_window():
    """A window update the mirror missed may have opened the window: up to one more maximal
    window (65535 << scale) beyond the advertised one is still taken."""
    ft = FlowTable(Settings({}))
    ev: list = []
    ft.process(_tcp_pkt(0.0, True, 0x02, 100, 0), ev)
    ft.process(_tcp_pkt(0.1, False, 0x12, 900, 101), ev)  # window 65535 (the helper's)
    f, _ = ft.process(_tcp_pkt(0.2, True, 0x10, 101, 901), ev)
    ft.process(_tcp_pkt(0.3, True, 0x18, 101 + 65535 + 60000, 901, b"x" * 100), ev)
    assert ft.stream_events["est_packet_out_of_window"] == 0 and ft.reasm.ooo_bytes == 100
    ft.process(_tcp_pkt(0.4, True, 0x18, 101 + 2 * 65535 + 1, 901, b"y" * 100), ev)
    assert ft.stream_events["est_packet_out_of_window"] == 1 and ft.reasm.ooo_bytes == 100
    ft.process(_tcp_pkt(0.5, True, 0x19, 101 + 3 * 65535, 901), ev)  # a FIN out there too
    assert ft.stream_events["fin_out_of_window"] == 1 and f.state == "established"


def test_dump_budget_stops_writing_and_says_so_once(tmp_path):
    said = []
    d = StreamDumper(str(tmp_path), max_bytes=1000, warn=said.append)
    ft = FlowTable(Settings({}))
    ft.on_new_stream = d.on_new_stream
    ev: list = []
    for i in range(3):  # three sessions of 600 bytes each
        port = 41000 + i

        def pkt(ts, to_server, flags, seq, ack, data=b"", port=port):
            p = _tcp_pkt(ts, to_server, flags, seq, ack, data)
            if to_server:
                p.sport = port
            else:
                p.dport = port
            return p
        ft.process(pkt(i, True, 0x02, 100, 0), ev)
        ft.process(pkt(i + 0.1, False, 0x12, 900, 101), ev)
        ft.process(pkt(i + 0.2, True, 0x18, 101, 901, bytes([65 + i]) * 600), ev)
        ft.process(pkt(i + 0.3, False, 0x10, 901, 701), ev)
    ft.flush_all()
    d.close()
    sizes = sorted(p.stat().st_size for p in tmp_path.iterdir())
    assert sum(sizes) == 1000 and sizes == [400, 600]
    assert len(said) == 1 and "stream.dump-max-bytes" in said[0] and "\n" not in said[0]
    c = d.counters()
    assert c["budget_reached"] and c["bytes_not_written"] == 200 and c["streams_skipped"] == 1


@hsettings(max_examples=60, deadline=None)
@given(hst.lists(hst.tuples(hst.integers(-2**31, 2**31), hst.integers(1, 300)), min_size=1, max_size=25),
       hst.sampled_from((0, 16, 4096)))
def test_property_random_sequence_jumps_never_inflate_the_dump(tmp_path_factory, segments, max_gap):
    """Whatever the sequence numbers of a one-sided stream, its file is at most the payload bytes
    plus ``max_gap`` per gap."""
    out = tmp_path_factory.mktemp("dump")
    d = StreamDumper(str(out), max_gap=max_gap)
    ft = FlowTable(Settings({"stream.async-oneside": True, "stream.reassembly.gap-wait-segments": 4}))
    ft.on_new_stream = d.on_new_stream
    ev: list = []
    seq = 7
    ft.process(_tcp_pkt(0.0, True, 0x02, seq, 0), ev)
    seq += 1
    payload = 0
    for i, (jump, n) in enumerate(segments):
        seq = (seq + jump) & 0xFFFFFFFF
        ft.process(_tcp_pkt(0.01 * (i + 1), True, 0x18, seq, 1, bytes([i % 250 + 1]) * n), ev)
        payload += n
        seq += n
    ft.flush_all()
    d.close()
    size = sum(p.stat().st_size for p in out.iterdir())
    assert size <= payload + d.gaps * max_gap
    assert d.counters()["bytes"] == size and d.errors == 0
