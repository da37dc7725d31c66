"""``listen --workers``: PACKET_FANOUT on this kernel, and the sensor end to end (tests/netlab.py).

The fanout test opens four capture handles on the lab's mirror port, joined
to one fanout group as ``listen --workers 4`` joins them, and records which
handle each frame reached, while the client talks TCP and UDP to the server
over IPv4 and IPv6, with datagrams larger than the MTU (fragmented by the
client's kernel), with and without an 802.1Q tag on the mirror.  What this
kernel does, and the README says:

- both directions of every TCP and UDP session reach one handle;
- IPv4 fragments are reassembled before the hash (PACKET_FANOUT_FLAG_DEFRAG):
  the datagram arrives whole, on the handle of its flow;
- IPv6 fragments are not reassembled: the fragments of one datagram reach one
  handle, chosen by their addresses, which need not be the flow's.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest
from netlab import PYTHON, NetLab

pytestmark = pytest.mark.privileged

HANDLES = 4
BIG = 4000  # bytes of the large datagrams: fragmented on the lab's 1500-byte links

# argv: iface, handles, output; one JSON line per IP frame: which handle, addresses, ports, fragment, sizes
SENSOR = r"""
import json, signal, sys
from scapy.all import Ether, Dot1Q, IP, IPv6, IPv6ExtHdrFragment, TCP, UDP
from mirrorwatch.cli.workers.live import open_captures
from mirrorwatch.core.settings import Settings
from mirrorwatch.sources.live import LiveCapture, iter_batch

def describe(h, frame):
    l, vlans = Ether(frame).payload, []
    while isinstance(l, Dot1Q):
        vlans.append(l.vlan)
        l = l.payload
    if isinstance(l, IP):
        d = dict(v=4, src=l.src, dst=l.dst, proto=l.proto, iplen=l.len,
                 frag=[l.id, l.frag] if l.frag or l.flags.MF else None)
    elif isinstance(l, IPv6):
        d = dict(v=6, src=l.src, dst=l.dst, proto=l.nh, iplen=l.plen + 40, frag=None)
        if isinstance(l.payload, IPv6ExtHdrFragment):
            d.update(frag=[l.payload.id, l.payload.offset], proto=l.payload.nh)
            l = l.payload
    else:
        return None
    t = l.payload
    if isinstance(t, (TCP, UDP)) and not (d["frag"] and d["frag"][1]):
        d.update(sport=t.sport, dport=t.dport)
    return dict(d, h=h, vlans=vlans)

settings = Settings()
first = LiveCapture(sys.argv[1], settings, snaplen=262144, immediate=False)
first.open()
caps = open_captures(first, int(sys.argv[2]), settings)
for c in caps:
    c.start()
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
print("ready", flush=True)
with open(sys.argv[3], "w") as out:
    def take(h, batch):
        for _, frame in iter_batch(batch):
            d = describe(h, bytes(frame))
            if d:
                out.write(json.dumps(d) + "\n")
    while not stop:
        for h, c in enumerate(caps):
            b = c.get(0.02)
            if b:
                take(h, b)
    for h, c in enumerate(caps):
        c.stop()
        for b in c.drain():
            take(h, b)
"""

UDP_ECHO = r"""
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", int(sys.argv[1])))
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(data, peer)
"""

# argv: host, port, sessions, big: each session (its own source port) sends small, big, small, each echoed
UDP_CLIENT = r"""
import socket, sys
host, port, n, big = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for _ in range(n):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    for size in (32, big, 32):
        s.sendto(b"x" * size, (host, port))
        s.recvfrom(65535)
    s.close()
