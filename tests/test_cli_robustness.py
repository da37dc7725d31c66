"""Every capture of corpus/robustness through the whole command (decode, flows, detect, outputs).

Malformed, truncated, fuzzed and odd captures must either replay to the end
(exit 0, a complete EVE file ending with the stats event) or be refused with
one error line (exit 1: not a capture, unsupported link type, unreadable) --
never a traceback, never a hang.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mirrorwatch.cli import main


@pytest.mark.slow
def test_every_robustness_capture_replays_or_is_refused_in_one_line(corpus, tmp_path):
    files = sorted(p for p in (corpus / "robustness").rglob("*") if p.is_file() and p.suffix not in (".json", ".md"))
    assert len(files) > 100
    runner = CliRunner()
    outcomes = {0: 0, 1: 0}
    for i, path in enumerate(files):
        eve = tmp_path / f"{i}.json"
        r = runner.invoke(main, ["replay", "-q", "-k", "none", "--eve", str(eve), "--eve-types", "flow,stats", str(path)])
        crashed = r.exception is not None and not isinstance(r.exception, SystemExit)
        assert r.exit_code in (0, 1) and not crashed, (path, r.exit_code, r.exception, r.stderr)
        assert "Traceback" not in r.stderr, (path, r.stderr)
        outcomes[r.exit_code] += 1
        if r.exit_code == 0:
            events = [json.loads(line) for line in eve.read_text().splitlines()]
            assert events and events[-1]["event_type"] == "stats", path
            assert all(not line.startswith("mirrorwatch: error") for line in r.stderr.splitlines()), path
        else:
            errors = [line for line in r.stderr.splitlines() if line.startswith("mirrorwatch: error: ")]
            assert len(errors) == 1 and str(path) in errors[0], (path, r.stderr)
    assert outcomes[0] > outcomes[1]
