"""Decoder correctness against tshark on real captures, and per-encapsulation cases.

tshark is the reference: for every frame both decode, the innermost IP layer
(addresses, protocol), the transport header fields and the payload length must
agree.  IP fragments are compared with tshark's reassembly turned off (mirrorwatch
holds them; the rebuilt datagram is covered in test_decode_defrag.py).
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess

import pytest

from mirrorwatch.sources.pcapfile import run
from mirrorwatch.core.decode.decoder import Decoder
from mirrorwatch.core.decode.packet import Packet
from mirrorwatch.core.settings import Settings

FIELDS = (
    "frame.number", "frame.protocols", "ip.src", "ip.dst", "ip.proto", "ipv6.src", "ipv6.dst",
    "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.ack_raw", "tcp.flags", "tcp.len", "tcp.window_size_value",
    "udp.srcport", "udp.dstport", "udp.length", "icmp.type", "icmp.code", "icmpv6.type", "vlan.id",
)


def tshark_rows(path, count: int | None = None) -> dict[int, dict[str, list[str]]]:
    cmd = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,",
           "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE", "-o", "tcp.desegment_tcp_streams:FALSE"]
    if count:
        cmd += ["-c", str(count)]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in out.splitlines():
        cols = line.split("\t")
        row = {f: (c.split(",") if c else []) for f, c in zip(FIELDS, cols)}
        rows[int(row["frame.number"][0])] = row
    return rows


def decode_file(path, mode: str = "none", count: int | None = None):
    d = Decoder(Settings(), checksum_mode=mode)
    out: dict[int, Packet | None] = {}

    def cb(ts, lt, frame, wirelen):
        n = len(out) + 1
        if count and n > count:
            return
        out[n] = d.decode(ts, lt, frame, n)

    run([path], cb)
    return d, out


def compare(path, count: int | None = None, min_compared: int = 1) -> int:
    """Compare every decoded frame with tshark; returns how many were compared."""
    rows = tshark_rows(path, count)
    _, pkts = decode_file(path, count=count)
    compared = 0
    mismatches = []
    for n, pkt in pkts.items():
        if pkt is None or pkt.frag or not pkt.ipv or pkt.invalid:
            continue
        row = rows[n]
        layers = [p for p in row["frame.protocols"][0].split(":") if p in ("ip", "ipv6")]
        k = len(pkt.tunnel)  # our innermost IP layer is the k-th IP layer tshark shows
        if k >= len(layers):
            continue
        fam = layers[k]
        idx = layers[:k].count(fam)
        want_v = 4 if fam == "ip" else 6
        src = ipaddress.ip_address(row[f"{fam}.src"][idx])
        dst = ipaddress.ip_address(row[f"{fam}.dst"][idx])
        got = (pkt.ipv, ipaddress.ip_address(pkt.src), ipaddress.ip_address(pkt.dst))
        problems = []
        if got != (want_v, src, dst):
            problems.append(f"ip {got} != {(want_v, src, dst)}")
        protos = row["frame.protocols"][0].split(":")
        after = protos[[i for i, p in enumerate(protos) if p in ("ip", "ipv6")][k] + 1:]
        # transport: only when tshark decoded it right after our innermost IP layer (not e.g. in ICMP quotes)
        nxt = after[0] if after else ""
        if nxt == "tcp" and pkt.proto == 6:
            exp = (int(row["tcp.srcport"][0]), int(row["tcp.dstport"][0]), int(row["tcp.seq_raw"][0]),
                   int(row["tcp.ack_raw"][0]), int(row["tcp.flags"][0], 16) & 0xFF, int(row["tcp.len"][0]),
                   int(row["tcp.window_size_value"][0]))
            mine = (pkt.sport, pkt.dport, pkt.seq, pkt.ack, pkt.flags, len(pkt.payload), pkt.win)
            if mine != exp:
                problems.append(f"tcp {mine} != {exp}")
        elif nxt == "udp" and pkt.proto == 17:
            exp = (int(row["udp.srcport"][0]), int(row["udp.dstport"][0]), int(row["udp.length"][0]) - 8)
            mine = (pkt.sport, pkt.dport, len(pkt.payload))
            if mine != exp:
                problems.append(f"udp {mine} != {exp}")
        elif nxt == "icmp" and pkt.proto == 1:
            if (pkt.icmp_type, pkt.icmp_code) != (int(row["icmp.type"][0]), int(row["icmp.code"][0])):
                problems.append("icmp type/code")
        elif nxt == "icmpv6" and pkt.proto == 58:
            if pkt.icmp_type != int(row["icmpv6.type"][0]):
                problems.append("icmpv6 type")
        elif nxt in ("tcp", "udp", "icmp", "icmpv6"):
            problems.append(f"proto {pkt.proto} but tshark {nxt}")
        first_ip = min(i for i, p in enumerate(protos) if p in ("ip", "ipv6"))
        outer_vlans = protos[:first_ip].count("vlan")
        if tuple(int(v) for v in row["vlan.id"][:outer_vlans]) != pkt.vlan_id[:outer_vlans]:
            problems.append(f"vlan {pkt.vlan_id} != {row['vlan.id']}")
        if problems:
            mismatches.append((n, problems))
        compared += 1
    assert not mismatches, f"{path}: {len(mismatches)} mismatches, first: {mismatches[:5]}"
    assert compared >= min_compared
    return compared


needs_tshark = pytest.mark.skipif(not shutil.which("tshark"), reason="tshark not installed")


@needs_tshark
def test_http_bench_matches_tshark(corpus):
    n = compare(corpus / "bench" / "http-tests-merged.pcap", count=3000, min_compared=2900)
    assert n >= 2900


@pytest.mark.slow
@needs_tshark
def test_mixed_bench_matches_tshark(corpus):
    # ndpi-mixed carries VLAN/QinQ, PPPoE, GRE, 6in4, IPv6 and fragments among 100k frames.
    compare(corpus / "bench" / "ndpi-mixed-ethernet.pcap", count=20000, min_compared=18000)


@needs_tshark
@pytest.mark.parametrize("rel", [
    "suricata-verify/tests/tcp-fastopen-04/tfo.pcap",  # Linux SLL
    "suricata-verify/tests/detect-bytejump-01/input.pcap",  # DLT_RAW (12)
    "suricata-verify/tests/decode-chdlc-01/hdlc-http_1tx.pcap",  # Cisco HDLC
    "suricata-verify/tests/detect-http-uri__UriTestSig38/test.fpc.pcap",  # BSD null loopback
])
def test_link_types_match_tshark(corpus, rel):
    path = corpus / rel
    if not path.exists():
        pytest.skip(f"{rel} not in corpus")
    compare(path)


@pytest.mark.slow
@needs_tshark
def test_robustness_link_types_match_tshark(corpus):
    """Every robustness capture of a link type we decode, where tshark can read it too."""
    import json

    index = json.loads((corpus / "robustness" / "index.json").read_text())
    wanted = {113, 276, 228, 229, 101, 12, 0, 108, 9, 50, 104, 8, 226, 239, 258}
    total = 0
    for entry in index["files"]:
        ids = set(entry.get("linktype_ids") or [])
        if not ids or not ids <= wanted or entry.get("capinfos_error") or entry.get("format") not in ("pcap-us", "pcap-ns"):
            continue
        path = corpus / "robustness" / entry["file"]
        try:
            total += compare(path, min_compared=0)
        except subprocess.CalledProcessError:
            continue  # tshark cannot read it either
    assert total > 50


# -- crafted frames: one encapsulation each ---------------------------------------------------

scapy = pytest.importorskip("scapy.all")
from scapy.all import (  # noqa: E402
    GRE, ICMP, IP, PPP, TCP, UDP, Dot1AD, Dot1Q, Ether, ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt,
    IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, PPPoE, Raw, raw,
)
from scapy.contrib.mpls import MPLS  # noqa: E402

A4, B4 = "198.51.100.1", "198.51.100.2"
A6, B6 = "2001:db8::1", "2001:db8::2"


def eth(**kw):
    """Explicit MACs: scapy would otherwise ARP for the destination."""
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", **kw)


def dec(frame: bytes, linktype: int = 1, mode: str = "all") -> tuple[Decoder, Packet | None]:
    d = Decoder(Settings(), checksum_mode=mode)
    return d, d.decode(1.0, linktype, frame, 1)


def tcp4(payload=b"hello", **kw):
    return IP(src=A4, dst=B4, **kw) / TCP(sport=1234, dport=80, seq=1000, ack=2000, flags="PA", window=512) / Raw(payload)


def check_tcp(pkt, ipv=4, payload=b"hello"):
    assert pkt is not None and pkt.ipv == ipv and pkt.proto == 6
    assert (pkt.sport, pkt.dport, pkt.seq, pkt.ack, pkt.flags, pkt.win) == (1234, 80, 1000, 2000, 0x18, 512)
    assert bytes(pkt.payload) == payload
    assert pkt.csum_ok is True


def test_ethernet_ipv4_tcp_fields():
    frame = raw(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / tcp4(ttl=33, id=77))
    _, p = dec(frame + b"\0" * 6)  # Ethernet padding is not payload
    check_tcp(p)
    assert p.src_mac == bytes.fromhex("020000000001") and p.dst_mac == bytes.fromhex("020000000002")
    assert (p.ttl, p.ip_id, p.ip_off, p.ip_hlen, p.l4_off, p.tcp_hlen) == (33, 77, 14, 20, 34, 20)
    assert p.src == bytes([198, 51, 100, 1]) and p.ip_len == 45


def test_ipv4_options_and_tcp_options_recorded():
    ip = IP(src=A4, dst=B4, options=[scapy.IPOption_RR(routers=["192.0.2.1"])])
    t = TCP(sport=1234, dport=80, seq=1000, ack=2000, flags="PA", window=512, options=[("MSS", 1460), ("NOP", None)])
    _, p = dec(raw(eth() / ip / t / Raw(b"hello")))
    check_tcp(p)
    assert p.ip_hlen > 20 and p.ip_opts[0] == 7  # record route
    assert p.tcp_opts[:4] == b"\x02\x04\x05\xb4" and p.tcp_hlen == 20 + len(p.tcp_opts) == len(raw(t))


@pytest.mark.parametrize("tags", [
    [Dot1Q(vlan=10)],
    [Dot1AD(vlan=20), Dot1Q(vlan=30)],
    [Dot1Q(vlan=1), Dot1Q(vlan=2), Dot1Q(vlan=3), Dot1Q(vlan=4)],
])
def test_vlan_stacks(tags):
    layers = eth()
    for t in tags:
        layers = layers / t
    _, p = dec(raw(layers / tcp4()))
    check_tcp(p)
    assert p.vlan_id == tuple(t.vlan for t in tags)
    assert len(p.vlans) == len(tags) and p.vlans[0][0] in (0x8100, 0x88A8)


def test_vlan_depth_is_bounded():
    layers = eth()
    for i in range(40):
        layers = layers / Dot1Q(vlan=i)
    d, p = dec(raw(layers / tcp4()))
    # an error, and as in Suricata a packet flagged with the event, without an IP layer
    assert p.events == ("decoder.too_many_layers",) and p.invalid == "too_many_layers" and p.ipv == 0
    assert d.counters()["decoder.too_many_layers"] == 1 and d.counters()["decoder.errors"] == 1


def test_mpls_and_pppoe():
    _, p = dec(raw(eth() / MPLS(label=100, s=0) / MPLS(label=200, s=1) / tcp4()))
    check_tcp(p)
    _, p = dec(raw(eth() / PPPoE(sessionid=5) / PPP(proto=0x21) / tcp4()))
    check_tcp(p)


def test_ipv6_extension_headers():
    pkt = (eth() / IPv6(src=A6, dst=B6, hlim=9) / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting(addresses=[])
           / IPv6ExtHdrDestOpt() / TCP(sport=1234, dport=80, seq=1000, ack=2000, flags="PA", window=512) / Raw(b"hello"))
    _, p = dec(raw(pkt))
    check_tcp(p, ipv=6)
    assert p.ttl == 9 and p.ip_hlen == 40 + 8 + 8 + 8 and len(p.ip_opts) == 24


def test_icmp_and_icmpv6_echo():
    _, p = dec(raw(eth() / IP(src=A4, dst=B4) / ICMP(type=8, id=7, seq=9) / Raw(b"ping")))
    assert (p.proto, p.icmp_type, p.icmp_code, p.icmp_id, p.icmp_seq, p.payload) == (1, 8, 0, 7, 9, b"ping")
    assert p.csum_ok is True
    _, p = dec(raw(eth() / IPv6(src=A6, dst=B6) / ICMPv6EchoRequest(id=3, seq=4, data=b"x")))
    assert (p.proto, p.icmp_type, p.icmp_id, p.icmp_seq, p.payload, p.csum_ok) == (58, 128, 3, 4, b"x", True)
    _, p = dec(raw(eth() / IP(src=A4, dst=B4) / ICMP(type=3, code=1) / IP(src=B4, dst=A4) / UDP()))
    assert (p.icmp_type, p.icmp_code, p.icmp_id) == (3, 1, -1)


def test_udp():
    _, p = dec(raw(eth() / IP(src=A4, dst=B4) / UDP(sport=53, dport=5353) / Raw(b"dnsq")) + b"\0" * 10)
    assert (p.proto, p.sport, p.dport, p.payload, p.csum_ok) == (17, 53, 5353, b"dnsq", True)


@pytest.mark.parametrize("outer", [
    lambda inner: IP(src="192.0.2.1", dst="192.0.2.2") / GRE() / inner,
    lambda inner: IP(src="192.0.2.1", dst="192.0.2.2") / inner,  # IP-in-IP
    lambda inner: IP(src="192.0.2.1", dst="192.0.2.2") / GRE(proto=0x880B, key_present=1, version=1, key=0)
    / PPP(proto=0x21) / inner,
])
def test_tunnels_decode_inner_ipv4(outer):
    _, p = dec(raw(eth() / outer(tcp4())))
    check_tcp(p)
    assert len(p.tunnel) == 1 and p.tunnel[0][0] == 4 and p.tunnel[0][1] == bytes([192, 0, 2, 1])


def test_6in4_and_gre_ipv6():
    inner = IPv6(src=A6, dst=B6) / TCP(sport=1234, dport=80, seq=1000, ack=2000, flags="PA", window=512) / Raw(b"hello")
    _, p = dec(raw(eth() / IP(src="192.0.2.1", dst="192.0.2.2") / inner))
    check_tcp(p, ipv=6)
    assert p.tunnel[0][3] == 41
    _, p = dec(raw(eth() / IP(src="192.0.2.1", dst="192.0.2.2") / GRE(proto=0x86DD) / inner))
    check_tcp(p, ipv=6)
    assert p.tunnel[0][3] == 47


def test_tunnel_depth_is_bounded():
    pkt = tcp4()
    for _ in range(30):
        pkt = IP(src="192.0.2.1", dst="192.0.2.2") / pkt
    d, p = dec(raw(eth() / pkt))
    assert p.events == ("decoder.too_many_layers",) and p.invalid == "too_many_layers"
    assert d.counters()["decoder.too_many_layers"] == 1 and d.counters()["decoder.errors"] == 1


@pytest.mark.parametrize("linktype,prefix", [
    (0, (2).to_bytes(4, "little")),  # NULL, little-endian host
    (0, (2).to_bytes(4, "big")),  # NULL, big-endian host
    (108, (2).to_bytes(4, "big")),  # OpenBSD loop
    (101, b""), (12, b""), (14, b""), (228, b""),
    (113, bytes.fromhex("0000 0001 0006 020000000001 0000 0800")),  # SLL
    (276, bytes.fromhex("0800 0000 00000002 0001 00 06 0200000000010000")),  # SLL2
    (9, bytes.fromhex("0021")), (9, bytes.fromhex("ff030021")), (50, bytes.fromhex("ff030021")),
    (104, bytes.fromhex("0f000800")),  # Cisco HDLC
    (8, bytes(16)),  # SLIP pseudo-header
    (226, bytes([1, 2]) + bytes(22)),  # Solaris ipnet, AF_INET
    (258, (8 + 4).to_bytes(4, "little") + (12).to_bytes(4, "little") + bytes(4)),  # PKTAP carrying raw IP
])
def test_link_types_ipv4(linktype, prefix):
    _, p = dec(prefix + raw(tcp4()), linktype)
    check_tcp(p)
    assert p.linktype == linktype


@pytest.mark.parametrize("linktype,prefix", [
    (0, (24).to_bytes(4, "little")), (0, (28).to_bytes(4, "little")), (0, (30).to_bytes(4, "big")),
    (101, b""), (229, b""), (9, bytes.fromhex("0057")),
])
def test_link_types_ipv6(linktype, prefix):
    t = IPv6(src=A6, dst=B6) / TCP(sport=1234, dport=80, seq=1000, ack=2000, flags="PA", window=512) / Raw(b"hello")
    _, p = dec(prefix + raw(t), linktype)
    check_tcp(p, ipv=6)


def nflog(family: int, ip: bytes) -> bytes:
    """NFLOG header + a prefix TLV + the payload TLV (type 9), host byte order as libpcap delivers."""
    import struct

    def tlv(t, v):
        b = struct.pack("=HH", 4 + len(v), t) + v
        return b + b"\0" * (-len(b) % 4)

    return bytes([family, 0, 0, 1]) + tlv(10, b"prefix\0") + tlv(9, ip)


def test_nflog_and_pktap_ethernet():
    _, p = dec(nflog(2, raw(tcp4())), 239)
    check_tcp(p)
    t6 = IPv6(src=A6, dst=B6) / TCP(sport=1234, dport=80, seq=1000, ack=2000, flags="PA", window=512) / Raw(b"hello")
    _, p = dec(nflog(10, raw(t6)), 239)
    check_tcp(p, ipv=6)
    d, p = dec(bytes([2, 0, 0, 1]) + (200).to_bytes(2, "little") + (9).to_bytes(2, "little") + b"abc", 239)
    assert p is None and d.counters()["decoder.nflog_tlv_invalid"] == 1
    hdr = (16).to_bytes(4, "little") + (1).to_bytes(4, "little") + bytes(8)
    _, p = dec(hdr + raw(eth() / tcp4()), 258)
    check_tcp(p)
    assert p.src_mac == bytes.fromhex("020000000001") and p.ip_off == 16 + 14


def test_vxlan_and_geneve_decode_inner_frame():
    from scapy.contrib.geneve import GENEVE
    from scapy.layers.vxlan import VXLAN

    outer = IP(src="192.0.2.1", dst="192.0.2.2")
    _, p = dec(raw(eth() / outer / UDP(sport=40000, dport=4789) / VXLAN(vni=42) / Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b") / tcp4()))
    check_tcp(p)
    assert p.tunnel == ((4, bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2]), 17, 40000, 4789),)  # with its ports
    assert p.src_mac == bytes.fromhex("020000000001")  # the wire's MACs, not the inner frame's
    _, p = dec(raw(eth() / outer / UDP(sport=40000, dport=6081) / GENEVE(proto=0x6558) / Ether() / tcp4()))
    check_tcp(p)
    _, p = dec(raw(eth() / outer / UDP(sport=40000, dport=6081) / GENEVE(proto=0x0800) / tcp4()))
    check_tcp(p)
    # not VXLAN after all (I flag clear): a plain UDP packet to 4789
    _, p = dec(raw(eth() / outer / UDP(sport=40000, dport=4789) / Raw(b"\0" * 30)))
    assert (p.proto, p.dport, p.tunnel, len(p.payload)) == (17, 4789, (), 30)
    # ports are settings; empty turns the decoding off
    d = Decoder(Settings({"decoder.vxlan.ports": ""}), "all")
    p = d.decode(1.0, 1, raw(eth() / outer / UDP(sport=1, dport=4789) / VXLAN() / Ether() / tcp4()), 1)
    assert p.proto == 17 and not p.tunnel
    d = Decoder(Settings({"decoder.vxlan.ports": "[4789, 8472]"}), "all")
    p = d.decode(1.0, 1, raw(eth() / outer / UDP(sport=1, dport=8472) / VXLAN() / Ether() / tcp4()), 1)
    check_tcp(p)
    from mirrorwatch.core.settings import SettingError

    with pytest.raises(SettingError, match="decoder.vxlan.ports"):
        Decoder(Settings({"decoder.vxlan.ports": "47x9"}), "all")


def test_teredo():
    t6 = IPv6(src=A6, dst=B6) / TCP(sport=1234, dport=80, seq=1000, ack=2000, flags="PA", window=512) / Raw(b"hello")
    outer = IP(src="192.0.2.1", dst="192.0.2.2")
    _, p = dec(raw(eth() / outer / UDP(sport=3544, dport=50000) / t6))
    check_tcp(p, ipv=6)
    assert p.tunnel[0][3] == 17
    origin = bytes.fromhex("0000") + bytes(6)
    _, p = dec(raw(eth() / outer / UDP(sport=50000, dport=3544) / Raw(origin + raw(t6))))
    check_tcp(p, ipv=6)
    # a Teredo bubble / anything that is not an exact IPv6 packet stays UDP
    _, p = dec(raw(eth() / outer / UDP(sport=50000, dport=3544) / Raw(raw(t6) + b"junk")))
    assert p.proto == 17 and not p.tunnel and p.dport == 3544


def test_non_ip_frame_is_a_packet_with_ipv0():
    d, p = dec(raw(eth(type=0x0806) / (b"\0" * 28)))
    assert p is not None and p.ipv == 0 and p.l2_proto == 0x0806
    assert d.counters()["decoder.errors"] == 0


@pytest.mark.parametrize("frame,linktype,reason", [
    (b"\0" * 10, 1, "truncated_ethernet"),
    (raw(eth() / IP(src=A4, dst=B4) / TCP())[:30], 1, "truncated_ipv4"),
    (raw(eth() / IP(src=A4, dst=B4, len=200) / TCP()), 1, "truncated_ipv4"),
    (raw(eth() / IP(src=A4, dst=B4, ihl=3) / TCP()), 1, "ipv4_hlen_invalid"),
    (raw(eth(type=0x0800) / IPv6(src=A6, dst=B6) / TCP()), 1, "bad_ip_version"),
    (raw(eth() / IP(src=A4, dst=B4, proto=6) / Raw(b"\0" * 10)), 1, "truncated_tcp"),
    (raw(eth() / IP(src=A4, dst=B4) / TCP(dataofs=3)), 1, "tcp_hlen_invalid"),
    (raw(eth() / IP(src=A4, dst=B4) / TCP(dataofs=15)), 1, "tcp_hlen_invalid"),
    (raw(eth() / IP(src=A4, dst=B4) / UDP(len=100)), 1, "truncated_udp"),
    (raw(eth() / IP(src=A4, dst=B4) / UDP(len=4)), 1, "udp_len_invalid"),
    (raw(eth() / IPv6(src=A6, dst=B6) / TCP())[:40], 1, "truncated_ipv6"),
    (raw(eth() / IP(src=A4, dst=B4, proto=1) / Raw(b"\x08\x00\xf7\xff")), 1, "truncated_icmpv4"),
    (raw(tcp4()), 147, "unsupported_linktype"),
    (b"\x50" + raw(tcp4())[1:], 101, "bad_ip_version"),
])
def test_malformed_frames_are_counted_by_reason(frame, linktype, reason):
    d, p = dec(frame, linktype)
    c = d.counters()
    assert c["decoder." + reason] == 1
    if reason in L4_REASONS:  # valid IP header: the packet goes on, flagged, with no transport fields
        assert p is not None and p.invalid == reason and p.ipv in (4, 6)
        assert (p.sport, p.dport, p.payload, p.flags) == (0, 0, b"", 0)
        assert c["decoder.invalid"] == 1 and c["decoder.errors"] == 0 and c["decoder.decoded"] == 1
    else:  # no packet, or the packet flagged with the decoder event Suricata names for it
        assert p is None or p.invalid == reason and len(p.events) == 1
        assert c["decoder.errors"] == 1 and c["decoder.decoded"] == 0 and c["decoder.invalid"] == 0


L4_REASONS = {"truncated_tcp", "tcp_hlen_invalid", "truncated_udp", "udp_len_invalid", "truncated_icmpv4",
              "truncated_icmpv6"}


def test_decode_never_raises_on_random_prefixes():
    frame = raw(eth() / Dot1Q(vlan=5) / IP(src=A4, dst=B4, options=[scapy.IPOption_NOP()]) / GRE()
                / IPv6(src=A6, dst=B6) / IPv6ExtHdrHopByHop() / TCP(options=[("MSS", 1)]) / Raw(b"x" * 20))
    for lt in (0, 1, 8, 9, 12, 101, 104, 108, 113, 226, 228, 229, 239, 258, 276):
        d = Decoder(Settings(), "all")
        for i in range(len(frame) + 1):
            for f in (frame[:i], frame[i:], frame[:i] + b"\xff" * 3):
                d.decode(1.0, lt, f, 1)
        c = d.counters()
        assert not [k for k in c if "internal_error" in k]
        assert c["decoder.pkts"] == c["decoder.decoded"] + c["decoder.errors"] + c["defrag.fragments_held"]


def _tcp6(payload=b"hello", tc=0, hlim=64, options=(), **kw):
    return (IPv6(src=A6, dst=B6, tc=tc, hlim=hlim, **kw)
            / TCP(sport=1234, dport=80, seq=1000, ack=2000, flags="PA", window=512, options=list(options)) / Raw(payload))


def _tcp4(payload=b"hello", **kw):
    return (IP(src="192.0.2.1", dst="192.0.2.2", **kw)
            / TCP(sport=1234, dport=80, seq=1000, ack=2000, flags="PA", window=512) / Raw(payload))


def scapy_view(frame: bytes) -> dict:
    """The fields of ``Packet`` as scapy dissects ``frame`` (Ethernet, VLAN tags, one IP layer, TCP/UDP)."""
    e = Ether(frame)
    ip = e.getlayer(IP) or e.getlayer(IPv6)
    v4 = ip.version == 4
    l4 = ip.payload
    view = {
        "ipv": ip.version, "src": ipaddress.ip_address(ip.src).packed, "dst": ipaddress.ip_address(ip.dst).packed,
        "ttl": ip.ttl if v4 else ip.hlim, "tos": ip.tos if v4 else ip.tc, "ip_id": ip.id if v4 else 0,
        "proto": ip.proto if v4 else ip.nh, "ip_off": len(frame) - len(raw(ip)), "ip_len": ip.len if v4 else 40 + ip.plen,
        "vlan_id": tuple(t.vlan for t in e.iterpayloads() if isinstance(t, Dot1Q)),
        "src_mac": bytes.fromhex(e.src.replace(":", "")), "dst_mac": bytes.fromhex(e.dst.replace(":", "")),
    }
    pad = e.getlayer(scapy.Padding)
    data = raw(l4.payload)[:-len(raw(pad)) or None] if pad else raw(l4.payload)
    if isinstance(l4, TCP):
        hl = l4.dataofs * 4
        view.update(sport=l4.sport, dport=l4.dport, seq=l4.seq, ack=l4.ack, flags=int(l4.flags), win=l4.window,
                    urp=l4.urgptr, tcp_hlen=hl, tcp_opts=raw(l4)[20:hl], payload=data)
    elif isinstance(l4, UDP):
        view.update(sport=l4.sport, dport=l4.dport, payload=data)
    return view


def scapy_checksums_ok(frame: bytes) -> bool:
    """Whether every checksum in ``frame`` is the one scapy computes for it."""
    e = Ether(frame)
    again = e.copy()
    for layer in (IP, TCP, UDP):
        if again.haslayer(layer):
            del again[layer].chksum
    return raw(Ether(raw(again))) == raw(e)


def _frames():
    plain4 = raw(eth() / _tcp4())
    yield "ipv4", plain4
    yield "ipv4 big segment", raw(eth() / _tcp4(payload=bytes(range(256)) * 5 + b"odd"))
    yield "ipv4 medium segment", raw(eth() / _tcp4(payload=b"m" * 601))
    yield "ipv4 vlan", raw(eth() / Dot1Q(vlan=42, prio=5) / _tcp4(tos=0xB8, ttl=7, id=77))
    yield "ipv4 tcp options", raw(eth() / IP(src=A4, dst=B4) / TCP(options=[("MSS", 1440), ("NOP", None),
                                                                           ("WScale", 7)]) / Raw(b"o"))
    yield "ipv4 ethernet padding", raw(eth() / IP(src=A4, dst=B4) / TCP(flags="A")) + b"\0" * 6
    yield "ipv4 bad tcp checksum", raw(eth() / IP(src=A4, dst=B4) / TCP(chksum=0x1234) / Raw(b"x" * 99))
    yield "ipv4 bad ip checksum", raw(eth() / IP(src=A4, dst=B4, chksum=0x4321) / TCP() / Raw(b"y"))
    yield "ipv4 udp", raw(eth() / IP(src=A4, dst=B4) / UDP(sport=53, dport=5353) / Raw(b"z" * 30))
    yield "ipv4 vlan udp", raw(eth() / Dot1Q(vlan=7) / IP(src=A4, dst=B4) / UDP() / Raw(b"u"))
    yield "ipv4 tcp header within ip length", raw(eth() / IP(src=A4, dst=B4, len=45) / TCP() / Raw(b"p" * 9))
    yield "ipv6", raw(eth() / _tcp6())
    yield "ipv6 vlan", raw(eth() / Dot1Q(vlan=42, prio=5) / _tcp6(tc=0xB8, hlim=7))
    yield "ipv6 options+padding", raw(eth() / _tcp6(payload=b"", options=[("MSS", 1440), ("NOP", None),
                                                                          ("WScale", 7)])) + b"\0" * 8
    yield "ipv6 bad checksum", raw(eth() / IPv6(src=A6, dst=B6) / TCP(sport=1, dport=2, chksum=0x1234) / Raw(b"x" * 99))
    yield "ipv6 udp", raw(eth() / IPv6(src=A6, dst=B6) / UDP(sport=53, dport=5353) / Raw(b"z" * 30))


@pytest.mark.parametrize("name,frame", list(_frames()), ids=lambda v: v if isinstance(v, str) else "")
def test_fields_are_scapys(name, frame):
    """Every field the record has for these frames is what scapy dissects, and ``csum_ok``
    is whether scapy computes the same checksums."""
    d, p = dec(frame)
    assert p is not None and not p.invalid
    for field, want in scapy_view(frame).items():
        assert getattr(p, field) == want, field
    assert p.csum_ok is scapy_checksums_ok(frame)
    assert p.l4_off == p.ip_off + p.ip_hlen
    _, unchecked = dec(frame, mode="none")
    assert unchecked.csum_ok is None
    assert d.counters()["decoder.errors"] == 0


@pytest.mark.parametrize("frame,reason", [
    (raw(eth() / _tcp4(payload=b"q" * 40))[:-10], "truncated_ipv4"),
    (raw(eth() / _tcp4())[:14 + 20 + 12] + b"\x30" + raw(eth() / _tcp4())[14 + 20 + 13:], "tcp_hlen_invalid"),
    (raw(eth() / _tcp6(payload=b"q" * 40))[:-10], "truncated_ipv6"),
    (raw(eth() / _tcp6())[:14 + 40 + 12] + b"\x30" + raw(eth() / _tcp6())[14 + 40 + 13:], "tcp_hlen_invalid"),
    (raw(eth() / IPv6(src=A6, dst=B6, nh=58) / Raw(b"\x80\x00\x00")), "truncated_icmpv6"),
])
def test_more_malformed_frames(frame, reason):
    d, p = dec(frame)
    assert d.counters()["decoder." + reason] == 1
    if reason in L4_REASONS:
        assert p is not None and not p.events[0].startswith(("decoder.ipv", "decoder.ethernet"))
    else:
        assert p is None or p.events and p.ipv == 0
