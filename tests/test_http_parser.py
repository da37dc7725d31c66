"""The HTTP/1.x parser (mirrorwatch.core.applayer.http): libhtp's tolerance,
Suricata's buffers, and agreement with tshark on real captures."""

from __future__ import annotations

import collections
import gzip
import re
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mirrorwatch.core.applayer.common import (
    PROGRESS_BODY, PROGRESS_COMPLETE, PROGRESS_LINE, TO_CLIENT, TO_SERVER,
)
from mirrorwatch.core.applayer.http import HttpConfig, HttpState, eve_record
from mirrorwatch.core.applayer.http import headers as http_headers
from mirrorwatch.core.applayer.http import stream as http_stream
from mirrorwatch.core.applayer.http.uri import normalize_path, normalized_uri, split_uri

GET = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n"
OK_HELLO = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def run(*items: tuple[int, bytes], config: HttpConfig | None = None, close: bool = True) -> HttpState:
    state = HttpState(config) if config else HttpState()
    for direction, data in items:
        state.feed(direction, data)
    if close:
        state.close(TO_SERVER)
        state.close(TO_CLIENT)
    return state


def summary(state: HttpState) -> list[tuple]:
    return [(tx.method, tx.uri_raw, tx.status_code, tx.request_body, tx.response_body)
            for tx in state.txs]


# -- tolerance cases ----------------------------------------------------------

