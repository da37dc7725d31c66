#!/usr/bin/env python3
"""Kill latency and kill success under bulk transfer, between real Linux TCP stacks.

Inside a ``tests/netlab.NetLab`` (root, network namespaces) the server streams
data to the client on every connection; after ``--before`` bytes the client
sends a request containing FORBIDDEN, which a ``reject`` rule of
``mirrorwatch listen`` (on the mirror port, injecting on that same port)
answers with forged RST+ACK segments to both endpoints.

- Latency: tcpdump in the sensor namespace records, on the mirror port, the
  trigger segment arriving and the first forged RST of that session leaving
  (one host clock, kernel timestamps, nanosecond precision).  Reported:
  median, p90, p99 and max of (first RST - trigger) over every kill.
- Success: each endpoint's socket reports what it saw; a kill succeeds when
  both sides get ECONNRESET within 1 s of the trigger.

    sudo .venv/bin/python bench/kill_latency.py [--connections 200] [--parallel 4] [--before 500000]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from netlab import PYTHON, NetLab, NetLabError  # noqa: E402
from test_kill_live import PEER_SERVER, RULES, injection_port  # noqa: E402

# N connections, P at a time: each reads `before` bytes of the server's stream, sends the trigger, waits.
CLIENTS = r"""
import errno, json, socket, sys, threading, time
host, n, par, before = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
lock = threading.Lock()
todo = list(range(n))
def one():
    c = socket.create_connection((host, 8080), timeout=5)
    port = c.getsockname()[1]
    c.sendall(b"bulk\n")
    got = 0
    while got < before:
        got += len(c.recv(65536))
    t0 = time.time()
    c.sendall(b"now FORBIDDEN while you stream\n")
    c.settimeout(3)
    res = None
    try:
        while True:
            if not c.recv(65536):
                res = "EOF"; break
    except socket.timeout:
        res = "timeout"
    except OSError as e:
        res = errno.errorcode.get(e.errno, str(e.errno))
    t1 = time.time()
    c.close()
    return {"port": port, "result": res, "t_trigger": t0, "t": t1}
def worker():
    while True:
        with lock:
            if not todo:
                return
            todo.pop()
        try:
            r = one()
        except OSError as e:
            r = {"error": str(e)}
        with lock:
            sys.stdout.write(json.dumps(r) + "\n"); sys.stdout.flush()
