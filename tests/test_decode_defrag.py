"""IPv4 / IPv6 fragment reassembly: order, overlaps (first wins), bounds, timeout.

Fragments are built with scapy and fed through the real decoder; the rebuilt
datagram must decode to the original transport header and payload.
"""

from __future__ import annotations

import pytest

scapy = pytest.importorskip("scapy.all")
from scapy.all import (  # noqa: E402
    IP, TCP, UDP, Ether, IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, Raw, Dot1Q, fragment, raw,
)

from mirrorwatch.core.decode.decoder import Decoder  # noqa: E402
from mirrorwatch.core.settings import Settings  # noqa: E402

A4, B4 = "198.51.100.1", "198.51.100.2"
A6, B6 = "2001:db8::1", "2001:db8::2"
PAYLOAD = bytes(range(256)) * 6  # 1536 bytes, distinct per offset


def eth(**kw):
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", **kw)


def feed(d: Decoder, frames, ts: float = 1.0, step: float = 0.0):
    out = []
    for i, f in enumerate(frames, 1):
        out.append(d.decode(ts + i * step, 1, f, i))
    return out


def v4_frags(payload=PAYLOAD, size=512, ipid=4242, **ipkw):
    pkt = IP(src=A4, dst=B4, id=ipid, **ipkw) / UDP(sport=5000, dport=6000) / Raw(payload)
    return [raw(eth() / f) for f in fragment(pkt, fragsize=size)]


def v6_frags(payload=PAYLOAD, size=512, ident=99, ext=None):
    base = IPv6(src=A6, dst=B6)
    if ext is not None:
        base = base / ext
    pkt = base / IPv6ExtHdrFragment(id=ident) / UDP(sport=5000, dport=6000) / Raw(payload)
    return [raw(eth() / f) for f in scapy.fragment6(pkt, size + 48)]


def check_done(d, out, payload=PAYLOAD, ipv=4):
    *held, last = out
    assert all(p is None for p in held)
    assert last is not None and last.frag and last.ipv == ipv and last.proto == 17
    assert (last.sport, last.dport) == (5000, 6000)
    assert bytes(last.payload) == payload
    assert last.csum_ok is True  # UDP checksum over the whole datagram
    # as Suricata: the offset-0 fragment's link-layer bytes, then the rebuilt datagram
    assert last.linktype == 1 and last.ip_off >= 14 and last.frame[last.ip_off] >> 4 == ipv
    assert len(last.frame) == last.ip_off + last.ip_len
    assert last.src_mac == bytes.fromhex("020000000001")
    c = d.counters()
    assert c["defrag.fragments_held"] == len(held)
    assert c["decoder.pkts"] == c["decoder.decoded"] + c["decoder.errors"] + c["defrag.fragments_held"]
    return last


def test_ipv4_in_order():
    d = Decoder(Settings(), "all")
    frames = v4_frags()
    assert len(frames) >= 3
    check_done(d, feed(d, frames))
    assert d.counters()["defrag.reassembled"] == 1


def test_ipv4_out_of_order_and_reversed():
    frames = v4_frags()
    d = Decoder(Settings(), "all")
    check_done(d, feed(d, frames[::-1]))
    d = Decoder(Settings(), "all")
    check_done(d, feed(d, [frames[1], frames[-1], frames[0]] + frames[2:-1]))


def test_ipv4_rebuilt_header_is_valid_and_keeps_vlan():
    pkt = IP(src=A4, dst=B4, id=7, ttl=17) / UDP(sport=5000, dport=6000) / Raw(PAYLOAD)
    frames = [raw(eth() / Dot1Q(vlan=12) / f) for f in fragment(pkt, fragsize=600)]
    d = Decoder(Settings(), "all")
    last = check_done(d, feed(d, frames))
    assert last.vlan_id == (12,) and last.ttl == 17 and last.ip_id == 7
    assert last.ip_off == 18 and last.frame[:18] == frames[0][:18]
    rebuilt = IP(last.frame[last.ip_off:])
    assert rebuilt.len == 20 + 8 + len(PAYLOAD) and rebuilt.flags == 0 and rebuilt.frag == 0
    assert IP(raw(rebuilt)).chksum == rebuilt.chksum


