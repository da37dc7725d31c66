#!/usr/bin/env python3
"""Detect's share of replay time: per-packet cost of the packet inspection and rule compile time.

    .venv/bin/python bench/detect_cost.py [--pcap FILE] [RULES ...]

Loads the capture into memory first (so file reading is not measured), builds
an Engine (the same decode -> flows -> detect path as ``mirrorwatch replay``),
then times (CPU time) the whole loop and, separately, every
``Detector.inspect_unguarded`` call (what ``Engine.process`` calls per packet).
Prints compile time, packets/s for the loop, microseconds per packet spent in
detect, alert count and peak RSS.  Without RULES it measures the bare
pipeline (detect with no rules) as the baseline.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CORPUS = Path(os.environ.get("MIRRORWATCH_CORPUS", ROOT.parent / "shared" / "corpus"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pcap", default=str(CORPUS / "bench" / "ndpi-mixed-ethernet.pcap"))
    ap.add_argument("rules", nargs="*", help="rule files or directories (none: bare pipeline)")
    args = ap.parse_args()

    from mirrorwatch.sources import pcapfile as capture
    from mirrorwatch.core.engine import Engine
    from mirrorwatch.core.events import Alert
    from mirrorwatch.rules import load_rules
    from mirrorwatch.core.settings import Settings

    settings = Settings()
    t0 = time.perf_counter()
    ruleset = load_rules(args.rules, settings) if args.rules else []
    t1 = time.perf_counter()
    engine = Engine(settings, ruleset, checksum_mode="auto")
    t2 = time.perf_counter()
    frames: list = []
    capture.run([args.pcap], lambda ts, lt, fr, wl: frames.append((ts, lt, bytes(fr), wl)))

    det = engine.detector
    spent = [0.0]
    inspect = det.inspect_unguarded  # what Engine.process calls
    clock = time.thread_time  # CPU time: steadier than wall time on a busy machine

    def timed(pkt, flow, to_server):
        a = clock()
        r = inspect(pkt, flow, to_server)
        spent[0] += clock() - a
        return r

    det.inspect_unguarded = timed
    alerts = 0
    t3 = time.process_time()
    for f in frames:
        for e in engine.process(*f):
            alerts += type(e) is Alert
    for e in engine.finish():
        alerts += type(e) is Alert
    t4 = time.process_time()
    n = len(frames)
    c = det.counters()
    print(f"rules loaded {len(getattr(ruleset, 'rules', ruleset))} in {t1 - t0:.2f}s, compiled {c['rules']} "
          f"({c['patterns']} literals) in {t2 - t1:.2f}s")
    print(f"{n} packets in {t4 - t3:.2f}s CPU = {n / (t4 - t3):,.0f} pkt/s; detect {spent[0]:.2f}s = "
          f"{spent[0] / n * 1e6:.1f} us/pkt; {alerts} alerts; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print(f"candidates judged {c['candidates']}, payload scans {c['scans']}, stream inspections {c['stream_scans']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
