"""``mirrorwatch listen`` on a real mirror port (tests/netlab.py): alerts, flows, signals, errors.

Real kernels end to end: client and server namespaces talk TCP through a
bridge whose ports are mirrored (tc mirred) to the sensor namespace, where
``mirrorwatch listen mon0`` runs as a separate process, as an operator runs it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from ipaddress import ip_address
from pathlib import Path

import pytest

from netlab import NetLab

RULES = """\
alert tcp any any -> any 8080 (msg:"MW live request"; flow:to_server,established; content:"GET /evil"; sid:1000001; rev:1;)
alert tcp any 8080 -> any any (msg:"MW live response"; flow:to_client,established; content:"owned"; sid:1000002; rev:1;)
"""
RULES_ALPHA = 'alert tcp any any -> any 8080 (msg:"MW alpha"; flow:to_server; content:"alpha"; sid:2000001; rev:1;)\n'
RULES_BETA = 'alert tcp any any -> any 8080 (msg:"MW beta"; flow:to_server; content:"beta"; sid:2000002; rev:1;)\n'
REPLY = b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nowned"


class Listen:
    """A ``mirrorwatch listen`` process in the lab's sensor namespace, and its EVE file."""

    def __init__(self, lab: NetLab, tmp: Path, *args: str):
        self.lab = lab
        self.eve = tmp / "eve.json"
        self.err_path = tmp / "listen.err"
        self.out_path = tmp / "listen.out"
        # closed sessions end (and their stream is inspected to its end) one second after
        # the last FIN/RST, so the tests need not wait for the default 60 s
        self.p = lab.mirrorwatch("listen", lab.monitor, "--no-table", "--eve", str(self.eve),
                                 "--set", "flow-timeouts.tcp.closed=1", *args,
                                 stdout=open(self.out_path, "w"), stderr=open(self.err_path, "w"))
        self.wait_stderr("listening on")

    def stderr(self) -> str:
        return self.err_path.read_text()

    def wait_stderr(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr():
            if self.p.poll() is not None:
                pytest.fail(f"listen exited ({self.p.returncode}) before {text!r}: {self.stderr()[-800:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {text!r} from listen after {timeout}s: {self.stderr()[-800:]}")
            time.sleep(0.05)

    def events(self, path: Path | None = None) -> list[dict]:
        path = path or self.eve
        if not path.exists():
            return []
        lines = path.read_text().splitlines()
        # the writer may be mid-line while running: ignore an incomplete tail
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                if self.p.poll() is not None:
                    raise
        return out

    def wait_events(self, pred, timeout: float = 15.0, path: Path | None = None) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            evs = self.events(path)
            if pred(evs):
                return evs
            if self.p.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"EVE never satisfied the condition; {len(evs)} events; stderr: {self.stderr()[-600:]}")
            time.sleep(0.2)

    def stop(self, sig=signal.SIGTERM) -> int:
        return self.lab.stop(self.p, sig)


def sids(evs):
    return [e["alert"]["signature_id"] for e in evs if e["event_type"] == "alert"]


def flows(evs):
    return [e for e in evs if e["event_type"] == "flow"]


@pytest.fixture
def lab(privileged):
    with NetLab() as lab:
        yield lab


