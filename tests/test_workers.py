"""``replay --workers N``: one merged output, as one engine writes it; merging; a worker's death.

Replays run as real processes (the workers are forked).  What one engine and
N engines write is compared as multisets of records, without ``flow_id``
(numbered per engine) and the forged frames' random IP IDs.  Rules with a
threshold or detection filter count per worker (documented), so their alerts,
and the ``alerted`` flag of their sessions, are left out of the comparison;
so are the tagged packets where a rule tags a host (``tag:host``: per worker).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import click
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirrorwatch.cli import workers as workers_cli
from mirrorwatch.cli.workers.merge import LogLines, OrderedMerge, sum_counters

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "pcaps" / "demo.pcap"
SIGNATURES = ROOT / "signatures"
THRESHOLD_RE = re.compile(r"\b(threshold|detection_filter)\s*:")
SID_RE = re.compile(r"\bsid\s*:\s*(\d+)")
TAG_HOST_RE = re.compile(r"\btag\s*:\s*host\b")


def threshold_sids(rules: Path) -> set[int]:
    """Rules whose alerts are counted by source/destination/rule: per worker with --workers."""
    files = [rules] if rules.is_file() else sorted(rules.glob("*.rules"))
    return {int(m.group(1)) for f in files for line in f.read_text(errors="replace").splitlines()
            if THRESHOLD_RE.search(line) and (m := SID_RE.search(line))}


def tags_hosts(rules: Path) -> bool:
    """Whether a rule tags a host (``tag:host``): a host's tag marks only the packets its worker sees."""
    files = [rules] if rules.is_file() else sorted(rules.glob("*.rules"))
    return any(TAG_HOST_RE.search(line) for f in files for line in f.read_text(errors="replace").splitlines()
               if not line.lstrip().startswith("#"))


def replay(out: Path, *args, workers: int = 1, timeout: float = 300) -> subprocess.CompletedProcess:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mirrorwatch", "replay", "-q", "--eve", str(out / "eve.json"),
           "--fast", str(out / "fast.log"), "--workers", str(workers), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=out, check=False)


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "eve.json").read_text().splitlines()]


def comparable(events: list[dict], skip_sids: set[int], skip_sessions: set, skip_tagged: bool = False) -> Counter:
    """The records one engine and N engines must both write, as a multiset of canonical JSON."""
    out = Counter()
    skip_types = {"stats", "packet"} if skip_tagged else {"stats"}
    for e in events:
        if e["event_type"] in skip_types or (e["event_type"] == "alert" and e["alert"]["signature_id"] in skip_sids):
            continue
        e = dict(e)
        e.pop("flow_id", None)
        for seg in e.get("kill", {}).get("segments", []):
            seg.pop("ip_id", None)  # random per forged frame
        if e["event_type"] == "flow" and _endpoints(e) in skip_sessions:
            e["flow"] = {k: v for k, v in e["flow"].items() if k != "alerted"}
        out[json.dumps(e, sort_keys=True)] += 1
    return out


def _endpoints(e: dict) -> frozenset:
    return frozenset([(e["src_ip"], e.get("src_port")), (e["dest_ip"], e.get("dest_port"))])


def assert_same_output(one: Path, many: Path, skip_sids: set[int], skip_tagged: bool = False) -> None:
    """The same records but for the alerts of ``skip_sids`` (and, with ``skip_tagged``, the tagged packets)."""
    runs = [records(one), records(many)]
    sessions = {_endpoints(e) for events in runs for e in events
                if e["event_type"] == "alert" and e["alert"]["signature_id"] in skip_sids}
    a, b = (comparable(events, skip_sids, sessions, skip_tagged) for events in runs)
    assert a == b, (f"only with one worker: {list((a - b).elements())[:3]}; "
                    f"only with several: {list((b - a).elements())[:3]}")
    fast = [sorted(line for line in (d / "fast.log").read_text().splitlines()
                   if not any(f":{sid}:" in line for sid in skip_sids)) for d in (one, many)]
    assert fast[0] == fast[1]


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("workers-demo")
    runs = {n: (replay(base / str(n), DEMO, workers=n), base / str(n)) for n in (1, 3)}
    for r, _ in runs.values():
        assert r.returncode == 0, r.stderr
    return runs


