#!/usr/bin/env python3
"""Inline throughput and latency: ``mirrorwatch inline`` in a router, against the same router without it.

    .venv/bin/python bench/inline.py [--seconds S] [--pings N] [--rounds R] [--skip-et] [--realtime] [--throughput]
                                     [--shared-softirq]

Builds the routed lab of the tests (client -- router -- server namespaces,
real TCP stacks, offloads off: wire-sized packets) and measures, with the
bundled signatures and with ET Open (the corpus' rules/et-open):

1. the router alone (no queue): iperf3 goodput; ping round trips (500, 10 ms
   apart, 56 and 1400 data bytes) through a no-op queue loop (the tests' toy
   engine: batch accept verdicts only) -- what NFQUEUE and user space cost on
   this machine before any inspection;
2. latency, in ``--rounds`` alternated rounds (the machine is shared, one run
   proves little): the router alone, ``inline`` (fail-open, ``stream.bypass``
   off so every packet of a transfer is queued), and ``inline`` with the
   kernel's default time slice (``capture.sched-slice=0``, the figure before
   the engine asked for a short one): ping p50/p99 idle and under a moderate
   load (``LOAD_RATE``); the medians, and the added latency (inline minus
   the router alone; target: p99 <= 2 ms added below saturation);
3. saturation, fail-closed, ``--rounds`` runs (medians): iperf3 TCP through
   the engine (TCP slows down to what the engine inspects): Mbit/s, packets/s
   (wall and per engine CPU second), packets per verdict message (how well
   the batch verdicts cover the runs of accepts);
4. saturation, fail-open: an iperf3 UDP flood (``FLOOD_RATE``, no congestion
   control): the kernel passes what the queue cannot hold, uninspected and
   counted -- offered, inspected and uninspected packets;
5. the same engine replaying the same kind of traffic (a capture of an
   iperf3 run through the engine on the router's interface, replayed with
   the inline settings),
   alternated with 3's runs: packets per CPU second.  Target: inline >= 60%
   of replay per CPU second, the median of the rounds' ratios.

The lab's client and server stand for other machines, so their receive
processing runs in kernel threads of their own (``RoutedLab.endpoint_threads``:
threaded NAPI on their veths).  A plain veth delivers a packet into the
receiver's TCP stack within the sender's transmit call, and the sender of the
forwarded packets is the engine's verdict call: the client's and the server's
TCP work would run in the engine's process and count as its CPU time (``perf``:
their ``tcp_v4_rcv`` inside ``nfqnl_recv_verdict_batch``), which a sensor
between two real machines never pays.  (RPS on the endpoints' receive queues
moves the work too, but sends its inter-processor interrupts from the verdict
call: 9% of the engine's samples in this VM.)  ``--shared-softirq`` keeps the
plain veths (the figures before).  The capture for 5 is taken in the same lab.

``--throughput`` measures 3 and 5 only (no latency rounds, no flood).
``--realtime`` runs the engine as an operator would with ``chrt -r 10``
(SCHED_RR): on a machine shared with busy jobs the wake-up of the engine,
not its work, makes the latency tail.  Needs root, iperf3 (apt-get install
iperf3), tcpdump.  Prints a table and the figures as markdown for the README.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
PY = os.environ.get("PY", sys.executable)
BUNDLED = ROOT / "signatures"
ET_OPEN = Path(os.environ.get("MIRRORWATCH_CORPUS", ROOT.parent / "shared" / "corpus")) / "rules" / "et-open"
INLINE_SETTINGS = ("--set", "stream.bypass=no")  # the bulk transfer stays queued past the stream depth
REPLAY_SETTINGS = ("--set", "stream.inline=yes", "--set", "stream.midstream=yes")  # as inline runs
PING_SIZES = (56, 1400)  # ICMP data bytes: ping's default and a near-MTU packet
KERNEL_SLICE = ("--set", "capture.sched-slice=0")  # the kernel's default time slice: the figure before the fix
LOAD_RATE = "40M"  # iperf3 -b: a moderate load (well below what the engine inspects) for the latency figure
FLOOD_RATE, FLOOD_LEN = "1G", "1400"  # iperf3 -u -b / -l: far more packets than the engine inspects
TARGET_RATIO, TARGET_P99_MS = 0.60, 2.0
SUMMARY_RE = re.compile(r"([\d,]+) packets, ([\d,]+) bytes, .* in ([\d.]+)s, ([\d.]+)s CPU \(")
CLK_TCK = os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 180.0  # s for an engine to load ET Open and go inline
REALTIME_PRIORITY = 10  # --realtime: as chrt -r 10


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK  # utime, stime


# ICMP echo from the client (a raw socket: no ping binary needed): argv host, count, interval, data size;
# prints one round-trip time in ms per answered request
PING = r"""
import os, socket, struct, sys, time
host, count, interval, size = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(1.0)
ident = os.getpid() & 0xFFFF
def csum(b):
    v = sum(struct.unpack(f"!{len(b) // 2}H", b))
    v = (v >> 16) + (v & 0xFFFF)
    return ~(v + (v >> 16)) & 0xFFFF