"""


def session(f: dict) -> tuple:
    return (f["proto"], *sorted([(f["src"], f["sport"]), (f["dst"], f["dport"])]))


def capture_sessions(lab: NetLab, out: Path, sessions: int = 8) -> list[dict]:
    p = lab.python(lab.sensor, SENSOR, lab.monitor, str(HANDLES), str(out))
    assert p.stdout.readline().strip() == b"ready", p.stderr.read()[-800:]
    lab.python(lab.server, UDP_ECHO, "5353")
    lab.wait_port(lab.server, 5353, proto="udp")
    lab.serve_tcp(8080)
    for _ in range(sessions):
        lab.tcp_request(lab.SERVER4, 8080, b"GET / HTTP/1.0\r\n\r\n")
        lab.tcp_request(lab.SERVER6, 8080, b"GET / HTTP/1.0\r\n\r\n")
    for host in (lab.SERVER4, lab.SERVER6):
        lab.run(lab.client, PYTHON, "-c", UDP_CLIENT, host, "5353", str(sessions), str(BIG))
    time.sleep(0.5)
    lab.stop(p)
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.parametrize("vlan", [None, 100], ids=["untagged", "vlan"])
def test_fanout_keeps_sessions_and_ipv4_datagrams_on_one_handle(privileged, tmp_path, vlan):
    with NetLab(vlan=vlan) as lab:
        frames = capture_sessions(lab, tmp_path / "frames.json")
    assert {tuple(f["vlans"]) for f in frames} == {(vlan,) if vlan else ()}
    handles = defaultdict(set)
    for f in frames:
        if "sport" in f:
            handles[session(f)].add(f["h"])
    v6_frag_sessions = {session(f) for f in frames if f["v"] == 6 and f["frag"] and "sport" in f}
    kinds = {(v, p) for p, (a, _), _ in handles for v in [6 if ":" in a else 4]}
    assert kinds == {(4, 6), (6, 6), (4, 17), (6, 17)} and len(handles) == 32
    split = [s for s, h in handles.items() if len(h) > 1 and s not in v6_frag_sessions]
    assert not split, f"sessions on more than one handle: {split}"
    assert len({h for hs in handles.values() for h in hs}) > 1  # the traffic was shared out
    # IPv4: no fragment reached a handle; the whole datagrams did, with their sessions (checked above)
    assert not [f for f in frames if f["v"] == 4 and f["frag"]]
    assert sum(1 for f in frames if f["v"] == 4 and f["proto"] == 17 and f["iplen"] == BIG + 28) == 16
    # IPv6: this kernel does not reassemble; the fragments of a datagram stay together
    datagrams = defaultdict(set)
    for f in frames:
        if f["v"] == 6 and f["frag"]:
            datagrams[(f["src"], f["dst"], f["frag"][0])].add(f["h"])
    assert len(datagrams) == 16 and all(len(h) == 1 for h in datagrams.values())


# -- the sensor end to end ------------------------------------------------------------------------------
RULES = ('alert tcp any any -> any 8080 (msg:"MW workers request"; flow:to_server; content:"GET /evil"; '
         'sid:3000001; rev:1;)\n')


class Listen:
    def __init__(self, lab: NetLab, tmp: Path, *args: str):
        self.lab, self.tmp = lab, tmp
        self.eve, self.err = tmp / "eve.json", tmp / "listen.err"
        self.p = lab.mirrorwatch("listen", lab.monitor, "--no-table", "--workers", "2", "--eve", str(self.eve),
                                 "--set", "flow-timeouts.tcp.closed=1", "--set", "capture.stats-interval=1",
                                 *args, stdout=open(tmp / "listen.out", "w"), stderr=open(self.err, "w"))
        self.wait_stderr("listening on")

    def wait_stderr(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in (err := self.err.read_text()):
            assert self.p.poll() is None, f"listen exited ({self.p.returncode}): {err[-800:]}"
            assert time.monotonic() < deadline, f"no {text!r} after {timeout}s: {err[-800:]}"
            time.sleep(0.05)
        return err

    def workers(self) -> list[int]:
        with open(f"/proc/{self.p.pid}/task/{self.p.pid}/children") as f:
            return [int(x) for x in f.read().split()]

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.eve.read_text().splitlines()]


def test_listen_with_workers_end_to_end(privileged, tmp_path):
    rules = tmp_path / "workers.rules"
    rules.write_text(RULES)
    with NetLab() as lab:
        sensor = Listen(lab, tmp_path, "-r", str(rules))
        assert ", 2 workers in PACKET_FANOUT group " in sensor.err.read_text()
        lab.serve_tcp(8080)
        for i in range(6):
            lab.tcp_request(lab.SERVER4 if i % 2 else lab.SERVER6, 8080, b"GET /evil HTTP/1.0\r\n\r\n")
        sensor.p.send_signal(signal.SIGHUP)
        sensor.wait_stderr("mirrorwatch: reloaded 1 rules")
        time.sleep(2.5)  # closed sessions end after 1 s; a periodic stats record is written meanwhile
        assert lab.stop(sensor.p) == 0
        err = sensor.err.read_text()
    assert err.count("mirrorwatch: reloaded 1 rules") == 1, err  # said once for both workers
    events = sensor.events()
    flows = [e for e in events if e["event_type"] == "flow" and e.get("dest_port") == 8080]
    assert len(flows) == 6 and all(e["flow"]["pkts_toserver"] and e["flow"]["pkts_toclient"] for e in flows)
    assert len({(e["src_ip"], e["src_port"]) for e in flows}) == 6  # no session split in two records
    alerts = [e for e in events if e["event_type"] == "alert"]
    assert len(alerts) == 6 and {a["alert"]["signature_id"] for a in alerts} == {3000001}
    stats = [e["stats"] for e in events if e["event_type"] == "stats"]
    assert len(stats) >= 2  # periodic, merged, and the final one
    final = stats[-1]
    cap = final["capture"]  # frames stamped before every handle joined may have been seen twice: dropped
    assert final["workers"]["count"] == 2
    assert cap["received"] == sum(final["workers"]["packets"]) + cap["startup_dropped"]
    # every merged record accounts for every frame received, not only the last one
    for s in stats:
        c = s["capture"]
        assert c["received"] - c["queue_pending"] <= c["packets"] + c["queue_drops"] + c["startup_dropped"], c
    assert re.search(r"capture on mon0: [\d,]+ frames received, no drops", err)


def test_a_dead_worker_stops_the_sensor_with_one_line(privileged, tmp_path):
    with NetLab() as lab:
        sensor = Listen(lab, tmp_path)
        lab.serve_tcp(8080)
        lab.tcp_request(lab.SERVER4, 8080, b"GET / HTTP/1.0\r\n\r\n", hold=0.5)
        victim = sensor.workers()[1]
        os.kill(victim, signal.SIGKILL)
        sensor.p.wait(30)
        err = sensor.err.read_text()
    assert sensor.p.returncode == 1
    assert [ln for ln in err.splitlines() if "worker" in ln and "error" in ln] == [
        (f"mirrorwatch: error: worker 2 of 2 (pid {victim}) was killed by SIGKILL: the sessions it held are lost; "
         f"the other workers' sessions are flushed to the outputs")]
    events = sensor.events()
    assert events[-1]["event_type"] == "stats" and events[-1]["stats"]["workers"]["died"] == 1