@pytest.mark.slow
def test_listen_alerts_flows_ticks_and_clean_sigterm(lab, tmp_path):
    (tmp_path / "t.rules").write_text(RULES)
    lab.serve_tcp(8080, reply=REPLY)
    mw = Listen(lab, tmp_path, "--rules", str(tmp_path / "t.rules"), "--set", "capture.stats-interval=1")
    assert lab.tcp_request(lab.SERVER4, 8080, b"GET /evil HTTP/1.0\r\n\r\n") == REPLY
    assert lab.tcp_request(lab.SERVER6, 8080, b"GET /evil HTTP/1.0\r\n\r\n") == REPLY
    # an innocent session still open when the sensor stops: flushed with reason shutdown
    held = lab.tcp_request(lab.SERVER4, 8080, b"GET /fine HTTP/1.0\r\n\r\n", hold=60, background=True)

    # closed sessions end by wall-clock ticks, with no packet arriving to advance time
    def closed_both(evs):
        ended = {(e["src_ip"], e["dest_port"]) for e in flows(evs) if e["flow"].get("reason") == "timeout"}
        return {(lab.CLIENT4, 8080), (ip_address(lab.CLIENT6).exploded, 8080)} <= ended  # EVE: IPv6 in full

    evs = mw.wait_events(closed_both)
    assert any(e["event_type"] == "stats" for e in evs), "periodic stats events in live mode"

    # not a terminal: a stats line every capture.stats-interval; on a loaded machine give the
    # second line (the one that has seen every alert) time to come before stopping the sensor
    def stats_lines() -> list[str]:
        out = (tmp_path / "listen.out").read_text()
        return [line for line in out.splitlines() if line.startswith("mirrorwatch mon0")]

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = stats_lines()
        if len(got) >= 2 and (m := re.search(r"alerts (\d+)", got[-1])) and int(m.group(1)) >= 4:
            break
        time.sleep(0.2)
    assert mw.stop() == 0, mw.stderr()
    assert held.poll() is None, "the held session must still be open when the sensor stops"

    evs = mw.events()  # every line parses: json.loads above raised otherwise
    alerts = [e for e in evs if e["event_type"] == "alert"]
    req = sorted((e["src_ip"], e["dest_port"]) for e in alerts if e["alert"]["signature_id"] == 1000001)
    assert req == sorted([(lab.CLIENT4, 8080), (ip_address(lab.CLIENT6).exploded, 8080)])
    resp = [e for e in alerts if e["alert"]["signature_id"] == 1000002]
    assert {e["src_ip"] for e in resp} >= {lab.SERVER4, ip_address(lab.SERVER6).exploded}  # IPv6 in full
    assert all(e["src_port"] == 8080 for e in resp)
    # the alerted sessions' flow events carry both directions' counters
    timed_out = [e for e in flows(evs) if e["flow"]["reason"] == "timeout" and e["dest_port"] == 8080]
    assert len(timed_out) == 2
    for e in timed_out:
        assert e["flow"]["pkts_toserver"] >= 4 and e["flow"]["pkts_toclient"] >= 3
        assert e["flow"]["alerted"] is True
    shut = [e for e in flows(evs) if e["flow"]["reason"] == "shutdown" and e.get("dest_port") == 8080]
    assert len(shut) == 1 and shut[0]["src_ip"] == lab.CLIENT4
    # the file ends with the final stats, which account for every frame captured
    assert evs[-1]["event_type"] == "stats"
    cap = evs[-1]["stats"]["capture"]
    assert cap["received"] > 0 and cap["drops"] == 0 and cap["queue_drops"] == 0
    assert cap["packets"] == cap["received"]
    # capture.sched-slice (100 µs) was granted by this kernel (6.12+) to the engine and capture thread
    assert cap["sched_slice_us"] == 100
    # not a terminal: a stats line every capture.stats-interval instead of the table
    lines = stats_lines()
    assert len(lines) >= 2 and all("pkt/s" in line and "drops 0" in line and "sessions" in line for line in lines)
    # the four alerts of the two exchanges were in before the sessions timed out
    assert int(re.search(r"alerts (\d+)", lines[-1]).group(1)) >= 4, lines


