"""``mirrorwatch inline`` in the path of real traffic: client -- router (the engine) -- server.

Each test builds a ``netlab.RoutedLab`` (network namespaces, real Linux TCP
stacks, IP forwarding), runs ``mirrorwatch inline`` in the router namespace
and judges by what the server and the client saw (the server's log, a
capture on the server's interface, the client's socket errors), the EVE
records and the kernel's rules.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

EVIL = b"GET /EVIL-7f3a9c HTTP/1.0\r\n\r\n"
BAD = b"GET /BADREQ-7f3a9c HTTP/1.0\r\n\r\n"
NEW = b"GET /NEWRULE-51c2 HTTP/1.0\r\n\r\n"
RULES = """\
drop tcp any any -> any 8080 (msg:"MW TEST evil request"; flow:established,to_server; content:"EVIL-7f3a9c"; sid:1001; rev:1;)
reject tcp any any -> any 8080 (msg:"MW TEST bad request"; flow:established,to_server; content:"BADREQ-7f3a9c"; sid:1002; rev:1;)
"""
NEW_RULE = ('drop tcp any any -> any 8080 (msg:"MW TEST new rule"; flow:established,to_server; '
            'content:"NEWRULE-51c2"; sid:1003; rev:1;)\n')
NO_BYPASS = ("--set", "stream.bypass=no")  # every packet of a bulk transfer goes through the engine


@pytest.fixture
def lab(routed_lab):
    return routed_lab


def wait_for(predicate, timeout: float, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


class Inline:
    """``mirrorwatch inline`` in the router; its output collected; returns once it is inline."""

    def __init__(self, lab, tmp: Path, *args: str, rules: str = RULES, ready: bool = True):
        self.lab, self.tmp = lab, tmp
        self.rules, self.eve, self.run_dir = tmp / "test.rules", tmp / "eve.json", tmp / "run"
        self.rules.write_text(rules)
        self.p = lab.mirrorwatch("inline", "-r", str(self.rules), "--eve", str(self.eve), "--run-dir",
                                 str(self.run_dir), "--no-table", *args)
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, lines in ((self.p.stdout, self.out), (self.p.stderr, self.err)):
            threading.Thread(target=self._read, args=(stream, lines), daemon=True).start()
        if ready and not wait_for(lambda: any(" inline on NFQUEUE" in line for line in self.err)
                                  or self.p.poll() is not None, 30):
            raise AssertionError(f"mirrorwatch inline did not start: {self.err}")
        assert self.p.poll() is None, self.err

    @staticmethod
    def _read(stream, lines: list) -> None:
        for raw in iter(stream.readline, b""):
            lines.append(raw.decode(errors="replace").rstrip("\n"))

    def events(self, kind: str | None = None) -> list[dict]:
        try:
            text = self.eve.read_text()
        except FileNotFoundError:
            return []
        recs = [json.loads(line) for line in text.splitlines() if line.strip()]
        return [r for r in recs if kind is None or r["event_type"] == kind]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        rc = self.lab.stop(self.p, sig)
        wait_for(lambda: False, 0.2)  # the readers catch the last lines
        return rc

    def stats(self) -> dict:
        return self.events("stats")[-1]["stats"]


def server_capture(lab, tmp: Path):
    """tcpdump on the server's interface (every byte that reached the server)."""
    p = lab.popen(lab.server, "tcpdump", "-i", "eth0", "-n", "-U", "-w", str(tmp / "server.pcap"), "tcp")
    assert wait_for(lambda: (tmp / "server.pcap").exists(), 5)
    time.sleep(0.3)
    return p


def captured(lab, dump, tmp: Path) -> bytes:
    lab.stop(dump, signal.SIGINT)
    return (tmp / "server.pcap").read_bytes()


def heard(lab, srv: Path, peer: str) -> list[str]:
    return [r["head"] for r in lab.reports(srv) if r["event"] == "data" and r["peer"] == peer]


def finished(lab, srv: Path, client, peer: str) -> dict:
    """The background bulk transfer ``client`` ended and arrived byte-exact: the server's close record."""
    sent = json.loads(client.communicate(timeout=30)[0])
    (closed,) = [c for c in lab.reports(srv) if c["event"] == "close" and c["peer"] == peer]
    assert sent["error"] is None and (closed["bytes"], closed["sha256"]) == (sent["sent"], sent["sha256"]), closed
    return closed


