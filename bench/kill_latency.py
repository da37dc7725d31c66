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

Configurations: the default settings with the mirror port's offloads off
(TSO/GSO/GRO, as ``ethtool -K IFACE tso off gso off gro off`` does: then
``capture.immediate=auto`` turns libpcap's immediate mode on, each frame
handed over at once), the default settings with offloads on (the veth
default: auto keeps TPACKET_V3 blocks, handed over when full or after
``capture.read-timeout``, 1 ms), and offloads on with the read-timeout at
10 ms (the default before 2026-11-25).
The sensor runs at the default scheduling priority, the traffic on the same
2 cores.

    sudo .venv/bin/python bench/kill_latency.py [--connections 200] [--parallel 2] [--before 500000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
from test_live_immediate import set_offloads  # noqa: E402

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
        n = len(c.recv(65536))
        if not n:
            return {"port": port, "result": "closed before the trigger"}
        got += n
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


def latencies(frames) -> list[float]:
    """Seconds from each trigger arriving to the first forged RST of its session leaving.

    Sessions are told apart by client port *and* time: a port the kernel reuses
    for a later connection (its earlier one was reset, so no TIME_WAIT holds it)
    starts a new session at its next trigger."""
    trig: dict[int, float] = {}  # client port -> trigger time of its current session
    lat: list[float] = []
    for ts, f in frames:
        if len(f) < 54 or f[12:14] != b"\x08\x00" or f[23] != 6:
            continue
        ihl = (f[14] & 15) * 4
        t = 14 + ihl
        sport, dport = struct.unpack_from("!HH", f, t)
        flags = f[t + 13]
        payload = f[t + ((f[t + 12] >> 4) * 4):]
        if dport == 8080 and b"FORBIDDEN" in payload:
            if sport not in trig:
                trig[sport] = ts
        elif flags & 0x04:
            cport = sport if dport == 8080 else dport
            if cport in trig:
                lat.append(ts - trig.pop(cport))
    return lat


def pair_by_port(clients: list[dict], servers: list[dict]) -> list[tuple[dict, dict]]:
    """Each client record with the server record of the same connection: same port, and the
    i-th use of a port on one side is its i-th use on the other (a reused port's
    connections follow each other: the earlier was reset before the kernel reused it)."""
    by_port: dict[int, list[dict]] = {}
    for rec in sorted(servers, key=lambda r: r.get("t") or 0):
        by_port.setdefault(rec.get("peer"), []).append(rec)
    out = []
    for c in sorted(clients, key=lambda r: r.get("t_trigger") or 0):
        recs = by_port.get(c.get("port"))
        out.append((c, recs.pop(0) if recs else {}))
    return out


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))]


# (name, mirror port offloads on, listen options)
CONFIGS = (
    ("default, offloads off", False, ()),
    ("default, offloads on", True, ()),
    ("offloads on, read-timeout 10 ms", True, ("--set", "capture.read-timeout=0.01")),
)