@pytest.mark.slow
def test_sighup_keeps_old_rules_on_bad_file_then_takes_good_one_and_reopens_eve(lab, tmp_path):
    rules = tmp_path / "live.rules"
    rules.write_text(RULES_ALPHA)
    lab.serve_tcp(8080, reply=REPLY)
    fast = tmp_path / "fast.log"
    mw = Listen(lab, tmp_path, "--rules", str(rules), "--fast", str(fast))
    lab.tcp_request(lab.SERVER4, 8080, b"alpha 1")
    mw.wait_events(lambda evs: sids(evs).count(2000001) == 1)

    # a broken file: one error line, the old rules stay
    rules.write_text('alert tcp any any -> any 8080 (msg:"broken"; content:"x"; sid:\n'
                     'this is not a rule at all\n')
    err_before = mw.stderr()
    os.kill(mw.p.pid, signal.SIGHUP)
    mw.wait_stderr("rules not reloaded")
    new_err = mw.stderr()[len(err_before):]
    assert len([line for line in new_err.splitlines() if line.strip()]) == 1, new_err
    lab.tcp_request(lab.SERVER4, 8080, b"alpha 2")
    mw.wait_events(lambda evs: sids(evs).count(2000001) == 2)

    # logrotate moved the EVE file away; a good new rule file; SIGHUP
    rotated = tmp_path / "eve.json.1"
    mw.eve.rename(rotated)
    fast.rename(tmp_path / "fast.log.1")
    rules.write_text(RULES_BETA)
    os.kill(mw.p.pid, signal.SIGHUP)
    mw.wait_stderr("reloaded 1 rules")
    lab.tcp_request(lab.SERVER4, 8080, b"alpha 3 beta")
    mw.wait_events(lambda evs: 2000002 in sids(evs))
    assert mw.stop() == 0
    after = mw.events()
    assert sids(after) == [2000002], "alpha is no longer a rule; beta is, and goes to the fresh file"
    assert after[-1]["event_type"] == "stats"
    assert sids(mw.events(rotated)) == [2000001, 2000001]
    assert "MW beta" in fast.read_text() and "MW alpha" not in fast.read_text()
    assert (tmp_path / "fast.log.1").read_text().count("MW alpha") == 2


@pytest.mark.slow
def test_bpf_filter_is_applied(lab, tmp_path):
    (tmp_path / "t.rules").write_text(RULES)
    lab.serve_tcp(8080, reply=REPLY)
    mw = Listen(lab, tmp_path, "--rules", str(tmp_path / "t.rules"), "--bpf", "ip6 and tcp port 8080")
    lab.tcp_request(lab.SERVER4, 8080, b"GET /evil HTTP/1.0\r\n\r\n")
    lab.tcp_request(lab.SERVER6, 8080, b"GET /evil HTTP/1.0\r\n\r\n")
    mw.wait_events(lambda evs: any(e["dest_port"] == 8080 for e in flows(evs)))
    assert mw.stop() == 0
    evs = mw.events()
    client6, server6 = ip_address(lab.CLIENT6).exploded, ip_address(lab.SERVER6).exploded  # EVE: IPv6 in full
    assert {e["src_ip"] for e in evs if e["event_type"] in ("alert", "flow")} <= {client6, server6}
    assert {e["src_ip"] for e in flows(evs)} == {client6}, "only the filtered traffic reached the engine"


@pytest.mark.slow
def test_vlan_tagged_mirror(privileged, tmp_path):
    (tmp_path / "t.rules").write_text(RULES)
    with NetLab(vlan=100) as lab:
        lab.serve_tcp(8080, reply=REPLY)
        mw = Listen(lab, tmp_path, "--rules", str(tmp_path / "t.rules"))
        lab.tcp_request(lab.SERVER4, 8080, b"GET /evil HTTP/1.0\r\n\r\n")
        mw.wait_events(lambda evs: 1000001 in sids(evs) and 1000002 in sids(evs))
        assert mw.stop() == 0
    evs = mw.events()
    alert = next(e for e in evs if e["event_type"] == "alert")
    assert alert["vlan"] == [100]
    assert any(e.get("vlan") == [100] and e.get("dest_port") == 8080 for e in flows(evs))


