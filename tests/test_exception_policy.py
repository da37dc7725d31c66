"""Exception policies (Suricata 7): what a session whose handshake was not seen gets.

The policy's resolution is checked against Suricata's rules (ExceptionPolicyMidstreamParse and
the master switch, IDS and IPS); the effects through the CLI on the corpus capture Suricata's own
cases use (alert-testmyids-midstream5: a session from its SYN-ACK on, an HTTP response with
"uid=0(root)"), and inline through the engine and its judge.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.all import IP, TCP

from mirrorwatch.core.decode.numbers import LINKTYPE_IPV4
from mirrorwatch.core.engine import Engine
from mirrorwatch.core.events import ACCEPTED, DROP_FLOW, FlowEnded
from mirrorwatch.core.flows import exceptions as eps
from mirrorwatch.core.inline import InlineJudge
from mirrorwatch.core.settings import SettingError, Settings
from mirrorwatch.rules import RuleContext, parse_rule

ROOT = Path(__file__).resolve().parent.parent
RULE = 'alert ip any any -> any any (msg:"id check returned root"; content:"uid=0|28|root|29|"; sid:2100498; rev:7;)\n'


def policy(ips: bool = False, **sets) -> str:
    return eps.midstream_policy(Settings({k.replace("_", "-").replace("midstream-policy", "stream.midstream-policy")
                                          .replace("midstream-on", "stream.midstream"): v
                                          for k, v in sets.items()}), ips)


@pytest.mark.parametrize(("ips", "sets", "expected"), [
    (False, {}, eps.IGNORE),  # IDS built-in default
    (True, {}, eps.DROP_FLOW),  # IPS, midstream pick-up off: auto is drop-flow
    (True, {"midstream_on": True}, eps.IGNORE),  # IPS, midstream pick-up on: auto is ignore
    (False, {"exception_policy": "bypass"}, eps.BYPASS),
    (False, {"exception_policy": "bypass", "midstream_on": True}, eps.BYPASS),  # the master switch may
    (False, {"exception_policy": "drop-flow"}, eps.IGNORE),  # the master switch's drops: ignore in IDS
    (True, {"exception_policy": "drop-flow", "midstream_on": True}, eps.DROP_FLOW),
    (False, {"exception_policy": "pass-flow"}, eps.PASS_FLOW),
    (False, {"midstream_policy": "pass-flow", "exception_policy": "bypass"}, eps.PASS_FLOW),  # own wins
    (False, {"midstream_policy": "auto"}, eps.IGNORE),
    (False, {"exception_policy": "reject"}, eps.IGNORE),  # resets come from rules only here
    (True, {"exception_policy": "reject"}, eps.DROP_FLOW),
])
def test_the_midstream_policy_resolves_as_suricatas(ips, sets, expected):
    assert policy(ips, **sets) == expected


@pytest.mark.parametrize(("ips", "sets", "message"), [
    (False, {"midstream_policy": "drop-flow"}, "not valid in IDS mode"),
    (False, {"midstream_policy": "bypass", "midstream_on": True}, "while stream.midstream is on"),
    (False, {"midstream_policy": "pass-packet"}, "not valid for the midstream target"),
    (False, {"exception_policy": "pass-packet"}, "not valid for the midstream target"),
])
def test_policies_suricata_refuses_are_errors(ips, sets, message):
    with pytest.raises(SettingError, match=message):
        policy(ips, **sets)


# -- through the CLI -----------------------------------------------------------------------------
@pytest.fixture
def midstream_pcap(corpus) -> Path:
    return corpus / "suricata-verify" / "tests" / "alert-testmyids-midstream5" / "input.pcap"


def replay(tmp_path: Path, pcap: Path, *sets: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    rules = tmp_path / "r.rules"
    rules.write_text(RULE)
    eve = tmp_path / "eve.json"
    eve.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "mirrorwatch", "replay", "-q", "--no-table", "-r", str(rules), "--eve", str(eve),
            "--eve-types", "alert,flow,http"]
    for s in sets:
        argv += ["--set", s]
    r = subprocess.run([*argv, str(pcap)], capture_output=True, text=True, cwd=tmp_path, check=False)
    records = [json.loads(line) for line in eve.read_text().splitlines()] if eve.exists() else []
    return r, records


def of(records: list[dict], kind: str) -> list[dict]:
    return [r for r in records if r["event_type"] == kind]


def test_ids_default_records_the_midstream_exception_as_ignore(tmp_path, midstream_pcap):
    r, records = replay(tmp_path, midstream_pcap, "eve-log.flow.exception-policy=true")
    assert r.returncode == 0, r.stderr
    assert len(of(records, "alert")) == 1  # the packet still meets the rule (no session, no stream)
    assert of(records, "http") == []  # no session picked up: no application layer
    (flow,) = of(records, "flow")
    assert flow["flow"]["exception_policy"] == [{"target": "stream_midstream", "policy": "ignore"}]
    assert flow["flow"]["state"] != "bypassed" and "action" not in flow["flow"]
    # without the output option, Suricata's default, the list is left out
    _, records = replay(tmp_path, midstream_pcap)
    assert "exception_policy" not in of(records, "flow")[0]["flow"]


def test_bypass_leaves_the_session_alone(tmp_path, midstream_pcap):
    r, records = replay(tmp_path, midstream_pcap, "stream.midstream=true", "exception-policy=bypass",
                        "eve-log.flow.exception-policy=true")
    assert r.returncode == 0, r.stderr
    assert of(records, "alert") == [] and of(records, "http") == []
    (flow,) = of(records, "flow")
    f = flow["flow"]
    assert f["state"] == "bypassed" and f["bypass"] == "local" and f["action"] == "pass"
    assert f["exception_policy"] == [{"target": "stream_midstream", "policy": "bypass"}]
    assert f["pkts_toserver"] + f["pkts_toclient"] == 9  # still counted


def test_pass_flow_stops_the_rules_but_not_the_application_layer(tmp_path, midstream_pcap):
    r, records = replay(tmp_path, midstream_pcap, "stream.midstream=true", "stream.midstream-policy=pass-flow",
                        "eve-log.flow.exception-policy=true")
    assert r.returncode == 0, r.stderr
    assert of(records, "alert") == []
    assert len(of(records, "http")) == 1  # picked up midstream and parsed
    f = of(records, "flow")[0]["flow"]
    assert f["action"] == "pass" and f["state"] != "bypassed"
    assert f["exception_policy"] == [{"target": "stream_midstream", "policy": "pass_flow"}]


def test_ignore_with_midstream_on_picks_the_session_up(tmp_path, midstream_pcap):
    r, records = replay(tmp_path, midstream_pcap, "stream.midstream=true")
    assert r.returncode == 0, r.stderr
    assert len(of(records, "alert")) == 1 and len(of(records, "http")) == 1


def test_a_session_with_its_handshake_has_no_exception(tmp_path):
    from scapy.all import Ether, wrpcap

    c, s = ("10.0.0.1", 40000), ("10.0.0.2", 80)
    pkts = [IP(src=c[0], dst=s[0]) / TCP(sport=c[1], dport=s[1], flags="S", seq=100),
            IP(src=s[0], dst=c[0]) / TCP(sport=s[1], dport=c[1], flags="SA", seq=900, ack=101),
            IP(src=c[0], dst=s[0]) / TCP(sport=c[1], dport=s[1], flags="A", seq=101, ack=901)]
    pcap = tmp_path / "hs.pcap"
    wrpcap(str(pcap), [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / p for p in pkts])
    _, records = replay(tmp_path, pcap, "eve-log.flow.exception-policy=true")
    assert "exception_policy" not in of(records, "flow")[0]["flow"]


def test_a_policy_suricata_refuses_is_a_one_line_error(tmp_path, midstream_pcap):
    r, _ = replay(tmp_path, midstream_pcap, "stream.midstream-policy=drop-flow")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "stream.midstream-policy" in lines[0] and "IDS mode" in lines[0]


def test_a_pass_rule_gives_the_flow_record_its_action(tmp_path, midstream_pcap):
    rules = tmp_path / "r.rules"
    rules.write_text('pass tcp any any -> any any (msg:"trusted"; flow:established; content:"GET"; sid:7;)\n' + RULE)
    eve = tmp_path / "eve.json"
    subprocess.run([sys.executable, "-m", "mirrorwatch", "replay", "-q", "--no-table", "-r", str(rules), "--eve",
                    str(eve), "--set", "stream.midstream=true", str(midstream_pcap)], cwd=tmp_path, check=True)
    records = [json.loads(line) for line in eve.read_text().splitlines()]
    assert of(records, "alert") == []  # the pass rule matched first, in the stream
    assert of(records, "flow")[0]["flow"]["action"] == "pass"


# -- inline (IPS) ------------------------------------------------------------------------------------
def test_inline_auto_drops_a_midstream_session_while_pickup_is_off():
    s = Settings({"stream.inline": True, "stream.midstream": False})
    ctx = RuleContext(s, {})
    eng = Engine(s, [parse_rule(RULE.strip(), ctx)[0]], checksum_mode="none", killer=InlineJudge.from_settings(s))
    ack = IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=80, flags="PA", seq=5, ack=9) / b"GET /"
    verdict, _ = eng.process_inline(1.0, LINKTYPE_IPV4, bytes(ack))
    assert verdict.action == DROP_FLOW and verdict.reason == "exception-policy"
    verdict, _ = eng.process_inline(1.1, LINKTYPE_IPV4, bytes(ack))
    assert verdict is not ACCEPTED and verdict.action == DROP_FLOW  # the flow stays dropped, uninspected
    assert eng.killer.c["exception_drops"] == 1
    ended = [e for e in eng.finish() if isinstance(e, FlowEnded)]
    assert ended[0].flow.action == "drop"
    assert ended[0].flow.eps == ((eps.MIDSTREAM, eps.DROP_FLOW),)
