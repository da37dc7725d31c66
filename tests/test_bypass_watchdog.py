"""The fail-open bypass watchdog: its policy (no root), then a stalled and a killed engine in a routed lab."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirrorwatch.inline.watchdog import BYPASS, INLINE, BypassPolicy

TIMEOUT, RECOVERY, POLL = 0.2, 1.0, 0.01


def drive(policy: BypassPolicy, beats, until: float, start: float = 0.0, alive=lambda t: True,
          forced=lambda t: False) -> list[tuple[float, str, str]]:
    """Look every POLL s from ``start`` to ``until``; the counter moves at each time in ``beats``."""
    beats, changes, counter, i = sorted(beats), [], 0, 0
    for step in range(round((until - start) / POLL) + 1):
        now = start + step * POLL
        while i < len(beats) and beats[i] <= now:
            counter, i = counter + 1, i + 1
        change = policy.observe(now, counter, alive(now), forced(now))
        if change:
            changes.append((round(now, 3), *change))
    return changes


def every(start: float, end: float, period: float = 0.05) -> list[float]:
    return [start + k * period for k in range(int((end - start) / period) + 1)]


def test_steady_heartbeat_stays_inline():
    assert drive(BypassPolicy(TIMEOUT, RECOVERY, 0.0), every(0, 10), 10) == []


def test_stall_switches_after_the_timeout_and_recovers_after_steady_beats():
    changes = drive(BypassPolicy(TIMEOUT, RECOVERY, 0.0), every(0, 1) + every(3, 6), 6)
    (t1, s1, why1), (t2, s2, why2) = changes
    assert s1 == BYPASS and 1.2 < t1 <= 1.2 + 2 * POLL and why1.startswith("engine stalled: no heartbeat for 0.2")
    assert s2 == INLINE and t2 == pytest.approx(3 + RECOVERY, abs=2 * POLL) and why2.startswith("engine healthy for")


def test_intermittent_heartbeat_never_flaps_back():
    # beats in bursts of 0.5 s separated by 0.3 s silences: never steady for RECOVERY
    beats = [t for k in range(10) for t in every(k * 0.8, k * 0.8 + 0.5)]
    changes = drive(BypassPolicy(TIMEOUT, RECOVERY, 0.0), beats, 8.5)
    assert [c[1] for c in changes] == [BYPASS]


def test_forced_bypass_holds_and_releases():
    changes = drive(BypassPolicy(TIMEOUT, RECOVERY, 0.0), every(0, 5), 5, forced=lambda t: 1 <= t < 3)
    assert [(round(t, 2), s, why) for t, s, why in changes] == [
        (1.0, BYPASS, "forced by operator"), (3.0, INLINE, "engine healthy for 3.000 s")]


def test_engine_death():
    changes = drive(BypassPolicy(TIMEOUT, RECOVERY, 0.0), every(0, 1), 1.2, alive=lambda t: t < 0.5)
    assert changes == [(0.5, BYPASS, "engine exited")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.001, max_value=0.6), min_size=1, max_size=80))
def test_no_switch_back_sooner_than_recovery(gaps):
    beats, t = [], 0.0
    for gap in gaps:
        t += gap
        beats.append(t)
    changes = drive(BypassPolicy(TIMEOUT, RECOVERY, 0.0), beats, t + 2)
    for (t1, s1, _), (t2, s2, _) in itertools.pairwise(changes):
        assert s1 != s2
        if s2 == INLINE:
            assert t2 - t1 >= RECOVERY - 1e-9
    for when, state, _ in changes:   # bypass only after a real silence
        if state == BYPASS:
            assert not any(when - TIMEOUT + POLL < b <= when for b in beats)


# -- in a routed lab -------------------------------------------------------------------------

@pytest.fixture
def lab(routed_lab):
    return routed_lab


def _events(lab, log, kind: str) -> list[dict]:
    return [e for e in lab.reports(log) if e["event"] == kind]


def _wait_for(predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    return predicate()


def _queue_line(lab, num: int = 0) -> list[int] | None:
    text = lab.run(lab.router, "cat", "/proc/net/netfilter/nfnetlink_queue").stdout
    rows = [[int(f) for f in line.split()] for line in text.splitlines()]
    return next((r for r in rows if r[0] == num), None)


def _closed(lab, report) -> list[dict]:
    return [r for r in lab.reports(report) if r["event"] == "close"]


@pytest.mark.privileged
@pytest.mark.slow
def test_sigstop_pause_is_short_and_sigcont_goes_inline_again(lab, tmp_path):
    srv, log, run = tmp_path / "srv", tmp_path / "eng", tmp_path / "run"
    lab.bulk_server(8080, srv)
    eng = lab.inline_engine(log, run, watchdog=True, timeout=TIMEOUT, recovery=RECOVERY)
    client = lab.bulk_send(lab.SERVER4, 8080, nbytes=6_000_000, rate=2_000_000, background=True)
    time.sleep(1.0)
    stopped_at = time.time()
    os.kill(eng.pid, signal.SIGSTOP)
    state = _wait_for(lambda: json.loads((run / "watchdog.json").read_text())["state"] == BYPASS, 2)
    time.sleep(0.8)
    continued_at = time.time()
    os.kill(eng.pid, signal.SIGCONT)
    sent = json.loads(client.communicate(timeout=30)[0])
    assert state and sent["error"] is None
    (closed,) = _closed(lab, srv)
    assert closed["sha256"] == sent["sha256"] and closed["bytes"] == 6_000_000
    assert closed["max_gap"] <= 0.5, closed
    changes = _wait_for(lambda: len(_events(lab, log, "state")) >= 3 and _events(lab, log, "state"), 5)
    started, bypass, inline = changes
    assert (started["state"], bypass["state"], inline["state"]) == (INLINE, BYPASS, INLINE)
    assert bypass["ts"] - stopped_at <= 0.5 and bypass["reason"].startswith("engine stalled")
    assert RECOVERY - 0.1 <= inline["ts"] - continued_at <= RECOVERY + 1.0
    print(f"\nwatchdog: bypass {bypass['ts'] - stopped_at:.3f} s after SIGSTOP (switch itself "
          f"{bypass['switch_s'] * 1000:.1f} ms, {bypass['released']} held packets released); longest pause "
          f"at the receiver {closed['max_gap']:.3f} s; inline {inline['ts'] - continued_at:.3f} s after SIGCONT")
    # inline again: packets go through the engine's queue once more
    seq_before = _queue_line(lab)[7]
    again = lab.bulk_send(lab.SERVER6, 8080, nbytes=1_000_000)
    assert again["error"] is None and _queue_line(lab)[7] > seq_before + 100
    time.sleep(0.5)
    assert len(_events(lab, log, "state")) == 3       # no flapping
    assert lab.stop(eng) == 0


@pytest.mark.privileged
@pytest.mark.slow
def test_sigkill_mid_transfer_completes_and_flow_drops_stay(lab, tmp_path):
    srv, log, run = tmp_path / "srv", tmp_path / "eng", tmp_path / "run"
    lab.bulk_server(8080, srv)
    eng = lab.inline_engine(log, run, watchdog=True, drop="EVIL")
    evil = lab.send_chunks(lab.SERVER4, 8080, [(0, b"hello "), (0.2, b"GET /EVIL")], wait=8, background=True)
    assert _wait_for(lambda: _events(lab, log, "drop"), 5)
    client = lab.bulk_send(lab.SERVER6, 8080, nbytes=6_000_000, rate=2_000_000, background=True)
    time.sleep(1.0)
    killed_at = time.time()
    os.kill(eng.pid, signal.SIGKILL)
    sent = json.loads(client.communicate(timeout=30)[0])
    assert sent["error"] is None
    (closed,) = [c for c in _closed(lab, srv) if c["peer"] == lab.CLIENT6]
    assert closed["sha256"] == sent["sha256"] and closed["max_gap"] <= 0.5, closed
    state = json.loads((run / "watchdog.json").read_text())
    assert (state["state"], state["reason"]) == (BYPASS, "engine exited")
    assert state["since"] - killed_at <= 0.5
    assert _wait_for(lambda: not os.path.exists(f"/proc/{state['pid']}"), 3), "the watchdog exits after the engine"
    assert _queue_line(lab) is None, "the queue is unbound once the watchdog let go of the socket"
    rules = lab.run(lab.router, "iptables", "-S", "MIRRORWATCH").stdout
    assert "-A MIRRORWATCH -m connmark --mark 0x40000000/0x40000000 -j DROP" in rules
    evil.wait(15)
    heard = [r["head"] for r in lab.reports(srv) if r["event"] == "data" and r["peer"] == lab.CLIENT4]
    assert heard == ["hello "], "the dropped flow stayed dropped after the engine died"
    print(f"\nwatchdog: bypass {state['since'] - killed_at:.3f} s after SIGKILL; "
          f"longest pause {closed['max_gap']:.3f} s")


FORCE = r"""
import json, sys
from mirrorwatch.inline.watchdog import force_bypass, status
run_dir, what = sys.argv[1], sys.argv[2]
print(json.dumps(status(run_dir) if what == "status" else force_bypass(what == "on", run_dir)))
"""


@pytest.mark.privileged
@pytest.mark.slow
def test_operator_bypass_on_off_status(lab, tmp_path):
    import netlab
    log, run = tmp_path / "eng", tmp_path / "run"

    def bypass(what: str) -> dict:
        return json.loads(lab.run(lab.router, netlab.PYTHON, "-c", FORCE, str(run), what).stdout)

    eng = lab.inline_engine(log, run, watchdog=True)
    st_ = bypass("status")
    assert st_["bypass"] is False and st_["forced"] is False and st_["watchdog"]["alive"]
    assert st_["watchdog"]["state"] == INLINE and st_["queues"]["0"]["total"] == 0
    on = bypass("on")
    assert on["bypass"] is True and on["forced"] is True
    assert _wait_for(lambda: bypass("status")["watchdog"]["reason"] == "forced by operator", 2)
    time.sleep(RECOVERY + 0.3)
    assert bypass("status")["bypass"] is True, "a healthy engine does not end a forced bypass"
    off = bypass("off")
    assert off["forced"] is False
    assert _wait_for(lambda: bypass("status")["bypass"] is False, 2), "the watchdog restores inline"
    assert _wait_for(lambda: _events(lab, log, "state")[-1]["state"] == INLINE, 2)
    lab.stop(eng)   # clean exit: watchdog stopped, firewall removed
    gone = bypass("status")
    assert gone["firewall"] is None and "no inline firewall recorded" in gone["error"]


@pytest.mark.privileged
def test_bypass_off_without_a_watchdog_acts_directly(lab, tmp_path):
    import netlab
    log, run = tmp_path / "eng", tmp_path / "run"
    eng = lab.inline_engine(log, run, watchdog=False, remove_on_exit=False)
    lab.stop(eng)
    run_force = [netlab.PYTHON, "-c", FORCE, str(run)]
    assert json.loads(lab.run(lab.router, *run_force, "on").stdout)["bypass"] is True
    assert json.loads(lab.run(lab.router, *run_force, "off").stdout)["bypass"] is False