for seq in range(count):
    body = struct.pack("!d", time.perf_counter()) + bytes(size - 8)
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    s.sendto(struct.pack("!BBHHH", 8, 0, csum(hdr + body), ident, seq) + body, (host, 0))
    try:
        while True:
            data = s.recv(2048)
            ihl = (data[0] & 15) * 4
            t, c, _, i, q = struct.unpack_from("!BBHHH", data, ihl)
            if t == 0 and i == ident and q == seq:
                print(f"{(time.perf_counter() - struct.unpack_from('!d', data, ihl + 8)[0]) * 1000:.4f}")
                break
    except socket.timeout:
        pass
    time.sleep(interval)
"""


def pings(lab, n: int, size: int = PING_SIZES[0]) -> list[float]:
    """Round-trip times (ms) of ``n`` ICMP echo requests client -> server, 0.01 s apart, ``size`` data bytes
    (as ``ping -i 0.01 -c n -s size``)."""
    r = lab.run(lab.client, PY, "-c", PING, lab.SERVER4, str(n), "0.01", str(size), timeout=n * 0.05 + 60)
    return [float(line) for line in r.stdout.split()]


def quantiles(rtts: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(rtts, n=100, method="inclusive")
    return q[49], q[98]


def iperf(lab, seconds: float, rate: str | None = None, background: bool = False, udp: bool = False):
    """Mbit/s received (TCP), or (Mbit/s, packets sent) of a UDP run; the Popen when ``background``."""
    args = ["iperf3", "-c", lab.SERVER4, "-p", "5201", "-t", str(seconds), "-J"] + (["-b", rate] if rate else [])
    if udp:
        args += ["-u", "-l", FLOOD_LEN]
    if background:
        return lab.popen(lab.client, *args)
    r = lab.run(lab.client, *args, timeout=seconds + 60, check=False)
    out = json.loads(r.stdout)
    if "error" in out:
        raise SystemExit(f"iperf3: {out['error']}")
    if udp:
        return out["end"]["sum"]["bits_per_second"] / 1e6, out["end"]["sum"]["packets"]
    return out["end"]["sum_received"]["bits_per_second"] / 1e6


def latency(lab, n: int) -> dict:
    """p50/p99 idle (each of ``PING_SIZES``) and under ``LOAD_RATE``."""
    out = {f"idle{size}": quantiles(pings(lab, n, size)) for size in PING_SIZES}
    load = iperf(lab, n * 0.012 + 2, LOAD_RATE, background=True)
    time.sleep(0.5)
    out["loaded"] = quantiles(pings(lab, n))
    load.wait(60)
    return out


def median_latency(runs: list[dict]) -> dict:
    """Each figure's median over alternated runs (the machine is shared: one run proves little)."""
    return {key: tuple(statistics.median(r[key][i] for r in runs) for i in (0, 1)) for key in runs[0]}


def latency_rounds(lab, rules: Path, tmp: Path, n: int, rounds: int, variants: dict) -> dict:
    """``variants`` (name -> extra engine arguments, None: the router alone) measured in turn, ``rounds``
    times; the medians of each, with the load average of the rounds."""
    runs: dict[str, list] = {name: [] for name in variants}
    loads = []
    for _ in range(rounds):
        for name, extra in variants.items():
            eng = Engine(lab, rules, tmp, *extra) if extra is not None else None
            runs[name].append(latency(lab, n))
            if eng is not None:
                eng.stop()
            loads.append(os.getloadavg()[0])
    out = {name: median_latency(r) for name, r in runs.items()}
    out["load"] = (min(loads), max(loads))
    return out