def test_several_workers_write_what_one_engine_writes(demo_runs):
    assert_same_output(demo_runs[1][1], demo_runs[3][1], threshold_sids(SIGNATURES))


def test_one_stats_record_with_the_counters_summed(demo_runs):
    one = [e for e in records(demo_runs[1][1]) if e["event_type"] == "stats"]
    many = [e for e in records(demo_runs[3][1]) if e["event_type"] == "stats"]
    assert len(one) == len(many) == 1
    s1, s3 = one[0]["stats"], many[0]["stats"]
    assert s3["capture"]["packets"] == s1["capture"]["packets"] == 161
    assert s3["decoder"]["pkts"] == s1["decoder"]["pkts"] and s3["flow"]["flows"] == s1["flow"]["flows"]
    assert s3["detect"]["rules"] == s1["detect"]["rules"]  # loaded alike in every worker: not summed
    assert s3["workers"]["count"] == 3 and sum(s3["workers"]["packets"]) == 161 and s3["workers"]["died"] == 0


def test_output_is_in_capture_order_and_made_of_whole_lines(demo_runs):
    events = records(demo_runs[3][1])  # every line parsed: none cut or interleaved
    numbers = [e["pcap_cnt"] for e in events if "pcap_cnt" in e]
    assert numbers == sorted(numbers) and len(numbers) > 10
    fast = (demo_runs[3][1] / "fast.log").read_text().splitlines()
    assert fast and all(re.match(r"^\d\d/\d\d/\d{4}-\d\d:\d\d:\d\d\.\d{6}  ", line) for line in fast)


def test_paced_workers_write_what_one_engine_writes(demo_runs, tmp_path):
    """--realtime: a worker's own frames go through its paced ``take`` instead of the compiled path."""
    r = replay(tmp_path, DEMO, "--realtime", "--speed", "100000", workers=2)
    assert r.returncode == 0, r.stderr
    assert_same_output(demo_runs[1][1], tmp_path, threshold_sids(SIGNATURES))
    stats = [e["stats"] for e in records(tmp_path) if e["event_type"] == "stats"]
    assert sum(stats[0]["workers"]["packets"]) == stats[0]["capture"]["packets"] == 161


