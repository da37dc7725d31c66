#!/usr/bin/env python3
"""Floods: peak memory and packets/s of ``mirrorwatch replay`` on SYN, UDP and one-sided TCP floods.

    .venv/bin/python bench/floods.py [--sizes 1000000,10000000] [--kinds syn,udp,onesided] [--keep]
                                     [--set KEY=VALUE ...]

For each kind and size, ``pcaps/gen_floods.py`` writes the capture (N new
sessions from distinct sources at 100k per second of capture time, one
ordinary session with a bad request in the middle) to ``pcaps/generated/``,
streaming (a 10M one-sided flood is 14.7 GB: it is deleted after its run
unless ``--keep``), then ``mirrorwatch replay -k none --eve-types alert`` runs
it in a child process with the flood rule, default settings (or those
given with ``--set``, e.g. ``--set stream.midstream=true --set
stream.inline=true`` as ``listen`` runs: then the one-sided sessions are
picked up and go through protocol detection).  Measured: peak
RSS (``os.wait4``), packets/s over the replay's CPU seconds, whether the bad
session alerted.  The same replay of the ndpi bench capture of the corpus is
the reference for speed, and the SYN flood of the smallest size runs once more
with EVE flow records on (``--eve-types alert,flow``, a record per session):
they must not be the bottleneck.  Every row gives its packets/s as a share of
the ndpi capture's in the same run.

Targets (issue 13), printed met/MISSED, exit 1 if one is missed:
peak RSS <= 512 MiB in every run, and at the largest size no more than 10%
above the smallest; the bad session alerted in every run; the SYN flood's
packets/s >= 50% of the ndpi capture's, without and with EVE flow records
(then also one flow record per session).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "pcaps"))
sys.path.insert(0, str(ROOT / "bench"))
import gen_floods
from replay_throughput import PY, SUMMARY_RE, run_child

CORPUS = Path(os.environ.get("MIRRORWATCH_CORPUS", ROOT.parent / "shared" / "corpus"))
NDPI = CORPUS / "bench" / "ndpi-mixed-ethernet.pcap"
GENERATED = ROOT / "pcaps" / "generated"
RSS_MAX = 512 * 2**20
RSS_GROWTH_MAX = 1.10  # largest size's peak RSS over the smallest's
SYN_SPEED_MIN = 0.50  # SYN flood packets/s over the ndpi capture's
DEFAULT_SIZES = (1_000_000, 10_000_000)


def build_now() -> str:
    """Which build a replay started now runs: 'compiled', or 'interpreted (why)' (an edit not rebuilt)."""
    import mirrorwatch

    reason = mirrorwatch.pure_reason()
    return "compiled" if reason is None else f"interpreted ({reason})"


def replay(name: str, pcap: Path, rules: Path, eve_types: str = "alert", overrides: tuple = ()) -> dict:
    """One ``mirrorwatch replay`` child: packets, CPU seconds, peak RSS, alerts of the bad rule.
    ``overrides``: KEY=VALUE settings passed on with ``--set``."""
    with tempfile.TemporaryDirectory() as tmp:
        eve = Path(tmp) / "eve.json"
        sets = [arg for kv in overrides for arg in ("--set", kv)]
        argv = [PY, "-m", "mirrorwatch", "replay", "-k", "none", "--no-alerts", "--no-table", "--eve", str(eve),
                "--eve-types", eve_types, *sets, "-r", str(rules), str(pcap)]
        out, wall, code, rss = run_child(argv)
        m = SUMMARY_RE.search(out)
        if code != 0 or not m:
            raise SystemExit(f"{name}: replay failed (exit {code}):\n{out[-3000:]}")
        text = eve.read_text()
        bad = len(re.findall(rf'"signature_id":{gen_floods.BAD_SID}\b', text))
        records = text.count("\n")
        flow_records = text.count('"event_type":"flow"')
    packets, cpu = int(m.group(1).replace(",", "")), float(m.group(4))
    return {"name": name, "packets": packets, "cpu": cpu, "wall": wall, "rss": rss, "bad_alerts": bad,
            "records": records, "flow_records": flow_records, "pps": packets / max(cpu, 1e-9)}


def flood(kind: str, sessions: int, rules: Path, keep: bool, eve_types: str = "alert", overrides: tuple = ()) -> dict:
    GENERATED.mkdir(parents=True, exist_ok=True)
    pcap = GENERATED / f"flood-{kind}-{sessions}.pcap"
    if not pcap.exists():
        t = time.perf_counter()
        gen_floods.generate(kind, sessions, pcap)
        print(f"  generated {pcap.name} ({pcap.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t:.0f}s",
              flush=True)
    label = f"{kind} {sessions:,}" + (f" ({eve_types})" if eve_types != "alert" else "")
    try:
        r = replay(label, pcap, rules, eve_types, overrides)
    finally:
        if not keep and sessions > min(DEFAULT_SIZES):
            pcap.unlink(missing_ok=True)
    r.update(kind=kind, sessions=sessions, eve_types=eve_types)
    print(f"  {label}: {r['pps']:,.0f} pkt/s (CPU), peak RSS {r['rss'] / 2**20:,.0f} MiB, "
          f"bad session alerts {r['bad_alerts']}", flush=True)
    return r


def checks(runs: list[dict], ndpi: dict, sizes: list[int]) -> list[tuple[str, bool]]:
    out = []
    for r in runs:
        out.append((f"{r['name']}: peak RSS {r['rss'] / 2**20:,.0f} MiB <= 512 MiB", r["rss"] <= RSS_MAX))
        out.append((f"{r['name']}: the bad session alerted ({r['bad_alerts']})", r["bad_alerts"] >= 1))
    base = [r for r in runs if r["eve_types"] == "alert"]
    for kind in {r["kind"] for r in base}:
        small = next((r for r in base if r["kind"] == kind and r["sessions"] == min(sizes)), None)
        large = next((r for r in base if r["kind"] == kind and r["sessions"] == max(sizes)), None)
        if small and large and large is not small:
            growth = large["rss"] / small["rss"]
            out.append((f"{kind}: peak RSS at {max(sizes):,} is {growth:.0%} of {min(sizes):,}'s (<= 110%)",
                        growth <= RSS_GROWTH_MAX))
    for r in runs:
        if r["kind"] == "syn":
            ratio = r["pps"] / ndpi["pps"]
            out.append(((f"{r['name']}: {r['pps']:,.0f} pkt/s is {ratio:.0%} of the ndpi capture's "
                        f"{ndpi['pps']:,.0f} (>= 50%)"), ratio >= SYN_SPEED_MIN))
        if "flow" in r["eve_types"].split(","):
            sessions = r["sessions"] + 1  # and the ordinary session in the middle
            out.append((f"{r['name']}: {r['flow_records']:,} flow records for {sessions:,} sessions",
                        r["flow_records"] == sessions))
    return out


def markdown(runs: list[dict], ndpi: dict) -> str:
    lines = ["| flood | sessions | packets/s (CPU) | of ndpi's | peak RSS | EVE records | bad session alerted |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
             (f"| ndpi bench capture (reference) | | {ndpi['pps']:,.0f} | 100% | {ndpi['rss'] / 2**20:,.0f} MiB | "
             f"{ndpi['records']:,} | |")]
    for r in runs:
        kind = r["kind"] + (" with EVE flow records" if "flow" in r["eve_types"].split(",") else "")
        if r["eve_types"] != "alert":
            kind += f" (--eve-types {r['eve_types']})"
        lines.append(f"| {kind} | {r['sessions']:,} | {r['pps']:,.0f} | {r['pps'] / ndpi['pps']:.0%} | "
                     f"{r['rss'] / 2**20:,.0f} MiB | {r['records']:,} | {'yes' if r['bad_alerts'] else 'NO'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="sessions per flood, comma-separated")
    ap.add_argument("--kinds", default=",".join(gen_floods.KINDS), help="floods to run, comma-separated")
    ap.add_argument("--keep", action="store_true", help="keep the large generated captures")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting for every replay (repeatable), e.g. stream.midstream=true")
    ap.add_argument("--reference-runs", type=int, default=3,
                    help="replays of the ndpi reference capture; the median one counts")
    a = ap.parse_args(argv)
    overrides = tuple(a.set)
    sizes = sorted(int(s) for s in a.sizes.split(","))
    kinds = [k for k in a.kinds.split(",") if k]
    build = build_now()
    print(f"build: {build}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "flood.rules"
        rules.write_text(gen_floods.BAD_RULE)
        if not NDPI.exists():
            raise SystemExit(f"{NDPI}: the ndpi bench capture is needed as the speed reference")
        refs = sorted((replay("ndpi bench capture", NDPI, rules, overrides=overrides) for _ in range(a.reference_runs)),
                      key=lambda r: r["pps"])
        ndpi = refs[len(refs) // 2]  # the median run: one replay of ndpi takes about a second, so one run is noisy
        print(f"reference: ndpi bench capture {ndpi['pps']:,.0f} pkt/s (CPU, median of {len(refs)}), peak RSS {ndpi['rss'] / 2**20:,.0f} MiB",
              flush=True)
        runs = [flood(kind, n, rules, a.keep, overrides=overrides) for kind in kinds for n in sizes]
        if "syn" in kinds:
            runs.append(flood("syn", sizes[0], rules, a.keep, eve_types="alert,flow", overrides=overrides))
    if build_now() != build:  # the ratios compare replays of one build: a rebuild or an edit mid-run spoils them
        raise SystemExit(f"the build changed during the benchmark (it started {build}, it is now {build_now()}): "
                         "rebuild and run again")
    print("\n<!-- floods.py markdown -->")
    print(markdown(runs, ndpi))
    print()
    results = checks(runs, ndpi, sizes)
    for text, ok in results:
        print(f"- {text} -> {'met' if ok else 'MISSED'}")
    return 0 if all(ok for _, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
