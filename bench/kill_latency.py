#!/usr/bin/env python3
"""Kill latency and kill success under bulk transfer, between real Linux TCP stacks.

Inside a ``tests/netlab.NetLab`` (root, network namespaces) the server streams
data to the client on every connection (~8 MB/s each); after ``--before``
bytes the client sends a request with a trigger word that a rule of
``mirrorwatch listen`` (on the mirror port, injecting on that same port)
answers:

- ``both``: FORBIDDEN, a ``reject`` rule: both endpoints are reset;
- ``rejectsrc``: SRCONLY, a ``rejectsrc`` rule: only the trigger's sender
  (the client, which is receiving the stream) is reset, so the forged RST
  must carry the client's RCV.NXT as it is when the RST arrives, with the
  server's segments still arriving.

While the kills run, one more client repeatedly fetches 1.5 MB from the same
server (benign: no trigger word); every such transfer must complete byte-exact
and no forged frame may name it.

- Latency: tcpdump in the sensor namespace records, on the mirror port, the
  trigger segment arriving and the first forged RST toward a target leaving
  (one host clock, kernel timestamps, nanosecond precision).
- Success: each endpoint's socket reports what it saw; a kill succeeds when
  every target gets ECONNRESET within 1 s of the trigger.  The time from the
  trigger to the target's ECONNRESET is reported too (median, p99).

Configurations: the mirror port's offloads off (TSO/GSO/GRO, as ``ethtool -K
IFACE tso off gso off gro off`` does: then ``capture.immediate=auto`` turns
libpcap's immediate mode on) and on (the veth default: TPACKET_V3 blocks,
handed over when full or after ``capture.read-timeout``, 1 ms), for both
kinds; and, for ``both``, offloads on with the read-timeout at 10 ms.  The
sensor runs at the default scheduling priority, the traffic on the same cores.

    sudo .venv/bin/python bench/kill_latency.py [--connections 200] [--parallel 2] [--before 500000] [--configs 4,5]
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
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from netlab import PYTHON, NetLab, NetLabError  # noqa: E402
from test_kill_live import BENIGN_BYTES, PEER_COMMON, PEER_SERVER, RULES, injection_port  # noqa: E402
from test_live_immediate import set_offloads  # noqa: E402

PORT = 8080
WORDS = {"both": "FORBIDDEN", "rejectsrc": "SRCONLY"}  # trigger word of each kind's rule (test_kill_live.RULES)
RESET_WITHIN = 1.0  # seconds: a kill that takes longer failed its purpose

# N connections, P at a time: each reads `before` bytes of the server's stream, sends the trigger
# word, waits; one more thread fetches benign transfers until they are done.  One JSON line each.
CLIENTS = PEER_COMMON + f"RESET_WITHIN = {RESET_WITHIN}\n" + r"""
import threading
host, n, par, before, word, benign, hello = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
                                             sys.argv[5], int(sys.argv[6]), sys.argv[7].encode())
lock = threading.Lock()
todo = list(range(n))
done = threading.Event()
def emit(**kw):
    with lock:
        sys.stdout.write(json.dumps(kw) + "\n"); sys.stdout.flush()
def one():
    c = socket.create_connection((host, 8080), timeout=5)
    port = c.getsockname()[1]
    c.sendall(hello + b"\n")
    got = 0
    while got < before:
        k = len(c.recv(65536))
        if not k:
            return {"port": port, "result": "closed before the trigger"}
        got += k
    t0 = time.time()
    c.sendall(b"now " + word.encode() + b" while you stream\n")
    res = wait_error(c, 2 * RESET_WITHIN)  # then close: a failed kill stops loading the sensor
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
            emit(kind="kill", **one())
        except OSError as e:
            emit(kind="kill", error=str(e))
def benign_worker():
    want = random.Random(benign).randbytes(benign)
    while not done.is_set():
        buf, res, port, t0 = bytearray(), "ok", None, time.time()
        try:
            c = socket.create_connection((host, 8080), timeout=5)
            port = c.getsockname()[1]
            c.sendall(b"benign %d\n" % benign)
            c.settimeout(10)
            while len(buf) < benign:
                d = c.recv(65536)
                if not d:
                    break
                buf += d
            c.close()
            res = "ok" if bytes(buf) == want else "short" if len(buf) < benign else "corrupt"
        except OSError as e:
            res = errno.errorcode.get(e.errno, str(e))
        emit(kind="benign", port=port, result=res, got=len(buf), t0=t0, t1=time.time())
ts = [threading.Thread(target=worker) for _ in range(par)]
b = threading.Thread(target=benign_worker)
[t.start() for t in ts + [b]]
[t.join() for t in ts]
done.set()
b.join()
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


