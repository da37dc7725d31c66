"""The inline firewall: its rules (no root), then install/remove and flow drops in a routed lab."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import time

import pytest

from mirrorwatch.inline import firewall as fwm
from mirrorwatch.inline.firewall import Firewall, FirewallError

# -- the rules ------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, expected", [(3, (3, 3)), ("3", (3, 3)), ("0:3", (0, 3)), ((2, 5), (2, 5))])
def test_queue_spec(spec, expected):
    assert fwm.parse_queue_spec(spec) == expected


@pytest.mark.parametrize("spec", ["x", "3:1", "-1", 70000, "1:70000"])
def test_bad_queue_spec(spec):
    with pytest.raises(ValueError):
        fwm.parse_queue_spec(spec)


def test_iptables_commands_order():
    cmds = fwm.iptables_commands("ip6tables", "FORWARD", (0, 3), 0x40000000, 0x20000000)
    specs = [" ".join(c[2:]) for c in cmds]
    assert all(c[:2] == ["ip6tables", "-w"] for c in cmds)
    assert specs == [
        "-N MIRRORWATCH",
        "-N MIRRORWATCH-BYPASS",
        "-A MIRRORWATCH -m mark --mark 0x10000000/0x10000000 -j ACCEPT",   # the engine's own resets
        ("-A MIRRORWATCH -m mark ! --mark 0x0/0x60000000 -j CONNMARK --save-mark --nfmask 0x60000000 "
         "--ctmask 0x60000000"),
        "-A MIRRORWATCH -m connmark --mark 0x40000000/0x40000000 -j DROP",
        "-A MIRRORWATCH -m mark --mark 0x40000000/0x40000000 -j DROP",
        "-A MIRRORWATCH -m connmark --mark 0x20000000/0x20000000 -j ACCEPT",
        "-A MIRRORWATCH -m mark --mark 0x20000000/0x20000000 -j ACCEPT",
        "-A MIRRORWATCH -j MIRRORWATCH-BYPASS",
        "-A MIRRORWATCH -j NFQUEUE --queue-balance 0:3 --queue-bypass",
        "-I FORWARD 1 -j MIRRORWATCH",          # the jump comes last: no half-built chain is ever used
    ]


def test_rules_text_is_the_install_commands(tmp_path):
    fw = Firewall(2, hook="input", families=(4,), backend="iptables-legacy", run_dir=tmp_path)
    lines = [line for line in fw.rules_text().splitlines() if not line.startswith("#")]
    install = [shlex.join(cmd) for cmd, _ in fw.install_commands()]
    assert lines[:len(install)] == install
    assert install[-1] == "iptables-legacy -w -I INPUT 1 -j MIRRORWATCH"
    assert "--queue-num 2 --queue-bypass" in install[-2]
    assert "iptables-legacy-restore -w --noflush <<'EOF'" in lines and "-A MIRRORWATCH-BYPASS -j ACCEPT" in lines


def test_nft_ruleset_one_family():
    text = fwm.nft_ruleset("output", (1, 4), (6,), 0x4, 0x8, table="mw")
    assert "type filter hook output priority 0; policy accept;" in text
    rules = [line.strip() for line in text.splitlines() if line.startswith("    ") and "type filter" not in line]
    assert all(r.startswith("meta nfproto ipv6 ") for r in rules)
    assert rules[-1].endswith("queue num 1-4 bypass") and rules[-2].endswith("jump bypass")


@pytest.mark.parametrize("kwargs", [{"hook": "prerouting"}, {"families": (5,)}, {"families": ()},
                                    {"drop_bit": 1, "bypass_bit": 1}, {"drop_bit": 0}, {"bypass_bit": 1 << 32}])
def test_bad_firewall_arguments(kwargs, tmp_path):
    with pytest.raises(ValueError):
        Firewall(0, backend="iptables", run_dir=tmp_path, **kwargs)


def test_unknown_backend_and_missing_iptables(tmp_path, monkeypatch):
    with pytest.raises(FirewallError, match="unknown firewall backend 'pf'"):
        Firewall(0, backend="pf", run_dir=tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FirewallError) as e:
        Firewall(0, backend="iptables", run_dir=tmp_path).install()
    assert str(e.value) == "iptables not found: install the iptables package (apt-get install iptables)"
    with pytest.raises(FirewallError, match="^no usable firewall: .*apt-get install iptables"):
        _ = Firewall(0, run_dir=tmp_path).backend   # auto probes on first use


def test_state_roundtrip(tmp_path):
    fw = Firewall("1:2", hook="output", families=(6,), backend="iptables-nft", drop_bit=0x10, bypass_bit=0x20,
                  chain="MW", run_dir=tmp_path)
    assert Firewall.from_config(fw.config(), tmp_path).config() == fw.config()
    with pytest.raises(FirewallError, match="no inline firewall recorded in .*firewall.json"):
        Firewall.from_state(tmp_path)
    (tmp_path / fwm.STATE_FILE).write_text("{not json")
    with pytest.raises(FirewallError, match="unreadable firewall state"):
        Firewall.from_state(tmp_path)


def test_flow_marks_keep_other_bits():
    assert fwm.flow_drop_mark(0x5) == 0x40000005 and fwm.flow_bypass_mark(0x5) == 0x20000005


# -- in a routed lab -------------------------------------------------------------------------

@pytest.fixture
def lab(routed_lab):
    return routed_lab


def _saved(lab, save: str) -> str:
    """iptables-save without comments and counters."""
    text = lab.run(lab.router, save).stdout
    return "\n".join(re.sub(r"\[\d+:\d+\]", "", line) for line in text.splitlines() if not line.startswith("#"))


# runs in the router: install twice (the second over the first's leftovers), bypass on and off,
# remove twice; prints what it saw on the way
SEQUENCE = r"""
import json, subprocess, sys
from mirrorwatch.inline.firewall import Firewall
backend, run_dir = sys.argv[1], sys.argv[2]
fw = Firewall("0:1", backend=backend, run_dir=run_dir)
fw.install()
fw.install()
seen = {"backend": fw.backend, "installed": fw.installed(), "bypass_initially": fw.bypass_on()}
seen["rules4"] = subprocess.run([backend, "-S"], capture_output=True, text=True).stdout
seen["state"] = json.load(open(run_dir + "/firewall.json"))
fw.set_bypass(True); fw.set_bypass(True)
seen["bypass_on"] = fw.bypass_on()
seen["bypass6"] = subprocess.run([backend.replace("iptables", "ip6tables"), "-S", "MIRRORWATCH-BYPASS"],
                                 capture_output=True, text=True).stdout