def blocked(lab, srv: Path, family: int, head: bytes, request: bytes) -> bool:
    """A new connection sends ``head`` then ``request``: the server hears only ``head``, no reply comes."""
    server, peer = (lab.SERVER4, lab.CLIENT4) if family == 4 else (lab.SERVER6, lab.CLIENT6)
    reply = lab.send_chunks(server, 8080, [(0, head), (0.2, request)], wait=2)
    return reply["reply"] == "" and heard(lab, srv, peer) == [head.decode()]


def rulesets(lab) -> list[str]:
    """iptables-save and ip6tables-save of the router, without comments and counters."""
    return ["\n".join(re.sub(r"\[\d+:\d+\]", "", line) for line in lab.run(lab.router, save).stdout.splitlines()
                      if not line.startswith("#")) for save in ("iptables-save", "ip6tables-save")]


# -- benign traffic --------------------------------------------------------------------------

@pytest.mark.privileged
@pytest.mark.slow
@pytest.mark.parametrize("offload, threads", [(False, False), (True, False), (False, True)],
                         ids=["wire-sized", "gso", "endpoint-threads"])
def test_benign_ipv4_and_ipv6_transfers_arrive_byte_exact(privileged, tmp_path, offload, threads):
    """``threads``: the lab of bench/inline.py, whose endpoints receive in kernel threads of their own."""
    import netlab
    with netlab.RoutedLab(offload=offload) as lab:
        if threads:
            lab.endpoint_threads()
            assert [lab.run(ns, "cat", "/sys/class/net/eth0/threaded").stdout.strip()
                    for ns in (lab.client, lab.server)] == ["1", "1"]
        srv = tmp_path / "srv"
        lab.bulk_server(8080, srv)
        eng = Inline(lab, tmp_path, "-k", "all", *NO_BYPASS)
        sent = [lab.bulk_send(host, 8080, nbytes=6_000_000, seed=i) for i, host in enumerate((lab.SERVER4,
                                                                                              lab.SERVER6))]
        assert eng.stop() == 0
        closes = {r["peer"]: r for r in lab.reports(srv) if r["event"] == "close"}
        stats = eng.stats()
    assert [s["error"] for s in sent] == [None, None]
    for s, peer in zip(sent, (lab.CLIENT4, lab.CLIENT6)):
        assert (closes[peer]["bytes"], closes[peer]["sha256"]) == (6_000_000, s["sha256"])
    cap = stats["capture"]
    assert cap["uninspected"] == 0 and cap["drops"] == 0 and cap["enobufs"] == 0
    assert cap["received"] == cap["fw_queued"] and cap["verdicts"]["drop-flow"] == 0
    assert cap["received"] > (100 if offload else 8000)
    checksum = stats["decoder"]["checksum"]
    assert checksum["bad"] == 0
    if offload:  # GSO super-packets whole, their checksums not filled in yet: not judged
        assert cap["gso"] > 0 and cap["csum_not_ready"] >= cap["gso"]
        assert checksum["checked"] <= cap["received"] - cap["csum_not_ready"]
    else:
        assert cap["gso"] == cap["csum_not_ready"] == 0 and checksum["checked"] > 0


@pytest.mark.privileged
@pytest.mark.slow
def test_flows_past_the_depth_are_bypassed_by_the_kernel(lab, tmp_path):
    srv = tmp_path / "srv"
    lab.bulk_server(8080, srv)
    eng = Inline(lab, tmp_path, "--set", "stream.reassembly.depth=200kb")
    sent = lab.bulk_send(lab.SERVER4, 8080, nbytes=3_000_000)
    assert eng.stop() == 0
    (closed,) = [r for r in lab.reports(srv) if r["event"] == "close"]
    assert closed["sha256"] == sent["sha256"]
    stats = eng.stats()
    assert stats["kill"]["flows_depth_bypassed"] == 1
    assert stats["capture"]["flow_bypassed_packets"] > stats["capture"]["received"]
    assert stats["capture"]["uninspected"] == 0


# -- drop and reject -------------------------------------------------------------------------