def test_the_summary_says_how_the_work_was_shared(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mirrorwatch", "replay", "--no-alerts", "--workers", "2", DEMO],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert "161 packets" in r.stdout
    m = re.search(r"2 workers: frames ([\d,]+) \([\d.]+%\) / ([\d,]+) \([\d.]+%\); CPU", r.stdout)
    assert m and int(m.group(1)) + int(m.group(2)) == 161


def test_workers_option_values():
    assert workers_cli.parse_workers("3") == 3
    assert workers_cli.parse_workers("auto") == max(1, workers_cli.usable_cores() - 1)
    for bad in ("0", "x", str(workers_cli.MAX_WORKERS + 1)):
        with pytest.raises(click.BadParameter):
            workers_cli.parse_workers(bad)


def test_a_bad_workers_value_is_one_line_exit_2(tmp_path):
    r = replay(tmp_path, DEMO, workers="none")
    assert r.returncode == 2 and "--workers" in r.stderr and "Traceback" not in r.stderr


def test_caps_on_the_whole_sensor_are_shared_out():
    from mirrorwatch.core.settings import Settings

    s = Settings()
    sessions = s["flow.max-sessions"]
    workers_cli.share_caps(s, 3)
    assert s["flow.max-sessions"] == -(-sessions // 3)


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def _started(pid: int, count: int, timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(kids := _children(pid)) < count:
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.05)
    return kids


def test_a_dead_worker_is_reported_and_the_others_are_flushed(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "mirrorwatch", "replay", "-q", "--workers", "2", "--realtime",
                          "--eve", str(tmp_path / "eve.json"), DEMO], stderr=subprocess.PIPE, text=True)
    victim = _started(p.pid, 2)[0]
    time.sleep(1.0)
    os.kill(victim, signal.SIGKILL)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 1
    line = [ln for ln in err.splitlines() if "worker" in ln]
    assert line == [(f"mirrorwatch: error: worker 1 of 2 (pid {victim}) was killed by SIGKILL: the sessions it "
                     f"held are lost; the other workers' sessions are flushed to the outputs")], err
    events = records(tmp_path)  # whole lines only
    assert events[-1]["event_type"] == "stats" and events[-1]["stats"]["workers"]["died"] == 1
    assert any(e["event_type"] == "flow" and e["flow"]["reason"] == "shutdown" for e in events)


def test_ctrl_c_stops_every_worker_and_flushes(tmp_path):
    p = subprocess.Popen([sys.executable, "-m", "mirrorwatch", "replay", "-q", "--workers", "2", "--realtime",
                          "--eve", str(tmp_path / "eve.json"), DEMO], stderr=subprocess.PIPE, text=True)
    _started(p.pid, 2)
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "interrupted: the sessions seen so far were flushed to the outputs" in err
    events = records(tmp_path)
    assert events[-1]["event_type"] == "stats" and 0 < events[-1]["stats"]["capture"]["packets"] < 161
    assert any(e["event_type"] == "flow" and e["flow"]["reason"] == "shutdown" for e in events)


# -- the coordinator's merging ----------------------------------------------------------------------------
def test_items_are_released_in_clock_order_up_to_the_common_watermark():
    written = []
    m = OrderedMerge(2, lambda ch, data: written.append(data))
    m.add(0, 10, [(3, 0, "a3"), (7, 0, "a7")])
    m.add(1, 5, [(4, 0, "b4")])
    m.release()
    assert written == ["a3", "b4"]  # a7 waits: worker 1 may still write something clocked 5..7
    m.add(1, 20, [(7, 0, "b7"), (15, 0, "b15")])
    m.release()
    assert written == ["a3", "b4", "a7", "b7"]  # a tie goes to the lower worker
    m.close(0)
    m.release()
    assert written[-1] == "b15" and not any(m.queues)


@given(st.lists(st.lists(st.tuples(st.integers(1, 60), st.integers(0, 1)), max_size=30), min_size=1, max_size=4),
       st.randoms(use_true_random=False))
@settings(max_examples=200, deadline=None)
def test_the_merge_writes_what_one_engine_would_whatever_the_watermarks(streams, rnd):
    """Each worker's items in clock order, sent in batches with rising watermarks: everything is written
    once, in clock order, ties in worker order, and nothing before every worker has passed its clock."""
    written = []
    m = OrderedMerge(len(streams), lambda ch, data: written.append((ch, data)))
    items = [sorted((clock, ch, (w, clock, i)) for i, (clock, ch) in enumerate(s)) for w, s in enumerate(streams)]
    sent = [0] * len(items)
    while any(sent[w] < len(s) for w, s in enumerate(items)):
        w = rnd.randrange(len(items))
        upto = rnd.randint(sent[w], len(items[w]))
        batch = items[w][sent[w]:upto]
        sent[w] = upto
        mark = items[w][upto][0] - 1 if upto < len(items[w]) else 60  # every frame before its next item is done
        m.add(w, mark, batch)
        m.release()
        assert all(data[1] <= min(m.marks) for _, data in written)
    for w in range(len(items)):
        m.close(w)
    m.release()
    want = sorted((data[1], data[0], n) for n, (_, data) in enumerate(written))  # clock, worker, arrival
    assert [(c, w) for c, w, _ in want] == [(data[1], data[0]) for _, data in written]
    for w, s in enumerate(items):  # each worker's own order, every item once
        assert [d for _, d in written if d[0] == w] == [d for _, _, d in s]


def test_counters_are_summed_except_what_every_worker_loaded_alike():
    a = {"capture": {"packets": 3, "interface": "mon0"}, "detect": {"rules": 19, "alerts": 2},
         "flow": {"emergency": False}}
    b = {"capture": {"packets": 4, "interface": "mon0"}, "detect": {"rules": 19, "alerts": 1},
         "flow": {"emergency": True}}
    assert sum_counters([a, b]) == {"capture": {"packets": 7, "interface": "mon0"},
                                    "detect": {"rules": 19, "alerts": 3}, "flow": {"emergency": True}}


def test_a_line_every_worker_says_is_said_once():
    said = []
    lines = LogLines(said.append)
    for w in (0, 1, 2):
        lines.line(w, "mirrorwatch: reloaded 19 rules")
    lines.line(1, "mirrorwatch: error: rules not reloaded")
    lines.line(0, "mirrorwatch: reloaded 19 rules")  # a second reload: said again
    assert said == ["mirrorwatch: reloaded 19 rules", "mirrorwatch: error: rules not reloaded",
                    "mirrorwatch: reloaded 19 rules"]


def test_the_merged_table_shows_the_sessions_of_every_worker():
    from rich.console import Console

    from mirrorwatch.cli.pipeline import Pipeline
    from mirrorwatch.cli.workers.view import MergedTable, Views
    from mirrorwatch.core.decode.flowshare import FRAGMENT, FlowPartitioner
    from mirrorwatch.core.kill import Killer
    from mirrorwatch.core.settings import Settings
    from mirrorwatch.sinks.table import LiveTable
    from mirrorwatch.sources.pcapfile import PcapFiles

    part = FlowPartitioner(2)
    pipes = [Pipeline.build(s, console_alerts=False, killer=Killer(settings=s)) for s in (Settings(), Settings())]
    tables = [LiveTable(p.engine) for p in pipes]
    for p, t in zip(pipes, tables):
        p.add_sink(t)
    for ts, lt, frame, wl in PcapFiles([DEMO]):
        w = part.owner(lt, frame)
        p = pipes[part.last_fragment[2] if w == FRAGMENT else w]
        p.dispatch(p.engine.process(ts, lt, frame, wl))
    sent = []
    outbox = type("Outbox", (), {"send": lambda self, kind, view: sent.append(view)})()
    merged = MergedTable(source="demo")
    for k, (p, t) in enumerate(zip(pipes, tables)):
        Views(t, outbox, p.engine.counters, clock=lambda e=p.engine: e.last_ts).send()
        merged.update(k, sent[-1])
    sessions = sum(len(p.engine.flows.flows) for p in pipes)
    rows = merged.sample(merged.clock)
    assert len(rows) == sessions and len({r.flow_id for r in rows}) == len(list(rows)) > 1
    assert merged.alerts_total == sum(t.alerts_total for t in tables) > 0 and merged.kills_total == 1
    assert {w for w, _ in (r.flow_id for r in rows)} == {0, 1}
    console = Console(width=150, record=True)
    console.print(merged.render(merged.clock, width=150, height=40))
    text = console.export_text()
    assert f"sessions {sessions}" in text and "alerts" in text and "killed" in text.lower()


def test_fanout_refuses_a_descriptor_that_is_not_a_capture_socket(tmp_path):
    import socket

    from mirrorwatch.sources import fanout

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, \
            pytest.raises(fanout.FanoutError, match="not an AF_PACKET socket"):
        fanout.join(s.fileno())
    with open(tmp_path / "f", "w") as f, pytest.raises(fanout.FanoutError, match="is not a socket"):
        fanout.join(f.fileno())


# -- each worker's own numbers ------------------------------------------------------------------------------
def _flow_ids(out: Path) -> dict:
    """Session (endpoints, start) -> its flow_id, from the flow records; every alert's id is its session's."""
    events = records(out)
    ids = {(_endpoints(e), e["flow"]["start"]): e["flow_id"] for e in events if e["event_type"] == "flow"}
    assert {e["flow_id"] for e in events if e["event_type"] == "alert"} <= set(ids.values())
    return ids


def test_flow_ids_are_unique_across_workers_and_the_same_in_every_replay(tmp_path):
    from mirrorwatch.cli.workers.coordinator import (
        FLOW_COUNTER_WORKER_SHIFT,
        FLOW_ID_HASH_BITS,
    )

    for run in ("a", "b"):
        assert replay(tmp_path / run, DEMO, workers=3).returncode == 0
    first, again = _flow_ids(tmp_path / "a"), _flow_ids(tmp_path / "b")
    assert first == again  # deterministic for the same number of workers
    ids = list(first.values())
    assert len(ids) == 25 and len(set(ids)) == len(ids)
    owners = {fid >> (FLOW_ID_HASH_BITS + FLOW_COUNTER_WORKER_SHIFT) for fid in ids}
    assert len(owners) > 1 and owners <= {0, 1, 2}  # the worker's number in the high bits


def test_forked_forgers_draw_ip_ids_of_their_own():
    import copy
    from types import SimpleNamespace

    from mirrorwatch.core.forge import Forger

    flow = SimpleNamespace(client=b"\xc0\x00\x02\x01", server=b"\xc0\x00\x02\x02", cport=40000, sport=80, ipv=4,
                           ttl=[64, 64])

    def ip_ids(forger) -> list[int]:
        return [forger.segment(flow, True, 1, 1, 0x14, (b"", b"", ())).ip_id for _ in range(8)]

    for seed in (None, 7):
        parent = Forger("rst", seed)
        kids = [copy.deepcopy(parent) for _ in range(3)]  # what fork gives every worker: the same state
        assert len({tuple(ip_ids(copy.deepcopy(parent))) for _ in kids}) == 1
        for k, kid in enumerate(kids):
            kid.reseed(k)
        assert len({tuple(ip_ids(kid)) for kid in kids}) == 3
    twins = [Forger("rst", 7) for _ in range(2)]
    for twin in twins:
        twin.reseed(1)
    assert ip_ids(twins[0]) == ip_ids(twins[1])  # a fixed seed stays reproducible


def test_a_worker_waits_when_it_is_too_far_ahead_of_the_slowest():
    from mirrorwatch.cli.workers.replay import MAX_LEAD_FRAMES, Progress

    p = Progress(3)
    assert not p.ahead(0, MAX_LEAD_FRAMES)
    assert p.ahead(0, MAX_LEAD_FRAMES + 1)  # workers 1 and 2 have read nothing yet
    p.ahead(1, 10)
    p.gone(2)  # finished (or died): nobody waits for it
    assert not p.ahead(0, MAX_LEAD_FRAMES + 10) and p.ahead(0, MAX_LEAD_FRAMES + 11)


def test_the_workers_begin_reading_together_and_the_timer_starts_then():
    from mirrorwatch.cli.workers.replay import Progress, _StopMark

    p = Progress(2)
    assert p.first_read() is None  # no worker has opened the capture yet
    second = threading.Thread(target=p.begin, args=(1, _StopMark()))
    second.start()  # worker 2 is set up first...
    time.sleep(0.05)
    assert p.first_read() is None  # ...and waits for worker 1 (forked before it: its start-up is not the run's)
    before = time.perf_counter()
    p.begin(0, _StopMark())
    second.join(5)
    assert not second.is_alive()
    first = p.first_read()
    assert first is not None and first >= before  # the timer starts once both are ready
    assert max(p.began) - first < 0.05  # and they begin together


def test_a_worker_waiting_for_the_others_begins_when_stopped():
    from mirrorwatch.cli.workers.replay import Progress, _StopMark

    p = Progress(2)
    stop = _StopMark()
    stop(signal.SIGTERM, None)  # worker 2 never got ready (it died): the coordinator stops the others
    p.begin(0, stop)
    assert p.first_read() is not None


def test_the_last_record_does_not_wait_for_the_workers_to_exit(tmp_path):
    from mirrorwatch.cli.pipeline import Pipeline
    from mirrorwatch.cli.workers.coordinator import Coordinator, result
    from mirrorwatch.core.engine import Engine
    from mirrorwatch.core.settings import Settings
    from mirrorwatch.sinks.eve import EveWriter

    exit_takes = 1.0  # a worker whose exit is slow (a large heap to give back)
    eve = tmp_path / "eve.json"
    pipe = Pipeline(Engine(Settings(), []), [EveWriter(str(eve))])

    def body(k, outbox, ctl):
        outbox.send("done", result(pipe, {"decoder": {"pkts": k + 1}}, k + 1, 0.0, 0))
        time.sleep(exit_takes)
        return 0

    t0 = time.perf_counter()
    code = Coordinator(pipe, 2, ordered=True).run(body)
    assert code == 0
    assert pipe.finished - t0 < exit_takes / 2  # the stats record was written once both said done
    assert time.perf_counter() - t0 >= exit_takes  # and the coordinator still waited for them to end
    stats = [r for r in records(tmp_path) if r["event_type"] == "stats"]
    assert len(stats) == 1 and stats[0]["stats"]["decoder"]["pkts"] == 3
