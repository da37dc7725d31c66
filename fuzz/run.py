#!/usr/bin/env python3
"""Run one fuzz target (``fuzz/targets.py``) under atheris, coverage-guided, for a bounded time.

    python fuzz/run.py TARGET [--seconds N] [--corpus DIR] [--artifacts DIR] [--max-len N]

TARGET is ``decoder``, ``reassembly`` or ``rules``.  The package is instrumented as it is
imported, so libFuzzer sees which branches each input reaches.  The corpus directory
(default ``.fuzz/TARGET``) is seeded from the target's seeds when empty and keeps what
the run found.  An input that makes the target raise is written to the artifacts
directory (default: the corpus directory's parent) as ``crash-<sha1>``, the traceback is
printed and the exit status is non-zero: put the input under
``tests/fuzz_regressions/TARGET/`` (``tests/test_fuzz.py`` replays every file there) and
fix the bug.  Exit status 0: the time ran out without a crash.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_SECONDS = 60
DEFAULT_MAX_LEN = 4096
INPUT_TIMEOUT = 10  # seconds one input may take before libFuzzer reports it as a hang
RSS_LIMIT_MB = 2048

with atheris.instrument_imports(include=["mirrorwatch"]):
    sys.path.insert(0, str(HERE))
    from targets import TARGETS


def seed(corpus: Path, seeds) -> int:
    """Write the target's seeds into an empty corpus directory; returns how many."""
    corpus.mkdir(parents=True, exist_ok=True)
    if any(corpus.iterdir()):
        return 0
    n = 0
    for data in seeds():
        (corpus / hashlib.sha1(data).hexdigest()).write_bytes(data)
        n += 1
    return n


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", choices=sorted(TARGETS))
    ap.add_argument("--seconds", type=int, default=DEFAULT_SECONDS)
    ap.add_argument("--corpus", type=Path, default=None)
    ap.add_argument("--artifacts", type=Path, default=None)
    ap.add_argument("--max-len", type=int, default=DEFAULT_MAX_LEN)
    a = ap.parse_args(argv)
    one_input, seeds = TARGETS[a.target]
    corpus = a.corpus or ROOT / ".fuzz" / a.target
    artifacts = a.artifacts or corpus.parent
    artifacts.mkdir(parents=True, exist_ok=True)
    seed(corpus, seeds)
    libfuzzer = [sys.argv[0], str(corpus), f"-max_total_time={a.seconds}", f"-artifact_prefix={artifacts}/",
                 f"-timeout={INPUT_TIMEOUT}", f"-rss_limit_mb={RSS_LIMIT_MB}", f"-max_len={a.max_len}",
                 "-print_final_stats=1"]
    atheris.Setup(libfuzzer, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