def operator_rules(lab) -> list[str]:
    """The operator's own rule in FORWARD, there before the engine's; the rule sets then."""
    for binary in ("iptables", "ip6tables"):
        lab.run(lab.router, binary, "-A", "FORWARD", "-p", "tcp", "--dport", "9999", "-j", "ACCEPT")
    return rulesets(lab)


@pytest.mark.privileged
@pytest.mark.slow
def test_drop_blocks_the_request_also_after_the_engine_stopped_and_exit_removes_every_rule(lab, tmp_path):
    before = operator_rules(lab)
    srv = tmp_path / "srv"
    lab.bulk_server(8080, srv)
    dump = server_capture(lab, tmp_path)
    eng = Inline(lab, tmp_path, "--fast", str(tmp_path / "fast.log"))
    client = lab.send_chunks(lab.SERVER4, 8080, [(0, b"hello "), (0.3, EVIL)], wait=20, background=True)
    assert wait_for(lambda: eng.events("alert"), 5)
    time.sleep(1.0)  # the client retransmits the request meanwhile (0.2, 0.4 s...)
    assert eng.stop() == 0
    time.sleep(5)
    assert heard(lab, srv, lab.CLIENT4) == ["hello "]
    assert b"EVIL-7f3a9c" not in captured(lab, dump, tmp_path)
    assert rulesets(lab) == before
    reply = json.loads(client.communicate(timeout=30)[0])
    assert reply["reply"] == "" and "reset" in reply["error"], reply   # reset at the clean stop
    (alert,) = eng.events("alert")
    assert alert["alert"]["action"] == "blocked" and alert["verdict"] == {"action": "drop"}
    (kill,) = eng.events("kill")
    assert kill["kill"]["trigger"] == "shutdown" and len(kill["kill"]["segments"]) == 2
    assert "[Drop] [**] [1:1001:1] MW TEST evil request" in (tmp_path / "fast.log").read_text()
    assert any("reset 1 blocked session(s) at both ends" in line for line in eng.err)


@pytest.mark.privileged
@pytest.mark.slow
@pytest.mark.parametrize("family", [4, 6])
def test_reject_resets_both_sockets_within_a_second(lab, tmp_path, family):
    server, client_addr = (lab.SERVER4, lab.CLIENT4) if family == 4 else (lab.SERVER6, lab.CLIENT6)
    srv = tmp_path / "srv"
    lab.bulk_server(8080, srv)
    dump = server_capture(lab, tmp_path)
    eng = Inline(lab, tmp_path)
    reply = lab.send_chunks(server, 8080, [(0, b"hello "), (0.3, BAD)], wait=10)
    assert re.search("reset|not connected|Broken pipe", reply["error"] or "") and reply["elapsed"] - 0.3 <= 1.0, reply
    closed = wait_for(lambda: [r for r in lab.reports(srv) if r["event"] == "close"], 3)
    (hello,) = [r for r in lab.reports(srv) if r["event"] == "data"]
    sent_at = hello["at"] + 0.3  # the client sends the bad request 0.3 s after "hello " (which arrived at once)
    assert closed and "reset" in (closed[0]["error"] or "") and closed[0]["at"] - sent_at <= 1.0, closed
    assert heard(lab, srv, client_addr) == ["hello "]
    print(f"\nreject (IPv{family}): client reset {reply['elapsed'] - 0.3:.3f} s, server reset "
          f"{closed[0]['at'] - sent_at:.3f} s after the request was sent")
    assert eng.stop() == 0
    assert b"BADREQ-7f3a9c" not in captured(lab, dump, tmp_path)
    (alert,) = eng.events("alert")
    assert alert["verdict"] == {"action": "drop", "reject-target": "both", "reject": ["tcp-reset"]}
    kills = eng.events("kill")
    assert kills[0]["kill"]["trigger"] == "sid:1002" and len(kills[0]["kill"]["segments"]) == 2


# -- the engine stopped, killed, paused ---------------------------------------------------------