class Engine:
    """``mirrorwatch inline`` in the router, started and waited for."""

    realtime = False  # SCHED_RR for every thread of the engine (--realtime)

    def __init__(self, lab, rules: Path, tmp: Path, *args: str):
        self.lab, self.eve = lab, tmp / f"eve-{time.monotonic_ns()}.json"
        self.p = lab.mirrorwatch("inline", "-r", str(rules), "--eve", str(self.eve), "--eve-types", "stats",
                                 "--run-dir", str(tmp / "run"), "--no-table", "-q", *INLINE_SETTINGS, *args,
                                 stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        err = b""
        while b" inline on NFQUEUE" not in err:
            line = self.p.stderr.readline()
            if not line or time.monotonic() > deadline:
                raise SystemExit(f"mirrorwatch inline did not start: {err.decode(errors='replace')[-2000:]}")
            err += line
        time.sleep(0.5)
        if self.realtime:
            for tid in os.listdir(f"/proc/{self.p.pid}/task"):
                os.sched_setscheduler(int(tid), os.SCHED_RR, os.sched_param(REALTIME_PRIORITY))

    def stop(self) -> dict:
        self.lab.stop(self.p, signal.SIGTERM, timeout=120)
        records = [json.loads(line) for line in self.eve.read_text().splitlines() if line.strip()]
        return records[-1]["stats"]


def saturation(lab, rules: Path, tmp: Path, seconds: float, *extra: str) -> dict:
    """Fail-closed, iperf3 TCP: everything that arrives was inspected.  The engine's CPU time per packet
    is split into user time (reading, inspecting, answering) and system time (the netlink messages, and
    the forwarding of the accepted packets, which the kernel does in the verdict call)."""
    eng = Engine(lab, rules, tmp, "--fail-closed", *extra)
    user0, sys0 = cpu_seconds(eng.p.pid)
    mbit = iperf(lab, seconds)
    user1, sys1 = cpu_seconds(eng.p.pid)
    cap = eng.stop()["capture"]
    n = max(cap["received"], 1)
    cpu = user1 - user0 + sys1 - sys0
    messages = cap["batch_verdicts"] + cap["repeated"] + cap["dropped"]
    return {"mbit": mbit, "packets": cap["received"], "pps_wall": cap["received"] / seconds,
            "pps_cpu": cap["received"] / max(cpu, 1e-9), "user_us": (user1 - user0) / n * 1e6,
            "sys_us": (sys1 - sys0) / n * 1e6, "per_verdict": n / max(messages, 1),
            "uninspected": cap["uninspected"], "drops": cap["drops"], "load": os.getloadavg()[0]}


def saturation_rounds(lab, rules: Path, tmp: Path, seconds: float, rounds: int, pcap: Path) -> tuple[dict, dict]:
    """``saturation`` and the replay of ``pcap`` alternated, ``rounds`` times (other jobs' load changes both
    alike within a round): the median of each figure (uninspected and drops: the largest), the range of the
    load average, and ``ratio``, the median of the rounds' inline/replay ratios per CPU second; the replay's
    medians."""
    runs, replays = [], []
    for _ in range(rounds):
        runs.append(saturation(lab, rules, tmp, seconds))
        replays.append(replay_rate(pcap, rules))
    out = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    out.update(uninspected=max(r["uninspected"] for r in runs), drops=max(r["drops"] for r in runs),
               load=(min(r["load"] for r in runs), max(r["load"] for r in runs)),
               ratio=statistics.median(r["pps_cpu"] / p["pps_cpu"] for r, p in zip(runs, replays)))
    return out, {key: statistics.median(p[key] for p in replays) for key in replays[0]}


def flood(lab, rules: Path, tmp: Path, seconds: float) -> dict:
    """Fail-open, an iperf3 UDP flood: what the engine cannot take passes uninspected, counted."""
    eng = Engine(lab, rules, tmp, "--fail-open")
    _, offered = iperf(lab, seconds, FLOOD_RATE, udp=True)
    cap = eng.stop()["capture"]
    return {"offered": offered, "queued": cap["fw_queued"], "inspected": cap["received"],
            "uninspected": cap["uninspected"], "fail_open": cap["uninspected_fail_open"],
            "pps_offered": offered / seconds, "pps_inspected": cap["received"] / seconds}


def capture_for_replay(lab, tmp: Path, seconds: float) -> Path:
    """An iperf3 run through the engine (bundled rules, fail-closed) captured on the router's client side:
    the traffic a saturation run inspects.  (Without the engine the router forwards faster than the
    endpoints' receive threads take packets: the veth ring drops, and the capture's retransmissions and
    SACKs would make the replay's packets dearer than the engine's.)"""
    pcap = tmp / "iperf.pcap"
    eng = Engine(lab, BUNDLED, tmp, "--fail-closed")
    dump = lab.popen(lab.router, "tcpdump", "-i", "c0", "-n", "-s", "0", "-U", "-w", str(pcap), "tcp port 5201")
    if b"listening on" not in dump.stderr.readline():
        raise SystemExit("tcpdump did not start")
    iperf(lab, seconds)
    lab.stop(dump, signal.SIGINT)
    eng.stop()
    return pcap


def replay_rate(pcap: Path, rules: Path) -> dict:
    r = subprocess.run([PY, "-m", "mirrorwatch", "replay", "--no-alerts", "--no-table", "--rules", str(rules),
                        *REPLAY_SETTINGS, str(pcap)], capture_output=True, text=True, cwd=ROOT, timeout=900,
                       check=False)
    m = SUMMARY_RE.search(r.stdout + r.stderr)
    if r.returncode != 0 or not m:
        raise SystemExit(f"replay failed (exit {r.returncode}): {(r.stdout + r.stderr)[-2000:]}")
    packets, cpu = int(m.group(1).replace(",", "")), float(m.group(4))
    return {"packets": packets, "cpu": cpu, "pps_cpu": packets / max(cpu, 1e-9)}


def rule_sets(skip_et: bool) -> list[tuple[str, Path]]:
    sets = [("bundled", BUNDLED)]
    if not skip_et:
        if ET_OPEN.is_dir():
            sets.append(("et-open", ET_OPEN))
        else:
            print(f"ET Open not found at {ET_OPEN}: skipped", file=sys.stderr)
    return sets


def added(lat: dict, name: str, key: str) -> tuple[float, float]:
    """p50/p99 of ``name`` minus the router alone's, measured in the same rounds."""
    return lat[name][key][0] - lat["router"][key][0], lat[name][key][1] - lat["router"][key][1]


def throughput_lines(name: str, r: dict) -> int:
    """The inline/replay ratio against its target; 1 when missed."""
    t = r["tcp"]
    ratio = t["ratio"]
    verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
    print(f"- {name}: inline {ratio:.0%} of replay per CPU second (target {TARGET_RATIO:.0%}) -> {verdict}; "
          f"{t['pps_cpu']:,.0f} vs {r['replay']['pps_cpu']:,.0f} pkt/s per CPU second, engine "
          f"{t['user_us']:.2f} µs user + {t['sys_us']:.2f} µs system per packet, {t['per_verdict']:.1f} packets "
          f"per verdict message; medians of {r['rounds']} runs, load average {t['load'][0]:.1f}-{t['load'][1]:.1f} "
          f"on {os.cpu_count()} CPUs")
    return verdict != "met"


def latency_lines(name: str, r: dict) -> int:
    """The added latency against its target, the kernel-slice comparison, the flood's accounts; 1 when missed."""
    f, lat = r["flood"], r["latency"]
    idle = [added(lat, "engine", f"idle{size}") for size in PING_SIZES]
    load = added(lat, "engine", "loaded")
    worst = max(b for _, b in idle)
    verdict = "met" if worst <= TARGET_P99_MS else "MISSED"
    print(f"- {name}: added idle p99 latency {worst:.3f} ms (target <= {TARGET_P99_MS} ms) -> {verdict}; "
          f"under load {load[1]:.3f} ms; medians of {r['rounds']} alternated rounds, load average "
          f"{lat['load'][0]:.1f}-{lat['load'][1]:.1f} on {os.cpu_count()} CPUs")
    if "kernel slice" in lat:
        before = [added(lat, "kernel slice", f"idle{size}") for size in PING_SIZES]
        print(f"- {name}: with the kernel's time slice (capture.sched-slice=0): added idle p50/p99 "
              + ", ".join(f"-s {size} {a:.3f}/{b:.3f} ms" for size, (a, b) in zip(PING_SIZES, before)))
    print(f"- {name}: UDP flood: {f['uninspected']:,} of {f['queued']:,} queued packets passed uninspected "
          f"(fail-open {f['fail_open']:,}); the accounts close: inspected + uninspected = "
          f"{f['inspected'] + f['uninspected']:,}")
    return verdict != "met"


def table_row(name: str, r: dict) -> str:
    t, f, lat = r["tcp"], r["flood"], r["latency"]
    idle = [added(lat, "engine", f"idle{size}") for size in PING_SIZES]
    load = added(lat, "engine", "loaded")
    return (f"| {name} | {t['mbit']:,.0f} | {t['pps_wall']:,.0f} | {t['pps_cpu']:,.0f} | "
            f"{r['replay']['pps_cpu']:,.0f} | {t['ratio']:.0%} | "
            + " | ".join(f"{a:.3f}/{b:.3f} ms" for a, b in idle)
            + f" | {load[0]:.3f}/{load[1]:.3f} ms | {f['pps_offered']:,.0f} / {f['pps_inspected']:,.0f} | "
            f"{f['uninspected']:,} of {f['queued']:,} |")


def report(base: dict, results: dict) -> int:
    print(f"\nrouter alone: iperf3 {base['mbit']:,.0f} Mbit/s", end="")
    if "noop" in base:
        n_idle, n_load = base["noop"][f"idle{PING_SIZES[0]}"], base["noop"]["loaded"]
        print(f"; through a no-op queue loop (no engine): ping p50/p99 idle {n_idle[0]:.3f}/{n_idle[1]:.3f} ms, "
              f"under load {n_load[0]:.3f}/{n_load[1]:.3f} ms", end="")
    print()
    missed = 0
    for name, r in results.items():
        missed += throughput_lines(name, r)
        if "latency" in r:
            missed += latency_lines(name, r)
    full = [table_row(name, r) for name, r in results.items() if "latency" in r]
    if full:
        sizes = " | ".join(f"added p50/p99 idle -s {size}" for size in PING_SIZES)
        print(f"\n| rules | TCP Mbit/s | pkt/s (wall) | pkt/s (engine CPU) | replay pkt/s (CPU) | of replay | {sizes} "
              f"| added p50/p99 under load | UDP flood pkt/s offered / inspected | uninspected |")
        print("|---|---|---|---|---|---|" + "---|" * len(PING_SIZES) + "---|---|---|")
        print("\n".join(full))
    return missed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="iperf3 duration of each saturation run")
    ap.add_argument("--pings", type=int, default=500, help="pings per latency figure (0.01 s apart)")
    ap.add_argument("--rounds", type=int, default=3, help="alternated latency rounds (router, engine, engine with "
                                                           "the kernel's time slice) and saturation runs: medians "
                                                           "are reported")
    ap.add_argument("--skip-et", action="store_true", help="only the bundled signatures")
    ap.add_argument("--realtime", action="store_true", help="run the engine SCHED_RR (as chrt -r 10)")
    ap.add_argument("--throughput", action="store_true", help="saturation and replay only: no latency, no flood")
    ap.add_argument("--shared-softirq", action="store_true",
                    help="plain veths: the endpoints' TCP receive runs within the engine's verdict calls, charged "
                         "to the engine (the lab before the endpoints got receive threads of their own)")
    args = ap.parse_args()
    Engine.realtime = args.realtime
    if os.geteuid() != 0:
        raise SystemExit("bench/inline.py needs root (network namespaces, NFQUEUE)")
    for tool in ("iperf3", "tcpdump", "iptables"):
        if not shutil.which(tool):
            raise SystemExit(f"bench/inline.py needs {tool} (apt-get install {tool})")
    import tempfile

    import netlab

    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="mwinline") as tmpdir, netlab.RoutedLab() as lab:
        tmp = Path(tmpdir)
        if not args.shared_softirq:
            lab.endpoint_threads()
        lab.popen(lab.server, "iperf3", "-s", "-p", "5201")
        lab.wait_port(lab.server, 5201)
        base = {"mbit": iperf(lab, args.seconds)}
        if not args.throughput:
            toy = lab.inline_engine(tmp / "noop.log", tmp / "run")
            base["noop"] = latency(lab, args.pings)
            lab.stop(toy)
        pcap = capture_for_replay(lab, tmp, min(args.seconds, 2.0))
        for name, rules in rule_sets(args.skip_et):
            r = {"rounds": args.rounds}
            if not args.throughput:
                variants = {"router": None, "engine": (), "kernel slice": KERNEL_SLICE}
                r["latency"] = latency_rounds(lab, rules, tmp, args.pings, args.rounds, variants)
            print(f"{name}: saturation, fail-closed TCP, alternated with replays of {pcap.stat().st_size / 1e6:.0f} MB "
                  f"of iperf3 traffic ...", file=sys.stderr)
            r["tcp"], r["replay"] = saturation_rounds(lab, rules, tmp, args.seconds, args.rounds, pcap)
            if not args.throughput:
                r["flood"] = flood(lab, rules, tmp, args.seconds)
            results[name] = r
    return 1 if report(base, results) else 0


if __name__ == "__main__":
    sys.exit(main())