def latencies(frames, word: bytes, client_only: bool) -> list[float]:
    """Seconds from each trigger arriving to the first forged RST of its session leaving
    (toward the client only, when only the client is a target: the client's own kernel
    resets the server afterwards).

    Sessions are told apart by client port *and* time: a port the kernel reuses
    for a later connection (its earlier one was reset, so no TIME_WAIT holds it)
    starts a new session at its next trigger."""
    trig: dict[int, float] = {}  # client port -> trigger time of its current session
    lat: list[float] = []
    for ts, f in frames:
        if len(f) < 54 or f[12:14] != b"\x08\x00" or f[23] != 6:
            continue
        t = 14 + (f[14] & 15) * 4
        sport, dport = struct.unpack_from("!HH", f, t)
        payload = f[t + ((f[t + 12] >> 4) * 4):]
        if dport == PORT and word in payload:
            trig.setdefault(sport, ts)
        elif f[t + 13] & 0x04 and (sport == PORT or not client_only):
            cport = sport if dport == PORT else dport
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


# (name, kind, mirror port offloads on, listen options)
CONFIGS = (
    ("both, offloads off", "both", False, ()),
    ("both, offloads on", "both", True, ()),
    ("both, offloads on, read-timeout 10 ms", "both", True, ("--set", "capture.read-timeout=0.01")),
    ("rejectsrc, offloads off", "rejectsrc", False, ()),
    ("rejectsrc, offloads on", "rejectsrc", True, ()),
)


def start_sensor(lab, tmp: Path, tag: str, extra: tuple, args):
    """tcpdump and ``mirrorwatch listen`` on the mirror port, both started; (tcpdump, listen, pcap, eve, err)."""
    pcap, eve, err = tmp / f"{tag}.pcap", tmp / f"{tag}-eve.json", tmp / f"{tag}-mw.err"
    dump_err = tmp / f"{tag}-tcpdump.err"
    dump = lab.popen(lab.sensor, "tcpdump", "-i", lab.monitor, "-n", "-s", "200", "-B", "65536",
                     "--time-stamp-precision=nano", "-w", str(pcap),
                     f"tcp and (tcp[tcpflags] & tcp-rst != 0 or (dst port {PORT} and tcp[tcpflags] & tcp-push != 0))",
                     stdout=subprocess.DEVNULL, stderr=open(dump_err, "w"))
    _wait_for(dump, dump_err, "tcpdump", 10)  # else the first kills go unseen
    listen = ("listen", lab.monitor, "-r", str(tmp / "kill.rules"), "--eve", str(eve), "--no-table",
              "-q", "--set", "capture.stats-interval=0", *extra, *[a for kv in args.sets for a in ("--set", kv)])
    # the operator's `nice -n N mirrorwatch listen ...` or `chrt -r P ...`: every thread inherits it
    prio = ("chrt", "-r", str(args.rt)) if args.rt else ("nice", "-n", str(args.nice)) if args.nice else ()
    if prio:
        mw = lab.popen(lab.sensor, *prio, PYTHON, "-m", "mirrorwatch", *listen,
                       env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=subprocess.DEVNULL, stderr=open(err, "w"))
    else:
        mw = lab.mirrorwatch(*listen, stdout=subprocess.DEVNULL, stderr=open(err, "w"))
    _wait_for(mw, err, "mirrorwatch", 30)
    time.sleep(0.5)
    return dump, mw, pcap, eve, err


