"""The transaction prefilter scans a buffer once while its bytes stay the same (``detect.tx``):
a transaction inspected again at a later progress step gets the literals of its unchanged
buffers from the earlier scan, a changed buffer is scanned again, and alerts are those of
scanning every buffer at every step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mirrorwatch.core.detect import tx as tx_room
from mirrorwatch.core.events import Alert
from mirrorwatch.core.settings import Settings
from tests.test_detect import Conv, engine
from tests.test_detect import run as run_frames

HEAD = b"POST /upload HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.0\r\n"
RULES = """
alert http any any -> any any (msg:"method"; flow:to_server; http.method; content:"POST"; http.request_body; content:"tail"; sid:1;)
alert http any any -> any any (msg:"agent"; flow:to_server; http.user_agent; content:"curl/"; sid:2;)
alert http any any -> any any (msg:"late header"; flow:to_server; http.header; content:"X-Late|3a| yes"; sid:3;)
"""


def request_in_steps(conv: Conv, head: bytes, body_parts: list) -> list:
    """The request's head, then each body part, each acknowledged (parsed) and followed by a
    client packet (the pending transaction is inspected on the next to-server packet)."""
    frames = conv.handshake() + [conv.client(head), conv.ack_from_server(), conv.client(b"", flags="A")]
    for part in body_parts:
        frames += [conv.client(part), conv.ack_from_server(), conv.client(b"", flags="A")]
    return frames + [conv.server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), conv.ack_from_client()] + conv.close()


def run(frames, rules: str = RULES, **settings) -> tuple[list, int]:
    eng = engine(rules, **settings)
    events = []
    for i, f in enumerate(frames):
        events.extend(eng.process(1000.0 + i * 0.01, 1, bytes(f)))
    events.extend(eng.finish())
    return sorted(e.rule.sid for e in events if isinstance(e, Alert)), eng.detector.c["tx_scans"]


def test_an_unchanged_buffer_is_not_scanned_again_at_a_later_step(monkeypatch):
    frames = request_in_steps(Conv(), HEAD + b"Content-Length: 8\r\n\r\n", [b"head", b"tail"])
    alerts, scans = run(frames)
    monkeypatch.setattr(tx_room, "SCAN_MEMO_BYTES", 0)  # every buffer scanned at every step
    alerts_every, scans_every = run(frames)
    assert alerts == alerts_every == [1, 2]
    # the method, user agent and header buffers: each scanned once, at the headers step
    assert scans == 3 < scans_every


def test_a_buffer_that_changed_is_scanned_again():
    """Trailers after a chunked body join the request's headers (as libhtp's): the http.header
    buffer scanned at the headers step has new bytes at the last step, and its rule fires."""
    head = HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
    frames = request_in_steps(Conv(), head, [b"4\r\ntail\r\n", b"0\r\nX-Late: yes\r\n\r\n"])
    alerts, _ = run(frames)
    assert alerts == [1, 2, 3]


def test_a_request_with_the_buffers_of_an_earlier_one_is_not_scanned_again():
    """Scan results are kept by the buffers' bytes across transactions: a second session sending
    the same request head wakes the same rules without a scan (detect.tx-scan-cache-bytes)."""
    head = HEAD + b"Content-Length: 4\r\n\r\n"
    frames = request_in_steps(Conv(), head, [b"tail"]) + request_in_steps(Conv(sport=40001), head, [b"tail"])
    alerts, scans = run(frames)
    alerts_every, scans_every = run(frames, **{"detect.tx-scan-cache-bytes": 0})
    assert alerts == alerts_every == [1, 1, 2, 2]
    assert scans == 3 and scans_every > 6  # the method, user agent and header buffers, once


def test_a_buffer_shorter_than_every_literal_is_not_scanned():
    rules = 'alert http any any -> any any (flow:to_server; http.method; content:"DELETE"; sid:7;)\n'
    head = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
    alerts, scans = run(request_in_steps(Conv(), head, []), rules)
    assert alerts == [] and scans == 0
    alerts, scans = run(request_in_steps(Conv(), head.replace(b"GET", b"DELETE", 1), []), rules)
    assert alerts == [7] and scans == 1



def test_bytes_too_long_to_remember_are_scanned_each_time_and_never_kept(monkeypatch):
    """A buffer longer than ``SCAN_MEMO_BYTES`` is neither looked up nor remembered: the same
    request body in two sessions is scanned twice, and the memo holds no bytes that long."""
    monkeypatch.setattr(tx_room, "SCAN_MEMO_BYTES", 8)
    rules = 'alert http any any -> any any (flow:to_server; http.request_body; content:"tail"; sid:9;)\n'
    head = b"POST /upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: 12\r\n\r\n"
    frames = request_in_steps(Conv(), head, [b"longer tail!"])
    frames += request_in_steps(Conv(sport=40001), head, [b"longer tail!"])
    eng = engine(rules)
    alerts = [e.rule.sid for e in run_frames(eng, frames)]
    assert alerts == [9, 9] and eng.detector.c["tx_scans"] == 2
    assert [s.memo_max for s in eng.detector.tx_pref[("http", 0)]] == [8]
    assert not eng.detector.tx_pref[("http", 0)][0].known


def test_a_rule_names_its_buffer_as_the_prefilter_does():
    """The prefilter and a candidate's verification name a buffer by the same slot (so the rule
    reads the bytes the prefilter got on this packet); another buffer has another slot."""
    rules = ('alert http any any -> any any (flow:to_server; http.header; content:"curl/"; sid:4;)\n'
             'alert http any any -> any any (flow:to_server; http.user_agent; content:"curl/"; sid:5;)\n')
    eng = engine(rules)
    alerts = [e.rule.sid for e in run_frames(eng, request_in_steps(Conv(), HEAD + b"\r\n", []))]
    assert sorted(alerts) == [4, 5]
    slots = {s.group.name: s.slot for s in eng.detector.tx_pref[("http", 0)]}
    rule_slots = {g.name: g.slot for cr in eng.detector.crules if cr is not None for g in cr.tx.groups[0]}
    assert rule_slots == slots and len(set(slots.values())) == 2

def test_a_joined_buffer_is_remembered_by_its_parts_and_made_for_its_rule():
    """http.start and http.message are looked up by their parts (start line, header block as
    sent, body): the second session's are known without a scan or being joined, and a
    candidate's verification makes the buffer the prefilter did not."""
    rules = ('alert http any any -> any any (flow:to_server; http.start; content:"curl/8.0"; sid:21;)\n'
             'alert http any any -> any any (flow:to_server; content:"Length|3a| 4|0d 0a 0d 0a|tail"; '
             'http.method; content:"POST"; sid:22;)\n')
    head = HEAD + b"Content-Length: 4\r\n\r\n"
    frames = request_in_steps(Conv(), head, [b"tail"]) + request_in_steps(Conv(sport=40001), head, [b"tail"])
    eng = engine(rules)
    assert sorted(e.rule.sid for e in run_frames(eng, frames)) == [21, 21, 22, 22]
    scanners = {s.group.name: s for s in eng.detector.tx_pref[("http", 0)]}
    assert sorted(scanners) == ["http.message", "http.start"] and all(s.by_parts for s in scanners.values())
    line, block = head.split(b"\r\n", 1)
    assert list(scanners["http.start"].known) == [(line, block)]
    assert list(scanners["http.message"].known) == [(line, block, b"tail")]
    assert eng.detector.c["tx_scans"] == 2  # each once, in the first session


