"""The bundled demo: every scenario in pcaps/demo.pcap is found by the bundled signatures.

``pcaps/make_demo.py`` lists what each scenario should raise (EXPECTED);
these tests hold the committed capture, the bundled rules and the whole
pipeline to it, plus the side outputs of ``make demo``-style runs: the
kill pcap and the reassembled streams (compared with tcpflow).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from mirrorwatch.cli import main

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "pcaps" / "demo.pcap"


def load_make_demo():
    spec = importlib.util.spec_from_file_location("make_demo", ROOT / "pcaps" / "make_demo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    r = CliRunner().invoke(main, ["replay", "--no-alerts", "--eve", str(d / "eve.json"), "--kill-pcap",
                                  str(d / "kills.pcap"), "--dump-streams", str(d / "streams"), str(DEMO)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    events = [json.loads(x) for x in (d / "eve.json").read_text().splitlines()]
    return d, events, r


def test_every_scenario_alerts_exactly_as_expected(demo):
    _, events, _ = demo
    got = Counter(e["alert"]["signature_id"] for e in events if e["event_type"] == "alert")
    assert dict(got) == load_make_demo().EXPECTED


def test_flowbits_setter_is_silent_and_anonymous_ftp_is_not_flagged(demo):
    _, events, _ = demo
    alerts = [e for e in events if e["event_type"] == "alert"]
    assert not any(a["alert"]["signature_id"] == 9000041 for a in alerts)  # flowbits:noalert
    ftp = [a for a in alerts if a["alert"]["signature_id"] == 9000042]
    assert [a["dest_ip"] for a in ftp] == ["198.51.100.90"]  # only the root login, not the anonymous one


def test_reject_rule_kills_the_reverse_shell_session(demo):
    d, events, _ = demo
    blocked = [e for e in events if e["event_type"] == "alert" and e["alert"]["action"] == "blocked"]
    assert [e["alert"]["signature_id"] for e in blocked] == [9000011]
    fid = blocked[0]["flow_id"]
    kills = [e for e in events if e["event_type"] == "kill"]
    assert kills and all(k["flow_id"] == fid for k in kills)
    flow = next(e for e in events if e["event_type"] == "flow" and e["flow_id"] == fid)
    assert flow["flow"]["killed"]
    # the kill pcap holds exactly the frames the kill events announce, as RSTs
    from mirrorwatch.sources.pcapfile import PcapFiles
    from mirrorwatch.core.decode.decoder import Decoder
    from mirrorwatch.core.decode.packet import RST
    from mirrorwatch.core.settings import Settings

    frames = list(PcapFiles([d / "kills.pcap"]))
    assert len(frames) == sum(k["kill"]["frames"] for k in kills)
    dec = Decoder(Settings(), checksum_mode="all")
    pkts = [dec.decode(ts, lt, f, i) for i, (ts, lt, f, _) in enumerate(frames, 1)]
    assert all(p is not None and p.flags & RST and p.csum_ok for p in pkts)
    assert {p.dport for p in pkts} <= {80, 53003}


@pytest.mark.skipif(shutil.which("tcpflow") is None, reason="tcpflow not installed")
def test_dumped_streams_equal_tcpflow(demo, tmp_path):
    d, _, _ = demo
    subprocess.run(["tcpflow", "-o", str(tmp_path), "-r", str(DEMO)], check=True, capture_output=True)
    theirs = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.suffix != ".xml"}
    ours = {p.name: p.read_bytes() for p in (d / "streams").iterdir()}
    assert theirs and ours == theirs


def test_summary_names_the_sessions_and_signatures(demo):
    _, _, r = demo
    out = r.stdout
    assert "19 alerts" in out and "1 session killed (2 injection bursts)" in out
    assert "MW ATTACK_RESPONSE id check returned root" in out
    assert "198.51.100.66:53003 → 192.168.10.80:80" in out and "killed" in out


def test_committed_demo_is_what_make_demo_builds(tmp_path):
    out = tmp_path / "demo.pcap"
    assert load_make_demo().main(["make_demo.py", str(out)]) == 0
    assert out.read_bytes() == DEMO.read_bytes()
