"""The suricata-verify subset, judged by ``tests/suricata_verify.py``.

Cases listed in ``suricata_verify_passing.json`` passed when the list was last
written and must keep passing; the tier targets (every core and
core+threshold case, at least 70% of core+ext) must hold.  Refresh the list
with ``python tests/suricata_verify.py --write-passing``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import suricata_verify as sv  # noqa: E402

PASSING = json.loads((HERE / "suricata_verify_passing.json").read_text())


@pytest.fixture(scope="module")
def results(corpus):
    if not (sv.SV / "index.json").is_file():
        pytest.skip("suricata-verify corpus missing")
    return {c["name"]: sv.judge(c) for c in sv.load_index()}


def test_known_passing_cases_still_pass(results):
    broken = {name: results[name]["reasons"] for name in PASSING if name in results and not results[name]["ok"]}
    assert not broken, json.dumps(broken, indent=1)[:4000]


@pytest.mark.parametrize("tier", sorted(sv.TARGETS))
def test_tier_target(results, tier):
    summary = sv.summarize(list(results.values()))
    if tier not in summary:
        pytest.skip(f"no {tier} case in the corpus")
    ok, n = summary[tier]
    failing = {r["name"]: r["reasons"][:3] for r in results.values() if r["tier"] == tier and not r["ok"]}
    assert ok / n + 1e-9 >= sv.TARGETS[tier], f"{tier}: {ok}/{n}; failing: {json.dumps(failing, indent=1)[:3000]}"


def test_no_case_crashes(results):
    crashed = {n: r["reasons"] for n, r in results.items() if any(x.startswith("crash") for x in r["reasons"])}
    assert not crashed