@pytest.mark.slow
def test_offloaded_checksums_no_blind_start(privileged, tmp_path):
    """Client and server offload their checksums (the mirror sees partial ones), listen runs with
    default flags: the very first session alerts while -k auto samples, and once the sample
    shows the offloading one console line says checksum checks are off."""
    (tmp_path / "t.rules").write_text(RULES)
    with NetLab(csum_offload=True) as lab:
        lab.serve_tcp(8080, reply=REPLY)
        mw = Listen(lab, tmp_path, "--rules", str(tmp_path / "t.rules"))
        assert lab.tcp_request(lab.SERVER4, 8080, b"GET /evil HTTP/1.0\r\n\r\n") == REPLY
        mw.wait_events(lambda evs: 1000001 in sids(evs) and 1000002 in sids(evs))
        for _ in range(6):  # enough checksummed TCP packets for the sample
            lab.tcp_request(lab.SERVER4, 8080, b"GET /fine HTTP/1.0\r\n\r\n")
        mw.wait_stderr("checksum checks off")
        assert mw.stop() == 0, mw.stderr()
    lines = [line for line in mw.stderr().splitlines() if "checksum" in line]
    assert len(lines) == 1 and re.search(r"(\d+) of the first \1 TCP/UDP checksums on mon0 were wrong", lines[0]), lines
    evs = mw.events()
    first = min((e for e in evs if e["event_type"] == "alert"), key=lambda e: e["timestamp"])
    assert first["alert"]["signature_id"] == 1000001 and first["src_ip"] == lab.CLIENT4
    stats = [e for e in evs if e["event_type"] == "stats"][-1]["stats"]["decoder"]["checksum"]
    assert stats["auto_disabled"] == 1


@pytest.mark.slow
def test_capture_drops_are_counted_never_silent(lab, tmp_path, corpus):
    """A queue far too small for a burst: the overflow is counted, and every frame is accounted for."""
    mw = Listen(lab, tmp_path, "--set", "capture.queue-size=64", "--set", "capture.stats-interval=0")
    pcap = corpus / "bench" / "http-tests-merged.pcap"
    r = lab.run(lab.switch, "tcpreplay", "--topspeed", "-i", "mon", str(pcap), check=False, timeout=120)
    assert "Successful packets" in r.stdout, r.stderr
    time.sleep(1.0)
    assert mw.stop() == 0
    cap = mw.events()[-1]["stats"]["capture"]
    assert cap["queue_drops"] > 0
    assert cap["drops"] == cap["queue_drops"] + cap["kernel_drops"]
    assert cap["received"] == cap["packets"] + cap["queue_drops"]
    assert f"dropped {cap['drops']:,} frames" in mw.stderr(), "the operator is told at exit"


@pytest.mark.slow
def test_interface_going_down_flushes_and_fails(lab, tmp_path):
    (tmp_path / "t.rules").write_text(RULES)
    lab.serve_tcp(8080, reply=REPLY)
    mw = Listen(lab, tmp_path, "--rules", str(tmp_path / "t.rules"))
    lab.tcp_request(lab.SERVER4, 8080, b"GET /evil HTTP/1.0\r\n\r\n")
    mw.wait_events(lambda evs: 1000001 in sids(evs), timeout=10)
    lab.run(lab.sensor, "ip", "link", "set", lab.monitor, "down")
    rc = mw.p.wait(15)
    assert rc == 1
    err = [line for line in mw.stderr().splitlines() if "error" in line]
    assert len(err) == 1 and "down" in err[0], mw.stderr()
    evs = mw.events()
    assert any(e.get("dest_port") == 8080 for e in flows(evs)), "sessions captured before were flushed"
    assert evs[-1]["event_type"] == "stats"


