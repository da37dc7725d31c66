"""Fuzzing in the suite: every target of ``fuzz/targets.py`` (decoder, stream reassembler, rule
parser) under atheris for a bounded time, and every input that once broke one, replayed.

``make fuzz`` runs the same targets for longer (``FUZZ_SECONDS``) on a corpus kept in
``.fuzz/``.  An input a run reports goes under ``tests/fuzz_regressions/<target>/``, where
``test_regression_input`` keeps it from coming back.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fuzz"))

from targets import TARGETS, FuzzBug

FUZZ_SECONDS = int(os.environ.get("MIRRORWATCH_FUZZ_SECONDS", "10"))
REGRESSIONS = ROOT / "tests" / "fuzz_regressions"
MIN_RUNS = 1000  # a bounded run that executes fewer inputs did not really fuzz


def regression_inputs() -> list[Path]:
    return sorted(p for p in REGRESSIONS.glob("*/*") if p.is_file())


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_a_bounded_fuzz_run_finds_nothing(target, tmp_path):
    pytest.importorskip("atheris")
    artifacts = tmp_path / "artifacts"
    r = subprocess.run([sys.executable, str(ROOT / "fuzz" / "run.py"), target, "--seconds", str(FUZZ_SECONDS),
                        "--corpus", str(tmp_path / "corpus"), "--artifacts", str(artifacts)],
                       capture_output=True, text=True, timeout=FUZZ_SECONDS * 6 + 120, cwd=tmp_path, check=False)
    found = sorted(artifacts.glob("*"))
    assert r.returncode == 0 and not found, (
        f"fuzz target {target} broke on {[str(p) for p in found]}: copy the input to "
        f"tests/fuzz_regressions/{target}/ and fix the bug\n{r.stderr[-4000:]}")
    runs = re.search(r"stat::number_of_executed_units: (\d+)", r.stderr)
    assert runs and int(runs.group(1)) >= MIN_RUNS, r.stderr[-2000:]
    assert len(list((tmp_path / "corpus").iterdir())) > 1  # seeded, and coverage guided it further


@pytest.mark.parametrize("path", regression_inputs(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_regression_input(path):
    one_input, _ = TARGETS[path.parent.name]
    one_input(path.read_bytes())


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_seed_passes(target):
    one_input, seeds = TARGETS[target]
    n = 0
    for data in seeds():
        one_input(data)
        n += 1
    assert n > 0


def test_the_decoder_target_reports_an_internal_error(monkeypatch):
    """A layer that raises is caught by ``decode`` and counted; the target must still call it a bug."""
    from mirrorwatch.core.decode import decoder

    def broken(d, p, f, off, end, depth):
        raise IndexError("planted")

    monkeypatch.setattr(decoder, "ETHERTYPE_DECODERS", {**decoder.ETHERTYPE_DECODERS, 0x0800: broken, 0x86DD: broken})
    with pytest.raises(IndexError, match="planted"):
        for data in TARGETS["decoder"][1]():
            TARGETS["decoder"][0](data)


def test_the_reassembly_target_checks_what_the_observer_sees(monkeypatch):
    """Bytes settled twice (a planted double delivery) break the target's contract."""
    import targets

    class Twice(targets.Stream):  # a subclass: a compiled Stream's methods can be overridden, not patched
        def _settle(self, upto):
            f = self.final
            super()._settle(upto)
            if self._obs_data is not None and upto > f:
                self._obs_data(self, f, bytes(self.buf[f - self.buf_base:upto - self.buf_base]))

    monkeypatch.setattr(targets, "Stream", Twice)
    with pytest.raises(FuzzBug, match="settled bytes"):
        for data in TARGETS["reassembly"][1]():
            TARGETS["reassembly"][0](data)


def test_the_rules_target_lets_only_rule_errors_through(monkeypatch):
    from mirrorwatch.rules import parser

    def broken(*a, **kw):
        raise KeyError("planted")

    monkeypatch.setattr(parser, "split_options", broken)
    with pytest.raises(KeyError, match="planted"):
        TARGETS["rules"][0](next(iter(TARGETS["rules"][1]())))
