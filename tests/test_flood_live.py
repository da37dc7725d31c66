"""Issue 13, live: ``listen`` on a mirror fed a SYN flood by ``tcpreplay --topspeed``.

200,000 SYNs from distinct sources pour onto the mirror port at top speed,
then a real session between the lab's client and server sends a forbidden
request: the sensor, its table full of the flood and in emergency mode, must
alert and kill it (both endpoints reset), having counted every frame it
could not take and stayed within its caps (sessions, memory).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

MAX_SESSIONS = 20_000  # small, so the flood hits the cap many times over
FLOOD = 200_000
PEAK_RSS_MAX = 512 * 2**20


def _vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def _wait_drained(eve: Path, timeout: float = 60.0) -> dict:
    """The latest stats record once the capture queue is empty (the sensor caught up with the flood)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = [json.loads(line) for line in eve.read_text().splitlines()
                 if '"event_type":"stats"' in line and line.endswith("}")]
        if stats and stats[-1]["stats"]["capture"]["queue_pending"] == 0:
            return stats[-1]["stats"]
        time.sleep(0.5)
    raise AssertionError("the sensor never caught up with the flood")


def test_syn_flood_neither_blinds_nor_bloats_the_sensor(privileged, tmp_path):
    """At top speed the engine cannot take every frame: what it cannot take is counted; the
    table stays within its cap; once the flood is over (the table full of its SYNs, in emergency
    mode) a forbidden request on a real session is alerted and killed within a second."""
    from netlab import NetLab
    from test_kill_live import (
        Peers,
        Sensor,
        assert_killed,
        injection_port,
        kills_for,
        run_case,
    )

    if not shutil.which("tcpreplay"):
        pytest.skip("needs tcpreplay")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pcaps"))
    import gen_floods

    pcap = tmp_path / "syn-flood.pcap"
    gen_floods.generate("syn", FLOOD, pcap)
    with NetLab(mirror_inject=True) as lab:
        injection_port(lab, "mon")
        injection_port(lab, "iport")
        peers = Peers(lab, tmp_path)
        sensor = Sensor(lab, tmp_path, "flood", "--set", f"flow.max-sessions={MAX_SESSIONS}",
                        "--set", "capture.stats-interval=0.5")
        try:
            r = lab.run(lab.switch, "tcpreplay", "--topspeed", "-i", "mon", str(pcap), check=False, timeout=120)
            assert "Successful packets" in r.stdout, r.stderr
            during = _wait_drained(sensor.eve)
            case = run_case(peers, lab.SERVER4, "idle")
            peak = _vm_hwm(sensor.proc.pid)
        finally:
            eve = sensor.stop()
    assert_killed(*case)
    assert kills_for(eve, case[0]["port"]), "the forbidden session was alerted and killed"
    flow = during["flow"]
    assert flow["max_sessions"] > 0 and flow["emerg_mode_entered"] >= 1 and flow["active"] <= MAX_SESSIONS
    assert flow["memuse"] <= 256 * 2**20 and flow["evicted"] >= flow["max_sessions"]  # flow.memcap's default
    cap = [e for e in eve if e["event_type"] == "stats"][-1]["stats"]["capture"]
    assert cap["drops"] == cap["queue_drops"] + cap["kernel_drops"], "every frame not taken is counted"
    assert cap["received"] == cap["packets"] + cap["queue_drops"] and cap["received"] >= FLOOD
    assert peak <= PEAK_RSS_MAX, f"peak RSS {peak / 2**20:.0f} MiB"
    engine = [e["engine"] for e in eve if e["event_type"] == "engine"]
    assert engine and engine[0]["emergency"] == "entered" and engine[0]["cap"] == "flow.max-sessions"
