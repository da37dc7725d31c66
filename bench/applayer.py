#!/usr/bin/env python3
"""Application-layer cost: ET Open with its application-layer rules against the same replay with
its transport rules only, on real HTTP captures and on the generated mix, in one run.

    .venv/bin/python bench/applayer.py [--runs N] [--packets N] [--no-profile]

Captures: the corpus's ``bench/http-tests-merged.pcap`` (real HTTP) and the first ``--packets``
(200,000) packets of ``pcaps/bench-1m.pcap`` (the generated mix; made first when missing).
For each, three set-ups, each run in its own child process (peak RSS from ``os.wait4``), run
after run in turn (floor, full, transport, floor, full, ...), ``--runs`` times:

1. ``floor``: pcapy-ng with a no-op callback (``replay_throughput.FLOOR``);
2. ``ET Open``: ``mirrorwatch replay --no-alerts --no-table --rules <et-open>``;
3. ``ET Open, transport rules``: the same with the rules that name no application protocol and
   use no application-layer keyword (``Rule.app_proto`` None, no ``app_checks``), written to a
   temporary directory.  The parsers still run (EVE http/dns/tls records); no transaction is
   inspected.

Rates are packets over the CPU seconds of the processing (replay's own timers: rule loading
excluded), the median of the runs; the ratio to the floor is median over median.  Target
(issue 12): ``ET Open`` >= 50% of ``ET Open, transport rules``, judged on the median of each
round's ratio (a round's two runs are neighbours in time, so they share the machine's load;
CPU time still grows with the load of a shared machine, by up to 2x here).

Then where the application layer's time goes, in a child process on the generated mix's
packets (in memory) with ET Open, on the interpreted build (the timers wrap the engine's
methods, which a compiled class does not allow): CPU microseconds per packet in the parsers (``AppLayer``'s
stream data, gap, end and UDP entries), the per-buffer prefilter (``Detector._tx_cands``),
judging rules on transactions (``judge.judge_tx``) and logging (``Engine._log_txs``),
timed by wrappers whose own cost is measured and subtracted; these run inside the rooms'
calls, so they are parts of ``engine.process``, not additions to it.  ``--no-profile`` skips
the cProfile listing of the application layer's and transaction detection's functions.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from replay_throughput import (
    BENCH_1M,
    ET_OPEN,
    FLOOR,
    PY,
    measure_replay,
    measure_script,
    warm_cache,
)
from replay_throughput import run_child as run_process

import mirrorwatch  # noqa: E402

BUILD = "interpreted" if mirrorwatch.pure_reason() else "compiled"  # the build this checkout runs
CORPUS = Path(os.environ.get("MIRRORWATCH_CORPUS", ROOT.parent / "shared" / "corpus"))
HTTP_PCAP = CORPUS / "bench" / "http-tests-merged.pcap"
DEFAULT_PACKETS = 200_000
TARGET_SHARE = 0.50  # ET Open's throughput over the transport-only replay's
PCAP_GLOBAL = struct.Struct("<IHHiIII")  # classic pcap file header (little-endian writer)
PCAP_RECORD = struct.Struct("<IIII")
PCAP_MAGICS = {0xA1B2C3D4, 0xA1B23C4D}
PROFILE_TOP = 20  # functions listed by the cProfile pass
APP_SOURCES = ("core/applayer/", "core/detect/tx.py", "core/detect/txrule.py", "core/detect/buffers.py",
               "core/detect/transforms.py", "sinks/eve_app.py")


# -- inputs ---------------------------------------------------------------------------

def head_pcap(src: Path, dst: Path, packets: int) -> int:
    """Copy the first ``packets`` records of a classic little-endian pcap; returns how many."""
    with open(src, "rb") as f, open(dst, "wb") as out:
        head = f.read(PCAP_GLOBAL.size)
        if len(head) < PCAP_GLOBAL.size or PCAP_GLOBAL.unpack(head)[0] not in PCAP_MAGICS:
            raise SystemExit(f"{src}: not a little-endian classic pcap file")
        out.write(head)
        n = 0
        while n < packets:
            rec = f.read(PCAP_RECORD.size)
            if len(rec) < PCAP_RECORD.size:
                break
            body = f.read(PCAP_RECORD.unpack(rec)[2])
            out.write(rec + body)
            n += 1
    return n


def transport_rules(src: Path, dst: Path) -> tuple[int, int]:
    """Write the rules of ``src`` that need no application layer to ``dst`` (same file names).

    Returns (rules kept, rules loaded): what mirrorwatch's own parser makes of each rule decides.
    """
    from mirrorwatch.core.settings import Settings
    from mirrorwatch.rules import load_rules

    rs = load_rules([str(src)], Settings())
    kept: dict[str, list[str]] = {}
    for rule in rs.rules:
        if rule.app_proto is None and not rule.app_checks:
            kept.setdefault(Path(rule.file).name, []).append(rule.raw)
    for name, lines in kept.items():
        (dst / name).write_text("\n".join(lines) + "\n")
    return sum(len(v) for v in kept.values()), len(rs.rules)


# -- the comparison ----------------------------------------------------------------------

def compare(pcap: Path, rules: dict[str, Path], runs: int) -> list[dict]:
    """Floor, then each rule set, in turn, ``runs`` times; per set-up the median run."""
    setups = [("floor (pcapy-ng, no-op callback)", None)] + list(rules.items())
    results: dict[str, list[dict]] = {name: [] for name, _ in setups}
    for _ in range(runs):
        for name, path in setups:
            r = measure_script(name, FLOOR, "FLOOR", pcap) if path is None else measure_replay(pcap, path, BUILD)
            r["pps"] = r["packets"] / max(r["cpu"], 1e-9)
            results[name].append(r)
    out = []
    for name, rs in results.items():
        pps = statistics.median(r["pps"] for r in rs)
        out.append({"name": name, "pps": pps, "runs": [r["pps"] for r in rs], "packets": rs[0]["packets"],
                    "rss": max(r["rss"] for r in rs), "alerts": rs[0]["alerts"]})
    floor = out[0]["pps"]
    for r in out:
        r["ratio"] = r["pps"] / floor
    return out


def print_table(title: str, table: list[dict]) -> None:
    print(f"\n{title} ({table[0]['packets']:,} packets)")
    print(f"  {'set-up':<34} {'pkt/s CPU':>10} {'of floor':>9} {'peak RSS':>9} {'alerts':>7}   runs (pkt/s)")
    for r in table:
        alerts = "" if r["alerts"] is None else f"{r['alerts']:,}"
        runs = ", ".join(f"{p:,.0f}" for p in r["runs"])
        print(f"  {r['name']:<34} {r['pps']:>10,.0f} {r['ratio']:>8.1%} {r['rss'] / 2**20:>7,.0f}MB "
              f"{alerts:>7}   {runs}")
    full, transport = table[1], table[2]
    paired = statistics.median(f / t for f, t in zip(full["runs"], transport["runs"]))
    print(f"  ET Open / transport rules only: {full['pps'] / transport['pps']:.1%} (medians); {paired:.1%} (median "
          f"of the rounds' ratios: target >= {TARGET_SHARE:.0%} {'met' if paired >= TARGET_SHARE else 'MISSED'})")


# -- where the application layer's time goes (child process) ---------------------------------

def _engine(pcap: str, rules: str, packets: int):
    from mirrorwatch.cli.collector import tune_gc
    from mirrorwatch.cli.pipeline import load_ruleset
    from mirrorwatch.core.engine import Engine
    from mirrorwatch.core.kill import Killer
    from mirrorwatch.core.settings import Settings
    from mirrorwatch.sources.pcapfile import PcapFiles

    frames = []
    for fr in PcapFiles([pcap]):
        frames.append(fr)
        if len(frames) >= packets:
            break
    s = Settings()
    eng = Engine(s, load_ruleset([rules], s), killer=Killer(settings=s))  # as replay runs it
    tune_gc()
    return eng, frames


def _wrap(obj, name: str, acc: list) -> None:
    f = getattr(obj, name)
    clock = time.process_time

    def timed(*args):
        t = clock()
        r = f(*args)
        acc[0] += clock() - t
        acc[1] += 1
        return r

    setattr(obj, name, timed)


def _wrapper_cost() -> float:
    """CPU seconds a timed call adds to its own measured interval."""
    probe = type("Probe", (), {"f": staticmethod(lambda *a: None)})()
    acc = [0.0, 0]
    _wrap(probe, "f", acc)
    n = 200_000
    for _ in range(n):
        probe.f(1, 2, 3)
    return acc[0] / n


def rooms_child(pcap: str, rules: str, packets: int) -> None:
    from mirrorwatch.core.detect import judge

    eng, frames = _engine(pcap, rules, packets)
    parts = {"parsers (AppLayer: stream data, gaps, ends, UDP)": [(eng.applayer, n) for n in
                                                                  ("stream_data", "stream_gap", "stream_end", "udp")],
             "transaction prefilter (Detector._tx_cands)": [(eng.detector, "_tx_cands")],
             "judging rules on transactions (judge.judge_tx)": [(judge, "judge_tx")],
             "transaction logging (Engine._log_txs)": [(eng, "_log_txs")]}
    acc = {label: [[0.0, 0] for _ in targets] for label, targets in parts.items()}
    over = _wrapper_cost()
    for label, targets in parts.items():
        for (obj, name), a in zip(targets, acc[label]):
            _wrap(obj, name, a)
    t = time.process_time()
    for ts, lt, fr, wl in frames:
        eng.process(ts, lt, fr, wl)
    total = time.process_time() - t
    n = len(frames)
    print(f"ROOM total engine.process|{total / n * 1e6:.2f}")
    for label, accs in acc.items():
        net = sum(max(sec - calls * over, 0.0) for sec, calls in accs)
        print(f"ROOM {label}|{net / n * 1e6:.2f}")
    c = eng.detector.counters()
    print(f"COUNT transactions scanned {c.get('tx_scans', 0):,}, judged {c.get('tx_inspected', 0):,}; "
          f"app-layer {eng.applayer.counters()}")


def profile_child(pcap: str, rules: str, packets: int) -> None:
    eng, frames = _engine(pcap, rules, packets)
    prof = cProfile.Profile()
    prof.enable()
    for ts, lt, fr, wl in frames:
        eng.process(ts, lt, fr, wl)
    prof.disable()
    st = pstats.Stats(prof)
    total = sum(v[2] for v in st.stats.values())
    by_file: dict[str, float] = {}
    for (file, _, _), v in st.stats.items():
        key = file.split("mirrorwatch/", 1)[-1] if "mirrorwatch/" in file else "(other)"
        by_file[key] = by_file.get(key, 0.0) + v[2]
    print(f"PROF own time by file (cProfile, {total:.1f} s in all, its overhead included):")
    for key, sec in sorted(by_file.items(), key=lambda kv: -kv[1])[:PROFILE_TOP]:
        mark = "*" if any(s in key for s in APP_SOURCES) else " "
        print(f"PROF {mark} {sec / total:6.1%}  {key}")
    rows = [(v[2], v[3], v[1], f"{file.split('mirrorwatch/', 1)[-1]}:{line} {fn}")
            for (file, line, fn), v in st.stats.items() if any(s in file for s in APP_SOURCES)]
    print("PROF application layer and transaction detection, by own time (own %, cumulative %, calls):")
    for own, cum, calls, where in sorted(rows, reverse=True)[:PROFILE_TOP]:
        print(f"PROF   {own / total:6.1%} {cum / total:6.1%} {calls:>9,}  {where}")


def run_child(flag: str, pcap: Path, rules: Path, packets: int) -> list[str]:
    # the interpreted build: the timers wrap the engine's methods, and a compiled class cannot be wrapped
    out, _, code, _ = run_process([PY, str(Path(__file__).resolve()), flag, str(pcap), str(rules), str(packets)],
                                  dict(os.environ, MIRRORWATCH_PURE="1"))
    if code != 0:
        raise SystemExit(f"{flag} failed:\n{out[-3000:]}")
    return out.splitlines()


# -- main ------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="runs per set-up, in turn; the median counts")
    ap.add_argument("--packets", type=int, default=DEFAULT_PACKETS, help="packets of the generated mix")
    ap.add_argument("--no-profile", action="store_true", help="skip the cProfile listing")
    a = ap.parse_args(argv)
    if not ET_OPEN.is_dir() or not HTTP_PCAP.exists():
        raise SystemExit(f"needs the corpus ({ET_OPEN}, {HTTP_PCAP}); set MIRRORWATCH_CORPUS")
    if not BENCH_1M.exists():
        print(f"generating {BENCH_1M} ...", flush=True)
        subprocess.run([PY, str(ROOT / "pcaps" / "gen_bench.py"), str(BENCH_1M)], check=True)
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} cores)", flush=True)
    with tempfile.TemporaryDirectory(prefix="mw-applayer-bench-") as tmp:
        tmp = Path(tmp)
        mix = tmp / f"bench-mix-{a.packets}.pcap"
        head_pcap(BENCH_1M, mix, a.packets)
        transport = tmp / "et-open-transport"
        transport.mkdir()
        kept, loaded = transport_rules(ET_OPEN, transport)
        print(f"ET Open: {loaded:,} rules load; {kept:,} need no application layer (the transport set)")
        rules = {"ET Open": ET_OPEN, "ET Open, transport rules": transport}
        for title, pcap in (("http-tests-merged.pcap", HTTP_PCAP), (f"bench-1m.pcap, first {a.packets:,}", mix)):
            warm_cache(pcap)
            print_table(title, compare(pcap, rules, a.runs))
        print(f"\nwhere the application layer's time goes (ET Open, {mix.name}, CPU us/packet):")
        for line in run_child("--rooms-child", mix, ET_OPEN, a.packets):
            if line.startswith("ROOM "):
                label, us = line[5:].split("|")
                print(f"  {label:<54} {float(us):7.2f}")
            elif line.startswith("COUNT "):
                print(f"  {line[6:]}")
        if not a.no_profile:
            for pcap in (HTTP_PCAP, mix):
                print(f"\ncProfile, ET Open, {pcap.name} (* = application layer or transaction detection):")
                for line in run_child("--profile-child", pcap, ET_OPEN, a.packets):
                    if line.startswith("PROF "):
                        print("  " + line[5:])
    load = os.getloadavg()
    print(f"\nload average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


CHILDREN = {"--rooms-child": rooms_child, "--profile-child": profile_child}

if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] in CHILDREN:
        CHILDREN[sys.argv[1]](sys.argv[2], sys.argv[3], int(sys.argv[4]))
        sys.exit(0)
    sys.exit(main())
