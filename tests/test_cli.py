"""The mirrorwatch command: replay outputs, exit codes and one-line errors.

Run in-process with click's CliRunner (fast) and as a real process
(``mirrorwatch`` console script next to this Python), on the demo capture.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from mirrorwatch.cli import pipeline as runner
from mirrorwatch.cli import main
from mirrorwatch.core.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "pcaps" / "demo.pcap"
SIGNATURES = ROOT / "signatures"
SCRIPT = Path(sys.executable).parent / "mirrorwatch"
FAST_RE = re.compile(
    r"^\d\d/\d\d/\d{4}-\d\d:\d\d:\d\d\.\d{6}  (\[wDrop\] )?\[\*\*\] \[1:(\d+):\d+\] [^\[]+ \[\*\*\] "
    r"\[Classification: [^\]]+\] \[Priority: \d\] \{(TCP|UDP|ICMP|IPv6-ICMP)\} \S+:\d+ -> \S+:\d+$"
)
ALERT_KEYS = {"timestamp", "flow_id", "pcap_cnt", "event_type", "src_ip", "dest_ip", "proto", "pkt_src", "alert",
              "direction", "flow", "stream"}


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def one_error_line(stderr: str) -> str:
    """The whole stderr must be exactly one 'mirrorwatch: error:' line, no traceback."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("mirrorwatch: error: ") and "Traceback" not in stderr
    return lines[0]


