#!/usr/bin/env python3
"""Judge mirrorwatch against the suricata-verify cases of the corpus, as suricata-verify judges Suricata.

Each case (``corpus/suricata-verify/index.json``: tier, pcap, rules, Suricata
options) runs as a user would run it: the ``mirrorwatch replay`` command line,
in a process of its own (forked from the harness, which imported the package
once) and a fresh output directory, with the case's Suricata options
translated onto that command line:

- ``suricata_args`` (``-k none``, ``--set KEY=VALUE``...) pass through as they
  are, except ``--runmode`` (one run mode here), left out and noted; when the
  CLI refuses an option or a setting, the case fails with the CLI's own line;
- ``config_overrides`` (the keys of the case's ``suricata.yaml``): each
  becomes ``--set KEY=VALUE`` under Suricata's key name (lists as
  ``[a, b]``); an empty list sets nothing and ``include`` (the case's yaml
  includes Suricata's default one) changes nothing: both are noted;
- Suricata's defaults where mirrorwatch's differ (``SURICATA_DEFAULTS``: the
  cases are judged against Suricata 8+, which logs DNS records in version 3)
  come first, so the case's own options override them; of the case's ``env``,
  the variables Suricata reads into a setting (``ENV_SETTINGS``) become that
  ``--set``, the others are noted.

EVE is written with every event type (the CLI's default) and with Suricata's alert fields
(``--eve-payload``: payload, payload_printable, packet, packet_info), and a
fast.log beside it.  Then every check of the case's ``test.yaml`` is judged
with suricata-verify's semantics:

- ``filter``: exactly ``count`` EVE records match (dotted paths, ``[i]``
  indexes, ``__len``/``__find``/``__contains``/``__startswith``/
  ``__endswith``/``__gt``/``__gte``/``__lt``/``__lte``, ``has-key``/
  ``not-has-key``; a nested object is compared whole);
- ``stats``: values in the last stats record;
- ``shell``: the command, run in the output directory, prints ``expect``.

A check whose ``requires`` excludes Suricata 9.0.0 (the version the corpus
targets) or needs a build feature is not judged (noted).  A failing check gives
one reason; when EVE never has a field or event type the check needs, the
reason names it.

Usage: ``python tests/suricata_verify.py [--tier T] [--case NAME] [-j N] [-v] [--cases-dir DIR] [--json OUT]
[--write-passing]`` (``--cases-dir``: another folder of cases in the corpus's layout, e.g. more
suricata-verify cases extracted from upstream).
Exit status 0 when the tier targets hold (every core and core+threshold case,
at least 70% of core+ext), 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing
import os
import pkgutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml
from sv_filters import MISSING, compare, field_path, find_value, record_matches  # tests/, beside this file

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("MIRRORWATCH_CORPUS", ROOT.parent / "shared" / "corpus"))
SV = CORPUS / "suricata-verify"

TARGETS = {"core": 1.0, "core+threshold": 1.0, "core+ext": 0.70}
SURICATA_VERSION = (9, 0, 0)  # the version the corpus's expectations are written for
CASE_TIMEOUT = 120.0  # seconds one replay may take
SHELL_TIMEOUT = 30.0  # seconds one shell check may take
IGNORED_ARGS = {"--runmode": "one run mode here"}  # Suricata options with no meaning for a replay


def load_index() -> list[dict]:
    with open(SV / "index.json") as f:
        return json.load(f)["tests"]


def _config_keys(path: Path) -> dict:
    """The top-level keys of a case's suricata.yaml (Suricata's ``%YAML 1.1`` header and ``!include`` tags
    read as plain YAML); empty when it does not parse."""
    text = path.read_text(errors="replace")
    text = "\n".join(line for line in text.splitlines() if not line.startswith("%YAML"))
    try:
        loaded = yaml.load(text.replace("!include", ""), Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def load_test_yaml(case: dict) -> dict:
    with open(SV / case["test_yaml"]) as f:
        return yaml.safe_load(f) or {}


# -- the command line ------------------------------------------------------------

def _setting_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(_setting_value(x) for x in v) + "]"
    return str(v)


# Suricata 8+'s defaults where mirrorwatch's own differ (mirrorwatch keeps DNS records in version 2)
SURICATA_DEFAULTS = {"eve-log.dns.version": "3"}
# environment variables Suricata reads into a setting when its configuration gives none
ENV_SETTINGS = {"SURICATA_EVE_DNS_VERSION": "eve-log.dns.version"}


def cli_args(case: dict, env: dict | None = None) -> tuple[list[str], list[str]]:
    """(the ``mirrorwatch replay`` options translated from the case's Suricata options and environment, notes)."""
    argv: list[str] = [t for key, value in SURICATA_DEFAULTS.items() for t in ("--set", f"{key}={value}")]
    notes: list[str] = []
    for name, value in (env or {}).items():
        if name in ENV_SETTINGS:
            argv += ["--set", f"{ENV_SETTINGS[name]}={value}"]
        else:
            notes.append(f"env {name}={value} not applied (Suricata's environment)")
    tokens = [t for a in case.get("suricata_args") or [] for t in a.split()]
    i = 0
    while i < len(tokens):
        t = tokens[i]
        name = t.split("=", 1)[0]
        if name in IGNORED_ARGS:
            notes.append(f"{t} left out ({IGNORED_ARGS[name]})")
            i += 1 if "=" in t else 2
        else:
            argv.append(t)  # the CLI judges it
            i += 1
    config = SV / Path(case["test_yaml"]).parent / "suricata.yaml" if case.get("test_yaml") else None
    if config is not None and config.is_file() and "include" not in _config_keys(config):
        # a whole configuration of its own: suricata-verify runs Suricata with ``-c`` on it
        argv += ["-c", str(config)]
        notes.append("-c suricata.yaml (the case's whole configuration)")
    for key, value in (case.get("config_overrides") or {}).items():
        if key == "include":
            notes.append(f"config include {value}: Suricata's default configuration, nothing to change")
        elif value in ([], {}, None, ""):
            notes.append(f"config {key}: empty, nothing to set")
        else:
            argv += ["--set", f"{key}={_setting_value(value)}"]
    return argv, notes


def preimport() -> None:
    """Import every module of the package here, once: the CLI imports most of them lazily, and each forked
    replay would otherwise pay for that again (a third of a second per case)."""
    import mirrorwatch

    for mod in pkgutil.walk_packages(mirrorwatch.__path__, "mirrorwatch."):
        if mod.name.endswith(".__main__"):
            continue
        try:
            importlib.import_module(mod.name)
        except (ImportError, OSError):  # an optional library (a capture or inline module): the CLI copes
            pass


def run_replay(case: dict, argv: list[str], out: Path) -> tuple[int | None, str]:
    """``mirrorwatch replay`` with the case's options, in a child forked from this process (the CLI is
    imported once, each case still gets a process of its own), run in ``out``; (exit status or None when
    it did not finish in ``CASE_TIMEOUT``, what it wrote on stderr)."""
    from mirrorwatch.cli import main

    args = ["replay", "-q", "-r", str(SV / case["rules"]), "--eve", str(out / "eve.json"), "--eve-payload",
            "--fast", str(out / "fast.log"), *argv, str(SV / case["pcap"])]
    err = out / "stderr.txt"
    pid = os.fork()
    if pid == 0:  # the child: the command line as a user types it, nothing of the parent's but the imports
        code = 1
        try:
            os.chdir(out)
            os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)  # not a test's capture
            main(args, prog_name="mirrorwatch")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        finally:
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + CASE_TIMEOUT
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), err.read_text(errors="replace") if err.exists() else ""
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None, ""
        time.sleep(0.002)


