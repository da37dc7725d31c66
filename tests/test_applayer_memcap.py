"""Issues 12 and 13: the application layer's global memory cap (``app-layer.memcap``).

Every byte the layer keeps for a flow (detection's copy of the first bytes,
parser buffers, transactions) is charged to one account; a one-sided flood
cannot push it past the cap, a refusal is counted (EVE stats, summary line,
live header), bytes come back when a flow ends or is evicted, and flows that
got memory keep their protocol, transactions and application-layer rules.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from types import SimpleNamespace

from mirrorwatch.cli.pipeline import Pipeline, load_ruleset
from mirrorwatch.core.applayer.common import MemAccount
from mirrorwatch.core.applayer.session import AppFlow, AppLayer
from mirrorwatch.core.engine import Engine
from mirrorwatch.core.events import Alert, FlowEnded
from mirrorwatch.core.settings import Settings
from mirrorwatch.sinks.caps import CapWatch, cap_lines
from mirrorwatch.sinks.eve import EveWriter
from mirrorwatch.sources.pcapfile import PcapFiles

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pcaps"))
import gen_bench  # noqa: E402
import gen_floods  # noqa: E402

ONESIDED = len(gen_floods._ONESIDED_PAYLOAD)  # bytes detection keeps per one-sided session
HTTP_SID, TCP_SID = 9_914_001, 9_914_002
RULES = (f'alert http any any -> any any (msg:"memcap probe uri"; flow:established,to_server; '
         f'http.uri; content:"/memcap-probe"; sid:{HTTP_SID}; rev:1;)\n'
         f'alert tcp any any -> any any (msg:"memcap probe bytes"; flow:established,to_server; '
         f'content:"/memcap-probe"; sid:{TCP_SID}; rev:1;)\n')
REQUEST = b"GET /memcap-probe HTTP/1.1\r\nHost: victim.example\r\nUser-Agent: probe\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
SERVER = gen_bench.Host(4, bytes([192, 0, 2, 80]), b"\x00\x1b\x21\x00\x00\x01")


def _client(net: int, i: int) -> gen_bench.Host:
    return gen_bench.Host(4, bytes([net, 0, i >> 8 & 0xFF, i & 0xFF]), b"\x02\x00\x00\x00\x00\x01")


def write_capture(path: Path, parts) -> None:
    """``parts``: ("http", n) -> n complete HTTP sessions with the probe request;
    ("onesided", n) -> n one-sided 1,400-byte sessions (the flood generator's)."""
    rng = random.Random(7)
    requests = [(REQUEST, gen_bench.osum(REQUEST))]
    responses = [[(RESPONSE, gen_bench.osum(RESPONSE))]] * 2
    psum = gen_bench.osum(gen_floods._ONESIDED_PAYLOAD)
    ts = gen_bench.T0
    with open(path, "wb") as fp:
        w = gen_bench.Writer(fp)
        for net, (kind, n) in enumerate(parts, start=10):
            for i in range(n):
                ts += 1e-3
                if kind == "onesided":
                    w.tcp(ts, _client(net, i), SERVER, 1024 + i, 80, i * 7919, 1, gen_bench.PSH | gen_bench.ACK,
                          gen_floods._ONESIDED_PAYLOAD, psum)
                    continue
                for k, step in enumerate(gen_bench.tcp_session(rng, _client(net, i), SERVER, None, requests,
                                                               responses)):
                    w.tcp(ts + k * 1e-5, *step[1:])
        w.close()


def replay(tmp_path: Path, parts, settings: dict, eve: Path | None = None):
    """Replay through the engine (and an EVE writer); the cap is checked after every packet.
    Returns (engine, alerts by sid, FlowEnded events, stats counters)."""
    pcap = tmp_path / "capture.pcap"
    write_capture(pcap, parts)
    rules = tmp_path / "memcap.rules"
    rules.write_text(RULES)
    s = Settings({"stream.midstream": True, **settings})
    eng = Engine(s, load_ruleset([rules], s))
    pipe = Pipeline(eng, [EveWriter(str(eve))] if eve is not None else [])
    cap = s["app-layer.memcap"]
    alerts: dict[int, int] = {}
    ended = []
    for ts, lt, frame, wl in PcapFiles([pcap]):
        events = eng.process(ts, lt, frame, wl)
        assert eng.applayer.mem.memuse <= cap
        for e in events:
            if type(e) is Alert:
                alerts[e.rule.sid] = alerts.get(e.rule.sid, 0) + 1
            elif type(e) is FlowEnded:
                ended.append(e)
        pipe.dispatch(events)
    live = [f.app for f in eng.flows.flows.values() if f.app is not None]
    assert eng.applayer.mem.memuse == sum(app.mem for app in live), "every charged byte belongs to a live flow"
    pipe.finish()
    pipe.close()
    return eng, alerts, ended, pipe.stats.counters


def test_an_account_refuses_what_does_not_fit_and_counts_it_where_it_is_full():
    top = MemAccount(1000)
    http = MemAccount(600, top)
    dns = MemAccount(0, top)  # 0: only the global cap
    assert http.reserve(600) and top.memuse == 600
    assert not http.reserve(1) and http.memcap == 1 and top.memcap == 0
    assert dns.reserve(400) and not dns.reserve(1) and top.memcap == 1 and dns.memcap == 0
    http.add(-600)
    assert top.memuse == 400 and top.peak == 1000 and http.counters() == {"memuse": 0, "memuse_peak": 600,
                                                                          "memcap": 1}


def test_detection_keeps_one_copy_of_the_first_bytes_and_releases_it_when_decided():
    layer = AppLayer(Settings({}))
    app = AppFlow()
    layer.stream_data(app, 0, b"\x01\x02 not a protocol")  # undecided: kept for the parser to come
    assert app.probe.memuse == app.mem == layer.mem.memuse == 17
    layer.stream_data(app, 1, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert app.proto == "http" and app.probe is None
    assert layer.mem.memuse == app.mem == app.parser.memuse == layer.accounts["http"].memuse
    layer.flow_end(SimpleNamespace(app=app))
    assert layer.mem.memuse == 0 and layer.accounts["http"].memuse == 0


def test_the_cap_holds_under_a_one_sided_flood_and_flows_with_memory_keep_their_rules(tmp_path):
    """5 HTTP sessions, a one-sided flood the cap holds 20 sessions of, 5 more HTTP sessions:
    the first ones are detected and alert on http.uri; the flood and the later sessions are
    refused (counted, app_proto failed), transport rules still alert on all of them."""
    cap = 20 * ONESIDED + len(REQUEST) // 2  # no room left for a request once the flood is in
    eve = tmp_path / "eve.json"
    eng, alerts, _, counters = replay(tmp_path, [("http", 5), ("onesided", 60), ("http", 5)],
                                      {"app-layer.memcap": cap}, eve)
    app = counters["app_layer"]
    assert app["memcap"] == 40 + 5 and app["memuse_peak"] <= cap and app["memuse"] == 0
    assert app["by_proto"] == {"http": 5, "failed": 45}
    assert alerts == {HTTP_SID: 5, TCP_SID: 10}
    records = [json.loads(line) for line in eve.read_text().splitlines()]
    protos = [r.get("app_proto") for r in records if r["event_type"] == "flow"]
    assert protos.count("http") == 5 and protos.count("failed") == 45
    assert records[-1]["stats"]["app_layer"]["memcap"] == 45
    assert any(line.startswith("app-layer.memcap reached") for line in cap_lines(counters))
    assert "app-layer.memcap" in CapWatch().hit(counters)


def test_memory_comes_back_when_flows_are_evicted(tmp_path):
    """A flood three times larger than the table: evicted sessions give their bytes back,
    so the sessions after it are detected and alert (nothing refused)."""
    sessions = 30
    cap = (sessions + 2) * ONESIDED
    eng, alerts, ended, counters = replay(tmp_path, [("onesided", 3 * sessions), ("http", 5)],
                                          {"app-layer.memcap": cap, "flow.max-sessions": sessions})
    app = counters["app_layer"]
    assert len(ended) >= 2 * sessions and app["memcap"] == 0 and app["memuse"] == 0
    assert app["memuse_peak"] <= sessions * ONESIDED + len(REQUEST) + 4096
    assert app["by_proto"]["http"] == 5 and alerts == {HTTP_SID: 5, TCP_SID: 5}
