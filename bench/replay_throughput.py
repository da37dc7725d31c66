#!/usr/bin/env python3
"""Replay throughput: mirrorwatch against the libpcap floor, compiled and interpreted, in one run.

    .venv/bin/python bench/replay_throughput.py [--repeat N] [--skip-et] [--skip-1m] [--room-packets N]

For each capture -- the corpus's real ``ndpi-mixed-ethernet.pcap`` (100k packets) and the
generated ``pcaps/bench-1m.pcap`` (1M packets of short sessions, made when missing) --
each configuration runs in its own child process (peak RSS from ``os.wait4``):

1. ``floor``: pcapy-ng reading the file with a no-op callback -- the most any Python
   consumer of libpcap can do on this machine;
2. ``minimal`` (for scale): unpack Ethernet/IPv4/TCP in one ``struct`` call, verify both
   checksums, find the session in a dict, append the payload and block-scan it with
   hyperscan; no TCP state, reordering, stream inspection, rule verification or output;
3. ``mirrorwatch replay`` with one content rule, the bundled signatures and ET Open (the
   corpus's), once with the compiled build and once interpreted (``MIRRORWATCH_PURE=1``),
   with the rule cache (``detect.sgh-mpm-caching-path``: ``.bench/rule-cache``, filled by one
   untimed run of each before the timed ones, as a sensor that ran before); ET Open also
   compiled without it (``no rule cache``: parsing and compiling its rules in the run).

Every configuration runs ``--repeat`` times (default 3), alternated (all once, then all
again), and each figure is the median.  Two ratios to the floor: **whole process** (the
floor's wall time over ours, each process start-up, rule compilation and all: the
measure issue 14 sets its targets in) and **CPU** (packets per CPU second of the
processing itself, the replay's own timers, over the floor's: what the code does with one
core whatever else runs on the machine).  Then where the time goes, per room, in both
builds (CPU µs per packet over the ndpi capture held in memory).  Prints tables, then the
same as markdown for the README.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tree this bench is in (its children run there too), not an installed one
PY = os.environ.get("PY", sys.executable)
CORPUS = Path(os.environ.get("MIRRORWATCH_CORPUS", ROOT.parent / "shared" / "corpus"))
NDPI = CORPUS / "bench" / "ndpi-mixed-ethernet.pcap"
BENCH_1M = ROOT / "pcaps" / "bench-1m.pcap"
ET_OPEN = CORPUS / "rules" / "et-open"
BUNDLED = ROOT / "signatures"
ONE_RULE = 'alert tcp any any -> any any (msg:"one content rule"; content:"mirrorwatch-bench-marker"; sid:1;)\n'
BUILDS = {"compiled": "0", "interpreted": "1"}  # MIRRORWATCH_PURE
RULE_CACHE = ROOT / ".bench" / "rule-cache"
WARM_PCAP = ROOT / "pcaps" / "demo.pcap"  # what fills the rule cache: any capture does
NO_CACHE = "compiled, no rule cache"  # a configuration of ET Open: the cold start
CACHE_OFF = ["--set", "detect.sgh-mpm-caching=no", "--set", "detect.rule-set-caching=no"]
RSS_NOISE = 1.02  # peak RSS of two runs of one build differs by up to ~2% (allocator, collector timing)
# issue 14's targets: whole-process ratio to the floor of the compiled build
TARGETS = {("ndpi", "one content rule"): 0.09, ("ndpi", "bundled"): 0.09, ("bench-1m", "bundled"): 0.06,
           ("ndpi", "ET Open"): 0.06, ("bench-1m", "ET Open"): 0.06}

FLOOR = r"""
import sys, time, pcapy
def cb(h, d):
    pass
c = time.process_time()
pcapy.open_offline(sys.argv[1]).loop(0, cb)
cpu = time.process_time() - c
n = [0, 0]
def count(h, d):
    n[0] += 1
    n[1] += h.getlen()
pcapy.open_offline(sys.argv[1]).loop(0, count)  # the totals, not timed
print(f"FLOOR packets={n[0]} bytes={n[1]} cpu={cpu:.6f}")
"""

MINIMAL = r"""
import struct, sys, time, hyperscan, pcapy
ETH_IP4_TCP = struct.Struct("!6s6sHBBHHHBBH4s4sHHIIHHHH").unpack_from
frm = int.from_bytes
db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
lits = [b"uid=0\\(root\\)", b"EICAR-STANDARD-ANTIVIRUS", b"\\/dev\\/tcp\\/", b"union", b"\\$\\{jndi:", b"etc\\/passwd"]
db.compile(expressions=lits, ids=list(range(len(lits))), elements=len(lits),
           flags=[hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_CASELESS] * len(lits))
