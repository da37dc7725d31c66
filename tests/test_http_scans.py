"""The HTTP parser's byte scans (compiled: C loops and memchr over the bytes, no per-line objects)
against the bytes-method code they stand for: request and status lines, header blocks read
straight from their bytes, names compared without lowercased copies."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from mirrorwatch.core.applayer.common import TO_SERVER
from mirrorwatch.core.applayer.http import HttpConfig, HttpState
from mirrorwatch.core.applayer.http import framing as http_framing
from mirrorwatch.core.applayer.http import headers as http_headers
from mirrorwatch.core.applayer.http import request as http_request
from mirrorwatch.core.applayer.http import response as http_response
from mirrorwatch.core.applayer.http import stream as http_stream
from mirrorwatch.core.applayer.http import uri as http_uri

SPACE = b" \t\r\n\x0b\x0c"
LINE_BYTES = st.binary(max_size=60).map(lambda b: bytes(b" \t\x0bGgEeT/HTPhtp1.:,x-\x00\xe9"[c % 23] for c in b))
FIELD_LINES = st.lists(st.binary(max_size=30).map(lambda b: bytes(b" \t\x00:aAbB-\r"[c % 10] for c in b)),
                       max_size=40)


def reference_looks_like_request_line(line: bytes) -> bool:
    data = line.strip(SPACE)
    end = next((i for i, c in enumerate(data) if c in SPACE), len(data))
    method = data[:end]
    if not method or any(c not in http_request.TOKEN_BYTES for c in method):
        return False
    if method.upper() in http_request.KNOWN_METHODS:
        return True
    target = data[end:].lstrip(SPACE)
    if not target:
        return False
    last = data[max((i for i, c in enumerate(data) if c in SPACE), default=-1) + 1:]
    return target[:1] == b"/" or last[:5].upper() == b"HTTP/"


def reference_split_request_line(line: bytes) -> tuple:
    data = line.lstrip(SPACE)
    end = next((i for i, c in enumerate(data) if c in SPACE), len(data))
    method, rest = data[:end], data[end:].lstrip(SPACE)
    if not rest:
        return method, None, None
    uri_end = rest.find(b" ")
    if uri_end < 0:
        uri_end = next((i for i, c in enumerate(rest) if c in SPACE), len(rest))
    return method, rest[:uri_end], rest[uri_end:].strip(SPACE) or None


@settings(max_examples=500, deadline=None)
@given(LINE_BYTES)
def test_request_line_scans_agree_with_bytes_methods(line):
    assert http_request.looks_like_request_line(line) == reference_looks_like_request_line(line)
    assert tuple(http_request.parse_request_line(line)) == reference_split_request_line(line)


@settings(max_examples=500, deadline=None)
@given(LINE_BYTES)
def test_status_line_split_is_bytes_split(line):
    fields = line.strip(SPACE).split(None, 2)
    assert tuple(http_response.parse_status_line(line)) == tuple(fields + [None] * (3 - len(fields)))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=12).map(lambda b: bytes(b"aAzZ-@[`{\xc1\xe1"[c % 11] for c in b)),
       st.binary(max_size=12).map(lambda b: bytes(b"aAzZ-@[`{\xc1\xe1"[c % 11] for c in b)))
def test_same_name_is_ascii_case_insensitive_equality(a, b):
    assert http_headers.same_name(a, b) == (a.lower() == b.lower())


@settings(max_examples=300, deadline=None)
@given(FIELD_LINES, st.integers(min_value=0, max_value=6), st.integers(min_value=0, max_value=4))
def test_block_read_whole_is_its_fields_one_by_one(lines, max_headers, max_repetitions):
    """add_block over a block's bytes gives what add_fields gives for its (unfolded) lines."""
    lines = [line.rstrip(b"\r") for line in lines if line.rstrip(b"\r") and line[0] not in b" \t\x00"]
    block = b"".join(line + b"\r\n" for line in lines) + b"\r\n"
    assert http_stream._block_lines(block) == lines  # a whole block, no line of it folded
    whole, one_by_one = [], []
    whole_result, lines_result = http_headers.HeaderResult(), http_headers.HeaderResult()
    http_headers.add_block(whole, block, max_headers, max_repetitions, whole_result)
    http_headers.add_fields(one_by_one, lines, max_headers, max_repetitions, lines_result)
    assert whole == one_by_one
    assert (whole_result.invalid, whole_result.dropped) == (lines_result.invalid, lines_result.dropped)