def eve_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One replay of the demo with every output, shared by the tests that read them."""
    d = tmp_path_factory.mktemp("demo")
    r = run("replay", "--eve", d / "eve.json", "--fast", d / "fast.log", "--top", 5, DEMO)
    return r, eve_events(d / "eve.json"), (d / "fast.log").read_text().splitlines()


def test_replay_demo_succeeds_with_summary(demo_run):
    r, events, _ = demo_run
    assert r.exit_code == 0, r.output
    assert "161 packets" in r.stdout and "Alerts by signature" in r.stdout and "Top 5 sessions" in r.stdout
    assert "19 rules loaded" in r.stderr


def test_eve_alerts_have_suricata_fields(demo_run):
    _, events, _ = demo_run
    alerts = [e for e in events if e["event_type"] == "alert"]
    assert alerts
    for a in alerts:
        assert ALERT_KEYS <= a.keys(), a
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+0000", a["timestamp"])
        assert a["pkt_src"] == "wire/pcap" and a["direction"] in ("to_server", "to_client")
        assert a["alert"]["gid"] == 1 and 9000000 <= a["alert"]["signature_id"] < 9001000
        assert a["alert"]["category"] and a["alert"]["severity"] in (1, 2, 3)
        assert a["flow"]["src_ip"] and a["flow"]["pkts_toserver"] >= 1
    root = next(a for a in alerts if a["alert"]["signature_id"] == 9000001)
    # the reply from the server carries the match: packet addresses, flow oriented client -> server
    assert (root["src_ip"], root["src_port"], root["dest_ip"]) == ("203.0.113.10", 80, "192.168.10.21")
    assert root["direction"] == "to_client" and root["stream"] == 1
    assert (root["flow"]["src_ip"], root["flow"]["dest_port"]) == ("192.168.10.21", 80)
    ping = next(a for a in alerts if a["alert"]["signature_id"] == 9000032)
    assert ping["proto"] == "ICMP" and ping["icmp_type"] == 8 and "src_port" not in ping
    v6 = next(a for a in alerts if a["alert"]["signature_id"] == 9000043)
    assert v6["src_ip"] == "2001:0db8:0010:0000:0000:0000:0000:0021"  # in full, as Suricata writes IPv6
    eicar = next(a for a in alerts if a["alert"]["signature_id"] == 9000050)
    assert eicar["vlan"] == [100]


def test_eve_flow_and_stats_events(demo_run):
    _, events, _ = demo_run
    flows = [e for e in events if e["event_type"] == "flow"]
    assert len(flows) == 25
    alert_flow_ids = {e["flow_id"] for e in events if e["event_type"] == "alert"}
    assert {f["flow_id"] for f in flows if f["flow"]["alerted"]} == alert_flow_ids
    assert all(f["flow"]["reason"] in ("timeout", "shutdown", "forced") for f in flows)
    tcp = [f for f in flows if f["proto"] == "TCP" and f["flow"]["pkts_toclient"] > 3]
    assert tcp and all(f["tcp"]["syn"] and f["tcp"]["fin"] and f["tcp"]["state"] for f in tcp)
    assert events[-1]["event_type"] == "stats"
    assert events[-1]["stats"]["capture"]["packets"] == 161


def test_fastlog_lines_match_alerts(demo_run):
    _, events, fast = demo_run
    alerts = [e for e in events if e["event_type"] == "alert"]
    assert len(fast) == len(alerts)
    for line in fast:
        assert FAST_RE.match(line), line
    assert Counter(int(FAST_RE.match(x).group(2)) for x in fast) == Counter(a["alert"]["signature_id"] for a in alerts)
    assert any(line.startswith("01/01/2024-12:00:") and "{ICMP} 198.51.100.66:8 -> 192.168.10.80:0" in line for line in fast)


def test_eve_to_stdout_keeps_humans_on_stderr():
    r = run("replay", "--eve", "-", "--eve-types", "alert", DEMO)
    assert r.exit_code == 0
    lines = r.stdout.strip().splitlines()
    assert lines and all(json.loads(x)["event_type"] == "alert" for x in lines)
    assert "Alerts by signature" in r.stderr


def test_several_files_are_one_capture(tmp_path):
    eve = tmp_path / "eve.json"
    r = run("replay", "-q", "--eve", eve, "--eve-types", "alert,stats", DEMO, DEMO)
    assert r.exit_code == 0 and r.stdout == ""
    events = eve_events(eve)
    assert events[-1]["stats"]["capture"]["packets"] == 322
    assert max(e.get("pcap_cnt", 0) for e in events) > 161


@pytest.mark.skipif(shutil.which("editcap") is None, reason="editcap (wireshark-common) not installed")
def test_pcapng_gives_the_same_alerts(tmp_path):
    ng = tmp_path / "demo.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(DEMO), str(ng)], check=True, capture_output=True)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert run("replay", "-q", "--eve", a, "--eve-types", "alert", DEMO).exit_code == 0
    assert run("replay", "-q", "--eve", b, "--eve-types", "alert", ng).exit_code == 0
    key = lambda e: (e["pcap_cnt"], e["alert"]["signature_id"])  # noqa: E731
    assert sorted(map(key, eve_events(a))) == sorted(map(key, eve_events(b)))


def test_checksum_modes_and_set_are_accepted():
    for k in ("all", "none", "auto"):
        r = run("replay", "-q", "-k", k, "--set", "stream.reassembly.depth=2mb", "--set", "vars.address-groups.HOME_NET=[192.168.0.0/16]", DEMO)
        assert r.exit_code == 0, r.output


def _unsupported_linktype_pcap(path: Path) -> Path:
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 147)
                     + struct.pack("<IIII", 1, 0, 4, 4) + b"abcd")
    return path


@pytest.mark.parametrize("case", ["missing", "not-pcap", "linktype", "bad-set-key", "bad-set-value", "set-syntax",
                                  "rules-missing", "eve-unwritable"])
def test_bad_input_is_one_line_error(tmp_path, case):
    text = tmp_path / "notes.txt"
    text.write_text("this is not a capture\n" * 10)
    args = {
        "missing": ["replay", tmp_path / "nope.pcap"],
        "not-pcap": ["replay", text],
        "linktype": ["replay", _unsupported_linktype_pcap(tmp_path / "usb.pcap")],
        "bad-set-key": ["replay", "--set", "flow.no-such-thing=1", DEMO],
        "bad-set-value": ["replay", "--set", "stream.midstream=maybe", DEMO],
        "set-syntax": ["replay", "--set", "stream.midstream", DEMO],
        "rules-missing": ["replay", "--rules", tmp_path / "no-rules-here", DEMO],
        "eve-unwritable": ["replay", "--eve", tmp_path / "no" / "dir" / "eve.json", DEMO],
    }[case]
    r = CliRunner().invoke(main, [str(a) for a in args])
    expected_code = 2 if case.startswith(("bad-set", "set-")) else 1
    assert r.exit_code == expected_code, (r.exit_code, r.output, r.exception)
    line = one_error_line(r.stderr)
    must = {
        "missing": "nope.pcap", "not-pcap": "notes.txt", "linktype": "unsupported link type 147",
        "bad-set-key": "flow.no-such-thing", "bad-set-value": "stream.midstream", "set-syntax": "KEY=VALUE",
        "rules-missing": "no-rules-here", "eve-unwritable": "eve.json",
    }[case]
    assert must in line
    assert r.stdout == ""


def test_bad_rule_file_still_loads_good_rules(tmp_path):
    rules = tmp_path / "mixed.rules"
    rules.write_text(
        'alert tcp any any -> any any (msg:"good: id check"; content:"uid=0|28|root|29|"; sid:1; rev:1;)\n'
        'alert tcp any any -> any any (msg:"broken"; content:"unterminated; sid:2;)\n'
        'alert tcp any any -> any any (msg:"unknown keyword"; no_such_keyword:1; sid:3;)\n'
    )
    eve = tmp_path / "eve.json"
    r = run("replay", "--no-alerts", "--rules", rules, "--eve", eve, "--eve-types", "alert", DEMO)
    assert r.exit_code == 0, r.output
    assert "2 rule(s) skipped" in r.stderr and "mixed.rules:2" in r.stderr
    assert [e["alert"]["signature_id"] for e in eve_events(eve)] == [1]


def test_rules_dir_and_file_repeatable(tmp_path):
    extra = tmp_path / "extra.rules"
    extra.write_text('alert udp any any -> any 53 (msg:"any DNS query"; sid:5; rev:1;)\n')
    eve = tmp_path / "eve.json"
    r = run("replay", "-q", "--rules", SIGNATURES, "--rules", extra, "--eve", eve, "--eve-types", "alert", DEMO)
    assert r.exit_code == 0
    sids = Counter(e["alert"]["signature_id"] for e in eve_events(eve))
    assert sids[5] == 2 and sids[9000001] == 1


def test_rules_check():
    r = run("rules", "check", SIGNATURES)
    assert r.exit_code == 0 and "19 loaded (100.0%)" in r.stdout
    r = CliRunner().invoke(main, ["rules", "check", "/no/such/rules"])
    assert r.exit_code == 1 and "no such rule file" in one_error_line(r.stderr)


def test_rules_check_reports_skips(tmp_path):
    f = tmp_path / "bad.rules"
    f.write_text('alert tcp any any -> any any (msg:"ok"; content:"x"; sid:1;)\nalert tcp any any -> (sid:2;)\n')
    r = run("rules", "check", "-v", f)
    assert r.exit_code == 0 and "1 skipped" in r.stdout and "bad.rules:2" in r.stdout
    assert CliRunner().invoke(main, ["rules", "check", "--strict", str(f)]).exit_code == 1


def test_settings_listing_and_help_epilog():
    r = run("settings")
    assert r.exit_code == 0
    h = run("replay", "--help")
    for s in SETTINGS:
        assert s.key in r.stdout and s.key in h.stdout
    assert "stream.reassembly.depth" in h.stdout and "1048576" in h.stdout


def test_bundled_signatures_found_when_installed(tmp_path, monkeypatch):
    """Without a checkout next to the package, the data dir pip installs into is used."""
    fake_pkg = tmp_path / "site" / "mirrorwatch" / "cli" / "pipeline.py"
    share = tmp_path / "prefix" / "share" / "mirrorwatch" / "signatures"
    share.mkdir(parents=True)
    (share / "a.rules").write_text("")
    monkeypatch.delenv("MIRRORWATCH_SIGNATURES", raising=False)
    monkeypatch.setattr(runner, "__file__", str(fake_pkg))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "prefix"))
    assert runner.bundled_signatures() == share
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "elsewhere"))
    monkeypatch.setattr(runner.sysconfig, "get_path", lambda name: str(tmp_path / "elsewhere"))
    with pytest.raises(runner.PipelineError, match="bundled signatures not found"):
        runner.bundled_signatures()


# -- as a real process ----------------------------------------------------------------------
def sh(*args, **kw):
    return subprocess.run([str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=120, cwd=kw.get("cwd"))


@pytest.mark.skipif(not SCRIPT.exists(), reason="console script not installed next to this Python")
def test_process_replay_to_stdout_default_rules(tmp_path):
    """Bundled signatures by default, from any working directory; EVE on stdout parses."""
    p = sh("replay", "--eve", "-", "--eve-types", "alert", DEMO, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    sids = Counter(json.loads(x)["alert"]["signature_id"] for x in p.stdout.splitlines())
    assert sids[9000001] == 1 and sids[9000030] == 3
    assert "Top 20 sessions" in p.stderr


@pytest.mark.skipif(not SCRIPT.exists(), reason="console script not installed next to this Python")
@pytest.mark.parametrize("case", ["missing", "not-pcap", "bad-set", "rules-missing"])
def test_process_errors_are_one_line(tmp_path, case):
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"\x00" * 100)
    args = {
        "missing": ["replay", tmp_path / "nope.pcap"],
        "not-pcap": ["replay", junk],
        "bad-set": ["replay", "--set", "nope=1", DEMO],
        "rules-missing": ["replay", "-r", tmp_path / "missing.rules", DEMO],
    }[case]
    p = sh(*args)
    assert p.returncode == (2 if case == "bad-set" else 1)
    one_error_line(p.stderr)
    assert p.stdout == ""


@pytest.mark.skipif(not SCRIPT.exists(), reason="console script not installed next to this Python")
def test_python_dash_m_and_version():
    p = subprocess.run([sys.executable, "-m", "mirrorwatch", "--version"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and re.search(r"\d+\.\d+\.\d+", p.stdout)


def test_readme_lists_every_setting_and_the_two_command_quick_start():
    readme = (ROOT / "README.md").read_text()
    table = run("settings", "--markdown").stdout.strip()
    assert len(table.splitlines()) == len(SETTINGS) + 2
    for s in SETTINGS:  # keys, not wording: a reworded help line is not worth a red CI
        assert f"| `{s.key}` |" in readme, f"README lacks {s.key}: paste `mirrorwatch settings --markdown` there"
    quick = readme.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    assert quick.split() == ["make", "demo", "make", "test"]


@pytest.mark.slow
@pytest.mark.skipif(not SCRIPT.exists(), reason="console script not installed next to this Python")
def test_sigterm_during_realtime_replay_flushes_and_exits_130(tmp_path):
    import signal
    import time

    eve = tmp_path / "eve.json"
    p = subprocess.Popen([str(SCRIPT), "replay", "--realtime", "--speed", "0.5", "--no-alerts", "--eve", str(eve),
                          str(DEMO)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)  # start-up, then about 1 s of the 10 s the demo takes at half speed
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    events = eve_events(eve)
    assert events[-1]["event_type"] == "stats" and 0 < events[-1]["stats"]["capture"]["packets"] < 161
    assert any(e["event_type"] == "flow" for e in events)


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_make_targets_and_ci_entry_point_are_wired():
    ci = ROOT / ".ci" / "run"
    assert ci.stat().st_mode & 0o111, ".ci/run must be executable"
    assert subprocess.run(["bash", "-n", str(ci)]).returncode == 0
    assert "MIRRORWATCH_REQUIRE_PRIVILEGED=1 make test" in ci.read_text()
    p = subprocess.run(["make", "-n", "-C", str(ROOT), "demo", "test", "verify", "bench"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "mirrorwatch replay" in p.stdout and "pcaps/demo.pcap" in p.stdout
    assert "-m pytest" in p.stdout and "tests/suricata_verify.py" in p.stdout and "bench/run_all.sh" in p.stdout


def test_eve_payload_carries_the_matching_bytes(tmp_path):
    import base64

    eve = tmp_path / "eve.json"
    assert run("replay", "-q", "--eve", eve, "--eve-types", "alert", "--eve-payload", DEMO).exit_code == 0
    by_sid = {e["alert"]["signature_id"]: e for e in eve_events(eve)}
    root = by_sid[9000001]
    assert b"uid=0(root)" in base64.b64decode(root["payload"]) and "uid=0(root)" in root["payload_printable"]
    assert b"/etc/passwd" in base64.b64decode(by_sid[9000010]["payload"])