hits = []
def on_hit(i, a, b, c, d):
    hits.append(i)
sessions = {}
n = [0, 0]
def cb(hdr, f):
    n[0] += 1
    n[1] += hdr.getlen()
    if len(f) < 54 or f[12] != 8 or f[13] != 0 or f[14] != 0x45 or f[23] != 6:
        return
    (_, _, _, _, _, tlen, _, _, _, _, _, src, dst, sp, dp, seq, ack, offfl, win, _, _) = ETH_IP4_TCP(f, 0)
    end = 14 + tlen
    if frm(f[14:34], "little") % 0xFFFF or (frm(f[26:end], "little") + ((tlen - 14) << 8)) % 0xFFFF:
        return
    key = (src, sp, dst, dp) if src < dst else (dst, dp, src, sp)
    s = sessions.get(key)
    if s is None:
        s = sessions[key] = [0, 0, bytearray(), bytearray()]
    d = 0 if src < dst else 1
    s[d] += 1
    payload = f[34 + ((offfl >> 12) << 2):end]
    if payload:
        s[d + 2] += payload
        hits.clear()
        db.scan(payload, match_event_handler=on_hit)
c = time.process_time()
pcapy.open_offline(sys.argv[1]).loop(0, cb)
print(f"MINIMAL packets={n[0]} bytes={n[1]} cpu={time.process_time() - c:.6f}")
"""

# CPU time per packet in each room (Engine.process over frames held in memory).  The rooms kept as
# Python objects (detect, application layer, killer) get their entry points wrapped on the instance,
# the flow table (a C struct) on a stand-in; a wrapped call's time is its own minus the wrapped calls
# it makes (the flows room calls the application layer through the stream observers, and detect's
# stream hook), less the cost of the wrapper itself (measured on a no-op).  The decoder is a typed C
# field of the compiled engine (a C call, no wrapper possible): it is timed on its own over the same
# frames, which is the same work, and taken out of what is left (the engine's glue).
ROOMS = r"""
import sys, time
import mirrorwatch
from mirrorwatch.sources.pcapfile import PcapFiles
from mirrorwatch.core.decode.decoder import Decoder
from mirrorwatch.core.engine import Engine
from mirrorwatch.core.kill import Killer
from mirrorwatch.cli.collector import tune_gc
from mirrorwatch.cli.pipeline import load_ruleset
from mirrorwatch.core.settings import Settings
frames = []
for fr in PcapFiles([sys.argv[1]]):
    frames.append(fr)
    if len(frames) >= int(sys.argv[3]):
        break
s = Settings()
eng = Engine(s, load_ruleset([sys.argv[2]], s), killer=Killer(settings=s))  # as replay runs it
tune_gc()
pt = time.process_time
acc = {}
stack = [0.0]  # time of the wrapped calls made inside the current one
def wrap(obj, names, label):
    a = acc.setdefault(label, [0.0, 0])
    for name in names:
        f = getattr(obj, name)
        def w(*args, f=f):
            stack.append(0.0)
            t = pt()
            r = f(*args)
            el = pt() - t
            inner = stack.pop()
            a[0] += el - inner
            a[1] += 1
            stack[-1] += el
            return r
        setattr(obj, name, w)
class Noop:
    def f(self, *args):
        return None
probe, N = Noop(), 200000
t = pt()
for _ in range(N):
    probe.f(1, 2, 3)
bare = pt() - t
wrap(probe, ["f"], "_probe")
t = pt()
for _ in range(N):
    probe.f(1, 2, 3)
over_total = max(pt() - t - bare, 0.0) / N  # what one wrapped call adds to the whole loop
over = acc.pop("_probe")[0] / N  # what a wrapped call adds to its own measured interval
class StandIn:  # a room that is a C struct (the flow table: no instance dict to wrap a method on)
    def __init__(self, room):
        self.room = room
    def __getattr__(self, name):
        return getattr(self.room, name)