def test_unknown_and_lowercase_methods_start_requests():
    state = run((TO_SERVER, b"BITS_POST /upload HTTP/1.1\r\nContent-Length: 2\r\n\r\nab"
                            b"head /x HTTP/1.1\r\n\r\nGET /next HTTP/1.1\r\n\r\n"),
                (TO_CLIENT, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
                            b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n" + OK_HELLO))
    assert summary(state) == [
        (b"BITS_POST", b"/upload", 200, b"ab", b""),
        (b"head", b"/x", 200, b"", b""),         # HEAD framing: no body despite Content-Length
        (b"GET", b"/next", 200, b"", b"hello"),
    ]


def test_http09_request_has_no_response_headers():
    state = run((TO_SERVER, b"GET /x\r\n"), (TO_CLIENT, b"<html>raw body</html>"), close=False)
    tx, = state.txs
    assert tx.is_http09 and tx.protocol is None and tx.progress_ts == PROGRESS_COMPLETE
    assert tx.status_code is None and tx.response_headers == []
    assert tx.response_body == b"<html>raw body</html>" and tx.progress_tc == PROGRESS_BODY
    state.close(TO_CLIENT)
    assert tx.progress_tc == PROGRESS_COMPLETE


def test_missing_protocol_with_headers_is_not_http09():
    state = run((TO_SERVER, b"GET /x\r\nHost: a\r\n\r\n"), (TO_CLIENT, OK_HELLO))
    tx, = state.txs
    assert not tx.is_http09 and tx.request_header("host") == b"a" and tx.response_body == b"hello"


def test_bare_lf_line_ends():
    state = run((TO_SERVER, b"GET /a HTTP/1.1\nHost: h\nX-Y: z\n\nGET /b HTTP/1.1\n\n"),
                (TO_CLIENT, b"HTTP/1.1 200 OK\nContent-Length: 2\n\nokHTTP/1.1 404 NF\n\n"))
    assert [(tx.uri_raw, tx.status_code, tx.response_body) for tx in state.txs] == [
        (b"/a", 200, b"ok"), (b"/b", 404, b"")]
    assert state.txs[0].request_headers == [(b"Host", b"h"), (b"X-Y", b"z")]


def test_spaces_and_non_ascii_in_uri_keep_parsing():
    state = run((TO_SERVER, b"GET /a b/\xc3\xa9\xff HTTP/1.1\r\nHost: h\r\n\r\n" + GET),
                (TO_CLIENT, OK_HELLO + OK_HELLO))
    first, second = state.txs
    # libhtp ends the target at the first SP; the rest is the (invalid) protocol
    assert first.uri_raw == b"/a" and first.protocol == b"b/\xc3\xa9\xff HTTP/1.1"
    assert first.request_header("host") == b"h" and first.status_code == 200
    state = run((TO_SERVER, b"GET /caf\xc3\xa9/\xe9t\xe9 HTTP/1.1\r\n\r\n"))
    assert state.txs[0].uri_normalized == b"/caf\xe9/?t"    # UTF-8 folded, broken bytes '?'
    assert second.uri_raw == b"/index.html" and second.response_body == b"hello"


def test_header_folding():
    state = run((TO_SERVER, b"GET / HTTP/1.1\r\nX-Long: first\r\n  second\r\n\tthird\r\nHost: h\r\n\r\n"))
    assert state.txs[0].request_headers == [(b"X-Long", b"first  second\tthird"), (b"Host", b"h")]


def test_duplicate_headers_joined_like_libhtp():
    state = run((TO_SERVER, b"GET / HTTP/1.1\r\nAccept: a\r\nCookie: x=1\r\naccept: b\r\n"
                            b"Content-Length: 0\r\nContent-Length: 7\r\n\r\n"))
    tx, = state.txs
    assert tx.request_headers == [(b"Accept", b"a, b"), (b"Cookie", b"x=1"), (b"Content-Length", b"0")]
    assert tx.request_header("ACCEPT") == b"a, b" and tx.request_header(b"missing") is None


def test_malformed_header_lines_kept_as_nameless_fields():
    state = run((TO_SERVER, b"GET / HTTP/1.1\r\nthis line has no colon\r\nHost: h\r\n: empty\r\n\r\n"),
                (TO_CLIENT, OK_HELLO))
    tx, = state.txs
    assert tx.request_headers == [(b"", b"this line has no colon, empty"), (b"Host", b"h")]
    assert tx.host == b"h" and tx.response_body == b"hello" and state.stats.header_errors >= 2


@pytest.mark.parametrize("bad", [b"zz\r\nhello\r\n0\r\n\r\n", b"\r\n\r\nnot-a-size;\r\n"])
def test_bad_chunk_sizes_end_the_body_and_resync(bad):
    state = run((TO_SERVER, GET + GET),
                (TO_CLIENT, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + bad + OK_HELLO))
    assert [(tx.status_code, tx.response_body) for tx in state.txs] == [(200, b""), (200, b"hello")]
    assert state.stats.chunk_errors == 1 and not state.failed


def test_chunk_size_with_extension_and_blank_lines():
    body = b"\r\n4;ext=1\r\nWiki\r\n 5 \r\npedia\r\n0\r\nTrailer: t\r\n\r\n"
    state = run((TO_SERVER, GET),
                (TO_CLIENT, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body + OK_HELLO))
    first, extra = state.txs
    assert first.response_body == b"Wikipedia" and first.response_header("trailer") == b"t"
    assert first.response_body_len == len(b"\r\n4;ext=1\r\nWiki\r\n 5 \r\npedia\r\n0\r\n")
    assert extra.method is None and extra.response_body == b"hello"   # an unmatched response
    assert state.stats.unmatched_responses == 1


def test_data_after_connection_close_still_parsed():
    state = run((TO_SERVER, b"GET /1 HTTP/1.1\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"),
                (TO_CLIENT, b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nA"
                            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nB"))
    assert [(tx.uri_raw, tx.response_body) for tx in state.txs] == [(b"/1", b"A"), (b"/2", b"B")]


def test_head_response_has_no_body():
    state = run((TO_SERVER, b"HEAD / HTTP/1.1\r\n\r\n" + GET),
                (TO_CLIENT, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + OK_HELLO))
    assert [(tx.method, tx.response_body) for tx in state.txs] == [(b"HEAD", b""), (b"GET", b"hello")]


def test_connect_refused_goes_on_parsing():
    state = run((TO_SERVER, b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n" + GET),
                (TO_CLIENT, b"HTTP/1.1 407 Proxy Auth\r\nContent-Length: 3\r\n\r\nno!" + OK_HELLO))
    connect, get = state.txs
    assert (connect.host, connect.port, connect.uri_normalized) == (b"h", 443, b"")
    assert connect.response_body == b"no!" and get.response_body == b"hello"
    assert not state.tunnel


def test_connect_established_is_a_tunnel():
    state = run((TO_SERVER, b"CONNECT h:443 HTTP/1.1\r\n\r\n\x16\x03\x01 tls hello"),
                (TO_CLIENT, b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x03 tls"))
    state.feed(TO_SERVER, GET)
    assert state.tunnel and state.stats.tunnels == 1 and len(state.txs) == 1
    assert state.stats.tunnel_bytes == len(b"\x16\x03\x01 tls hello") + len(b"\x16\x03\x03 tls") + len(GET)
    assert state.txs[0].done


def test_upgrade_101_is_a_tunnel():
    state = run((TO_SERVER, b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
                (TO_CLIENT, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"))
    tx, = state.txs
    assert tx.status_code == 101 and tx.done and state.tunnel and state.stats.tunnels == 1


def test_100_continue_then_the_real_response_same_request():
    state = run((TO_SERVER, b"POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"),
                (TO_CLIENT, b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n"), close=False)
    tx, = state.txs
    assert tx.status_code == 100 and tx.progress_tc == PROGRESS_LINE
    state.feed(TO_SERVER, b"data" + GET)
    state.feed(TO_CLIENT, b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n")
    first, second = state.txs
    assert (first.status_code, first.request_body, first.response_body) == (201, b"data", b"ok")
    assert first.response_headers == [(b"Content-Length", b"2")] and second.status_code == 200
    assert state.stats.interim_responses == 1


def test_expect_continue_refused_means_no_request_body():
    state = run((TO_SERVER, b"POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"),
                (TO_CLIENT, b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n"), close=False)
    state.feed(TO_SERVER, GET)
    assert [tx.uri_raw for tx in state.txs] == [b"/up", b"/index.html"]
    assert state.txs[0].request_body == b""


@pytest.mark.parametrize("status", [b"204 No Content", b"304 Not Modified"])
def test_204_and_304_have_no_body(status):
    state = run((TO_SERVER, GET + GET), (TO_CLIENT, b"HTTP/1.1 " + status + b"\r\n\r\n" + OK_HELLO))
    assert [(tx.status_code, tx.response_body) for tx in state.txs] == [
        (int(status[:3]), b""), (200, b"hello")]


def test_pipelined_requests_pair_in_order():
    requests = b"".join(b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % i for i in range(4))
    responses = b"".join(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%d" % i for i in range(4))
    state = run((TO_SERVER, requests), (TO_CLIENT, responses))
    assert [(tx.tx_id, tx.uri_raw, tx.response_body) for tx in state.txs] == [
        (i, b"/%d" % i, b"%d" % i) for i in range(4)]


def test_leading_crlf_and_garbage_before_request_line():
    state = run((TO_SERVER, b"\r\n\r\n\x16\x03\x01\x00\xa5 binary junk\r\n" + GET),
                (TO_CLIENT, b"\r\n" + OK_HELLO))
    tx, = state.txs
    assert tx.uri_raw == b"/index.html" and tx.response_body == b"hello"
    assert state.stats.ignored_lines == 1


def test_method_only_request_line():
    state = run((TO_SERVER, b"OPTIONS\nHost: www.google.com\n\n"),
                (TO_CLIENT, b"HTTP/1.0 400 Bad Request\r\nContent-Length: 2\r\n\r\nno"))
    tx, = state.txs
    assert (tx.method, tx.uri_raw, tx.host, tx.status_code) == (b"OPTIONS", None, b"www.google.com", 400)


# -- bodies --------------------------------------------------------------------

def test_gzip_and_deflate_bodies_are_decoded():
    text = b"<html>" + b"compressible " * 200 + b"</html>"
    bodies = [(b"gzip", gzip.compress(text)), (b"deflate", zlib.compress(text)),
              (b"deflate", zlib.compress(text)[2:-4])]     # raw deflate, as some servers send
    responses = b"".join(b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n%s"
                         % (name, len(data), data) for name, data in bodies)
    config = HttpConfig(response_body_limit=0)
    state = run((TO_SERVER, GET * 3), (TO_CLIENT, responses), config=config)
    assert [tx.response_body for tx in state.txs] == [text] * 3
    assert [tx.response_body_len for tx in state.txs] == [len(data) for _, data in bodies]


def test_chunked_gzip_request_body():
    data = gzip.compress(b"secret=1")
    request = (b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"
               b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (5, data[:5], len(data) - 5, data[5:]))
    assert run((TO_SERVER, request)).txs[0].request_body == b"secret=1"


def test_decompression_bomb_is_capped_and_counted():
    bomb = gzip.compress(b"\0" * (20 * 1024 * 1024))
    config = HttpConfig(response_body_limit=0, compression_bomb_limit=64 * 1024)
    state = run((TO_SERVER, GET * 2),
                (TO_CLIENT, b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
                            % len(bomb) + bomb + OK_HELLO), config=config)
    bombed, after = state.txs
    assert len(bombed.response_body) == 64 * 1024 and bombed.response_body_len == len(bomb)
    assert state.stats.decompression_bombs == 1 and after.response_body == b"hello"


def test_undecodable_body_is_kept_raw():
    state = run((TO_SERVER, GET),
                (TO_CLIENT, b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\n"
                            b"not gzip!"))
    assert state.txs[0].response_body == b"not gzip!" and state.stats.decompress_errors == 1


def test_body_limit_truncates_kept_body_and_counts():
    config = HttpConfig(request_body_limit=10)
    state = run((TO_SERVER, b"POST / HTTP/1.1\r\nContent-Length: 30\r\n\r\n" + b"x" * 30 + GET),
                config=config)
    post, get = state.txs
    assert post.request_body == b"x" * 10 and post.request_body_len == 30 and post.request_body_truncated
    assert state.stats.body_truncated == 1 and get.uri_raw == b"/index.html"


def test_flow_memcap_bounds_kept_bytes():
    config = HttpConfig(response_body_limit=0, flow_memcap=1000)
    body = b"y" * 5000
    state = run((TO_SERVER, GET), (TO_CLIENT, b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + body),
                config=config)
    assert len(state.txs[0].response_body) < 1000 and state.stats.memcap_hits >= 1


# -- gaps ------------------------------------------------------------------------

def test_gap_in_body_resynchronises_on_next_request():
    state = HttpState()
    state.feed(TO_SERVER, b"POST /a HTTP/1.1\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    state.gap(TO_SERVER, 50)
    state.feed(TO_SERVER, b"y" * 40 + GET)
    post, get = state.txs
    assert post.request_body == b"x" * 10 and post.request_body_len == 100
    assert get.uri_raw == b"/index.html" and not state.failed


def test_gap_past_body_end_resynchronises():
    state = HttpState()
    state.feed(TO_SERVER, b"POST /a HTTP/1.1\r\nContent-Length: 20\r\n\r\n")
    state.gap(TO_SERVER, 20 + 17)           # the body and the start of an unseen request
    state.feed(TO_SERVER, b"ost: lost\r\n\r\n" + GET)
    assert [tx.uri_raw for tx in state.txs] == [b"/a", b"/index.html"]
    assert state.stats.gap_resyncs == 1 and not state.failed


def test_gap_in_headers_gives_up_that_direction_cleanly():
    state = HttpState()
    state.feed(TO_SERVER, b"GET /a HTTP/1.1\r\nHost: h\r\n")
    state.gap(TO_SERVER, 30)
    state.feed(TO_SERVER, GET)
    state.feed(TO_CLIENT, OK_HELLO)
    tx, = state.txs
    assert state.failed and state.stats.directions_failed == 1
    assert tx.progress_ts == PROGRESS_COMPLETE and tx.response_body == b"hello"


# -- URI, host, EVE ------------------------------------------------------------------

@pytest.mark.parametrize("raw, normalized", [
    (b"/a/./b/../c", b"/a/c"),
    (b"/%2e%2e/etc/passwd", b"/etc/passwd"),
    (b"/a%2fb\\c//d", b"/a/b/c/d"),
    (b"/%u0041%uff0f%U0042", b"/A/B"),
    (b"/MiXeD/Case", b"/MiXeD/Case"),
    (b"/bad%zz%4", b"/bad%zz%4"),
    (b"/x?q=%41+%2F&y=a/../b#fr%41g", b"/x?q=A+/&y=a/../b#frAg"),
])
def test_uri_normalisation(raw, normalized):
    assert normalized_uri(split_uri(raw)) == normalized


def test_dot_segment_edges_follow_libhtp():
    assert [normalize_path(p) for p in (b"/a/.", b"/a/..", b"../a", b"/a/b/../../../c")] == [
        b"/a", b"", b"a", b"/c"]


def test_host_from_absolute_uri_wins_over_host_header():
    state = run((TO_SERVER, b"GET http://User@WWW.Example.COM.:8080/p?q HTTP/1.1\r\nHost: other\r\n\r\n"))
    tx, = state.txs
    assert (tx.host, tx.port, tx.host_raw, tx.uri_normalized) == (
        b"www.example.com", 8080, b"WWW.Example.COM.", b"/p?q")


def test_host_header_port_stripped_and_lowercased():
    tx, = run((TO_SERVER, b"GET / HTTP/1.1\r\nHost: WWW.Example.com:81\r\n\r\n")).txs
    assert (tx.host, tx.port, tx.host_raw) == (b"www.example.com", 81, b"WWW.Example.com:81")


def test_eve_record_fields():
    state = run((TO_SERVER, b"GET /r?x=1 HTTP/1.1\r\nHost: h.example:8080\r\nUser-Agent: ua/1\r\n"
                            b"Referer: http://ref/\r\n\r\n"),
                (TO_CLIENT, b"HTTP/1.1 302 Found\r\nLocation: /new\r\nContent-Type: text/html; charset=x\r\n"
                            b"Content-Length: 3\r\n\r\n\xff\xfeZ"))
    tx, = state.txs
    assert eve_record(tx) == {"hostname": "h.example", "http_port": 8080, "url": "/r?x=1",
                              "http_user_agent": "ua/1", "http_content_type": "text/html"}
    record = eve_record(tx, extended=True, dump_headers="response")
    assert record["http_refer"] == "http://ref/" and record["http_method"] == "GET"
    assert record["protocol"] == "HTTP/1.1" and record["status"] == 302 and record["redirect"] == "/new"
    assert record["length"] == 3 and "request_headers" not in record
    assert record["response_headers"][0] == {"name": "Location", "value": "/new"}


def test_eve_record_escapes_non_utf8():
    tx, = run((TO_SERVER, b"GET /\xe9 HTTP/1.1\r\n\r\n")).txs
    assert eve_record(tx)["url"] == "/\\xe9"


# -- the parser interface --------------------------------------------------------------

def test_progress_updated_and_pop_done():
    state = HttpState()
    state.feed(TO_SERVER, b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nab")
    tx, = state.updated()
    assert tx.progress_ts == PROGRESS_BODY and state.updated() == [] and state.pop_done() == []
    state.feed(TO_SERVER, b"cd")
    state.feed(TO_CLIENT, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert tx.done and state.pop_done() == []          # not yet handed out since it changed
    assert state.updated() == [tx] and state.pop_done() == [tx] and state.txs == []


def test_progress_moves_line_body_complete():
    state = HttpState()
    state.feed(TO_SERVER, b"GET / HTTP/1.1\r\nHost: h\r\n")
    assert state.txs[0].progress_ts == PROGRESS_LINE
    state.feed(TO_SERVER, b"\r\n")
    assert state.txs[0].progress_ts == PROGRESS_COMPLETE
    state.feed(TO_CLIENT, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n")
    assert state.txs[0].progress_tc == PROGRESS_LINE
    state.feed(TO_CLIENT, b"\r\n")
    assert state.txs[0].progress_tc == PROGRESS_BODY
    state.feed(TO_CLIENT, b"abc")
    assert state.txs[0].progress_tc == PROGRESS_COMPLETE


def test_max_tx_gives_up_requests():
    state = run((TO_SERVER, GET * 5), config=HttpConfig(max_tx=3), close=False)
    assert len(state.txs) == 3 and state.stats.max_tx_hits == 1 and state.failed


def test_overlong_line_is_cut_and_parsing_goes_on():
    state = run((TO_SERVER, b"GET / HTTP/1.1\r\nX-Big: " + b"A" * 500 + b"\r\nHost: h\r\n\r\n"),
                config=HttpConfig(field_limit=100))
    tx, = state.txs
    assert len(tx.request_header("x-big")) < 100 and tx.request_header("host") == b"h"
    assert state.stats.truncated_lines == 1


# -- properties --------------------------------------------------------------------------

CONVERSATION = [
    (TO_SERVER, b"\r\nGET /a%20b/../c?d=1 HTTP/1.1\r\nHost: Ex.com\r\nX: 1\r\n  2\r\nX: 3\r\n\r\n"
                b"POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                b"GET /09\r\n\r\nBITS_POST /b HTTP/1.1\nContent-Length: 3\n\nxyz"),
    (TO_CLIENT, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(gzip.compress(b"zipped")), gzip.compress(b"zipped"))
                + b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
                + b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n\r\nuntil close"),
]


def snapshot(state: HttpState) -> list[tuple]:
    fields = ("method", "uri_raw", "protocol", "request_line", "request_headers", "request_headers_raw",
              "request_body", "uri_normalized", "host", "port", "status", "response_headers",
              "response_headers_raw", "response_body", "response_body_len", "progress_ts", "progress_tc")
    return [tuple(getattr(tx, name) for name in fields) for tx in state.txs]


def feed_split(cuts: list[list[int]]) -> HttpState:
    state = HttpState()
    for (direction, data), points in zip(CONVERSATION, cuts):
        bounds = [0, *sorted({p % (len(data) + 1) for p in points}), len(data)]
        for start, end in zip(bounds, bounds[1:]):
            state.feed(direction, data[start:end])
    state.close(TO_SERVER)
    state.close(TO_CLIENT)
    return state


WHOLE = snapshot(feed_split([[], []]))


def test_whole_conversation_reference():
    assert [row[0] for row in WHOLE] == [b"GET", b"POST", b"GET", b"BITS_POST"]
    assert [row[13] for row in WHOLE] == [b"zipped", b"ok", b"", b"until close"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.integers(min_value=0, max_value=10_000), max_size=40), min_size=2, max_size=2))
def test_any_segmentation_gives_the_same_transactions(cuts):
    assert snapshot(feed_split(cuts)) == WHOLE


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([TO_SERVER, TO_CLIENT, 7]),
                          st.one_of(st.binary(max_size=200),
                                    st.sampled_from([GET, OK_HELLO, b"\r\n", b"0\r\n",
                                                     b"HTTP/1.1 100 x\r\n\r\n",
                                                     b"CONNECT a:1 HTTP/1.1\r\n\r\n",
                                                     b"Transfer-Encoding: chunked\r\n"])),
                          st.integers(min_value=-5, max_value=300), st.booleans()),
                max_size=25))
def test_random_bytes_never_raise(steps):
    state = HttpState(HttpConfig(max_tx=8, field_limit=64, flow_memcap=512, compression_bomb_limit=256))
    for direction, data, gap, closing in steps:
        state.feed(direction, data)
        if gap % 7 == 0:
            state.gap(direction, gap)
        if closing and gap % 5 == 0:
            state.close(direction)
        state.updated()
        state.pop_done()
        for tx in state.txs:
            eve_record(tx, extended=True, dump_headers="both")
    assert len(state.txs) <= 8


# -- real traffic, tshark as the oracle -----------------------------------------------------

PCAP = Path("/work/shared/corpus/bench/http-tests-merged.pcap")
MISSING = re.compile(rb"^\[(\d+) bytes missing in capture file\]\x00$")
AGGREGATOR = "\x1f"


def tshark_fields(display_filter: str, *fields: str) -> dict[int, list[tuple[str, ...]]]:
    args = ["tshark", "-r", str(PCAP), "-Y", display_filter, "-T", "fields", "-E", "occurrence=a",
            "-E", f"aggregator={AGGREGATOR}", "-e", "tcp.stream"]
    for field in fields:
        args += ["-e", field]
    rows: dict[int, list[tuple[str, ...]]] = collections.defaultdict(list)
    for line in subprocess.run(args, capture_output=True, text=True, check=True).stdout.splitlines():
        stream, *columns = line.split("\t")
        if not stream:
            continue
        split = [column.split(AGGREGATOR) if column else [] for column in columns]
        for i in range(max(map(len, split), default=0)):
            rows[int(stream)].append(tuple(c[i] if i < len(c) else "" for c in split))
    return rows


def tshark_streams(streams: list[int]) -> dict[int, list[tuple[int, bytes]]]:
    """Each stream's payloads in capture order as (node, bytes), via follow,tcp,raw."""
    args = ["tshark", "-r", str(PCAP), "-q"]
    for stream in streams:
        args += ["-z", f"follow,tcp,raw,{stream}"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    conversations: dict[int, list[tuple[int, bytes]]] = {}
    current = None
    for line in out.splitlines():
        if line.startswith("Filter: tcp.stream eq "):
            current = int(line.rsplit(" ", 1)[1])
            conversations[current] = []
        elif current is not None and line.strip() and not line.startswith(("=", "Follow", "Node")):
            conversations[current].append((int(line.startswith("\t")), bytes.fromhex(line.strip())))
    return conversations


def replay(segments: list[tuple[int, bytes]]) -> HttpState:
    first_node, first = segments[0]
    client = 1 - first_node if first.startswith(b"HTTP/") else first_node
    state = HttpState()
    for node, data in segments:
        direction = TO_SERVER if node == client else TO_CLIENT
        missing = MISSING.match(data)
        if missing:
            state.gap(direction, int(missing.group(1)))
        else:
            state.feed(direction, data)
    state.close(TO_SERVER)
    state.close(TO_CLIENT)
    return state


def is_subsequence(part: list, whole: list) -> bool:
    remaining = iter(whole)
    return all(item in remaining for item in part)


@pytest.mark.skipif(shutil.which("tshark") is None or not PCAP.exists(), reason="needs tshark and the corpus")
def test_corpus_requests_hosts_and_statuses_match_tshark():
    requests = tshark_fields("http.request", "http.request.method", "http.request.uri", "http.host")
    responses = tshark_fields("http.response", "http.response.code")
    conversations = tshark_streams(sorted(requests))
    exact = 0
    for stream, expected in requests.items():
        state = replay(conversations[stream])
        seen = [tx for tx in state.txs if tx.method is not None]
        ours = [(tx.method.decode("latin-1"), (tx.uri_raw or b"").decode("latin-1")) for tx in seen]
        hosts = [(tx.request_header("host") or b"").decode("latin-1") for tx in seen]
        codes = [str(tx.status_code) for tx in state.txs if tx.status_code is not None]
        theirs = [(method, uri) for method, uri, _host in expected]
        their_codes = [code for (code,) in responses.get(stream, []) if not code.startswith("1")]
        # tshark misses what it cannot reassemble and requests with odd methods; never the reverse
        assert is_subsequence(theirs, ours), stream
        assert is_subsequence([host for _m, _u, host in expected], hosts), stream
        assert is_subsequence(their_codes, codes), stream
        exact += theirs == ours and their_codes == codes
    assert len(requests) >= 170 and exact >= 0.9 * len(requests)


# -- the header-block scans (compiled: C loops over the bytes; interpreted: bytes methods) -------------

HEADER_BYTES = st.binary(max_size=120).map(lambda b: bytes(b"\r\n: \t\x00aB"[c % 8] for c in b))


def reference_block_end(buf: bytearray, start: int, stop: int) -> int:
    """_block_end as bytearray.find says it: LF LF or LF CR LF, whichever ends first."""
    if buf.startswith((b"\n", b"\r\n"), start):
        return -1
    ends = [at + len(sep) for sep in (b"\n\r\n", b"\n\n") if (at := buf.find(sep, start, stop)) >= 0]
    return min(ends, default=-1)


@settings(max_examples=400, deadline=None)
@given(HEADER_BYTES, st.integers(min_value=0, max_value=130), st.integers(min_value=0, max_value=140))
def test_block_scans_agree_with_bytes_methods(data, start, stop):
    buf = bytearray(data)
    assert http_stream._block_end(buf, start, stop) == reference_block_end(buf, start, stop)
    assert http_stream._find_lf(buf, start, stop) == buf.find(b"\n", start, stop)
    end = reference_block_end(buf, 0, len(buf))
    if end > 0:
        lines = [line.rstrip(b"\r\n") for line in bytes(buf[:end]).split(b"\n")][:-2]
        expected = lines if all(lines) else None
        assert http_stream._block_lines(bytes(buf[:end])) == expected


@settings(max_examples=400, deadline=None)
@given(HEADER_BYTES)
def test_field_pair_is_split_field(field):
    fast, general = http_headers.HeaderResult(), http_headers.HeaderResult()
    assert http_headers.field_pair(field, fast) == http_headers.split_field(field, general)
    assert (fast.invalid, fast.dropped) == (general.invalid, general.dropped)


@settings(max_examples=300, deadline=None)
@given(st.lists(HEADER_BYTES.map(lambda b: b.replace(b"\n", b"")), max_size=8))
def test_whole_header_block_parses_as_its_lines_one_by_one(lines):
    """A block buffered whole (the one-pass scans) gives what the line loop gives it byte by byte."""
    request = b"GET / HTTP/1.1\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"
    whole = run((TO_SERVER, request))
    parts = run(*[(TO_SERVER, request[i:i + 1]) for i in range(len(request))])
    assert snapshot(whole) == snapshot(parts)
    assert whole.stats.header_errors == parts.stats.header_errors


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=6), st.binary(max_size=3)), max_size=6), st.binary(max_size=6))
def test_header_value_folds_ascii_case_as_bytes_lower(headers, name):
    """The byte-by-byte name comparison matches what lowercasing both names gives (only A-Z
    fold: '@' is not '`', '[' is not '{'), first match first."""
    key = name.lower()
    expected = next((v for n, v in headers if n.lower() == key), None)
    assert http_headers.header_value(headers, name) == expected
    assert http_headers.header_value([(b"X-A@[", b"1")], b"x-a`{") is None
    assert http_headers.header_value([(b"User-AGENT", b"2")], b"user-agent") == b"2"
