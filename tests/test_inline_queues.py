"""``mirrorwatch inline --queues A:B``: one worker per queue, in the path of real traffic.

The lab is ``netlab.RoutedLab`` (client -- router -- server namespaces, real
TCP stacks) with ``SOURCES`` more client addresses: the kernel's
``--queue-balance`` hash takes the two addresses and no ports, so sessions
between one pair of hosts all go to one queue, and several source addresses
are needed to reach every queue.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from ipaddress import ip_address
from pathlib import Path

import pytest
from netlab import PYTHON
from test_inline import (
    EVIL,
    NO_BYPASS,
    Inline,
    operator_rules,
    rulesets,
    server_capture,
    wait_for,
)

from mirrorwatch.inline.watchdog import BYPASS, INLINE, BypassPolicy
from mirrorwatch.sources.sched import request_slice

QUEUES = (3, 4)  # --queues 3:4
# 16 client addresses per family: all on one queue with p = 2**-15
SOURCES = {4: [f"198.51.100.{n}" for n in range(10, 26)], 6: [f"2001:db8:1::{n:x}" for n in range(0x10, 0x20)]}
NBYTES = 400_000  # per session

@pytest.fixture
def lab(routed_lab):
    for family, prefix in ((4, 24), (6, 64)):
        for src in SOURCES[family]:
            routed_lab.run(routed_lab.client, "ip", "addr", "add", f"{src}/{prefix}", "dev", "eth0", "nodad")
    return routed_lab


def sessions(lab, family: int = 4, *, nbytes: int = NBYTES, payload: bytes | None = None) -> dict:
    """One session from each client address of ``family`` to the server at once (``nbytes`` of data, or
    ``payload``): source address -> what its client saw ({"sent", "sha256", "reply", "error", ...})."""
    server = lab.SERVER4 if family == 4 else lab.SERVER6
    clients = {src: lab.send_chunks(server, 8080, [(0, payload)], source=src, background=True) if payload
               else lab.bulk_send(server, 8080, nbytes=nbytes, seed=n, source=src, background=True)
               for n, src in enumerate(SOURCES[family])}
    return {src: json.loads(p.communicate(timeout=120)[0]) for src, p in clients.items()}


def per_queue(lab) -> dict[int, int]:
    """The kernel's id_sequence of each of our queues: how many packets it was given."""
    text = lab.run(lab.router, "cat", "/proc/net/netfilter/nfnetlink_queue").stdout
    return {int(f[0]): int(f[7]) for f in (line.split() for line in text.splitlines()) if int(f[0]) in QUEUES}


def queues(lab, tmp: Path) -> Inline:
    """A bulk server on port 8080 (its log: tmp/srv), then ``inline --queues``."""
    lab.bulk_server(8080, tmp / "srv")
    return Inline(lab, tmp, "--queues", f"{QUEUES[0]}:{QUEUES[1]}", *NO_BYPASS)


@pytest.mark.privileged
@pytest.mark.slow
@pytest.mark.parametrize("family", [4, 6])
def test_sessions_over_every_queue_arrive_byte_exact_each_whole_in_one_worker(lab, tmp_path, family):
    eng = queues(lab, tmp_path)
    assert any("2 workers" in line for line in eng.err), eng.err
    sent = sessions(lab, family)
    fed = per_queue(lab)
    assert eng.stop() == 0, eng.err
    closed = {c["peer"]: c for c in lab.reports(tmp_path / "srv") if c["event"] == "close"}
    for src, s in sent.items():
        assert s["error"] is None and s["reply"] == "done", (src, s)
        assert (closed[src]["bytes"], closed[src]["sha256"]) == (NBYTES, s["sha256"]), src
    assert all(fed[q] > 0 for q in QUEUES), fed   # the hash used every queue
    # symmetric hash: each session was seen whole (both directions, from its SYN) by one worker
    flows = [f for f in eng.events("flow") if f.get("dest_port") == 8080]
    # EVE writes IPv6 in full, as Suricata
    assert sorted(f["src_ip"] for f in flows) == sorted(ip_address(a).exploded for a in SOURCES[family]), flows
    for f in flows:
        assert f["flow"]["pkts_toserver"] > 0 and f["flow"]["pkts_toclient"] > 0, f
        assert f["tcp"]["syn"], f
    assert len({f["flow_id"] for f in flows}) == len(flows)
    cap = eng.stats()["capture"]
    assert cap["received"] >= sum(fed.values()) and cap["uninspected"] == 0, cap
    assert eng.stats()["workers"]["count"] == 2 and all(n > 0 for n in eng.stats()["workers"]["packets"])


@pytest.mark.privileged
@pytest.mark.slow
def test_a_drop_rule_blocks_on_every_queue_and_sigterm_removes_every_rule(lab, tmp_path):
    before = operator_rules(lab)
    dump = server_capture(lab, tmp_path)
    eng = queues(lab, tmp_path)
    got = sessions(lab, payload=b"hello " + EVIL)
    fed = per_queue(lab)
    assert all(fed[q] > 0 for q in QUEUES), fed
    assert all(s["reply"] == "" for s in got.values()), got   # no session got the server's answer
    assert wait_for(lambda: len(eng.events("alert")) == len(SOURCES[4]), 5), eng.events("alert")
    assert eng.stop() == 0, eng.err
    time.sleep(2)  # retransmissions after the rules are gone find the sessions reset
    lab.stop(dump, signal.SIGINT)
    assert b"EVIL-7f3a9c" not in (tmp_path / "server.pcap").read_bytes()
    assert rulesets(lab) == before
    assert sum(1 for k in eng.events("kill") if k["kill"]["trigger"] == "shutdown") == len(SOURCES[4])
    assert any(f"reset {len(SOURCES[4])} blocked session(s)" in line for line in eng.err), eng.err