def test_fragments_of_different_vlans_do_not_mix():
    pkt = IP(src=A4, dst=B4, id=7) / UDP(sport=5000, dport=6000) / Raw(PAYLOAD)
    fr = fragment(pkt, fragsize=600)
    frames = [raw(eth() / Dot1Q(vlan=1) / fr[0]), raw(eth() / Dot1Q(vlan=2) / fr[1]), raw(eth() / Dot1Q(vlan=1) / fr[2])]
    d = Decoder(Settings(), "all")
    assert feed(d, frames) == [None, None, None]
    assert d.counters()["defrag.datagrams_pending"] == 2


def _overlap_frames(ipid=77):
    """First fragment 0..24 = 'A'*24, a second copy of bytes 8..24 = 'B'*16, then the tail."""
    udp = raw(UDP(sport=5000, dport=6000, len=8 + 40, chksum=0))
    head = udp + b"A" * 16  # offset 0, 24 bytes
    dup = b"B" * 16  # offset 8 (bytes 8..24 of the datagram payload), conflicts with the 'A's
    tail = b"C" * 24  # offset 24, last
    mk = lambda off, mf, data: raw(eth() / IP(src=A4, dst=B4, id=ipid, proto=17, frag=off // 8, flags="MF" if mf else 0) / Raw(data))
    return mk(0, True, head), mk(8, True, dup), mk(24, False, tail)


def test_ipv4_overlap_first_wins():
    first, dup, tail = _overlap_frames()
    d = Decoder(Settings(), "none")
    out = feed(d, [first, dup, tail])
    assert out[:2] == [None, None]
    assert bytes(out[2].payload) == b"A" * 16 + b"C" * 24
    assert d.counters()["defrag.overlaps"] == 1
    # the overlapping copy first: its bytes win
    d = Decoder(Settings(), "none")
    out = feed(d, [dup, first, tail])
    assert bytes(out[2].payload) == b"B" * 16 + b"C" * 24


def test_ipv6_in_order_out_of_order_and_ext_headers():
    frames = v6_frags()
    assert len(frames) >= 3
    d = Decoder(Settings(), "all")
    last = check_done(d, feed(d, frames), ipv=6)
    assert last.ip_id == 0 and last.ip_hlen == 40
    d = Decoder(Settings(), "all")
    check_done(d, feed(d, frames[::-1]), ipv=6)
    frames = v6_frags(ext=IPv6ExtHdrHopByHop())
    d = Decoder(Settings(), "all")
    last = check_done(d, feed(d, frames), ipv=6)
    assert last.ip_hlen == 48  # hop-by-hop kept, fragment header removed


def test_timeout_drops_incomplete_datagram():
    frames = v4_frags()
    s = Settings({"defrag.timeout": 10})
    d = Decoder(s, "all")
    assert feed(d, frames[:-1]) == [None] * (len(frames) - 1)
    d.expire(100.0)
    c = d.counters()
    assert c["defrag.timeouts"] == 1 and c["defrag.datagrams_pending"] == 0 and c["defrag.bytes_held"] == 0
    assert d.decode(101.0, 1, frames[-1], 99) is None  # the late last fragment starts a new datagram
    # a late fragment also ends a timed-out datagram without expire()
    d = Decoder(s, "all")
    feed(d, frames[:1], ts=0.0)
    assert feed(d, frames[1:], ts=50.0) == [None] * (len(frames) - 1)
    assert d.counters()["defrag.timeouts"] == 1


def test_bounds_evict_oldest_datagram():
    d = Decoder(Settings({"defrag.max-frags": 4}), "all")
    a = v4_frags(ipid=1)
    b = v4_frags(ipid=2)
    feed(d, a[:2] + b[:2])
    assert d.counters()["defrag.datagrams_pending"] == 2
    out = feed(d, b[2:3])  # a fifth fragment: datagram 1 (oldest) goes
    c = d.counters()
    assert c["defrag.evicted"] == 1 and c["defrag.datagrams_pending"] == 1
    assert out == [None]
    d = Decoder(Settings({"defrag.memcap": 1000}), "all")
    feed(d, a[:1] + b[:1] + a[1:2])
    assert d.counters()["defrag.evicted"] >= 1
    assert d.counters()["defrag.bytes_held"] <= 1000


def test_invalid_fragments_are_errors():
    d = Decoder(Settings(), "all")
    # offset 8184*8 + data > 65535: ping of death
    f = raw(eth() / IP(src=A4, dst=B4, id=5, proto=17, frag=8180, flags=0) / Raw(b"x" * 200))
    assert d.decode(1.0, 1, f, 1) is None
    # a non-last fragment whose length is not a multiple of 8
    f = raw(eth() / IP(src=A4, dst=B4, id=6, proto=17, frag=0, flags="MF") / Raw(b"x" * 13))
    assert d.decode(1.0, 1, f, 2) is None
    c = d.counters()
    assert c["decoder.frag_too_large"] == 1 and c["decoder.frag_len_invalid"] == 1
    assert c["decoder.errors"] == 2 and c["defrag.fragments_held"] == 0


def test_reassembled_tcp_segment():
    pkt = IP(src=A4, dst=B4, id=9) / TCP(sport=1234, dport=80, seq=5, flags="PA") / Raw(PAYLOAD)
    frames = [raw(eth() / f) for f in fragment(pkt, fragsize=400)]
    d = Decoder(Settings(), "all")
    out = feed(d, frames)
    last = out[-1]
    assert last.proto == 6 and last.seq == 5 and bytes(last.payload) == PAYLOAD and last.csum_ok is True


def test_corpus_fragment_captures_reassemble(corpus):
    """Real fragment captures (robustness set): rebuilt datagrams come out, counters add up."""
    from mirrorwatch.sources.pcapfile import CaptureError, run

    files = [p for p in (corpus / "robustness").rglob("*frag*") if p.suffix in (".pcap", ".pcapng")]
    assert files
    reassembled = 0
    for p in files:
        d = Decoder(Settings(), "none")
        n = [0]

        def cb(ts, lt, frame, wl):
            n[0] += 1
            d.decode(ts, lt, frame, n[0])

        try:
            run([p], cb)
        except CaptureError:
            continue
        c = d.counters()
        assert c["decoder.pkts"] == c["decoder.decoded"] + c["decoder.errors"] + c["defrag.fragments_held"]
        reassembled += c["defrag.reassembled"]
    assert reassembled > 10


def test_fragments_inside_a_tunnel_rebuild_as_the_tunnel_packet():
    """As Suricata: the rebuilt datagram of a GRE/PPP-carried fragment starts at the PPP
    header (the tunnel packet's own start) and is DLT_RAW; the outer layers stay in ``tunnel``."""
    from scapy.all import GRE, PPP

    inner = IP(src=A4, dst=B4, id=11) / UDP(sport=5000, dport=6000) / Raw(PAYLOAD)
    outer = IP(src="192.0.2.1", dst="192.0.2.2") / GRE(proto=0x880B)
    frames = [raw(eth() / outer / PPP(proto=0x21) / f) for f in fragment(inner, fragsize=512)]
    d = Decoder(Settings(), "all")
    *held, last = feed(d, frames)
    assert all(p is None for p in held)
    assert last.frag and bytes(last.payload) == PAYLOAD and last.csum_ok is True
    assert last.linktype == 12 and last.frame[:2] == b"\x00\x21" and last.ip_off == 2
    assert last.tunnel == ((4, bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2]), 47, 0, 0),)
    assert last.src_mac == bytes.fromhex("020000000001")