@pytest.mark.privileged
@pytest.mark.slow
def test_sigkill_mid_transfer_the_transfer_completes_and_blocked_flows_stay_blocked(lab, tmp_path):
    srv = tmp_path / "srv"
    lab.bulk_server(8080, srv)
    eng = Inline(lab, tmp_path, *NO_BYPASS)
    evil = lab.send_chunks(lab.SERVER4, 8080, [(0, b"hello "), (0.2, EVIL)], wait=12, background=True)
    assert wait_for(lambda: eng.events("alert"), 5)
    client = lab.bulk_send(lab.SERVER6, 8080, nbytes=6_000_000, rate=2_000_000, background=True)
    time.sleep(1.0)
    killed_at = time.time()
    eng.stop(signal.SIGKILL)
    closed = finished(lab, srv, client, lab.CLIENT6)
    assert closed["max_gap"] <= 0.5, closed
    state = json.loads((eng.run_dir / "watchdog.json").read_text())
    assert (state["state"], state["reason"]) == ("bypass", "engine exited") and state["since"] - killed_at <= 0.5
    evil.wait(20)
    assert heard(lab, srv, lab.CLIENT4) == ["hello "], "the blocked flow stayed blocked"
    rules = lab.run(lab.router, "iptables", "-S", "MIRRORWATCH").stdout
    assert "-A MIRRORWATCH -m connmark --mark 0x40000000/0x40000000 -j DROP" in rules


@pytest.mark.privileged
@pytest.mark.slow
def test_sigstop_pauses_briefly_and_sigcont_goes_inline_again(lab, tmp_path):
    srv = tmp_path / "srv"
    lab.bulk_server(8080, srv)
    eng = Inline(lab, tmp_path, *NO_BYPASS)
    client = lab.bulk_send(lab.SERVER4, 8080, nbytes=6_000_000, rate=2_000_000, background=True)
    time.sleep(1.0)
    os.kill(eng.p.pid, signal.SIGSTOP)
    time.sleep(0.8)
    os.kill(eng.p.pid, signal.SIGCONT)
    closed = finished(lab, srv, client, lab.CLIENT4)
    assert closed["max_gap"] <= 0.5, closed
    switches = wait_for(lambda: len(eng.events("engine")) >= 2 and eng.events("engine"), 5)
    assert [s["engine"]["state"] for s in switches] == ["bypass", "inline"], switches
    assert switches[0]["engine"]["reason"].startswith("engine stalled")
    print(f"\nSIGSTOP: longest pause at the receiver {closed['max_gap']:.3f} s; bypass switch "
          f"{switches[0]['engine']['switch_ms']} ms, {switches[0]['engine']['released']} held packets released")
    assert any("inline: BYPASS" in line for line in eng.err) and any("INLINE again" in line for line in eng.err)
    assert blocked(lab, srv, 6, b"again ", EVIL), "inline again: a new bad request is blocked"
    assert eng.stop() == 0
    cap = eng.stats()["capture"]
    assert cap["switches"] == 2 and cap["uninspected"] == (
        cap["uninspected_released"] + cap["uninspected_bypass_switch"] + cap["uninspected_fail_open"]) > 0


@pytest.mark.privileged
@pytest.mark.slow
def test_sighup_reload_during_a_transfer_loses_nothing_and_inspects_everything(lab, tmp_path):
    srv = tmp_path / "srv"
    lab.bulk_server(8080, srv)
    eng = Inline(lab, tmp_path, *NO_BYPASS)
    client = lab.bulk_send(lab.SERVER4, 8080, nbytes=5_000_000, rate=2_000_000, background=True)
    time.sleep(1.0)
    eng.rules.write_text(RULES + NEW_RULE)
    os.kill(eng.p.pid, signal.SIGHUP)
    assert wait_for(lambda: any("reloaded 3 rules" in line for line in eng.err), 10), eng.err
    closed = finished(lab, srv, client, lab.CLIENT4)
    assert closed["max_gap"] < 0.2, closed
    assert blocked(lab, srv, 6, b"new ", NEW), "the reloaded rule blocks"
    assert eng.stop() == 0
    cap = eng.stats()["capture"]
    assert (cap["uninspected"], cap["drops"], cap["enobufs"], cap["switches"]) == (0, 0, 0, 0)
    assert cap["received"] == cap["fw_queued"] > 3000


# -- the firewall left to the operator, the switch in the operator's hand, errors ---------------------