@pytest.mark.slow
def test_et_open_alerts_are_those_of_scanning_every_step(corpus, tmp_path, monkeypatch):
    """ET Open over the corpus's real captures: the EVE alerts, as sets, are the same with and
    without the scan memo."""
    from mirrorwatch.cli.pipeline import Pipeline, load_ruleset, replay
    from mirrorwatch.core.engine import Engine
    from mirrorwatch.sinks.eve import EveWriter

    settings = Settings({"detect.sgh-mpm-caching-path": str(tmp_path / "cache")})
    rules = load_ruleset([corpus / "rules" / "et-open"], settings)

    def alerts(pcap: Path, name: str) -> set:
        eng = Engine(settings, rules)
        out = tmp_path / name
        pipe = Pipeline(eng, [EveWriter(str(out), types=("alert",))], ruleset=rules, settings=settings)
        replay(pipe, [pcap])
        pipe.finish()
        pipe.close()
        lines = out.read_text().splitlines()
        assert len(set(lines)) == len(lines)  # no duplicates hidden by the set
        return {json.dumps(json.loads(line), sort_keys=True) for line in lines}

    for pcap in (corpus / "bench" / "ndpi-mixed-ethernet.pcap", corpus / "bench" / "http-tests-merged.pcap"):
        memo = alerts(pcap, f"{pcap.stem}-memo.json")
        with monkeypatch.context() as m:
            m.setattr(tx_room, "SCAN_MEMO_BYTES", 0)
            every = alerts(pcap, f"{pcap.stem}-every.json")
        assert memo == every and memo, pcap.name