eng.flows = StandIn(eng.flows)  # the engine calls it instead: the wrapped entry points, else the room's own
wrap(eng.flows, ["process"], "flows + reassembly")
wrap(eng.detector, ["inspect_unguarded", "inspect", "flow_end", "on_new_stream"], "detect")
wrap(eng.applayer, ["stream_data", "stream_gap", "stream_end", "udp", "logged", "flow_end", "on_new_stream"],
     "application layer")
wrap(eng.killer, ["on_packet", "own_frame"], "kill decisions")
t = pt()
for ts, lt, fr, wl in frames:
    eng.process(ts, lt, fr, wl)
eng.finish()
total = pt() - t
dec = Decoder(s)
t = pt()
for i, (ts, lt, fr, wl) in enumerate(frames):
    dec.decode(ts, lt, fr, i + 1)
decode = pt() - t
n = len(frames)
calls = sum(c for _, c in acc.values())
net_total = max(total - calls * over_total, 0.0)
print(f"ROOM decode|{decode / n * 1e6:.2f}")
rooms = decode
for label, (sec, c) in acc.items():
    net = max(sec - c * over, 0.0)
    rooms += net
    print(f"ROOM {label}|{net / n * 1e6:.2f}")
print(f"ROOM engine glue|{max(net_total - rooms, 0.0) / n * 1e6:.2f}")
print(f"ROOM total engine.process|{net_total / n * 1e6:.2f}")
print(f"BUILD {'compiled' if all(mirrorwatch.compiled().values()) else 'interpreted'}")
"""

# The interpreter's own speed on this machine (the interpreted build is bound by it, the floor by libpcap):
# printed beside the figures so runs on different machines can be compared.
PY_REFERENCE = r"""
import time
t = time.process_time()
s = 0
for i in range(5_000_000):
    s += i