def test_thousands_of_tiny_fragments_shuffled():
    """A 64 KB datagram in 8-byte fragments, shuffled, with every tenth one duplicated:
    reassembled exactly (the received ranges are merged incrementally)."""
    import random
    import struct

    from mirrorwatch.core.decode.checksum import ipv4_header_checksum

    payload = bytes(raw(UDP(sport=5000, dport=6000, len=8 + 60000, chksum=0))) + bytes(i % 251 for i in range(60000))
    hdr = bytes(raw(eth(type=0x0800)))[:14]
    frames = []
    for off in range(0, len(payload), 8):
        chunk = payload[off:off + 8]
        mf = 0x2000 if off + 8 < len(payload) else 0
        ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(chunk), 321, mf | (off >> 3), 64, 17, 0,
                                   bytes([198, 51, 100, 1]), bytes([198, 51, 100, 2])))
        ip[10:12] = ipv4_header_checksum(ip).to_bytes(2, "big")
        frames.append(hdr + bytes(ip) + chunk)
    rng = random.Random(7)
    first, rest = frames[0], frames[1:]
    rest += rest[::10]
    rng.shuffle(rest)
    d = Decoder(Settings(), "all")
    out = feed(d, rest + [first])
    assert all(p is None for p in out[:-1])
    last = out[-1]
    assert last.frag and bytes(last.payload) == payload[8:] and last.csum_ok is True
    assert d.counters()["defrag.overlaps"] == len(frames[1:][::10])