fw.set_bypass(False)
seen["bypass_off"] = fw.bypass_on()
fw.remove(); fw.remove()
seen["installed_after"] = fw.installed()
print(json.dumps(seen))
"""


@pytest.mark.privileged
@pytest.mark.parametrize("backend", ["iptables-nft", "iptables-legacy"])
def test_install_then_remove_leaves_no_trace(lab, backend, tmp_path):
    import netlab
    saves = [f"{backend}-save", f"{backend.replace('iptables', 'ip6tables')}-save"]
    for binary in (backend, backend.replace("iptables", "ip6tables")):   # someone's firewall was there first
        lab.run(lab.router, binary, "-A", "FORWARD", "-p", "tcp", "--dport", "9999", "-j", "ACCEPT")
    before = [_saved(lab, s) for s in saves]
    seen = json.loads(lab.run(lab.router, netlab.PYTHON, "-c", SEQUENCE, backend, str(tmp_path)).stdout)
    after = [_saved(lab, s) for s in saves]
    assert after == before
    assert seen["backend"] == backend and seen["installed"] and not seen["installed_after"]
    rules = seen["rules4"].splitlines()
    forward = [r for r in rules if r.startswith("-A FORWARD")]
    assert forward == ["-A FORWARD -j MIRRORWATCH", "-A FORWARD -p tcp -m tcp --dport 9999 -j ACCEPT"]
    assert "-A MIRRORWATCH -j NFQUEUE --queue-balance 0:1 --queue-bypass" in rules
    assert not seen["bypass_initially"] and seen["bypass_on"] and not seen["bypass_off"]
    assert seen["bypass6"].splitlines() == ["-N MIRRORWATCH-BYPASS", "-A MIRRORWATCH-BYPASS -j ACCEPT"]
    assert seen["state"]["backend"] == backend and seen["state"]["queue"] == [0, 1]
    assert not (tmp_path / fwm.STATE_FILE).exists()


@pytest.mark.privileged
def test_auto_backend_and_nft_ruleset_checked_by_the_kernel(lab):
    """auto picks nft only when the kernel has the nft queue expression; the nft ruleset is valid nft."""
    import netlab
    if not shutil.which("nft"):
        pytest.skip("nft is not installed")
    probe = "from mirrorwatch.inline.firewall import *; print(nft_queue_supported(), choose_backend())"
    supported, chosen = lab.run(lab.router, netlab.PYTHON, "-c", probe).stdout.split()
    assert chosen == ("nft" if supported == "True" else "iptables")
    ruleset = fwm.nft_ruleset("forward", (0, 0), (4, 6), fwm.MARK_FLOW_DROP, fwm.MARK_FLOW_BYPASS)
    if supported != "True":   # everything but the queue statement the kernel lacks
        ruleset = "\n".join(line for line in ruleset.splitlines() if " queue num " not in line) + "\n"
    r = lab.run(lab.router, "nft", "--check", "-f", "-", input=ruleset, check=False)
    assert r.returncode == 0, r.stderr


def _drop_counter(lab, binary: str) -> int:
    out = lab.run(lab.router, binary, "-w", "-L", "MIRRORWATCH", "-v", "-x", "-n").stdout
    return sum(int(line.split()[0]) for line in out.splitlines() if "DROP" in line and "connmark" in line)


@pytest.mark.privileged
@pytest.mark.slow
@pytest.mark.parametrize("family", [4, 6])
def test_flow_drop_holds_after_the_engine_stopped(lab, tmp_path, family):
    """A packet with EVIL gets a repeat verdict with the flow-drop mark: the server never sees it nor
    anything after it on that connection, also when the engine has gone; a new connection still passes."""
    server = lab.SERVER4 if family == 4 else lab.SERVER6
    binary = "iptables" if family == 4 else "ip6tables"
    lab.bulk_server(8080, tmp_path / "srv")
    eng = lab.inline_engine(tmp_path / "eng", tmp_path / "run", drop="EVIL", remove_on_exit=False)
    client = lab.send_chunks(server, 8080, [(0, b"hello "), (0.3, b"GET /EVIL HTTP/1.0\r\n\r\n"), (0.3, b"more")],
                             wait=9, background=True)
    deadline = time.monotonic() + 5
    while not any(e["event"] == "drop" for e in lab.reports(tmp_path / "eng")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert lab.stop(eng, signal.SIGTERM) == 0
    drops_at_stop = _drop_counter(lab, binary)
    time.sleep(5)
    heard = [r for r in lab.reports(tmp_path / "srv") if r["event"] == "data"]
    assert heard and all(r["head"] == "hello " for r in heard), heard
    assert _drop_counter(lab, binary) > drops_at_stop      # retransmissions met the kernel's flow drop
    drops = [e for e in lab.reports(tmp_path / "eng") if e["event"] == "drop"]
    (stats,) = [e for e in lab.reports(tmp_path / "eng") if e["event"] == "exit"]
    assert stats["repeated"] == len(drops) and stats["outstanding"] == 0 and stats["kernel_errors"] == 0
    assert drops[0]["hook"] == 2 and drops[0]["hw_protocol"] == (0x0800 if family == 4 else 0x86DD)
    fresh = lab.send_chunks(server, 8080, [(0, b"fine after the engine stopped")], wait=5)
    assert fresh["reply"] == "done" and fresh["error"] is None
    client.wait(15)
    assert json.loads(client.stdout.read())["reply"] == ""
