"""``autofp-scheduler``: which worker a session's symmetric flow hash picks (replay --workers).

``balanced`` (the default) gives a new hash bucket to the worker given the
fewest frames so far and keeps it there while it is active; ``hash`` is the
hash modulo the workers; ``ippair`` the hash of the address pair.  Every
worker reads every frame and must make the same choices, so the properties
are: one owner per session (both directions), the same owners in every
worker, an even share where the hash alone is uneven, and a bucket given
afresh only after it has been idle for longer than any session lives.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("scapy.all")
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import IP, TCP, UDP, IPv6, Raw, raw
from test_workers_partition import ETH, addr4, addr6, eth, l4, port

from mirrorwatch.core.decode.flowshare import FlowPartitioner
from mirrorwatch.core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
A4, B4 = "198.51.100.1", "203.0.113.9"


def frame(sport: int, dport: int = 80, src: str = A4, dst: str = B4, reply: bool = False) -> bytes:
    if reply:
        return eth(IP(src=dst, dst=src) / TCP(sport=dport, dport=sport, flags="A") / Raw(b"x"))
    return eth(IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="A") / Raw(b"x"))


@settings(max_examples=60, deadline=None)
@given(a=st.one_of(addr4, addr6), b=st.one_of(addr4, addr6), sp=port, dp=port,
       proto=st.sampled_from(["tcp", "udp"]), n=st.integers(2, 7), scheduler=st.sampled_from(["balanced", "ippair"]))
def test_both_directions_of_a_session_have_one_owner(a, b, sp, dp, proto, n, scheduler):
    if (":" in a) != (":" in b):
        b = a
    ip = IPv6 if ":" in a else IP
    part = FlowPartitioner(n, scheduler=scheduler, idle=60.0)
    for i in range(n):  # other sessions first, so that the session's bucket is not simply worker 0's
        part.owner(ETH, eth(IP(src="10.9.9.9", dst="10.8.8.8") / UDP(sport=1000 + i, dport=53)))
    fwd = part.owner(ETH, eth(ip(src=a, dst=b) / l4(proto, sp, dp)))
    assert part.owner(ETH, eth(ip(src=b, dst=a) / l4(proto, dp, sp))) == fwd
    assert part.owner(ETH, eth(ip(src=a, dst=b) / l4(proto, sp, dp), [(0x8100, 7)])) == fwd
    assert 0 <= fwd < n


def heavy_pair_on_one_worker() -> tuple[int, int]:
    """Two client ports whose sessions the hash alone puts on the same one of two workers."""
    part = FlowPartitioner(2, scheduler="hash")
    first = part.owner(ETH, frame(40000))
    sp = next(p for p in range(40001, 41000) if part.owner(ETH, frame(p)) == first)
    return 40000, sp


def share(scheduler: str, frames: list[bytes]) -> tuple[list[int], list[int]]:
    part = FlowPartitioner(2, scheduler=scheduler, idle=600.0)
    owners = [part.owner(ETH, f) for f in frames]
    counts = [owners.count(0), owners.count(1)]
    return owners, counts


def test_balanced_evens_out_what_the_hash_leaves_uneven():
    h1, h2 = heavy_pair_on_one_worker()
    frames = []
    for i in range(400):  # two heavy sessions and a hundred light ones, interleaved
        frames += [frame(h1), frame(h1, reply=True), frame(h2), frame(h2, reply=True)]
        if i % 4 == 0:
            frames += [frame(20000 + i), frame(20000 + i, reply=True)]
    _, by_hash = share("hash", frames)
    owners, balanced = share("balanced", frames)
    assert max(by_hash) / len(frames) > 0.8  # both heavy sessions on one worker
    assert max(balanced) / len(frames) < 0.55, balanced
    # still one owner per session, both directions
    sessions: dict = {}
    for f, w in zip(frames, owners):
        ip = IP(f[14:])
        key = frozenset([(ip.src, ip[TCP].sport), (ip.dst, ip[TCP].dport)])
        assert sessions.setdefault(key, w) == w


def test_every_worker_makes_the_same_choices():
    frames = [frame(30000 + (i * 7919) % 3000, reply=bool(i % 3)) for i in range(3000)]
    a = FlowPartitioner(3, scheduler="balanced", idle=600.0)
    b = FlowPartitioner(3, scheduler="balanced", idle=600.0)
    assert [a.owner(ETH, f) for f in frames] == [b.owner(ETH, f) for f in frames]


def test_an_idle_bucket_is_given_afresh_only_after_the_idle_time():
    part = FlowPartitioner(2, scheduler="balanced", idle=100.0)
    a, b = frame(41000), frame(42000)
    assert part.owner(ETH, a) == 0 and part.owner(ETH, b) == 1  # b's bucket: worker 1 had fewer frames
    for _ in range(20):
        part.owner(ETH, a)  # worker 0 now has many more frames
    part.sched.now = 100.0
    assert part.owner(ETH, a) == 0  # idle exactly the idle time: still its worker's
    part.sched.now = 200.5
    assert part.owner(ETH, a) == 1  # idle longer: given afresh, to the worker given fewer frames
    assert part.owner(ETH, frame(41000, reply=True)) == 1  # and the reply follows


def test_ippair_keeps_the_sessions_of_two_hosts_together():
    by_pair = FlowPartitioner(4, scheduler="ippair")
    by_hash = FlowPartitioner(4, scheduler="hash")
    ports = range(50000, 50064)
    assert len({by_pair.owner(ETH, frame(p)) for p in ports}) == 1
    assert len({by_hash.owner(ETH, frame(p)) for p in ports}) > 1


def test_from_settings_reads_the_scheduler_and_the_longest_timeout():
    s = Settings({"autofp-scheduler": "hash", "flow-timeouts.tcp.established": "7200"})
    part = FlowPartitioner.from_settings(s, 2)
    assert part.sched.idle == 2 * 7200.0
    assert FlowPartitioner.from_settings(Settings(), 2).sched.idle == 2 * max(
        float(v) for k, v in Settings().as_dict().items() if k.startswith("flow-timeouts."))


def test_an_unknown_scheduler_is_a_one_line_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mirrorwatch", "replay", "--workers", "2", "--set",
                        "autofp-scheduler=roundrobin", str(ROOT / "pcaps" / "demo.pcap")],
                       capture_output=True, text=True, cwd=tmp_path, check=False)
    assert r.returncode == 2
    assert "autofp-scheduler" in r.stderr and "balanced" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_udp_tunnels_own_session_is_whole_with_workers(tmp_path):
    # the tunnel session (Suricata tracks it) and the sessions it carries have workers of their own: one
    # VXLAN session carries two inner sessions, and one inner session's answers come through another
    # outer session (VXLAN's source port follows the sender); 1 and 3 workers write the same records
    from scapy.all import ICMP, UDP, Ether, wrpcap
    from scapy.layers.vxlan import VXLAN
    from test_workers import assert_same_output, replay

    def eth():  # addresses given: scapy would otherwise look the destination up (ARP)
        return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")

    def vx(sport, inner):
        return eth() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=sport, dport=4789) / VXLAN(vni=5) / inner

    frames = []
    for i in range(40):
        a, b = f"10.1.0.{i % 7 + 1}", f"10.2.0.{i % 5 + 1}"
        frames += [vx(40000, eth() / IP(src=a, dst=b) / ICMP(type=8, id=i)),
                   vx(40000 + i % 3, eth() / IP(src=b, dst=a) / ICMP(type=0, id=i)),
                   vx(40000, eth() / IP(src=a, dst=b) / UDP(sport=5000 + i, dport=53) / b"x")]
    pcap = tmp_path / "vx.pcap"
    wrpcap(str(pcap), frames)
    rules = tmp_path / "r.rules"
    rules.write_text('alert icmp any any -> any any (msg:"echo"; itype:8; sid:1;)\n')
    one, many = replay(tmp_path / "1", "-r", rules, pcap), replay(tmp_path / "n", "-r", rules, pcap, workers=3)
    assert one.returncode == many.returncode == 0, many.stderr
    assert_same_output(tmp_path / "1", tmp_path / "n", set())
    flows = [json.loads(line) for line in (tmp_path / "n" / "eve.json").read_text().splitlines()
             if '"event_type":"flow"' in line and '"dest_port":4789' in line]
    # 40000 carries 40 requests, 40 datagrams and 14 answers; 40001 and 40002 13 answers each
    assert sorted(f["flow"]["pkts_toserver"] for f in flows) == [13, 13, 94]