def why_unmatched(match: dict, records: list[dict]) -> str:
    """Why too few records match: an event type or field mirrorwatch's EVE never has, else how the
    closest record of that event type differs; '' when there is no such record."""
    from mirrorwatch.sinks.eve import EVENT_TYPES  # every event type mirrorwatch writes

    etype = match.get("event_type")
    if etype is not None and etype not in EVENT_TYPES:
        return f"mirrorwatch writes no '{etype}' events"
    pool = [r for r in records if etype is None or r.get("event_type") == etype]
    if not pool:
        return ""
    paths = [p for k, v in match.items() if k != "event_type"
             for p in ((v if isinstance(v, list) else [v]) if k == "has-key" else [] if k == "not-has-key"
                       else [field_path(k)])]
    absent = [p for p in paths if all(find_value(r, p) is MISSING for r in pool)]
    if absent:
        return f"mirrorwatch's {etype or 'EVE'} records have no {', '.join(absent)}"
    closest, misses = min(((r, [k for k in match if not record_matches(r, {k: match[k]})]) for r in pool),
                          key=lambda rm: len(rm[1]))
    if "alert.signature_id" in misses:
        return ""  # that rule did not alert (often enough): the count says it
    return "closest record differs in " + ", ".join(
        f"{k} (has {json.dumps(find_value(closest, field_path(k)))[:60]})" for k in misses[:4])