def run_config(lab, tmp: Path, name: str, offloads: bool, extra: tuple, args) -> dict:
    """One ``mirrorwatch listen`` with ``extra`` options over ``args.connections`` kills; the measurements."""
    set_offloads(lab, offloads)
    tag = "".join(ch if ch.isalnum() else "-" for ch in name)
    pcap = tmp / f"{tag}.pcap"
    dump = lab.popen(lab.sensor, "tcpdump", "-i", lab.monitor, "-n", "-s", "200", "-B", "65536",
                     "--time-stamp-precision=nano", "-w", str(pcap),
                     "tcp and (tcp[tcpflags] & tcp-rst != 0 or (dst port 8080 and tcp[tcpflags] & tcp-push != 0))",
                     stdout=subprocess.DEVNULL, stderr=open(tmp / f"{tag}-tcpdump.err", "w"))
    deadline = time.monotonic() + 10
    while "listening on" not in (tmp / f"{tag}-tcpdump.err").read_text():  # else the first kills go unseen
        if dump.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"tcpdump did not start: {(tmp / f'{tag}-tcpdump.err').read_text()[-300:]}")
        time.sleep(0.05)
    eve = tmp / f"{tag}-eve.json"
    err = tmp / f"{tag}-mw.err"
    listen = ("listen", lab.monitor, "-r", str(tmp / "kill.rules"), "--eve", str(eve), "--no-table",
              "-q", "--set", "capture.stats-interval=0", *extra, *[a for kv in args.sets for a in ("--set", kv)])
    if args.nice:  # the operator's `nice -n N mirrorwatch listen ...`: every thread inherits it
        mw = lab.popen(lab.sensor, "nice", "-n", str(args.nice), PYTHON, "-m", "mirrorwatch", *listen,
                       env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=subprocess.DEVNULL, stderr=open(err, "w"))
    else:
        mw = lab.mirrorwatch(*listen, stdout=subprocess.DEVNULL, stderr=open(err, "w"))
    deadline = time.monotonic() + 30
    while "listening on" not in err.read_text():
        if mw.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"mirrorwatch did not start: {err.read_text()[-500:]}")
        time.sleep(0.05)
    time.sleep(0.5)
    t_start = time.monotonic()
    t_wall = time.time()  # the server's records of earlier configurations are older
    r = lab.run(lab.client, PYTHON, "-c", CLIENTS, lab.SERVER4, str(args.connections), str(args.parallel),
                str(args.before), timeout=60 + args.connections * 2)
    wall = time.monotonic() - t_start
    time.sleep(0.5)
    lab.stop(mw)
    lab.stop(dump, signal.SIGINT)
    clients = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    servers = [rec for rec in (json.loads(line) for line in (tmp / "server.jsonl").read_text().splitlines()
                               if line.startswith("{")) if (rec.get("t") or 0) >= t_wall]
    events = [json.loads(line) for line in eve.read_text().splitlines()]
    started = err.read_text()
    listening = next((ln for ln in started.splitlines() if "listening on" in ln), "")
    rto = re.search(r"read-timeout \d+ ms", listening)
    mode = rto[0] if rto else "immediate mode" if "immediate mode" in listening else "?"
    out = {"name": name, "wall": wall, "capture": mode,
           "warning": next((ln for ln in started.splitlines() if "warning" in ln), None), "n": len(clients), "client": 0, "server": 0, "both": 0, "fast": 0,
           "ms": [v * 1000 for v in latencies(read_pcap(pcap))],
           "stats": [e for e in events if e["event_type"] == "stats"][-1]["stats"]}
    for c, s in pair_by_port(clients, servers):
        cr = c.get("result") == "ECONNRESET"
        sr = s.get("result") == "ECONNRESET"
        out["client"] += cr
        out["server"] += sr
        out["both"] += cr and sr
        out["fast"] += cr and sr and c["t"] - c["t_trigger"] <= 1.0 and s["t"] - c["t_trigger"] <= 1.0
        if not (cr and sr):
            out.setdefault("failures", []).append({"client": c, "server": s})
        elif c["t"] - c["t_trigger"] > 1.0 or s["t"] - c["t_trigger"] > 1.0:
            out.setdefault("slow", []).append((c["port"], c["t"] - c["t_trigger"], s["t"] - c["t_trigger"]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--before", type=int, default=500_000, help="bytes the client reads before the trigger")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting for mirrorwatch in every configuration (repeatable)")
    ap.add_argument("--nice", type=int, default=0, metavar="N",
                    help="run the sensor under `nice -n N` (e.g. -10: ahead of other jobs on a busy machine)")
    ap.add_argument("--busy", type=int, default=0, metavar="K",
                    help="K busy-looping processes (outside the lab) compete for the CPUs during the run")
    ap.add_argument("--configs", default="", metavar="1,2,3",
                    help="which configurations to run (numbers, in the order above; default: all)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("kill_latency: needs root (network namespaces); skipped", file=sys.stderr)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="mwkillbench"))
    hogs: list[subprocess.Popen] = []
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
        names = [c for c in args.configs.split(",") if c] if args.configs else None
        for _ in range(args.busy):  # killed in the finally below
            hogs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        results = [run_config(lab, tmp, name, off, extra, args) for i, (name, off, extra) in enumerate(CONFIGS)
                   if names is None or str(i + 1) in names]
    except (RuntimeError, NetLabError) as e:
        print(f"kill_latency: {e}", file=sys.stderr)
        return 1
    finally:
        for h in hogs:
            h.kill()
            h.wait()
        lab.close()
    print(f"kill latency and success: {args.connections} connections per configuration under bulk transfer "
          f"({args.parallel} at a time, server streaming ~8 MB/s each, trigger after {args.before:,} bytes)"
          + (f"; sensor under nice -n {args.nice}" if args.nice else "")
          + (f"; {args.busy} busy-looping processes competing for the CPUs" if args.busy else ""))
    print()
    print("| trigger arrival -> first RST leaving the mirror port (ms) | " + " | ".join(r["name"] for r in results) + " |")
    print("| --- |" + " ---: |" * len(results))
    for label, fn in (("kills timed", len), ("median", statistics.median), ("p90", lambda v: pct(v, 0.90)),
                      ("p99", lambda v: pct(v, 0.99)), ("max", max)):
        cells = [(f"{fn(r['ms']):.3f}" if label != "kills timed" else str(fn(r["ms"]))) if r["ms"] else "-"
                 for r in results]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()
    print("| kill outcome | " + " | ".join(r["name"] for r in results) + " |")
    print("| --- |" + " ---: |" * len(results))
    for label, key in (("client got ECONNRESET", "client"), ("server got ECONNRESET", "server"),
                       ("both reset", "both"), ("both reset within 1 s of the trigger", "fast")):
        print(f"| {label} | " + " | ".join(f"{r[key]}/{r['n']} ({100.0 * r[key] / max(r['n'], 1):.1f}%)"
                                           for r in results) + " |")
    print()
    for r in results:
        k, cap = r["stats"].get("kill", {}), r["stats"].get("capture", {})
        print(f"{r['name']}: {k.get('frames_sent', 0)} frames sent in {k.get('bursts', 0)} bursts "
              f"({k.get('refires', 0)} re-fires, {k.get('challenge_ack_replies', 0)} challenge-ACK answers), "
              f"{k.get('send_errors', 0)} send errors, {k.get('own_frames_seen', 0)} own frames recognised, "
              f"{cap.get('drops', 0)} capture drops, {r['wall']:.1f}s, capture in {r['capture']}")
        if r["warning"]:
            print(f"  {r['warning']}")
        for fail in r.get("failures", [])[:5]:
            print(f"  not reset: client {fail['client'].get('port')} saw {fail['client'].get('result')}, "
                  f"server saw {fail['server'].get('result')}")
        for port, tc, ts in r.get("slow", [])[:5]:
            print(f"  reset late: client {port} reset after {tc:.3f} s, server after {ts:.3f} s")
        met = r["ms"] and pct(r["ms"], 0.99) <= 2.0 and r["fast"] == r["n"]
        print(f"  targets (p99 <= 2 ms, 100% of sessions reset on both sides within 1 s): {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
