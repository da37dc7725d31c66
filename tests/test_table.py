"""The live session table: rendered from a real engine, and seen in a real terminal (tmux)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from mirrorwatch.sources.pcapfile import PcapFiles
from mirrorwatch.core.events import Kill
from mirrorwatch.cli.pipeline import Pipeline, replay
from mirrorwatch.core.settings import Settings
from mirrorwatch.sinks.summary import Summary, plural
from mirrorwatch.sinks.table import LiveTable, endpoint

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "pcaps" / "demo.pcap"
PYTHON = sys.executable  # the interpreter running the tests (the project's virtualenv under make test)


def replayed(sort: str = "bytes"):
    pipe = Pipeline.build(Settings(), console_alerts=False)
    table = LiveTable(pipe.engine, source="demo.pcap", sort=sort)
    pipe.add_sink(table)
    replay(pipe, [str(DEMO)])
    return pipe, table


def screen(table: LiveTable, now: float, width: int, height: int = 40) -> list[str]:
    c = Console(width=width, height=height, record=True, force_terminal=False, file=open("/dev/null", "w"))
    c.print(table.render(now, width=width, height=height))
    return c.export_text().splitlines()


def total_bytes(f):
    return f.bytes[0] + f.bytes[1]


def test_table_reads_at_80_and_200_columns():
    pipe, table = replayed()
    eng = pipe.engine
    live = list(eng.flows.flows.values())
    assert live, "the demo leaves sessions in the table"
    for width in (80, 200):
        lines = screen(table, eng.last_ts, width)
        assert all(len(line) <= width for line in lines), max(lines, key=len)
        text = "\n".join(lines)
        assert f"sessions {len(live)}" in text
        assert f"alerts {pipe.summary.alerts}" in text and pipe.summary.alerts > 0
        assert "latest alerts" in text
        newest = table.latest[-1].rule.msg
        assert newest[:30] in text
        biggest = max(live, key=total_bytes)
        # the biggest session is the first row, with its endpoints readable in full
        first_row = next(line for line in lines if "→" in line and ("TCP" in line or "UDP" in line))
        assert f":{biggest.sport}" in first_row and f":{biggest.cport}" in first_row
    narrow = "\n".join(screen(table, eng.last_ts, 80))
    wide = "\n".join(screen(table, eng.last_ts, 200))
    assert "rate" not in narrow.split("latest alerts")[0] and "bytes →/←" in narrow
    assert "pkts →" in wide and "bytes ←" in wide and "rate" in wide
    assert "2001:db8:10::21" in wide, "IPv6 endpoints in full at 200 columns"


@pytest.mark.parametrize("sort", ["bytes", "age", "alerts", "rate"])
def test_table_sort_orders(sort):
    pipe, table = replayed(sort)
    table.sample(pipe.engine.last_ts)
    flows = list(pipe.engine.flows.flows.values())
    top = table.top(flows, 5, pipe.engine.last_ts)
    assert len(top) == 5
    if sort == "bytes":
        assert [total_bytes(f) for f in top] == sorted((total_bytes(f) for f in flows), reverse=True)[:5]
    elif sort == "age":
        assert [f.start for f in top] == sorted(f.start for f in flows)[:5]
    elif sort == "alerts":
        counts = [table.flow_alerts.get(f.flow_id, 0) for f in top]
        assert counts == sorted((table.flow_alerts.get(f.flow_id, 0) for f in flows), reverse=True)[:5]
        assert counts[0] >= 2
    else:  # no time has passed between the samples: every rate is 0, ties broken by bytes
        assert [total_bytes(f) for f in top] == sorted((total_bytes(f) for f in flows), reverse=True)[:5]


def test_rates_come_from_counter_deltas_between_samples():
    pipe = Pipeline.build(Settings(), console_alerts=False)
    eng = pipe.engine
    table = LiveTable(eng, source="demo")
    pipe.add_sink(table)
    frames = list(PcapFiles([str(DEMO)]))
    half = len(frames) // 2
    cb = pipe.frame_callback()
    for fr in frames[:half]:
        cb(*fr)
    table.sample(100.0)
    before = {f.flow_id: total_bytes(f) for f in eng.flows.flows.values()}
    pkts0, bytes0 = eng.pcap_cnt, eng.bytes
    for fr in frames[half:]:
        cb(*fr)
    table.sample(102.0)
    assert table.pps == pytest.approx((eng.pcap_cnt - pkts0) / 2.0)
    assert table.bps == pytest.approx((eng.bytes - bytes0) * 8 / 2.0)
    grown = [f for f in eng.flows.flows.values() if total_bytes(f) > before.get(f.flow_id, 0)]
    assert grown
    for f in grown:
        assert table._rates[f.flow_id] == pytest.approx((total_bytes(f) - before.get(f.flow_id, 0)) * 8 / 2.0)


def test_killed_sessions_are_marked():
    pipe, table = replayed("alerts")
    top = table.top(list(pipe.engine.flows.flows.values()), 1, pipe.engine.last_ts)[0]
    top.killed = "sid 9000021"  # what the killer records on a flow it ended
    # the header counts sessions killed: a re-fire burst is not a second kill, a dry run is none
    other = next(f for f in pipe.engine.flows.flows.values() if f is not top)
    for k in (Kill(1.0, top, [], "1:9000021"), Kill(2.0, top, [], "refire"), Kill(2.0, other, [], "1:1", dry_run=True)):
        table.handle(k)
    assert table.kills_total == 1
    assert "kills 1" in "\n".join(screen(table, pipe.engine.last_ts, 120))
    # its row says killed in the state column, at every width; a session only marked in dry-run says so
    other.mark_killed("sid 1", dry_run=True)
    for width, dry in ((80, "dry-kill"), (120, "dry-kill"), (200, "dry-run kill")):
        lines = screen(table, pipe.engine.last_ts, width)
        row = next(line for line in lines if f":{top.cport} →" in line)
        assert row.split("→", 1)[1].split()[1] == "killed", row
        row = next(line for line in lines if f":{other.cport} →" in line)
        assert dry in row and "killed" not in row, row


def test_endpoints_column_takes_only_the_room_it_needs():
    """At 200 columns the endpoints column is as wide as its widest row (IPv6 here), not most of the screen;
    at 60 it gives way first, with an ellipsis, and every line still fits."""
    pipe, table = replayed()
    widest = max(len(f"{endpoint(f.client, f.cport, f.proto)} → {endpoint(f.server, f.sport, f.proto)}")
                 for f in pipe.engine.flows.flows.values())
    lines = screen(table, pipe.engine.last_ts, 200)
    head = next(line for line in lines if "client → server" in line)
    assert head.index("state") - head.index("client") == widest + 2  # the column and its separator
    rows = lines[:next(i for i, line in enumerate(lines) if "latest alerts" in line)]
    assert max(len(line.rstrip()) for line in rows) < 150
    narrow = screen(table, pipe.engine.last_ts, 60)
    assert all(len(line) <= 60 for line in narrow) and any("…" in line for line in narrow)


def test_summary_line_counts_in_words():
    summary = Summary()
    summary.sessions, summary.alerts = 1, 1
    summary.counters = {"capture": {"packets": 1, "bytes": 60}}
    console = Console(width=130, record=True, file=open(os.devnull, "w"))
    summary.render(console, 1.0, show_table=False)
    assert console.export_text().startswith("1 packet, 60 bytes, 1 session, 1 alert in 1.000s")
    assert plural(2000, "session") == "2,000 sessions" and plural(0, "alert") == "0 alerts"


# -- as a person sees it: a real terminal (tmux) ------------------------------------------

# a tmux server started from pytest passes COLUMNS=80 to its panes, and rich obeys
# COLUMNS over the terminal's real size: the commands below unset it.
def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def tmux_sessions():
    if not shutil.which("tmux"):
        pytest.skip("tmux not installed")
    names: list[str] = []
    yield names
    for n in names:
        subprocess.run(["tmux", "kill-session", "-t", n], capture_output=True)


def test_replay_realtime_table_in_a_terminal(tmux_sessions, tmp_path):
    name = f"mwreplay{id(tmp_path) & 0xffff}"
    tmux_sessions.append(name)
    done = tmp_path / "done"
    tmux("new-session", "-d", "-s", name, "-x", "120", "-y", "40",
         f"env -u COLUMNS -u LINES {PYTHON} -m mirrorwatch replay --realtime --speed 20 --table -q {DEMO}; touch {done}; sleep 30")
    deadline = time.monotonic() + 60
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert done.exists(), tmux("capture-pane", "-p", "-t", name, "-S", "-100")
    text = tmux("capture-pane", "-p", "-t", name, "-S", "-100")
    assert "sessions by bytes" in text and "latest alerts" in text
    assert "MW " in text.split("latest alerts")[1], "the demo's alerts are listed"


@pytest.mark.slow
def test_listen_table_in_a_terminal_at_120_and_80_columns(privileged, tmux_sessions, tmp_path):
    from netlab import NetLab

    rules = tmp_path / "t.rules"
    rules.write_text('alert tcp any 8080 -> any any (msg:"MW table response"; flow:to_client; content:"owned"; '
                     'sid:1000011; rev:1;)\n')
    with NetLab() as lab:
        lab.serve_tcp(8080, reply=b"HTTP/1.0 200 OK\r\n\r\nowned" + b"x" * 20000)
        panes = {}
        for width, height in ((120, 40), (80, 24)):
            name = f"mwlisten{width}x{lab.client.split('-')[0]}"
            tmux_sessions.append(name)
            tty = tmp_path / f"stty{width}"
            tmux("new-session", "-d", "-s", name, "-x", str(width), "-y", str(height),
                 f"stty -g > {tty}.before; "
                 f"env -u COLUMNS -u LINES ip netns exec {lab.sensor} {PYTHON} -m mirrorwatch listen {lab.monitor} --rules {rules} "
                 f"--sort alerts --set flow-timeouts.tcp.closed=30; stty -g > {tty}.after; sleep 30")
            panes[width] = name
        deadline = time.monotonic() + 20
        while not all("mirrorwatch mon0" in tmux("capture-pane", "-p", "-t", n) for n in panes.values()):
            assert time.monotonic() < deadline, tmux("capture-pane", "-p", "-t", panes[120])
            time.sleep(0.1)
        lab.tcp_request(lab.SERVER4, 8080, b"GET /evil HTTP/1.0\r\n\r\n")
        held = lab.tcp_request(lab.SERVER6, 8080, b"GET /evil HTTP/1.0\r\n\r\n", hold=20, background=True)
        for _ in range(3):
            lab.tcp_request(lab.SERVER4, 8080, b"GET /fine HTTP/1.0\r\n\r\n")
        for width, name in panes.items():
            deadline = time.monotonic() + 15
            while True:
                text = tmux("capture-pane", "-p", "-t", name)
                alerts = re.search(r"alerts (\d+)", text)
                if "MW table response" in text and alerts and int(alerts.group(1)) >= 4:
                    break
                assert time.monotonic() < deadline, f"{width} columns:\n{text}"
                time.sleep(0.2)
            lines = text.splitlines()
            assert all(len(line) <= width for line in lines)
            assert "drops 0" in text and "sessions" in text
            sessions = [line for line in lines if "198.51.100.1:" in line and "198.51.100.2:8080" in line]
            assert len(sessions) >= 2, text
            v6 = [line for line in lines if "[2001:db8::1]:" in line]
            assert v6, text
            # sorted by alerts: the alerted sessions come first, each with its count
            rows = [line for line in lines if "→" in line and line.lstrip().startswith(("TCP", "UDP", "ICMP"))]
            assert rows[0].rstrip().endswith("1") and ":8080" in rows[0], f"{width} columns:\n{text}"
            assert ("198.51.100.2:8080 → 198.51.100.1:" in text) == (width >= 100), "alert endpoints when wide"
        # SIGHUP with a broken rule file: the display itself says the old rules stay
        rules.write_text("alert tcp garbage (\n")
        shell = int(tmux("display", "-p", "-t", panes[120], "#{pane_pid}").strip())
        child = int(subprocess.run(["pgrep", "-P", str(shell)], capture_output=True, text=True).stdout.split()[0])
        os.kill(child, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "rules not reloaded" not in tmux("capture-pane", "-p", "-t", panes[120]):
            assert time.monotonic() < deadline, tmux("capture-pane", "-p", "-t", panes[120])
            time.sleep(0.2)
        # keys: 'r' sorts by rate; 'q' quits the 120-column one, Ctrl-C the 80-column one
        assert "sessions by alerts   (s: sort  q: quit)" in tmux("capture-pane", "-p", "-t", panes[120])
        tmux("send-keys", "-t", panes[120], "r")
        deadline = time.monotonic() + 10
        while "sessions by rate" not in tmux("capture-pane", "-p", "-t", panes[120]):
            assert time.monotonic() < deadline, tmux("capture-pane", "-p", "-t", panes[120])
            time.sleep(0.2)
        held.kill()
        tmux("send-keys", "-t", panes[120], "q")
        tmux("send-keys", "-t", panes[80], "C-c")
        deadline = time.monotonic() + 15
        for name in panes.values():
            while "no drops" not in tmux("capture-pane", "-p", "-t", name, "-S", "-100"):
                assert time.monotonic() < deadline, tmux("capture-pane", "-p", "-t", name, "-S", "-100")
                time.sleep(0.2)
        for width in panes:  # the terminal mode (cbreak while the table ran) is restored
            tty = tmp_path / f"stty{width}"
            while not Path(f"{tty}.after").exists():
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert Path(f"{tty}.after").read_text() == Path(f"{tty}.before").read_text()
