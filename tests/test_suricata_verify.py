"""The suricata-verify cases, judged by ``tests/suricata_verify.py`` as suricata-verify judges Suricata.

The harness's own semantics are pinned first (fast): suricata-verify's field
lookup and match suffixes, which check ``requires`` leave out, how a case's
Suricata options become a ``mirrorwatch replay`` command line, and that an
option the CLI refuses fails the case.  Then every case runs (slow): the
cases listed in ``suricata_verify_passing.json`` passed, every check of their
``test.yaml`` judged, when the list was last written, and must keep passing;
no case may crash the engine.  Refresh the list with
``python tests/suricata_verify.py --write-passing``; ``make verify`` prints
the tiers and a reason for every failing case.
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

EVE_ALERT = {"event_type": "alert", "pcap_cnt": 4, "alert": {"signature_id": 7, "rev": 1, "action": "allowed"},
             "payload_printable": "GET /x", "packet": "AAAA", "dns": {"queries": [{"rrname": "a.example"}]}}


@pytest.mark.parametrize("match,ok", [
    ({"event_type": "alert", "alert.signature_id": 7}, True),
    ({"alert.signature_id": 8}, False),
    ({"alert": {"signature_id": 7, "rev": 1, "action": "allowed"}}, True),  # a nested object is compared whole
    ({"alert": {"signature_id": 7}}, False),
    ({"payload_printable.__find": "/x"}, True),
    ({"payload_printable.__startswith": "POST"}, False),
    ({"packet.__len": 4}, True),
    ({"pcap_cnt.__gte": 4, "pcap_cnt.__lt": 5}, True),
    ({"pcap_cnt.__gt": 4}, False),
    ({"dns.queries[0].rrname": "a.example"}, True),
    ({"dns.queries[1].rrname": "a.example"}, False),
    ({"has-key": "packet"}, True),
    ({"has-key": ["packet", "packet_info.linktype"]}, False),
    ({"not-has-key": "verdict"}, True),
    ({"missing.__find": "x"}, False),  # absent: no match, no crash
])
def test_filter_semantics_are_suricata_verifys(match, ok):
    assert sv.record_matches(EVE_ALERT, match) is ok


def test_requires_leaves_out_checks_for_other_versions_and_builds():
    assert sv.not_applicable({"min-version": "8.0.5"}) == ""
    assert sv.not_applicable({"min-version": "9.1"}) and sv.not_applicable({"lt-version": "8"})
    assert sv.not_applicable({"features": ["HAVE_LIBJANSSON"]})


def test_a_cases_suricata_options_become_the_replay_command_line():
    case = {"suricata_args": ["-k none --set stream.inline=true", "--runmode=single"],
            "config_overrides": {"packet-alert-max": 6, "host-os-policy.windows": ["0.0.0.0/0", "10.0.0.0/8"],
                                 "host-os-policy.bsd": [], "include": "default.yaml"}}
    argv, notes = sv.cli_args(case, {"SURICATA_EVE_DNS_VERSION": 2, "SC_LOG_LEVEL": "debug"})
    assert argv == ["--set", "eve-log.dns.version=3", "--set", "eve-log.dns.version=2", "-k", "none",
                    "--set", "stream.inline=true", "--set", "packet-alert-max=6",
                    "--set", "host-os-policy.windows=[0.0.0.0/0, 10.0.0.0/8]"]
    assert "env SC_LOG_LEVEL=debug not applied (Suricata's environment)" in notes
    assert any("--runmode=single left out" in n for n in notes)
    assert any("host-os-policy.bsd: empty" in n for n in notes) and any("include default.yaml" in n for n in notes)


def test_a_case_with_a_whole_configuration_of_its_own_runs_with_it(corpus):
    # suricata-verify runs Suricata with -c on a case's suricata.yaml; one that includes Suricata's
    # default configuration gives its keys as config_overrides instead
    (case,) = [c for c in sv.load_index() if c["name"] == "bug-2576-04"]
    argv, notes = sv.cli_args(case)
    assert argv[-2:] == ["-c", str(sv.SV / "tests/bug-2576-04/suricata.yaml")]
    assert any("-c suricata.yaml" in n for n in notes)
    res = sv.judge(case)
    assert not any("fileinfo.md5" in r for r in res["reasons"])  # its files output's force-hash: [md5]
    included = [c for c in sv.load_index() if "include" in (c.get("config_overrides") or {})]
    assert included and all("-c" not in sv.cli_args(c)[0] for c in included)


def test_an_option_the_cli_refuses_fails_the_case(corpus):
    case = {"name": "refused", "tier": "core", "rules": "tests/alert-distance-within-1/test.rules",
            "pcap": "tests/alert-distance-within-1/input.pcap", "test_yaml": "tests/alert-distance-within-1/test.yaml",
            "suricata_args": ["--no-such-option"]}
    res = sv.judge(case)
    (reason,) = res["reasons"]
    assert not res["ok"] and reason.startswith("replay exited 2: ") and "--no-such-option" in reason


def test_a_missing_event_type_or_field_is_named_in_the_reason():
    records = [EVE_ALERT]
    assert sv.why_unmatched({"event_type": "smb"}, records) == "mirrorwatch writes no 'smb' events"
    assert sv.why_unmatched({"event_type": "alert", "app_proto": "http"}, records) == \
        "mirrorwatch's alert records have no app_proto"
    assert sv.why_unmatched({"event_type": "alert", "pcap_cnt": 5}, records) == \
        "closest record differs in pcap_cnt (has 4)"


@pytest.fixture(scope="module")
def results(corpus):
    if not (sv.SV / "index.json").is_file():
        pytest.skip("suricata-verify corpus missing")
    return {r["name"]: r for r in sv.judge_all(sv.load_index(), jobs=2)}


@pytest.mark.slow
def test_known_passing_cases_still_pass(results):
    broken = {name: results[name]["reasons"] for name in PASSING if name in results and not results[name]["ok"]}
    assert not broken, json.dumps(broken, indent=1)[:4000]


@pytest.mark.slow
def test_no_case_crashes_the_engine(results):
    crashed = {n: r["reasons"] for n, r in results.items() if r.get("crashed")}
    assert not crashed, json.dumps(crashed, indent=1)[:4000]


@pytest.mark.slow
def test_every_failing_case_says_why(results):
    assert all(r["reasons"] for r in results.values() if not r["ok"])
    assert all(r["checks"] for r in results.values() if r["ok"])  # a pass judged at least one check
