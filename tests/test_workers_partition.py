"""Replay's share-out of sessions among workers: the symmetric flow key and the fragment routing.

Frames are built with scapy.  The properties: both directions of a session
have one owner, whatever the encapsulation around them (VLAN tags, tunnels,
link types), and every fragment of a datagram goes to the owner of its flow,
in capture order, even when it comes before its first fragment.
"""

from __future__ import annotations

import pytest

scapy = pytest.importorskip("scapy.all")
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import (
    GRE,
    IP,
    PPP,
    TCP,
    UDP,
    VXLAN,
    CookedLinux,
    Dot1AD,
    Dot1Q,
    Ether,
    IPv6,
    IPv6ExtHdrFragment,
    PPPoE,
    Raw,
    fragment,
    fragment6,
    raw,
)
from scapy.contrib.mpls import MPLS

from mirrorwatch.cli.workers.fragments import HOLD, FragmentRouter
from mirrorwatch.core.decode.flowshare import FRAGMENT, FlowPartitioner

A4, B4 = "198.51.100.1", "203.0.113.9"
A6, B6 = "2001:db8::1", "2001:db8:ffff::9"
ETH, RAW, SLL = 1, 101, 113

addr4 = st.ip_addresses(v=4).map(str)
addr6 = st.ip_addresses(v=6).map(str)
port = st.integers(1, 65535)
workers = st.integers(2, 7)


def eth(payload, tags=()):
    frame = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    for tpid, vid in tags:
        frame = frame / (Dot1AD(vlan=vid) if tpid == 0x88A8 else Dot1Q(vlan=vid))
    return raw(frame / payload)


def l4(proto, sport, dport):
    return (TCP(sport=sport, dport=dport, flags="A") if proto == "tcp" else UDP(sport=sport, dport=dport)) / Raw(b"x")


def both_ways(ip, a, b, proto, sp, dp):
    return ip(src=a, dst=b) / l4(proto, sp, dp), ip(src=b, dst=a) / l4(proto, dp, sp)


@settings(max_examples=80, deadline=None)
@given(a=addr4, b=addr4, sp=port, dp=port, proto=st.sampled_from(["tcp", "udp"]), n=workers,
       tags=st.lists(st.tuples(st.sampled_from([0x8100, 0x88A8]), st.integers(1, 4094)), max_size=2))
def test_both_directions_of_an_ipv4_session_have_one_owner(a, b, sp, dp, proto, n, tags):
    part = FlowPartitioner(n)
    fwd, rev = both_ways(IP, a, b, proto, sp, dp)
    owners = {part.owner(ETH, eth(fwd, tags)), part.owner(ETH, eth(rev)), part.owner(RAW, raw(rev)),
              part.owner(SLL, raw(CookedLinux(proto=0x0800) / fwd))}
    assert len(owners) == 1 and 0 <= owners.pop() < n  # tags and link layers do not move a session


@settings(max_examples=80, deadline=None)
@given(a=addr6, b=addr6, sp=port, dp=port, proto=st.sampled_from(["tcp", "udp"]), n=workers)
def test_both_directions_of_an_ipv6_session_have_one_owner(a, b, sp, dp, proto, n):
    part = FlowPartitioner(n)
    fwd, rev = both_ways(IPv6, a, b, proto, sp, dp)
    assert part.owner(ETH, eth(fwd, [(0x8100, 7)])) == part.owner(ETH, eth(rev)) == part.owner(RAW, raw(rev))


def test_sessions_are_shared_out_evenly():
    part = FlowPartitioner(4)
    counts = [0] * 4
    for i in range(4000):
        counts[part.owner(ETH, eth(IP(src=f"10.0.{i // 250}.{i % 250}", dst=B4) / l4("tcp", 1024 + i, 80)))] += 1
    assert all(800 <= c <= 1200 for c in counts), counts


def test_tunnels_are_keyed_by_the_packet_they_carry():
    part = FlowPartitioner(16, vxlan=(4789,))
    inner = IPv6(src=A6, dst=B6) / l4("udp", 38159, 514)
    plain = part.owner(ETH, eth(inner))
    # the same inner session through two 6in4 relays (outer pairs differ), GRE, VXLAN and MPLS
    relays = [IP(src="193.24.227.10", dst="216.66.86.114", proto=41), IP(src="216.66.80.30", dst="193.24.227.12",
                                                                            proto=41)]
    wrapped = [eth(r / inner) for r in relays]
    wrapped.append(eth(IP(src="192.0.2.1", dst="192.0.2.2") / GRE(proto=0x86DD) / inner))
    wrapped.append(eth(IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=51000, dport=4789) / VXLAN(vni=5)
                       / Ether() / inner))
    wrapped.append(raw(Ether(type=0x8847) / MPLS(label=16, s=1) / inner))
    wrapped.append(raw(Ether() / PPPoE() / PPP(proto=0x0057) / inner))
    assert {part.owner(ETH, f) for f in wrapped} == {plain}