@pytest.mark.privileged
@pytest.mark.slow
def test_no_firewall_prints_rules_that_work(lab, tmp_path):
    srv = tmp_path / "srv"
    lab.bulk_server(8080, srv)
    eng = Inline(lab, tmp_path, "--no-firewall", "--firewall-backend", "iptables")
    assert wait_for(lambda: any(line == "EOF" for line in eng.out[-1:]) and eng.out.count("EOF") == 4, 5)
    script = "\n".join(eng.out) + "\n"
    assert script.startswith("# mirrorwatch inline firewall (iptables, hook forward")
    assert lab.run(lab.router, "iptables", "-S", "FORWARD").stdout.splitlines() == ["-P FORWARD ACCEPT"]
    lab.run(lab.router, "sh", "-e", input=script)
    assert lab.send_chunks(lab.SERVER4, 8080, [(0, b"fine")], wait=5)["reply"] == "done"
    assert blocked(lab, srv, 6, b"hello ", EVIL)
    assert eng.stop() == 0
    assert "-j MIRRORWATCH" in lab.run(lab.router, "iptables", "-S", "FORWARD").stdout, "the operator's rules stay"
    assert not (eng.run_dir / "firewall.json").exists()


@pytest.mark.privileged
@pytest.mark.slow
def test_bypass_on_off_status(lab, tmp_path):
    import netlab
    eng = Inline(lab, tmp_path)

    def bypass(*args: str):
        return lab.run(lab.router, netlab.PYTHON, "-m", "mirrorwatch", "bypass", *args, "--run-dir",
                       str(eng.run_dir), check=False)

    status = bypass("status")
    assert status.returncode == 0 and status.stdout.startswith("switch: INLINE"), status
    on = bypass("on")
    assert on.stdout.startswith("switch: BYPASS (packets pass uninspected), forced by the operator")
    assert wait_for(lambda: [e for e in eng.events("engine") if e["engine"]["state"] == "bypass"], 3)
    lab.udp_send(lab.SERVER4, 5000, b"passes uninspected")
    off = bypass("off")
    assert "forced" not in off.stdout.splitlines()[0]
    assert wait_for(lambda: [e for e in eng.events("engine") if e["engine"]["state"] == "inline"], 4)
    js = json.loads(bypass("status", "--json").stdout)
    assert js["bypass"] is False and js["watchdog"]["alive"] and js["firewall"]["queue"] == [0, 0]
    assert eng.stop() == 0
    assert eng.stats()["capture"]["uninspected_bypass_switch"] >= 1
    gone = bypass("status")
    assert gone.returncode == 1 and gone.stderr.strip().startswith("mirrorwatch: error: no inline firewall recorded")
    assert len(gone.stderr.strip().splitlines()) == 1


@pytest.mark.privileged
def test_errors_are_one_line(lab, tmp_path):
    import netlab

    def inline(*prefix: str) -> tuple[int, list[str]]:
        r = lab.run(lab.router, *prefix, netlab.PYTHON, "-m", "mirrorwatch", "inline", "-r", str(rules), "--run-dir",
                    str(tmp_path / "run"), "--no-table", "-q", check=False, timeout=60)
        return r.returncode, r.stderr.strip().splitlines()

    rules = tmp_path / "test.rules"
    rules.write_text(RULES)
    code, err = inline("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                       "--bounding-set=-all")
    assert code == 1 and err == [("mirrorwatch: error: inline mode needs CAP_NET_ADMIN and CAP_NET_RAW (to bind "
                                  "NFQUEUE, install firewall rules and send resets): run mirrorwatch as root")]
    code, err = inline("env", "PATH=/nonexistent")
    assert code == 1 and err[-1].startswith("mirrorwatch: error: no usable firewall:"), err
    assert not any(line.startswith("Traceback") for line in err)
    holder = lab.python(lab.router, "import time; from mirrorwatch.sources.nfqueue import NfQueue\n"
                                    "q = NfQueue(0); print('bound', flush=True); time.sleep(60)")
    assert holder.stdout.readline().strip() == b"bound"
    code, err = inline()
    assert code == 1 and re.fullmatch(r"mirrorwatch: error: NFQUEUE 0 is already bound by another process "
                                      r"\(netlink port \d+\): stop it or choose another queue number", err[-1]), err
    assert lab.run(lab.router, "iptables", "-S", "FORWARD").stdout.splitlines() == ["-P FORWARD ACCEPT"]