# -- judging ---------------------------------------------------------------------

def _version(text) -> tuple:
    parts = [int(p) for p in str(text).split(".") if p.isdigit()]
    return tuple(parts + [0] * (3 - len(parts)))[:3]


def not_applicable(requires: dict) -> str:
    """Why a check's ``requires`` leaves it out for Suricata 9.0.0, or ''."""
    if "min-version" in requires and SURICATA_VERSION < _version(requires["min-version"]):
        return f"for Suricata >= {requires['min-version']}"
    if "lt-version" in requires and SURICATA_VERSION >= _version(requires["lt-version"]):
        return f"for Suricata < {requires['lt-version']}"
    if requires.get("features"):
        return f"needs Suricata build features {requires['features']}"
    return ""


def judge_filter(spec: dict, out: Path, records: list[dict]) -> str:
    if spec.get("filename"):
        path = out / spec["filename"]
        if not path.is_file():
            return f"filter on {spec['filename']}: mirrorwatch writes no such file"
        records = _read_json_lines(path)
    match, want = spec.get("match") or {}, spec.get("count")
    got = sum(1 for r in records if record_matches(r, match))
    if got == want:
        return ""
    why = why_unmatched(match, records) if got < want else ""
    return (f"{why}: " if why else "") + f"filter expected {want}, got {got}: {json.dumps(match, sort_keys=True)}"


def judge_stats(spec: dict, out: Path, records: list[dict]) -> str:
    spec = {k: v for k, v in spec.items() if k != "requires"}
    stats = next((r["stats"] for r in reversed(records) if r.get("event_type") == "stats"), None)
    if stats is None:
        return "stats: no stats record in mirrorwatch's EVE"
    bad = []
    for key, want in spec.items():
        got = find_value(stats, key)
        if not compare(key, got, want):
            bad.append(f"stats.{key}: expected {want}, got " + ("no such counter" if got is MISSING else str(got)))
    return "; ".join(bad)