def test_many_distinct_names_are_indexed_and_still_merge():
    """Past the scan limit the names are looked up in an index: repeats still merge, any case."""
    names = [b"X-%d" % i for i in range(3 * http_headers.SCAN_LIMIT)]
    request = (b"GET / HTTP/1.1\r\n" + b"".join(name + b": a\r\n" for name in names)
               + b"".join(name.lower() + b": b\r\n" for name in names) + b"\r\n")
    state = HttpState(HttpConfig(max_headers=0, header_repetitions=len(names)))
    state.feed(TO_SERVER, request)
    tx, = state.txs
    assert tx.request_headers == [(name, b"a, b") for name in names]
    assert state.stats.header_errors == 0


NUMBER_BYTES = st.binary(max_size=24).map(lambda b: bytes(b" \t0123456789x-+_\xb2"[c % 17] for c in b))


@settings(max_examples=500, deadline=None)
@given(NUMBER_BYTES)
def test_number_scans_agree_with_int(text):
    digits = re.search(rb"[0-9]+", text)
    length = int(digits.group()) if digits else None
    assert http_framing.parse_content_length(text) == (length if length is None or length < 1 << 63 else None)
    blank_trimmed = text.strip(b" \t")
    code = int(blank_trimmed) if blank_trimmed.isdigit() else None
    assert http_framing.parse_decimal(text, 100, 999) == (code if code is not None and 100 <= code <= 999 else None)
    assert http_framing.parse_decimal(text, 1, 65535) == (code if code is not None and 0 < code <= 65535 else None)
    assert http_framing.parse_content_length(b"x%d" % ((1 << 63) - 1)) == (1 << 63) - 1
    assert http_framing.parse_content_length(b"%d" % (1 << 63)) is None


@settings(max_examples=300, deadline=None)
@given(LINE_BYTES)
def test_status_line_test_is_libhtp_s(line):
    assert http_response.looks_like_status_line(line) == (line.lstrip(SPACE + b"\x00")[:4].upper() == b"HTTP")


URI_BYTES = st.binary(max_size=40).map(lambda b: bytes(b"/?#:@[]%2e.\\ab"[c % 14] for c in b))


def reference_find_any(data: bytes, stops: bytes, start: int) -> int:
    found = [at for stop in stops if (at := data.find(bytes((stop,)), start)) >= 0]
    return min(found, default=len(data))


@settings(max_examples=500, deadline=None)
@given(URI_BYTES)
def test_uri_split_scans_agree_with_bytes_find(raw):
    """The split's C scans give bytes.find's answers: path, query and fragment as before."""
    data = raw.rstrip(b" ")
    parts = http_uri.split_uri(raw)
    if data and data[0] != 0x2F and b":" not in data:  # origin-less, scheme-less: path to ? or #
        end = reference_find_any(data, b"?#", 0)
        assert parts.path == data[:end]
        if end < len(data) and data[end] == 0x3F:
            qend = reference_find_any(data, b"#", end + 1)
            assert parts.query == data[end + 1:qend]
    assert http_uri.request_uri_normalized(raw) == http_uri.normalized_uri(parts)
    path = parts.path or b""
    plain = b"%" not in path and b"\\" not in path and b"//" not in path
    assert (http_uri.decode_path(path) == path) or not plain
    dotted = b"/." in path or path.startswith(b".")
    assert (http_uri.remove_dot_segments(path) == path) or dotted
