"""SSH banners: unit cases, segmentation, and the SSH flows of the corpus against tshark."""

from __future__ import annotations

import struct

import pytest
from applayer_corpus import (
    BENCH,
    SV_TESTS,
    TO_CLIENT,
    TO_SERVER,
    protocols_in,
    require_tshark,
    tcp_streams,
    tshark_fields,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from mirrorwatch.core.applayer.ssh import SshState, eve_record, parse_banner


def packet(msg_code: int, payload: bytes = b"") -> bytes:
    """An unencrypted SSH binary packet (RFC 4253 6): length, padding length, code, padding."""
    padding = 4
    body = bytes([padding, msg_code]) + payload + b"\x00" * padding
    return struct.pack("!I", len(body)) + body


KEXINIT, NEWKEYS = 20, 21
CLIENT = b"SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.6\r\n" + packet(KEXINIT, b"k" * 40) + packet(NEWKEYS)
SERVER = b"SSH-1.99-Cisco-1.25\n" + packet(KEXINIT, b"s" * 30) + packet(NEWKEYS) + b"\xee" * 64


def run(chunks) -> SshState:
    state = SshState()
    for direction, data in chunks:
        state.feed(direction, data)
    return state


def test_banners_of_both_sides():
    state = run([(TO_SERVER, CLIENT), (TO_CLIENT, SERVER)])
    tx = state.tx
    assert (tx.client_proto, tx.client_software) == (b"2.0", b"OpenSSH_8.9p1")
    assert (tx.server_proto, tx.server_software) == (b"1.99", b"Cisco-1.25")
    assert (tx.progress_ts, tx.progress_tc) == (4, 4) and not state.failed  # after NEWKEYS
    assert eve_record(tx) == {"client": {"proto_version": "2.0", "software_version": "OpenSSH_8.9p1"},
                              "server": {"proto_version": "1.99", "software_version": "Cisco-1.25"}}


@pytest.mark.parametrize("line, parsed", [
    (b"SSH-2.0-OpenSSH_8.9p1 Ubuntu", (b"2.0", b"OpenSSH_8.9p1")),
    (b"SSH-2.0-", (b"2.0", b"")),
    (b"SSH-2.0-a-b c d", (b"2.0", b"a-b")),
    (b"SSH-2.0", None),
    (b"HTTP/1.1 200 OK", None),
])
def test_parse_banner(line, parsed):
    assert parse_banner(line) == parsed


def test_software_version_is_left_out_when_empty():
    assert eve_record(run([(TO_CLIENT, b"SSH-2.0-\r\n")]).tx) == {"server": {"proto_version": "2.0"}}
    assert eve_record(run([]).tx) is None


def test_a_first_line_that_is_no_banner_gives_up():
    state = run([(TO_CLIENT, b"220 mail\r\nSSH-2.0-x\r\n")])
    assert state.failed and state.tx.server_proto is None


def test_long_banner_is_cut_at_the_limit():
    state = SshState(max_banner_len=32)
    state.feed(TO_SERVER, b"SSH-2.0-" + b"v" * 40)
    state.feed(TO_SERVER, b"w" * 500 + b" comment\r\n" + packet(NEWKEYS))
    assert state.tx.client_software == b"v" * 24 and state.tx.progress_ts == 4


def test_oversized_packet_stops_the_direction():
    state = SshState(max_packet_len=100)
    state.feed(TO_SERVER, b"SSH-2.0-x\n" + struct.pack("!I", 5000) + b"\x04\x14")
    state.feed(TO_SERVER, packet(NEWKEYS))
    assert state.stats.parse_errors == 1 and state.tx.progress_ts == 4  # given up: complete


def test_gap_inside_a_packet_is_skipped():
    state = SshState()
    state.feed(TO_SERVER, b"SSH-2.0-x\n" + packet(KEXINIT, b"z" * 100)[:20])
    state.gap(TO_SERVER, 50)
    state.feed(TO_SERVER, b"z" * 40 + packet(NEWKEYS))
    assert state.tx.progress_ts == 4 and state.stats.gaps == 1


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_segmentation_does_not_change_the_result(data):
    pieces = []
    for direction, blob in ((TO_SERVER, CLIENT), (TO_CLIENT, SERVER)):
        cuts = sorted(data.draw(st.lists(st.integers(0, len(blob)), max_size=10)))
        pieces += [(direction, blob[a:b]) for a, b in zip([0, *cuts], [*cuts, len(blob)])]
    whole = run([(TO_SERVER, CLIENT), (TO_CLIENT, SERVER)]).tx
    tx = run(pieces).tx
    assert (tx.client_proto, tx.client_software, tx.server_proto, tx.server_software,
            tx.progress_ts, tx.progress_tc) == (whole.client_proto, whole.client_software,
                                                whole.server_proto, whole.server_software,
                                                whole.progress_ts, whole.progress_tc)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(1, 50), max_size=8))
def test_random_bytes_never_raise(blob, sizes):
    for prefix in (b"", b"SSH-2.0-x\r\n"):
        state = SshState()
        data, pos = prefix + blob, 0
        for size in sizes + [len(data)]:
            state.feed(TO_SERVER, data[pos:pos + size])
            pos += size
        state.gap(TO_SERVER, 7)
        state.feed(TO_CLIENT, data)
        state.close(TO_CLIENT)
        eve_record(state.tx)


@pytest.mark.slow
def test_corpus_banners_match_tshark():
    require_tshark()
    pcaps = [p for p in sorted(BENCH.glob("*.pcap")) + sorted(SV_TESTS.glob("*/*.pcap"))
             if "ssh" in protocols_in(p)]
    compared = 0
    for pcap in pcaps:
        streams = tcp_streams(pcap)
        for stream, banner in tshark_fields(pcap, "ssh.protocol", ["tcp.stream", "ssh.protocol"]):
            if "," in stream or int(stream) not in streams:
                continue
            events = streams[int(stream)].events
            state = SshState()
            for kind, direction, data in events:
                getattr(state, "feed" if kind == "data" else "gap")(direction, data)
            if state.failed:  # as Suricata's parser: a side whose first line is no banner
                firsts = {d: x for kind, d, x in reversed(events) if kind == "data"}
                assert any(not x.startswith(b"SSH-") for x in firsts.values()), (pcap.name, stream)
                continue
            proto, _, rest = banner[len("SSH-"):].partition("-")
            sides = {(state.tx.client_proto, state.tx.client_software),
                     (state.tx.server_proto, state.tx.server_software)}
            assert (proto.encode(), rest.split(" ")[0].encode()) in sides, (pcap.name, stream)
            compared += 1
    assert compared >= 4