def judge_shell(spec: dict, out: Path, records: list[dict]) -> str:
    """suricata-verify's shell check (the case's own command, e.g. a line count of fast.log)."""
    try:
        r = subprocess.run(spec["args"], shell=True, cwd=out, capture_output=True, text=True, timeout=SHELL_TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"shell {spec['args']!r}: timed out"
    if r.returncode != 0:
        return f"shell {spec['args']!r}: exit {r.returncode}: {r.stderr.strip()[-200:]}"
    if "expect" in spec and r.stdout.strip() != str(spec["expect"]):
        return f"shell {spec['args']!r}: expected {spec['expect']!r}, got {r.stdout.strip()!r}"
    return ""


CHECKS = {"filter": judge_filter, "stats": judge_stats, "shell": judge_shell}


def _read_json_lines(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def judge_checks(checks: list[dict], out: Path, records: list[dict], res: dict) -> None:
    for kind, spec in ((k, v) for check in checks for k, v in check.items()):
        skip = not_applicable(spec.get("requires") or {}) if isinstance(spec, dict) else ""
        if skip:
            res["notes"].append(f"{kind} check not judged: {skip}")
            continue
        judge_one = CHECKS.get(kind)
        res["checks"] += 1
        why = judge_one(spec, out, records) if judge_one else f"check kind {kind!r}: not judged by this harness"
        if why:
            res["reasons"].append(why)


def judge(case: dict) -> dict:
    """Run one case and judge every check of its test.yaml."""
    t0 = time.perf_counter()
    res = {"name": case["name"], "tier": case["tier"], "ok": False, "reasons": [], "notes": [], "checks": 0}
    spec = load_test_yaml(case)
    argv, res["notes"] = cli_args(case, spec.get("env"))
    with tempfile.TemporaryDirectory(prefix="mw-sv-") as tmp:
        out = Path(tmp)
        code, stderr = run_replay(case, argv, out)
        if code is None:
            res["reasons"].append(f"replay did not finish in {CASE_TIMEOUT:.0f}s")
            return res
        res["command"] = " ".join(["mirrorwatch", "replay", *argv])
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        res["notes"] += [f"CLI: {ln}" for ln in lines if ln.startswith(("mirrorwatch: warning", "mirrorwatch: note"))]
        res["crashed"] = any("Traceback" in ln or "internal error" in ln for ln in lines)
        if code != 0:
            res["reasons"].append(f"replay exited {code}: {lines[-1] if lines else '(no message)'}")
            return res
        records = _read_json_lines(out / "eve.json")
        res["counts"] = _alert_counts(records)
        judge_checks(spec.get("checks") or [], out, records, res)
    res["ok"] = not res["reasons"]
    res["seconds"] = round(time.perf_counter() - t0, 3)
    return res


def _alert_counts(records: list[dict]) -> dict:
    counts: dict[str, int] = defaultdict(int)
    for r in records:
        if r.get("event_type") == "alert":
            counts[str(r["alert"]["signature_id"])] += 1
    return dict(sorted(counts.items(), key=lambda kv: int(kv[0])))


def judge_all(cases: list[dict], jobs: int = 1) -> list[dict]:
    """Every case judged, ``jobs`` at a time (worker processes forked from this one, with the CLI imported)."""
    preimport()
    if jobs <= 1:
        return [judge(c) for c in cases]
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(judge, cases))


# -- report ----------------------------------------------------------------------

def summarize(results: list[dict]) -> dict:
    tiers: dict[str, list] = defaultdict(list)
    for r in results:
        tiers[r["tier"]].append(r["ok"])
    return {t: (sum(v), len(v)) for t, v in sorted(tiers.items())}


def targets_met(summary: dict) -> tuple[bool, list[str]]:
    problems = []
    for tier, need in TARGETS.items():
        ok, n = summary.get(tier, (0, 0))
        if n and ok / n + 1e-9 < need:
            problems.append(f"{tier}: {ok}/{n} pass, target {need:.0%}")
    return not problems, problems


def print_report(results: list[dict], verbose: bool) -> dict:
    for r in results:
        print(f"{'PASS' if r['ok'] else 'FAIL'}  {r['tier']:<20} {r['name']}  ({r['checks']} checks)")
        for why in r["reasons"]:
            print(f"        {why[:400]}")
        if verbose:
            for note in r["notes"]:
                print(f"        note: {note}")
            print(f"        {r.get('command', '')}\n        alerts by sid: {r.get('counts')}")
    summary = summarize(results)
    print("\ntier                  pass / cases")
    for tier, (ok, n) in summary.items():
        print(f"{tier:<20} {ok:>5} / {n:<5} ({ok / n:.0%})")
    return summary


def main(argv=None) -> int:
    global SV
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tier", action="append", help="only cases of this tier (repeatable)")
    ap.add_argument("--case", action="append", help="only this case (repeatable; substring match)")
    ap.add_argument("-j", "--jobs", type=int, default=min(2, os.cpu_count() or 1), help="cases run at once")
    ap.add_argument("-v", "--verbose", action="store_true", help="notes, command line and alert counts of every case")
    ap.add_argument("--cases-dir", type=Path, default=SV,
                    help="judge the cases of this folder instead (an index.json of the corpus's format beside tests/)")
    ap.add_argument("--json", help="write the per-case results to this file")
    ap.add_argument("--write-passing", action="store_true",
                    help="record the passing cases in tests/suricata_verify_passing.json (kept passing by the tests)")
    args = ap.parse_args(argv)
    SV = args.cases_dir  # read by the forked workers too
    if not (SV / "index.json").is_file():
        print(f"suricata-verify corpus not found at {SV} (set MIRRORWATCH_CORPUS)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))  # the checkout this script is in, not another installed copy
    cases = load_index()
    if args.tier:
        cases = [c for c in cases if c["tier"] in args.tier]
    if args.case:
        cases = [c for c in cases if any(s in c["name"] for s in args.case)]
    results = judge_all(cases, args.jobs)
    summary = print_report(results, args.verbose)
    met, problems = targets_met(summary)
    for p in problems:
        print(f"target missed: {p}")
    if args.write_passing:
        passing = sorted(r["name"] for r in results if r["ok"])
        pinned = Path(__file__).resolve().parent / "suricata_verify_passing.json"
        pinned.write_text(json.dumps(passing, indent=1) + "\n")
        print(f"{len(passing)} passing cases recorded")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "summary": summary}, f, indent=1)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
