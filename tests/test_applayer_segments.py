"""Any segmentation of one HTTP conversation gives the same transactions and the same alerts, through
the whole engine (decode -> flows -> reassembly -> applayer -> detect), frames built with scapy.

The conversation is one kept-alive TCP session of six exchanges that exercise the parser's
states: a normalised URI and a cookie, a POST body, a chunked response whose marker straddles
chunks, a gzip-compressed body, a HEAD answered with a Content-Length and no body, a folded
header answered by a 304, and a last response delimited by the server closing.  Each direction's
bytes are cut at random points (a cut may fall anywhere: inside a request line, a chunk size, a
gzip stream, and, when the client pipelines, between messages), keeping the order TCP allows:
a response after its request, and a request after the previous response unless pipelined.  The
peer acknowledges after random segments; stream inspection runs in IDS (acknowledged chunks)
or inline mode.
What must not change: the EVE http records (in order) and the (sid, tx_id) of every alert.
"""

from __future__ import annotations

import gzip

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mirrorwatch.core.events import Alert, AppTx
from mirrorwatch.sinks.eve_app import tx_records
from tests.test_detect import Conv
from tests.test_detect_tx import replay

POST_BODY = b"user=admin&pass=MW-POST-MARK"
GZ_BODY = gzip.compress(b"compressed text with MW-GZIP-MARKER inside " * 4, mtime=0)
EXCHANGES = [
    ((b"GET /a/../index.html?q=%41b HTTP/1.1\r\nHost: WWW.Example.com\r\nUser-Agent: probe/1.0\r\n"
      b"Cookie: session=MW-COOKIE\r\n\r\n"),
     b"HTTP/1.1 200 OK\r\nServer: mwtest\r\nContent-Type: text/html\r\nContent-Length: 12\r\n\r\nhello world\n"),
    ((b"POST /upload HTTP/1.1\r\nHost: www.example.com\r\nContent-Type: application/x-www-form-urlencoded\r\n"
      b"Content-Length: %d\r\n\r\n%s" % (len(POST_BODY), POST_BODY)),
     (b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
      b"e\r\nfirst MW-CHUNK\r\n7;ext=1\r\n-MARKER\r\n0\r\nX-Trailer: yes\r\n\r\n")),
    (b"GET /gz HTTP/1.1\r\nHost: www.example.com\r\nAccept-Encoding: gzip\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(GZ_BODY) + GZ_BODY),
    (b"HEAD /head HTTP/1.1\r\nHost: www.example.com\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"),
    ((b"GET /folded HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: folded\r\n  continued-agent\r\n"
      b"If-None-Match: \"x\"\r\n\r\n"),
     b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"),
    (b"GET /last HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody until close, MW-CLOSE-MARKER\n"),
]

RULES = """\
alert http any any -> any any (msg:"uri"; http.uri; content:"/index.html?q=Ab"; bsize:16; sid:1;)
alert http any any -> any any (msg:"raw uri"; http.uri.raw; content:"%41b"; endswith; sid:2;)
alert http any any -> any any (msg:"cookie"; http.cookie; content:"session=MW-COOKIE"; sid:3;)
alert http any any -> any any (msg:"post"; http.method; content:"POST"; http.request_body; content:"POST-MARK"; sid:4;)
alert http any any -> any any (msg:"chunked"; flow:to_client; file.data; content:"MW-CHUNK-MARKER"; sid:5;)
alert http any any -> any any (msg:"gzip"; flow:to_client; file.data; content:"MW-GZIP-MARKER"; sid:6;)
alert http any any -> any any (msg:"folded"; http.user_agent; content:"folded  continued-agent"; bsize:23; sid:7;)
alert http any any -> any any (msg:"304"; flow:to_client; http.stat_msg; content:"Not Modified"; bsize:12; sid:8;)
alert http any any -> any any (msg:"close body"; flow:to_client; file.data; content:"MW-CLOSE-MARKER"; sid:9;)
alert http any any -> any any (msg:"host"; http.host; content:"www.example.com"; bsize:15; sid:10;)
alert http any any -> any any (msg:"server"; flow:to_client; http.server; content:"mwtest"; sid:11;)
alert http any any -> any any (msg:"head"; flow:to_client; http.content_len; content:"1234"; bsize:4; sid:12;)
alert http any any -> any any (msg:"never"; http.uri; content:"/gz"; http.method; content:"POST"; sid:13;)
"""
# (sid, tx_id) of every alert: once per transaction, the host rule on all six
EXPECTED_ALERTS = sorted([(1, 0), (2, 0), (3, 0), (4, 1), (5, 1), (6, 2), (7, 4), (8, 4), (9, 5), (11, 0), (12, 3)]
                         + [(10, tx) for tx in range(len(EXCHANGES))])
MAX_CUTS = 30  # cut points drawn per direction


def _message_ends(side: int) -> list[int]:
    return [sum(len(e[side]) for e in EXCHANGES[:i + 1]) for i in range(len(EXCHANGES))]


def _segments(side: int, cuts: list[int], pipelined: bool) -> list[tuple[int, int]]:
    """(start, end) of each segment of one direction's stream; one exchange at a time, no segment
    crosses a message boundary (no peer sends what it cannot have yet)."""
    ends = _message_ends(side)
    bounds = {c % ends[-1] for c in cuts} - {0} | {ends[-1]} | (set() if pipelined else set(ends))
    bounds = sorted(bounds)
    return list(zip([0] + bounds[:-1], bounds))


def _frames(cuts: tuple[list[int], list[int]], acks: list[bool], pipelined: bool) -> list:
    """The conversation's frames, causal as TCP is: a response's bytes go once its request is all
    sent, and (unless pipelined) a request once the previous response is; the server answers as
    soon as it can; the peer ACKs after a data segment where ``acks`` says so."""
    streams = [b"".join(e[side] for e in EXCHANGES) for side in (0, 1)]
    ends = [_message_ends(0), _message_ends(1)]
    todo = [_segments(side, cuts[side], pipelined) for side in (0, 1)]
    conv = Conv(dport=8080)
    send = (conv.client, conv.server)
    ack = (conv.ack_from_server, conv.ack_from_client)
    frames, sent = conv.handshake(), [0, 0]

    def message(side: int, offset: int) -> int:
        return next(i for i, end in enumerate(ends[side]) if offset < end)

    def allowed(side: int) -> bool:
        if not todo[side]:
            return False
        a, b = todo[side][0]
        if side == 1:  # every response the segment carries answers a request sent in full
            return sent[0] >= ends[0][message(1, b - 1)]
        k = message(0, a)
        return pipelined or k == 0 or sent[1] >= ends[1][k - 1]

    while todo[0] or todo[1]:
        side = 1 if allowed(1) else 0
        a, b = todo[side].pop(0)
        frames.append(send[side](streams[side][a:b]))
        sent[side] = b
        if acks[len(frames) % len(acks)]:
            frames.append(ack[side]())
    return frames + conv.close()


def _outcome(events: list) -> tuple[list, list]:
    records = [(e.tx.tx_id, tx_records(e.proto, e.tx)) for e in events if isinstance(e, AppTx)]
    alerts = sorted((e.rule.sid, e.tx.tx_id) for e in events if isinstance(e, Alert))
    return records, alerts


def _run(cuts, acks, pipelined: bool, inline: bool) -> tuple[list, list]:
    return _outcome(replay(RULES, _frames(cuts, acks, pipelined), **{"stream.inline": inline}))


@pytest.fixture(scope="module")
def whole() -> tuple[list, list]:
    """One segment per message, every segment acknowledged: the reference outcome."""
    cuts = tuple([sum(len(e[side]) for e in EXCHANGES[:i]) for i in range(1, len(EXCHANGES))] for side in (0, 1))
    return _run(cuts, [True], pipelined=False, inline=False)


def test_the_reference_conversation(whole):
    records, alerts = whole
    assert alerts == EXPECTED_ALERTS
    assert [tx_id for tx_id, _ in records] == list(range(len(EXCHANGES)))
    http = [recs[0] for _, recs in records]
    assert [(h["http_method"], h["url"], h.get("status")) for h in http] == [
        ("GET", "/a/../index.html?q=%41b", 200), ("POST", "/upload", 201), ("GET", "/gz", 200),
        ("HEAD", "/head", 200), ("GET", "/folded", 304), ("GET", "/last", 200)]
    assert [h["length"] for h in http][2:4] == [len(GZ_BODY), 0]


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.tuples(*[st.lists(st.integers(min_value=1, max_value=10_000), max_size=MAX_CUTS)] * 2),
       acks=st.lists(st.booleans(), min_size=1, max_size=16), pipelined=st.booleans(), inline=st.booleans())
def test_any_segmentation_gives_the_same_transactions_and_alerts(whole, cuts, acks, pipelined, inline):
    assert _run(cuts, acks, pipelined, inline) == whole