def _wait_for(proc, err: Path, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while "listening on" not in err.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start: {err.read_text()[-500:]}")
        time.sleep(0.05)


def run_config(lab, tmp: Path, name: str, kind: str, offloads: bool, extra: tuple, args) -> dict:
    """One ``mirrorwatch listen`` over ``args.connections`` kills of ``kind``; the measurements."""
    set_offloads(lab, offloads)
    hello = f"stream {int(args.rate * 1e6)}" if args.rate else "bulk"
    tag = "".join(ch if ch.isalnum() else "-" for ch in name)
    dump, mw, pcap, eve, err = start_sensor(lab, tmp, tag, extra, args)
    t_start, t_wall = time.monotonic(), time.time()  # the server's records of earlier configurations are older
    r = lab.run(lab.client, PYTHON, "-c", CLIENTS, lab.SERVER4, str(args.connections), str(args.parallel),
                str(args.before), WORDS[kind], str(BENIGN_BYTES), hello, timeout=60 + args.connections * 2)
    wall = time.monotonic() - t_start
    time.sleep(0.5)
    lab.stop(mw)
    lab.stop(dump, signal.SIGINT)
    records = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    servers = [rec for rec in (json.loads(line) for line in (tmp / "server.jsonl").read_text().splitlines()
                               if line.startswith("{")) if (rec.get("t") or 0) >= t_wall]
    events = [json.loads(line) for line in eve.read_text().splitlines()]
    listening = next((ln for ln in err.read_text().splitlines() if "listening on" in ln), "")
    rto = re.search(r"read-timeout \d+ ms", listening)
    out = {"name": name, "kind": kind, "wall": wall,
           "capture": rto[0] if rto else "immediate mode" if "immediate mode" in listening else "?",
           "warning": next((ln for ln in err.read_text().splitlines() if "warning" in ln), None),
           "ms": [v * 1000 for v in latencies(read_pcap(pcap), WORDS[kind].encode(), kind == "rejectsrc")],
           "stats": [e for e in events if e["event_type"] == "stats"][-1]["stats"]}
    out.update(outcomes(kind, [c for c in records if c["kind"] == "kill"], servers))
    out.update(collateral([b for b in records if b["kind"] == "benign"], events))
    return out


def outcomes(kind: str, clients: list[dict], servers: list[dict]) -> dict:
    """Per kill: did every target get ECONNRESET, and how soon after the trigger."""
    out = {"n": len(clients), "client": 0, "server": 0, "reset": 0, "fast": 0, "reset_s": [], "failures": [],
           "slow": []}
    for c, s in pair_by_port(clients, servers):
        cr, sr = c.get("result") == "ECONNRESET", s.get("result") == "ECONNRESET"
        out["client"] += cr
        out["server"] += sr
        targets = [c] if kind == "rejectsrc" else [c, s]
        if not all(t.get("result") == "ECONNRESET" for t in targets):
            out["failures"].append({"client": c, "server": s})
            continue
        out["reset"] += 1
        after = max(t["t"] - c["t_trigger"] for t in targets)
        out["reset_s"].append(after)
        if after <= RESET_WITHIN:
            out["fast"] += 1
        else:
            out["slow"].append((c["port"], c["t"] - c["t_trigger"], s.get("t", 0) - c["t_trigger"]))
    return out


def collateral(benign: list[dict], events: list[dict]) -> dict:
    """Benign transfers alongside: how many completed byte-exact, and any a forged frame named while it ran
    (the kernel reuses client ports: a port is a benign transfer's only between its start and end)."""
    kills = [(datetime.strptime(e["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp(), e.get("src_port"),
              e.get("dest_port")) for e in events if e["event_type"] == "kill"]
    touched = sorted({b["port"] for b in benign if b.get("port")
                      for ts, sp, dp in kills if b["port"] in (sp, dp) and b["t0"] <= ts <= b["t1"]})
    return {"benign": len(benign), "benign_ok": sum(b["result"] == "ok" for b in benign),
            "benign_bad": [b for b in benign if b["result"] != "ok"][:5], "benign_touched": touched}


def print_tables(results: list[dict]) -> None:
    names = " | ".join(r["name"] for r in results)
    print("| trigger arrival -> first RST toward a target leaving the mirror port (ms) | " + names + " |")
    print("| --- |" + " ---: |" * len(results))
    for label, fn in (("kills timed", len), ("median", statistics.median), ("p90", lambda v: pct(v, 0.90)),
                      ("p99", lambda v: pct(v, 0.99)), ("max", max)):
        cells = [(str(fn(r["ms"])) if label == "kills timed" else f"{fn(r['ms']):.3f}") if r["ms"] else "-"
                 for r in results]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()
    print("| kill outcome | " + names + " |")
    print("| --- |" + " ---: |" * len(results))
    for label, key in (("client got ECONNRESET", "client"), ("server got ECONNRESET", "server"),
                       ("every target reset", "reset"), ("every target reset within 1 s", "fast")):
        print(f"| {label} | " + " | ".join(f"{r[key]}/{r['n']} ({100.0 * r[key] / max(r['n'], 1):.1f}%)"
                                           for r in results) + " |")
    for label, q in (("trigger -> last target reset, median (ms)", 0.5),
                     ("trigger -> last target reset, p99 (ms)", 0.99)):
        print(f"| {label} | " + " | ".join(f"{1000 * pct(r['reset_s'], q):.1f}" if r["reset_s"] else "-"
                                           for r in results) + " |")
    print("| benign transfers byte-exact / untouched | " + " | ".join(
        f"{r['benign_ok']}/{r['benign']} / {'yes' if not r['benign_touched'] else 'NO'}" for r in results) + " |")
    print()


def print_details(results: list[dict]) -> None:
    for r in results:
        k, cap = r["stats"].get("kill", {}), r["stats"].get("capture", {})
        print(f"{r['name']}: {k.get('frames_sent', 0)} frames sent in {k.get('bursts', 0)} bursts "
              f"({k.get('first_shots', 0)} first shots: {k.get('first_shot_frames', 0)} frames; "
              f"{k.get('refires', 0)} re-fires and {k.get('challenge_ack_replies', 0)} challenge-ACK answers: "
              f"{k.get('answer_frames', 0)} frames, {k.get('answers_suppressed', 0)} suppressed; "
              f"{k.get('peer_data_bursts', 0)} chases of the streaming peer: {k.get('chase_frames', 0)} frames, "
              f"{k.get('chase_suppressed', 0)} suppressed, {k.get('response_spent', 0)} packets after both were "
              f"spent; {k.get('predicted_frames', 0)} predicted frames; {k.get('frames_capped', 0)} frames withheld "
              f"by inject.max-per-second), {k.get('send_errors', 0)} send errors, "
              f"{k.get('own_frames_seen', 0)} own frames recognised, {cap.get('drops', 0)} capture drops, "
              f"{r['wall']:.1f}s, capture in {r['capture']}")
        if r["warning"]:
            print(f"  {r['warning']}")
        for fail in r["failures"][:5]:
            print(f"  not reset: client {fail['client'].get('port')} saw {fail['client'].get('result')}, "
                  f"server saw {fail['server'].get('result')}")
        for port, tc, ts in r["slow"][:5]:
            print(f"  reset late: client {port} reset after {tc:.3f} s, server after {ts:.3f} s")
        for b in r["benign_bad"]:
            print(f"  benign transfer from port {b.get('port')}: {b['result']} after {b['got']:,} bytes")
        if r["benign_touched"]:
            print(f"  forged frames named benign ports {r['benign_touched']}")
        clean = not r["benign_bad"] and not r["benign_touched"]
        if r["kind"] == "both":
            met = r["ms"] and pct(r["ms"], 0.99) <= 2.0 and r["fast"] == r["n"] and clean
            goal = "p99 <= 2 ms, 100% reset on both sides within 1 s, benign untouched"
        else:
            met = r["n"] and r["fast"] >= 0.99 * r["n"] and clean
            goal = ">= 99% of requesters reset within 1 s, benign untouched"
        print(f"  targets ({goal}): {'met' if met else 'NOT met'}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--before", type=int, default=500_000, help="bytes the client reads before the trigger")
    ap.add_argument("--rate", type=float, default=8.0, metavar="MB/S",
                    help="the server's stream, paced by its kernel (SO_MAX_PACING_RATE) in evenly spread "
                         "segments; 0: 16 KiB writes every 2 ms (the bench before 2026-12-03)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting for mirrorwatch in every configuration (repeatable)")
    ap.add_argument("--nice", type=int, default=0, metavar="N",
                    help="run the sensor under `nice -n N` (e.g. -10: ahead of other jobs on a busy machine)")
    ap.add_argument("--rt", type=int, default=0, metavar="P",
                    help="run the sensor under `chrt -r P` (real-time round-robin: it gets a core when frames arrive, "
                         "whatever else runs)")
    ap.add_argument("--busy", type=int, default=0, metavar="K",
                    help="K busy-looping processes (outside the lab) compete for the CPUs during the run")
    ap.add_argument("--configs", default="", metavar="1,2,...",
                    help="which configurations to run (numbers, in the order above; default: all)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("kill_latency: needs root (network namespaces); skipped", file=sys.stderr)
        return 0
    load = os.getloadavg()[0]
    chosen = [c for i, c in enumerate(CONFIGS) if not args.configs or str(i + 1) in args.configs.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="mwkillbench"))
    (tmp / "kill.rules").write_text(RULES)
    hogs: list[subprocess.Popen] = []
    try:
        lab = NetLab(inject=True).__enter__()
    except NetLabError as e:
        print(f"kill_latency: cannot build the lab: {e}", file=sys.stderr)
        return 1
    try:
        injection_port(lab, "mon")
        lab.python(lab.server, PEER_SERVER, stdout=open(tmp / "server.jsonl", "w"), stderr=subprocess.STDOUT)
        lab.wait_port(lab.server, PORT)
        for _ in range(args.busy):  # killed in the finally below
            hogs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        results = [run_config(lab, tmp, *config, args) for config in chosen]
    except (RuntimeError, NetLabError) as e:
        print(f"kill_latency: {e}", file=sys.stderr)
        return 1
    finally:
        for h in hogs:
            h.kill()
            h.wait()
        lab.close()
    stream = f"{args.rate:g} MB/s paced" if args.rate else "16 KiB every 2 ms"
    print(f"kill latency and success: {args.connections} connections per configuration under bulk transfer "
          f"({args.parallel} at a time, server streaming {stream} each, trigger after {args.before:,} bytes, "
          f"benign {BENIGN_BYTES:,}-byte transfers alongside)"
          + (f"; sensor under chrt -r {args.rt}" if args.rt else f"; sensor under nice -n {args.nice}" if args.nice
             else "")
          + (f"; {args.busy} busy-looping processes competing for the CPUs" if args.busy else "")
          + f"; load average before the run {load:.2f}, after {os.getloadavg()[0]:.2f}\n")
    print_tables(results)
    print_details(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