print(f"REF {(time.process_time() - t) / 5_000_000 * 1e9:.1f}")
"""

SUMMARY_RE = re.compile(r"([\d,]+) packets, ([\d,]+) bytes, .* in ([\d.]+)s, ([\d.]+)s CPU \(")


def run_child(argv: list[str], env: dict | None = None) -> tuple[str, float, int, int]:
    """(output, wall seconds, exit code, peak RSS bytes) of one child, reaped with os.wait4."""
    t = time.perf_counter()
    with open(os.devnull, "rb") as devnull:
        p = subprocess.Popen(argv, stdin=devnull, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT,
                             env=env)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    return out.decode(errors="replace"), time.perf_counter() - t, os.waitstatus_to_exitcode(status), ru.ru_maxrss * 1024


def reference_ns() -> float:
    """Nanoseconds per iteration of a pure-Python loop (best of 3)."""
    best = float("inf")
    for _ in range(3):
        m = re.search(r"REF ([\d.]+)", run_child([PY, "-c", PY_REFERENCE])[0])
        if m:
            best = min(best, float(m.group(1)))
    return best


def warm_cache(pcap: Path) -> None:
    """Read the file once so every run (the floor first) reads it from the page cache."""
    with open(pcap, "rb") as f:
        while f.read(1 << 24):
            pass


def measure_script(name: str, script: str, tag: str, pcap: Path) -> dict:
    out, wall, code, rss = run_child([PY, "-c", script, str(pcap)])
    m = re.search(tag + r" packets=(\d+) bytes=(\d+) cpu=([\d.]+)", out)
    if code != 0 or not m:
        raise SystemExit(f"{name} failed:\n{out[-3000:]}")
    return {"packets": int(m.group(1)), "bytes": int(m.group(2)), "cpu": float(m.group(3)), "wall": wall,
            "rss": rss, "alerts": None}


def check_compiled(build: str) -> None:
    """A compiled run must run compiled: in a shared checkout an edit can make the build stale mid-run."""
    import mirrorwatch

    reason = mirrorwatch.pure_reason() if build == "compiled" else None
    if reason is not None:
        raise SystemExit(f"the compiled build went stale during the benchmark ({reason}): rebuild and run again")


def measure_replay(pcap: Path, rules: Path, build: str) -> dict:
    argv = [PY, "-m", "mirrorwatch", "replay", "--no-alerts", "--no-table", "--rules", str(rules),
            "--set", f"detect.sgh-mpm-caching-path={RULE_CACHE}", *(CACHE_OFF if build == NO_CACHE else ()), str(pcap)]
    build = "compiled" if build == NO_CACHE else build
    check_compiled(build)
    out, wall, code, rss = run_child(argv, dict(os.environ, MIRRORWATCH_PURE=BUILDS[build]))
    check_compiled(build)
    m = SUMMARY_RE.search(out)
    if code != 0 or not m:
        raise SystemExit(f"replay of {pcap.name} with {rules} ({build}) failed (exit {code}):\n{out[-3000:]}")
    alerts = re.search(r"([\d,]+) alerts?\b", out)
    return {"packets": int(m.group(1).replace(",", "")), "bytes": int(m.group(2).replace(",", "")),
            "elapsed": float(m.group(3)), "cpu": float(m.group(4)), "wall": wall, "rss": rss,
            "alerts": int(alerts.group(1).replace(",", "")) if alerts else None}


def median_of(runs: list[dict]) -> dict:
    out = dict(runs[0])
    for k in ("cpu", "wall", "rss", "elapsed"):
        if k in out:
            out[k] = statistics.median(r[k] for r in runs)
    return out


def measure_capture(label: str, pcap: Path, rulesets: dict, builds: list[str], repeat: int) -> list[dict]:
    """Every configuration on one capture, alternated ``repeat`` times; medians, with the ratios."""
    warm_cache(pcap)
    configs = [("floor (pcapy-ng, no-op callback)", None, None), ("minimal Python loop (for scale)", None, None)]
    configs += [(f"mirrorwatch, {rs}, {b}", rs, b) for rs in rulesets for b in builds]
    if "ET Open" in rulesets and "compiled" in builds:
        configs.append((f"mirrorwatch, ET Open, {NO_CACHE}", "ET Open", NO_CACHE))
    for name, rs, build in configs:  # the rule cache filled as by an earlier run (untimed, a small capture)
        if rs is not None and build != NO_CACHE:
            print(f"  [{label} rule cache] {name}", flush=True)
            measure_replay(WARM_PCAP, rulesets[rs], build)
    runs: dict[str, list] = {name: [] for name, _, _ in configs}
    for i in range(repeat):
        for name, rs, build in configs:
            print(f"  [{label} {i + 1}/{repeat}] {name}", flush=True)
            if rs is None:
                script, tag = (FLOOR, "FLOOR") if name.startswith("floor") else (MINIMAL, "MINIMAL")
                runs[name].append(measure_script(name, script, tag, pcap))
            else:
                runs[name].append(measure_replay(pcap, rulesets[rs], build))
    rows = []
    floor = median_of(runs[configs[0][0]])
    for name, rs, build in configs:
        r = median_of(runs[name])
        pps = r["packets"] / max(r["cpu"], 1e-9)
        rows.append({**r, "name": name, "capture": label, "ruleset": rs, "build": build, "pps": pps,
                     "cpu_ratio": pps / (floor["packets"] / max(floor["cpu"], 1e-9)),
                     "wall_ratio": floor["wall"] / r["wall"], "mbps": r["bytes"] * 8 / max(r["cpu"], 1e-9) / 1e6})
    return rows


def measure_rooms(pcap: Path, rules: Path, packets: int, build: str) -> list[tuple[str, float]]:
    out, _, code, _ = run_child([PY, "-c", ROOMS, str(pcap), str(rules), str(packets)],
                                dict(os.environ, MIRRORWATCH_PURE=BUILDS[build]))
    rows = [line[5:].split("|") for line in out.splitlines() if line.startswith("ROOM ")]
    if code != 0 or not rows or f"BUILD {build}" not in out:
        raise SystemExit(f"room breakdown ({build}) failed:\n{out[-3000:]}")
    return [(label, float(us)) for label, us in rows]


def table_lines(rows: list[dict]) -> list[str]:
    lines = ["| run | packets/s (CPU) | Mbit/s (CPU) | of floor (CPU) | whole process | of floor (whole process) "
             "| peak RSS | alerts |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        alerts = "" if r["alerts"] is None else f"{r['alerts']:,}"
        lines.append(f"| {r['name']} | {r['pps']:,.0f} | {r['mbps']:,.0f} | {r['cpu_ratio']:.1%} | {r['wall']:.2f} s "
                     f"| {r['wall_ratio']:.1%} | {r['rss'] / 2**20:,.0f} MB | {alerts} |")
    return lines


def checks(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        target = TARGETS.get((r["capture"], r["ruleset"]))
        if target is not None and r["build"] == "compiled":
            short = target - r["wall_ratio"]
            verdict = "met" if short <= 0 else f"MISSED by {short * 100:.1f} points"
            out.append(f"{r['capture']}, {r['ruleset']}: {r['wall_ratio']:.1%} of the floor (whole process; CPU "
                       f"{r['cpu_ratio']:.1%}) vs target {target:.0%} -> {verdict}")
    by = {(r["capture"], r["ruleset"], r["build"]): r for r in rows if r["build"]}
    for (cap, rs, b), r in by.items():
        other = by.get((cap, rs, "interpreted"))
        if b == "compiled" and other is not None:
            ok = r["rss"] <= other["rss"] * RSS_NOISE
            out.append(f"{cap}, {rs}: peak RSS compiled {r['rss'] / 2**20:,.1f} MB, interpreted "
                       f"{other['rss'] / 2**20:,.1f} MB -> {'no higher' if ok else 'HIGHER'}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="alternated runs per configuration; the median counts")
    ap.add_argument("--skip-et", action="store_true", help="skip the ET Open runs")
    ap.add_argument("--skip-1m", action="store_true", help="skip the generated 1M-packet capture")
    ap.add_argument("--room-packets", type=int, default=100_000, help="packets for the per-room breakdown")
    ap.add_argument("--rooms-only", action="store_true", help="only the per-room breakdown (no whole-process runs)")
    a = ap.parse_args(argv)
    import mirrorwatch

    builds = ["compiled", "interpreted"] if any(mirrorwatch.built().values()) else ["interpreted"]
    machine = (f"{os.cpu_count()} cores, Python {platform.python_version()} ({PY}), a pure-Python loop iteration "
               f"{reference_ns():.0f} ns; builds: {', '.join(builds)}")
    print(f"machine: {machine}", flush=True)
    one = ROOT / ".bench" / "one-content-rule.rules"
    one.parent.mkdir(exist_ok=True)
    one.write_text(ONE_RULE)
    et = {} if a.skip_et or not ET_OPEN.is_dir() else {"ET Open": ET_OPEN}
    captures = [("ndpi", NDPI, {"one content rule": one, "bundled": BUNDLED, **et})]
    if not a.skip_1m:
        if not BENCH_1M.exists():
            print(f"generating {BENCH_1M} ...", flush=True)
            subprocess.run([PY, str(ROOT / "pcaps" / "gen_bench.py"), str(BENCH_1M)], check=True)
        captures.append(("bench-1m", BENCH_1M, {"bundled": BUNDLED, **et}))
    md = [f"Machine: {machine}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."]
    rows_all = []
    for label, pcap, rulesets in [] if a.rooms_only else captures:
        if not pcap.exists():
            print(f"({pcap} not found; skipped)")
            continue
        rows = measure_capture(label, pcap, rulesets, builds, a.repeat)
        rows_all += rows
        md += ["", f"`{pcap.name}` ({rows[0]['packets']:,} packets, {rows[0]['bytes'] / 1e6:,.0f} MB), median of "
                   f"{a.repeat} alternated runs:", ""] + table_lines(rows)
        print("\n".join(table_lines(rows) + checks(rows)), flush=True)  # as soon as known: a later run may fail
    runs: dict[str, list] = {b: [] for b in builds}
    for i in range(a.repeat):  # alternated, as the whole-process runs
        for b in builds:
            print(f"  [rooms {i + 1}/{a.repeat}] {b}", flush=True)
            runs[b].append(measure_rooms(NDPI, BUNDLED, a.room_packets, b))
    md += ["", f"Where the time goes (ndpi capture, first {a.room_packets:,} packets held in memory, bundled "
               f"signatures, end of capture included; CPU µs per packet, median of {a.repeat}):", "",
           "| part | " + " | ".join(builds) + " |", "| --- |" + " ---: |" * len(builds)]
    for i, (label, _) in enumerate(runs[builds[0]][0]):
        md.append(f"| {label} | " + " | ".join(f"{statistics.median(r[i][1] for r in runs[b]):.2f}" for b in builds)
                  + " |")
    md += [""] + [f"- {c}" for c in checks(rows_all)]
    print("\n<!-- replay_throughput.py markdown -->\n" + "\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