def started_workers(lab, tmp_path):
    """The queue sensor started, its watchdog's state file, and the worker pids that file names."""
    eng = queues(lab, tmp_path)
    state = tmp_path / "run" / "watchdog.json"
    assert wait_for(state.exists, 10)
    return eng, state, json.loads(state.read_text())["engine_pids"]


@pytest.mark.privileged
@pytest.mark.slow
def test_a_stalled_worker_switches_the_sensor_to_bypass_and_back(lab, tmp_path):
    eng, _state, workers = started_workers(lab, tmp_path)
    assert len(workers) == 2 and eng.p.pid not in workers
    status = lab.run(lab.router, PYTHON, "-m", "mirrorwatch", "bypass", "status", "--run-dir", str(tmp_path / "run"))
    assert f"2 workers (pids {workers[0]}, {workers[1]})" in status.stdout, status.stdout
    os.kill(workers[1], signal.SIGSTOP)
    assert wait_for(lambda: any("BYPASS" in line for line in eng.err), 2), eng.err
    sent = sessions(lab, nbytes=50_000)   # flows pass while the worker is stopped
    assert all(s["error"] is None and s["reply"] == "done" for s in sent.values()), sent
    os.kill(workers[1], signal.SIGCONT)
    assert wait_for(lambda: any("INLINE again" in line for line in eng.err), 5), eng.err
    assert eng.stop() == 0, eng.err
    switches = [e["engine"]["state"] for e in eng.events("engine") if e["engine"].get("module") == "inline"]
    assert switches[-2:] == ["bypass", "inline"], switches
    assert eng.stats()["capture"]["switches"] >= 2


# -- the pieces, without privilege ---------------------------------------------------------------

def test_the_watchdog_policy_bypasses_when_one_engine_of_several_is_silent():
    policy = BypassPolicy(timeout=0.2, recovery=1.0, now=0.0)
    changes = []
    for step in range(300):  # engine 0 beats throughout; engine 1 is silent from 1.0 s to 1.5 s
        now = step * 0.01
        beats = (step, step if not 100 <= step < 150 else 100)
        change = policy.observe(now, beats, True, False)
        if change:
            changes.append((round(now, 2), change[0]))
    assert changes == [(1.21, BYPASS), (2.5, INLINE)]   # silent > 0.2 s; steady again for 1 s


def test_the_watchdog_policy_takes_one_engine_as_a_plain_counter():
    policy = BypassPolicy(timeout=0.2, recovery=1.0, now=0.0)
    assert policy.observe(0.1, 1, True, False) is None
    assert policy.observe(0.35, 1, True, False) == (BYPASS, "engine stalled: no heartbeat for 0.250 s")


SLICE_OF_CHILD = """
import sys
from mirrorwatch.sources.sched import request_slice
print(request_slice(int(sys.argv[1])))
print(next(line.split()[-1] for line in open("/proc/self/sched") if line.startswith("se.slice")))
"""


@pytest.mark.skipif(tuple(map(int, os.uname().release.split(".")[:2])) < (6, 12),
                    reason="fair-task slices are Linux 6.12+")
def test_the_engine_gets_the_time_slice_it_asks_for():
    r = subprocess.run([PYTHON, "-c", SLICE_OF_CHILD, "250"], capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["None", "250000"]   # ns in /proc/PID/sched
    assert request_slice(0) is None
    assert "100..100000" in request_slice(50)


@pytest.mark.privileged
@pytest.mark.slow
def test_a_killed_worker_bypasses_stops_the_others_and_leaves_its_dropped_flows_dropped(lab, tmp_path):
    eng, state, workers = started_workers(lab, tmp_path)
    dump = server_capture(lab, tmp_path)
    got = sessions(lab, payload=b"hello " + EVIL)   # a blocked session in each worker
    assert all(s["reply"] == "" for s in got.values()), got
    os.kill(workers[0], signal.SIGKILL)
    assert eng.p.wait(30) == 1, eng.err
    assert wait_for(lambda: any("firewall rules left in place" in line for line in eng.err), 2), eng.err
    assert any("worker 1 of 2" in line and "SIGKILL" in line for line in eng.err), eng.err
    chain = lab.run(lab.router, "iptables", "-S", "MIRRORWATCH").stdout
    assert "NFQUEUE" in chain, chain   # the rules stay: the dead worker's dropped flows stay dropped
    assert json.loads(state.read_text())["state"] == "bypass"
    sent = sessions(lab, nbytes=20_000)   # the bypass switch passes new sessions
    assert all(s["error"] is None and s["reply"] == "done" for s in sent.values()), sent
    time.sleep(2)  # the dead worker's clients retransmit their blocked requests meanwhile
    lab.stop(dump, signal.SIGINT)
    assert b"EVIL-7f3a9c" not in (tmp_path / "server.pcap").read_bytes()
