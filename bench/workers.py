#!/usr/bin/env python3
"""--workers: replay throughput and live zero-drop rate with 2 workers against 1, in one run.

    .venv/bin/python bench/workers.py [--workers 2] [--repeat 3] [--skip-live] [--eve] [--pcap FILE ...]

1. Replay: ``mirrorwatch replay --no-alerts --no-table`` of the real mixed
   capture (``ndpi-mixed-ethernet.pcap``) and the generated 1M-packet bench
   (``pcaps/bench-1m.pcap``, made first when missing), with 1 worker and with
   N, alternated ``--repeat`` times; each figure is the median.  The ratio
   judged is the packets/s the replay itself reports (its own timer: the
   processing, from the first frame read to the last record written; rules
   are loaded before it starts) of N workers over 1.  The whole process's wall
   time (start-up, rule loading and the end of the run included) gives a
   second ratio: on a small capture start-up (~0.15 s of one core: the
   interpreter, imports, rules) caps it well below N.
   The CPU columns say where the time went: all processes together, the
   coordinator (all less the workers' own) and the busiest worker.  On a
   shared machine the wall clock says more about the other jobs than about
   the code, so the run also gives the rate N idle cores would reach: packets
   over the coordinator's CPU (in series with the workers: start-up before
   the fork, the end after them) plus the busiest worker's.
   ``outside`` is the whole run less the processing: interpreter start,
   imports, rule loading, forking, the summary and the exit.  The package's
   bytecode is compiled first, as ``pip install`` does: a run that had to
   compile its modules (``PYTHONDONTWRITEBYTECODE`` set, a fresh checkout)
   would measure the compiler.  ``--eve``: each replay also writes EVE to a
   temporary file (the coordinator's ordered merge and writes included).
   Target: N=2 >= 1.8x the packets/s of 1 worker.
2. Live: ``bench/capture_loss.py``'s listen stage (tcpreplay of the generated
   bench into the lab's mirror port at rising rates) with 1 worker and with N;
   the highest rate without a drop.  Target: N=2 >= 1.7x.  Needs root
   (network namespaces).

Both figures depend on the machine being otherwise idle: the load average is
printed before each part.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = os.environ.get("PY", sys.executable)
CORPUS = Path(os.environ.get("MIRRORWATCH_CORPUS", ROOT.parent / "shared" / "corpus"))
PCAPS = (CORPUS / "bench" / "ndpi-mixed-ethernet.pcap", ROOT / "pcaps" / "bench-1m.pcap")
REPLAY_TARGET = 1.8
LIVE_TARGET = 1.7
LIVE_RATES = "10000,20000,30000,35000,40000,45000,50000,55000,60000,70000,80000,100000,120000"
# no fragments in it: with workers the kernel reassembles IPv4 fragments before the fanout, so the
# frames received would be fewer than the frames sent, which capture_loss.py counts as unaccounted
LIVE_PCAP = PCAPS[1]

SUMMARY_RE = re.compile(r"([\d,]+) packets, [\d,]+ bytes, .* in ([\d.]+)s, ([\d.]+)s CPU")
WORKERS_RE = re.compile(r"\d+ workers: frames (.*); CPU (.*)$", re.MULTILINE)


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def replay(pcap: Path, workers: int, eve: str | None = None) -> dict:
    argv = [PY, "-m", "mirrorwatch", "replay", "--no-alerts", "--no-table", "--workers", str(workers), str(pcap)]
    if eve is not None:
        argv[-1:-1] = ["--eve", eve]
        Path(eve).unlink(missing_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
    whole = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers too: the coordinator waited for them
    m = SUMMARY_RE.search(r.stdout)
    if r.returncode != 0 or not m:
        raise SystemExit(f"replay --workers {workers} {pcap.name} failed ({r.returncode}): {r.stderr[-1500:]}")
    packets, wall = int(m.group(1).replace(",", "")), float(m.group(2))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    row = {"workers": workers, "packets": packets, "whole": whole, "wall": wall, "cpu": cpu, "worker_cpu": [cpu]}
    w = WORKERS_RE.search(r.stdout)
    if w:
        row["worker_cpu"] = [float(x.rstrip("s")) for x in w.group(2).split(" / ")]
        row["shares"] = w.group(1)
    return row


def own_cores(row: dict, n: int) -> float:
    """Seconds the whole run would take on n cores of its own: the coordinator's CPU (start-up, rule loading,
    merging, the end: most of it before the fork or after the last worker, so in series) plus the busiest
    worker's; or all the CPU shared out, when that is more."""
    if n == 1:
        return row["cpu"]
    return max(coordinator_cpu(row, n) + max(row["worker_cpu"]), row["cpu"] / n)


def coordinator_cpu(row: dict, n: int) -> float:
    """CPU seconds of the process that started the workers (all of it with one worker, which is the engine)."""
    return row["cpu"] - sum(row["worker_cpu"]) if n > 1 else row["cpu"]


