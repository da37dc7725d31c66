"""A capture whose alerts are spread over time, for replays at recorded pace (``--realtime``).

An outside host pings ``count`` inside hosts, one every ``interval`` seconds,
with empty echo requests: each is a session of its own and fires the bundled
signature 9000032 (ICMP echo request without payload), so a replay yields one
alert as each ping is read and one flow record per ping at the end.
"""

from __future__ import annotations

from pathlib import Path

PING_SID = 9000032
T0 = 1_700_000_000.0


def write_ping_sweep(path: Path, count: int, interval: float) -> Path:
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    frames = []
    for i in range(count):
        p = (Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
             / IP(src="198.51.100.66", dst=f"192.168.{10 + i // 250}.{1 + i % 250}")
             / ICMP(type=8, id=1000 + i, seq=1))
        p.time = T0 + i * interval
        frames.append(p)
    wrpcap(str(path), frames)
    return path