def test_a_udp_tunnel_port_is_a_tunnel_only_when_its_payload_is_one():
    part = FlowPartitioner(16, vxlan=(4789,))
    # no VXLAN I flag: the engine keys it as a plain UDP session, and so does the partitioner
    fwd, rev = both_ways(IP, A4, B4, "udp", 4789, 4789)
    assert part.owner(ETH, eth(fwd)) == part.owner(ETH, eth(rev))


def test_frames_that_are_not_read_go_to_worker_0():
    part = FlowPartitioner(5)
    assert part.owner(ETH, b"\x00" * 10) == 0
    assert part.owner(ETH, raw(Ether(type=0x0806) / Raw(b"\x00" * 28))) == 0  # ARP
    assert part.owner(147, b"\x45" * 60) == 0  # a link type the partitioner does not read
    assert part.owner(ETH, eth(IP(src=A4, dst=B4) / TCP())[:30]) == 0  # cut in the IP header


# -- fragments ----------------------------------------------------------------------------------------
def datagram(ip, payload=3000):
    return ip(src=A4 if ip is IP else A6, dst=B4 if ip is IP else B6) / UDP(sport=5000, dport=53) / Raw(b"z" * payload)


def frags(ip):
    pkt = datagram(ip)
    if ip is IP:
        pkt[IP].id = 777
        return [eth(f) for f in fragment(pkt, fragsize=1024)]
    return [eth(f) for f in fragment6(IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(id=777) / pkt[UDP], 1280)]


class Route:
    """Runs frames through a partitioner and router as a replay's workers do: (n, owner) in analysis order."""

    def __init__(self, n=8, **kw):
        self.part = FlowPartitioner(n)
        self.router = FragmentRouter(**kw)
        self.out: list[tuple[int, int]] = []

    def frame(self, n: int, frame: bytes, ts: float = 1.0) -> None:
        w = self.part.owner(ETH, frame)
        if w == FRAGMENT:
            w, released = self.router.route(self.part.last_fragment, ts, len(frame), n)
            self.out.extend((held, owner) for owner, held in released)
            if w == HOLD:
                return
        self.out.append((n, w))


@pytest.mark.parametrize("ip", [IP, IPv6])
def test_fragments_go_to_the_owner_of_their_flow(ip):
    r = Route()
    flow_owner = r.part.owner(ETH, eth(datagram(ip, 10)))
    pieces = frags(ip)
    assert len(pieces) >= 3 and r.part.owner(ETH, pieces[1]) == FRAGMENT
    for n, f in enumerate(pieces, 1):
        r.frame(n, f)
    assert r.out == [(n, flow_owner) for n in range(1, len(pieces) + 1)]


@pytest.mark.parametrize("ip", [IP, IPv6])
def test_fragments_before_their_first_are_held_then_follow_it(ip):
    r = Route()
    flow_owner = r.part.owner(ETH, eth(datagram(ip, 10)))
    last, middle, first = reversed(frags(ip))
    r.frame(1, last)
    r.frame(2, middle)
    assert r.out == [] and r.router.holding
    r.frame(3, first)
    assert r.out == [(1, flow_owner), (2, flow_owner), (3, flow_owner)]  # capture order, numbered as read
    assert r.router.counters["released_first"] == 2 and not r.router.holding


def test_a_datagram_without_its_first_fragment_goes_to_its_address_pair_owner_after_the_timeout():
    r = Route(timeout=30)
    pieces = frags(IP)
    r.frame(1, pieces[1], ts=10.0)
    pair = r.part.last_fragment[3]
    r.frame(2, eth(IP(src="192.0.2.7", dst="192.0.2.8") / l4("tcp", 1, 2)), ts=39.0)
    assert r.out[-1][0] == 2 and r.router.holding
    released = r.router.expire(40.5)
    assert released == [(pair, 1)] and r.router.counters["released_timeout"] == 1


def test_held_fragments_are_bounded():
    r = Route(max_held=3)
    for ident in range(5):
        pkt = datagram(IP)
        pkt[IP].id = ident
        for n, piece in enumerate(fragment(pkt, fragsize=1024)[1:], 10 * ident):  # never a first fragment
            r.frame(n, eth(piece))
    c = r.router.counters
    assert c["fragments_held"] == 10 and c["released_bounds"] == 8  # the oldest datagrams went first
    assert [n for n, _ in r.out] == [0, 1, 10, 11, 20, 21, 30, 31]