def _median_row(rows: list[dict]) -> dict:
    """Each figure's median over the runs of one configuration."""
    out = dict(rows[0])
    for key in ("whole", "wall", "cpu"):
        out[key] = statistics.median(r[key] for r in rows)
    out["worker_cpu"] = [statistics.median(col) for col in zip(*(r["worker_cpu"] for r in rows))]
    return out


def replay_part(pcaps, workers: int, repeat: int, eve: str | None) -> list[str]:
    print(f"\n== replay: 1 worker vs {workers}, medians of {repeat} alternated runs{', EVE to a file' if eve else ''} "
          f"({load()}) ==")
    print(f"{'capture':<28} {'workers':>7} {'whole run':>9} {'packets/s':>10} {'processing':>10} {'outside':>8} "
          f"{'CPU all':>8} {'coordinator':>11} {'busiest worker':>14} {'own cores':>10}  shares")
    verdicts = []
    for pcap in pcaps:
        runs: dict[int, list] = {1: [], workers: []}
        for _ in range(repeat):
            for n in (1, workers):
                runs[n].append(replay(pcap, n, eve))
        med = {n: _median_row(rows) for n, rows in runs.items()}
        for n in (1, workers):
            r = med[n]
            print(f"{pcap.name:<28} {n:>7} {r['whole']:>8.2f}s {r['packets'] / r['whole']:>10,.0f} {r['wall']:>9.2f}s "
                  f"{r['whole'] - r['wall']:>7.2f}s {r['cpu']:>7.2f}s {coordinator_cpu(r, n):>10.2f}s "
                  f"{max(r['worker_cpu']):>13.2f}s {r['packets'] / own_cores(r, n):>10,.0f}  "
                  f"{r.get('shares', '')}")
        ratio = med[1]["whole"] / med[workers]["whole"]
        processing = med[1]["wall"] / med[workers]["wall"]
        own = own_cores(med[1], 1) / own_cores(med[workers], workers)
        verdicts.append(f"replay {pcap.name}: {workers} workers {processing:.2f}x the packets/s of 1 (the replay's "
                        f"own rate; target {REPLAY_TARGET}x -> {'met' if processing >= REPLAY_TARGET else 'MISSED'}); "
                        f"whole process {ratio:.2f}x; on {workers} cores of its own {own:.2f}x ({load()})")
    return verdicts


def live_part(workers: int, seconds: float) -> list[str]:
    print(f"\n== live: capture_loss.py listen stage, {LIVE_PCAP.name}, 1 worker vs {workers} ({load()}) ==")
    best = {}
    for n in (1, workers):
        r = subprocess.run([PY, str(ROOT / "bench" / "capture_loss.py"), "--stage", "listen", "--seconds",
                            str(seconds), "--rates", LIVE_RATES, "--workers", str(n), "--pcap", str(LIVE_PCAP)],
                           capture_output=True, text=True, check=False)
        print(r.stdout.rstrip())
        m = re.search(r"highest rate with zero drops (\d+) pkt/s|no drops at any rate tried \(up to (\d+)", r.stdout)
        if r.returncode != 0 or not m:
            return [f"live: capture_loss.py --workers {n} gave no zero-drop rate: {r.stderr[-500:]}"]
        best[n] = int(m.group(1) or m.group(2))
    ratio = best[workers] / max(best[1], 1)
    return [(f"live: zero-drop rate {best[workers]:,} pkt/s with {workers} workers, {best[1]:,} with 1: "
             f"{ratio:.2f}x (target {LIVE_TARGET}x -> {'met' if ratio >= LIVE_TARGET else 'MISSED'})")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="replays per configuration, alternated; the median counts")
    ap.add_argument("--pcap", type=Path, action="append", help="capture(s) to replay instead of the two bench ones")
    ap.add_argument("--skip-live", action="store_true", help="replay only")
    ap.add_argument("--seconds", type=float, default=4.0, help="live: seconds of traffic per rate")
    ap.add_argument("--eve", action="store_true", help="replays write EVE to a temporary file too")
    a = ap.parse_args()
    pcaps = a.pcap or [p for p in PCAPS if p.name != "bench-1m.pcap" or p.exists() or _generate(p)]
    print(f"machine: {os.cpu_count()} cores; {load()}")
    _compile_bytecode()
    t = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mw-bench-workers-") as tmp:
        verdicts = replay_part(pcaps, a.workers, a.repeat, str(Path(tmp) / "eve.json") if a.eve else None)
    if not a.skip_live:
        if os.geteuid() == 0:
            verdicts += live_part(a.workers, a.seconds)
        else:
            verdicts.append("live: skipped (needs root for network namespaces)")
    print(f"\nin {time.monotonic() - t:.0f}s:")
    for v in verdicts:
        print(f"- {v}")
    return 0


def _compile_bytecode() -> None:
    """The package's modules compiled to bytecode, as an installed package has them (start-up as deployed)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "mirrorwatch")], env=env, check=True,
                   stdout=subprocess.DEVNULL)


def _generate(path: Path) -> bool:
    print(f"generating {path} ...", flush=True)
    subprocess.run([PY, str(ROOT / "pcaps" / "gen_bench.py"), str(path)], check=True)
    return True


if __name__ == "__main__":
    sys.exit(main())