ts = [threading.Thread(target=worker) for _ in range(par)]
[t.start() for t in ts]
[t.join() for t in ts]
"""


def read_pcap(path: Path) -> list[tuple[float, bytes]]:
    """(timestamp, frame) of a nanosecond pcap written by tcpdump."""
    data = path.read_bytes()
    magic = struct.unpack_from("<I", data)[0]
    scale = 1e-9 if magic == 0xA1B23C4D else 1e-6
    out, off = [], 24
    while off + 16 <= len(data):
        sec, frac, caplen, _ = struct.unpack_from("<IIII", data, off)
        off += 16
        out.append((sec + frac * scale, data[off:off + caplen]))
        off += caplen
    return out


def latencies(frames) -> dict[int, float]:
    """Client port -> seconds from the trigger arriving to the first forged RST leaving."""
    trig: dict[int, float] = {}
    lat: dict[int, float] = {}
    for ts, f in frames:
        if len(f) < 54 or f[12:14] != b"\x08\x00" or f[23] != 6:
            continue
        ihl = (f[14] & 15) * 4
        t = 14 + ihl
        sport, dport = struct.unpack_from("!HH", f, t)
        flags = f[t + 13]
        payload = f[t + ((f[t + 12] >> 4) * 4):]
        if dport == 8080 and b"FORBIDDEN" in payload and sport not in trig:
            trig[sport] = ts
        elif flags & 0x04:
            cport = sport if dport == 8080 else dport
            if cport in trig and cport not in lat:
                lat[cport] = ts - trig[cport]
    return lat


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--before", type=int, default=500_000, help="bytes the client reads before the trigger")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("kill_latency: needs root (network namespaces); skipped", file=sys.stderr)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="mwkillbench"))
    (tmp / "kill.rules").write_text(RULES)
    try:
        lab = NetLab(inject=True).__enter__()
    except NetLabError as e:
        print(f"kill_latency: cannot build the lab: {e}", file=sys.stderr)
        return 1
    try:
        injection_port(lab, "mon")
        server_out = open(tmp / "server.jsonl", "w")
        lab.python(lab.server, PEER_SERVER, stdout=server_out, stderr=subprocess.STDOUT)
        lab.wait_port(lab.server, 8080)
        pcap = tmp / "mon.pcap"
        dump = lab.popen(lab.sensor, "tcpdump", "-i", lab.monitor, "-n", "-s", "200", "-B", "65536",
                         "--time-stamp-precision=nano", "-w", str(pcap),
                         "tcp and (tcp[tcpflags] & tcp-rst != 0 or (dst port 8080 and tcp[tcpflags] & tcp-push != 0))",
                         stdout=subprocess.DEVNULL, stderr=open(tmp / "tcpdump.err", "w"))
        eve = tmp / "eve.json"
        err = tmp / "mw.err"
        mw = lab.mirrorwatch("listen", lab.monitor, "-r", str(tmp / "kill.rules"), "--eve", str(eve), "--no-table",
                             "-q", "--set", "capture.stats-interval=0",
                             stdout=subprocess.DEVNULL, stderr=open(err, "w"))
        deadline = time.monotonic() + 30
        while "listening on" not in err.read_text():
            if mw.poll() is not None or time.monotonic() > deadline:
                print(f"kill_latency: mirrorwatch did not start: {err.read_text()[-500:]}", file=sys.stderr)
                return 1
            time.sleep(0.05)
        time.sleep(0.5)
        t_start = time.monotonic()
        r = lab.run(lab.client, PYTHON, "-c", CLIENTS,
                    lab.SERVER4, str(args.connections), str(args.parallel), str(args.before),
                    timeout=60 + args.connections * 2)
        wall = time.monotonic() - t_start
        time.sleep(0.5)
        lab.stop(mw)
        lab.stop(dump, signal.SIGINT)
        clients = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        servers = {}
        for line in (tmp / "server.jsonl").read_text().splitlines():
            if line.startswith("{"):
                rec = json.loads(line)
                servers[rec["peer"]] = rec
        lat = latencies(read_pcap(pcap))
        events = [json.loads(line) for line in eve.read_text().splitlines()]
    finally:
        lab.close()
    stats = [e for e in events if e["event_type"] == "stats"][-1]["stats"]
    ok_c = ok_s = both = fast = 0
    for c in clients:
        if "port" not in c:
            continue
        s = servers.get(c["port"], {})
        cr = c["result"] == "ECONNRESET"
        sr = s.get("result") == "ECONNRESET"
        ok_c += cr
        ok_s += sr
        both += cr and sr
        fast += cr and sr and c["t"] - c["t_trigger"] <= 1.0 and s["t"] - c["t_trigger"] <= 1.0
    n = len(clients)
    ms = [v * 1000 for v in lat.values()]
    print(f"kill latency: {len(ms)} kills, {args.connections} connections under bulk transfer "
          f"({args.parallel} at a time, trigger after {args.before:,} bytes), {wall:.1f}s")
    print()
    print("| trigger arrival -> first RST leaving (mirror port) | ms |")
    print("| --- | ---: |")
    if ms:
        for name, v in (("median", statistics.median(ms)), ("p90", pct(ms, 0.90)), ("p99", pct(ms, 0.99)),
                        ("max", max(ms))):
            print(f"| {name} | {v:.3f} |")
    print()
    print("| kill outcome | connections | % |")
    print("| --- | ---: | ---: |")
    for name, v in (("client got ECONNRESET", ok_c), ("server got ECONNRESET", ok_s), ("both reset", both),
                    ("both reset within 1 s of the trigger", fast)):
        print(f"| {name} | {v} / {n} | {100.0 * v / max(n, 1):.1f} |")
    k = stats.get("kill", {})
    print()
    print(f"injector: {k.get('frames_sent', 0)} frames sent in {k.get('bursts', 0)} bursts "
          f"({k.get('refires', 0)} re-fires, {k.get('challenge_ack_replies', 0)} challenge-ACK answers), "
          f"{k.get('send_errors', 0)} send errors, {k.get('own_frames_seen', 0)} own frames recognised; "
          f"capture drops: {stats.get('capture', {})}")
    target_ok = ms and pct(ms, 0.99) <= 2.0 and fast == n
    print(f"targets (p99 <= 2 ms, 100% both sides reset): {'met' if target_ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
