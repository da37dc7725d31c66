"""Records from many sensors in one store stay attributable: Suricata's ``host`` and ``in_iface``."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from slowcap import write_ping_sweep
from test_output import TS, FakeFlow, make_pkt, make_rule

from mirrorwatch.core.events import Alert, FlowEnded, Kill, Stats
from mirrorwatch.sinks.eve import EveWriter

ROOT = Path(__file__).resolve().parent.parent


def test_every_record_ends_with_host_and_live_records_carry_in_iface(tmp_path):
    out = tmp_path / "eve.json"
    w = EveWriter(str(out), host="edge-7", in_iface="mon0")
    w.handle(Alert(make_pkt(), FakeFlow(), True, make_rule()))
    w.handle(FlowEnded(TS, FakeFlow(), "timeout"))
    w.handle(Kill(TS, FakeFlow(), frames=[], trigger="sid:2000001"))
    w.handle(Stats(TS, {"capture": {"packets": 1}}))
    w.close()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["event_type"] for r in records] == ["alert", "flow", "kill", "stats"]
    assert all(list(r)[-1] == "host" and r["host"] == "edge-7" for r in records)  # last, as Suricata adds it
    assert [r.get("in_iface") for r in records] == ["mon0", "mon0", "mon0", None]  # stats: no interface


def test_replay_names_the_sensor_by_host_name_by_default(tmp_path):
    pcap = write_ping_sweep(tmp_path / "pings.pcap", count=3, interval=0.01)
    out = tmp_path / "eve.json"
    r = subprocess.run([sys.executable, "-m", "mirrorwatch", "replay", "-q", "--eve", str(out), str(pcap)],
                       capture_output=True, text=True, check=False, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 7 and {rec["host"] for rec in records} == {socket.gethostname()}
    assert not any("in_iface" in rec for rec in records)  # a replay captured on no interface


def test_live_records_carry_the_capture_interface(privileged, tmp_path):
    from netlab import NetLab
    from test_live import REPLY, RULES, Listen

    (tmp_path / "t.rules").write_text(RULES)
    with NetLab() as lab:
        lab.serve_tcp(8080, reply=REPLY)
        mw = Listen(lab, tmp_path, "--rules", str(tmp_path / "t.rules"), "--sensor-name", "span-3")
        assert lab.tcp_request(lab.SERVER4, 8080, b"GET /evil HTTP/1.0\r\n\r\n") == REPLY
        mw.wait_events(lambda evs: any(e["event_type"] == "alert" for e in evs))
        assert mw.stop() == 0, mw.stderr()
        records = mw.events()
    kinds = {r["event_type"] for r in records}
    assert {"alert", "flow", "stats"} <= kinds
    assert all(r["host"] == "span-3" for r in records)
    assert all(r["in_iface"] == lab.monitor for r in records if r["event_type"] != "stats")
    assert not any("in_iface" in r for r in records if r["event_type"] == "stats")