# -- the compiled build -------------------------------------------------------------------------------------
_OWNERS = """
import hashlib, sys
import mirrorwatch
from mirrorwatch.core.decode.flowshare import FlowPartitioner
from mirrorwatch.sources.pcapfile import PcapFiles
CUTS = (13, 16, 19, 30, 33, 37, 41, 50, 53, 57, 61, 70, 77, 90)
part, digest, frames = FlowPartitioner(3, vxlan=(4789,), geneve=(6081,), teredo=(3544,)), hashlib.sha256(), 0
for ts, lt, frame, wl in PcapFiles(sys.argv[1:]):
    # the frame, and cut short inside each header it may have: the compiled parser reads the frame in place,
    # so a read past a length check it lacks would give another owner (or raise, interpreted)
    for f in [frame] + [frame[:k] for k in CUTS if k < len(frame)]:
        w = part.owner(lt, f)
        digest.update(repr((w, part.last_fragment if w < 0 else None)).encode())
        frames += 1
print(frames, digest.hexdigest(), mirrorwatch.compiled()["mirrorwatch.core.decode.flowshare"])
"""


@pytest.mark.slow
def test_both_builds_give_every_frame_the_same_owner(corpus):
    """Workers of one replay run one build; the two builds must still agree (the corpus' frames, fragments too)."""
    import os
    import subprocess
    import sys

    import mirrorwatch

    if mirrorwatch.pure_reason() is not None:
        pytest.skip(f"the compiled build does not run: {mirrorwatch.pure_reason()}")
    pcaps = [str(corpus / "bench" / name) for name in ("http-tests-merged.pcap", "ndpi-mixed-ethernet.pcap")]
    out = []
    for pure in ("0", "1"):
        r = subprocess.run([sys.executable, "-c", _OWNERS, *pcaps], capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, MIRRORWATCH_PURE=pure), check=False)
        assert r.returncode == 0, r.stderr
        out.append(r.stdout)
    (frames, digest, compiled), (_, pure_digest, pure) = (o.split() for o in out)
    assert compiled == "True" and pure == "False"
    assert int(frames) > 100_000 and digest == pure_digest


NULL = 0


def _frames_on(link: int) -> list[bytes]:
    """Sessions over IPv4 and IPv6, both directions, and a fragmented datagram, framed for link type ``link``."""
    pkts = []
    for i in range(12):
        ip, a, b = (IP, A4, B4) if i % 2 else (IPv6, A6, B6)
        pkts += both_ways(ip, a, b, "tcp" if i % 3 else "udp", 1000 + i, 80)
    pkts += fragment(IP(src=A4, dst=B4) / UDP(sport=5, dport=53) / Raw(b"y" * 3000), fragsize=1000)
    wrap = {ETH: eth, RAW: raw, SLL: lambda p: raw(CookedLinux(proto=0x0800 if IP in p else 0x86DD) / p),
            NULL: lambda p: (2 if IP in p else 30).to_bytes(4, "little") + raw(p)}[link]
    return [wrap(p) for p in pkts]


@pytest.mark.parametrize("link", [ETH, RAW, SLL, NULL])
def test_a_frame_read_in_place_has_the_owner_of_its_bytes(tmp_path, link):
    """The savefile reader hands a worker each frame where it lies in the reader's block (an offset into it,
    not a copy): its owner, its fragment's description and, for the worker's own frames, the bytes it gets
    are those of the frame itself."""
    import struct

    from mirrorwatch.core.decode.ownframes import OwnFrames
    from mirrorwatch.core.engine import Engine
    from mirrorwatch.core.settings import Settings
    from mirrorwatch.sources.savefile import open_savefile

    frames = _frames_on(link)
    path = tmp_path / "capture.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, link) + b"".join(
        struct.pack("<iiII", 1, i, len(f), len(f)) + f for i, f in enumerate(frames)))
    sf = open_savefile(path, {0, 1, 12, 113})
    part = FlowPartitioner(2, scheduler="balanced", idle=60.0)
    own, frags = [], []
    worker = OwnFrames(part, 0, Engine(Settings(), []), emit=lambda n, events: None,
                       fragment=lambda n, ts, wirelen, f: frags.append((n, part.last_fragment, f)) or HOLD,
                       every=lambda n: None, batch=1024)
    worker.linktype = sf.linktype
    worker.take = lambda n, ts, wirelen, f: own.append((n, f))
    try:
        sf.loop(worker)
    finally:
        sf.close()
    expect = FlowPartitioner(2, scheduler="balanced", idle=60.0)
    want_own, want_frags = [], []
    for n, f in enumerate(frames, 1):
        expect.sched.now = 1 + (n - 1) * 1e-6
        w = expect.owner(sf.linktype, f)
        if w == FRAGMENT:
            want_frags.append((n, expect.last_fragment, f))
        elif w == 0:
            want_own.append((n, f))
    assert own == want_own and frags == want_frags
    assert 0 < len(own) < len(frames) - len(frags) and len(frags) == 4  # both workers' frames, and fragments