@pytest.mark.slow
def test_bad_interface_bad_bpf_and_no_privilege_are_one_line_errors(lab):
    r = lab.run(lab.sensor, *mw_cmd("listen", "nosuch0"), check=False)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no such interface 'nosuch0'" in lines[0] and "mon0" in lines[0], r.stderr
    r = lab.run(lab.sensor, *mw_cmd("listen", lab.monitor, "--bpf", "tcp port ((", "--no-table"), check=False)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad BPF filter" in lines[0] and "syntax error" in lines[0], r.stderr
    r = lab.run(lab.sensor, *mw_cmd("listen", lab.monitor, "--set", "capture.queue-size=lots"), check=False)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    # without root or capabilities
    r = lab.run(lab.sensor, "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                *mw_cmd("listen", lab.monitor), check=False, cwd="/")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert "CAP_NET_RAW" in lines[0] and "root" in lines[0]
    # 'any' captures everywhere but gives no single interface to forge resets on
    r = lab.run(lab.sensor, *mw_cmd("listen", "any", "--no-table"), check=False)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "--inject-iface" in lines[0], r.stderr


def mw_cmd(*args: str) -> list[str]:
    from netlab import PYTHON

    return [PYTHON, "-m", "mirrorwatch", *args]


def test_injector_is_served_before_the_other_sinks():
    """Listen's dispatch: the urgent sink (the injector) gets every event of a frame first, so the
    forged frames leave before the alert that caused them is formatted; each sink still sees the
    events in the core's order."""
    from types import SimpleNamespace

    from mirrorwatch.cli.listener import Listener
    from mirrorwatch.sinks.injector import RawInjector
    from mirrorwatch.core.settings import Settings

    calls = []

    class Recorder:
        def __init__(self, name, urgent=False):
            self.name, self.urgent = name, urgent

        def handle(self, event):
            calls.append((self.name, event))

    sinks = [Recorder("eve"), Recorder("inject", urgent=True), Recorder("table")]
    listener = Listener(None, SimpleNamespace(sinks=sinks, engine=None, dispatch=None), table=None,
                        display=False, settings=Settings())
    listener._dispatcher()(["alert", "kill"])
    assert calls == [("inject", "alert"), ("inject", "kill"), ("eve", "alert"), ("table", "alert"),
                     ("eve", "kill"), ("table", "kill")]
    assert RawInjector.urgent
    plain = SimpleNamespace(sinks=[Recorder("eve")], engine=None, dispatch=lambda events: None)
    assert Listener(None, plain, table=None, display=False, settings=Settings())._dispatcher() is plain.dispatch


@pytest.mark.slow
def test_live_table_on_a_terminal_draws_and_stops_cleanly(lab, tmp_path):
    """The table is drawn by its painter thread on a real pseudo-terminal: the session and the
    alert show up on screen, and SIGTERM still flushes the outputs and exits 0."""
    import pty

    (tmp_path / "t.rules").write_text(RULES)
    lab.serve_tcp(8080, reply=REPLY)
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    err = tmp_path / "listen.err"
    p = lab.mirrorwatch("listen", lab.monitor, "--rules", str(tmp_path / "t.rules"), "--eve", str(tmp_path / "eve.json"),
                        stdin=slave, stdout=slave, stderr=open(err, "w"), env={"TERM": "xterm", "COLUMNS": "160",
                                                                              "LINES": "40"})
    os.close(slave)
    screen = b""

    def read_until(text: bytes, timeout: float = 20.0) -> None:
        nonlocal screen
        deadline = time.monotonic() + timeout
        while text not in screen:
            try:
                screen += os.read(master, 65536)
            except BlockingIOError:
                time.sleep(0.05)
            except OSError:
                break
            if time.monotonic() > deadline or p.poll() is not None:
                break
        assert text in screen, f"{text!r} never drawn; stderr: {err.read_text()[-600:]}"

    try:
        read_until(b"mirrorwatch")
        lab.tcp_request(lab.SERVER4, 8080, b"GET /evil HTTP/1.0\r\n\r\n")
        read_until(b"MW live request")
        assert lab.stop(p, signal.SIGTERM) == 0, err.read_text()[-800:]
    finally:
        os.close(master)
    assert "Traceback" not in err.read_text()
    evs = [json.loads(line) for line in (tmp_path / "eve.json").read_text().splitlines()]
    assert 1000001 in sids(evs) and evs[-1]["event_type"] == "stats"
