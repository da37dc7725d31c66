"""The corpus with one worker and with several: the same alerts, flow and app-layer records, fast.log.

Every suricata-verify case (its rules, options and capture) and the bench
captures run once with one engine and once with three workers (more than two
so that a wrong partition shows more often).  Alerts of rules with a
threshold or detection filter are left out (counted per worker, documented),
and so is the ``alerted`` flag of their sessions, and the tagged packets of a
rule set that tags hosts; see ``test_workers``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_workers import (
    SIGNATURES,
    assert_same_output,
    replay,
    tags_hosts,
    threshold_sids,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import suricata_verify as sv

WORKERS = 3
GENERATED_PACKETS = 30_000


def _cases() -> list[dict]:
    return sv.load_index() if (sv.SV / "index.json").is_file() else []


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["name"])
def test_suricata_verify_case(case, tmp_path):
    argv, _ = sv.cli_args(case)
    rules = sv.SV / case["rules"]
    args = ("-r", rules, "--eve-payload", *argv, sv.SV / case["pcap"])
    one, many = replay(tmp_path / "1", *args), replay(tmp_path / "n", *args, workers=WORKERS)
    assert one.returncode == many.returncode, many.stderr
    if one.returncode == 0:
        assert_same_output(tmp_path / "1", tmp_path / "n", threshold_sids(rules), skip_tagged=tags_hosts(rules))


@pytest.mark.parametrize("name", ["ndpi-mixed-ethernet.pcap", "http-tests-merged.pcap"])
def test_bench_capture(name, corpus, tmp_path):
    pcap = corpus / "bench" / name
    one, many = replay(tmp_path / "1", pcap), replay(tmp_path / "n", pcap, workers=WORKERS)
    assert one.returncode == many.returncode == 0, many.stderr
    assert_same_output(tmp_path / "1", tmp_path / "n", threshold_sids(SIGNATURES))


def test_generated_bench_capture(tmp_path):
    pcap = tmp_path / "bench.pcap"
    subprocess.run([sys.executable, str(ROOT / "pcaps" / "gen_bench.py"), "--packets", str(GENERATED_PACKETS),
                    str(pcap)], check=True, capture_output=True)
    one, many = replay(tmp_path / "1", pcap), replay(tmp_path / "n", pcap, workers=WORKERS)
    assert one.returncode == many.returncode == 0, many.stderr
    assert_same_output(tmp_path / "1", tmp_path / "n", threshold_sids(SIGNATURES))
