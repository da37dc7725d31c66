"""Status lines and what the response headers (and the request) decide."""

from __future__ import annotations

from typing import NamedTuple

from mirrorwatch.core.applayer.http.framing import (
    CONTENT_LENGTH, TRANSFER_ENCODING, Framing, body_framing, parse_content_length, parse_decimal,
)
from mirrorwatch.core.applayer.http.request import (
    CONNECT, HEAD, first_space, is_method, is_space, skip_space, trim_space,
)
from mirrorwatch.core.applayer.http.headers import same_name
from mirrorwatch.core.applayer.http.transaction import HttpTx

_HTTP = b"HTTP"
_NUL = 0x00
# libhtp HTP_VALID_STATUS_MIN / MAX
STATUS_MIN = 100
STATUS_MAX = 999
SWITCHING_PROTOCOLS = 101
NO_CONTENT = 204
NOT_MODIFIED = 304
INFORMATIONAL = range(100, 200)
SUCCESS = range(200, 300)
CLIENT_ERROR = range(400, 500)
# the ranges' bounds (compiled: C constants, so a status is placed by C comparisons)
_INFORMATIONAL_LOW, _INFORMATIONAL_HIGH = INFORMATIONAL.start, INFORMATIONAL.stop
_SUCCESS_LOW, _SUCCESS_HIGH = SUCCESS.start, SUCCESS.stop


class StatusLine(NamedTuple):
    protocol: bytes | None
    status: bytes | None
    message: bytes | None


def looks_like_status_line(line: bytes) -> bool:
    """libhtp's test (inverse of htp_treat_response_line_as_body): "HTTP" after
    any white space or NUL bytes, in any case."""
    p = line  # compiled: the bytes read in C
    start = 0
    while start < len(line) and (p[start] == _NUL or is_space(p[start])):
        start += 1
    return same_name(line[start:start + len(_HTTP)], _HTTP)


def parse_status_line(line: bytes) -> StatusLine:
    """Protocol, status and reason phrase of a chomped status line."""
    return StatusLine(*_split_status_line(line))


def _split_status_line(line: bytes) -> tuple:
    """``parse_status_line``'s fields as a plain tuple: the line without its white space around
    it, split at white space into at most three fields (``bytes.split(None, 2)``), None for each
    one missing."""
    start = skip_space(line, 0)
    stop = trim_space(line, start)
    if start == stop:
        return None, None, None
    end = min(first_space(line, start), stop)
    second = skip_space(line, end)
    if second >= stop:
        return line[start:end], None, None
    second_end = min(first_space(line, second), stop)
    third = skip_space(line, second_end)
    return line[start:end], line[second:second_end], line[third:stop] if third < stop else None


def apply_status_line(tx: HttpTx, line: bytes) -> None:
    """Fill the response-line fields of ``tx`` (replacing an interim response's)."""
    protocol, status, message = _split_status_line(line)
    tx.response_line = line
    tx.response_protocol = protocol
    tx.status = status
    tx.status_msg = message
    tx.status_code = parse_decimal(status, STATUS_MIN, STATUS_MAX)


def response_framing(tx: HttpTx) -> tuple[Framing, int, bool]:
    """(framing, content length, malformed) of the response body, as libhtp's
    RES_BODY_DETERMINE decides it."""
    code = tx.status_code or 0
    te = tx.response_header(TRANSFER_ENCODING)
    cl = tx.response_header(CONTENT_LENGTH)
    informational = _INFORMATIONAL_LOW <= code < _INFORMATIONAL_HIGH
    if is_method(tx, CONNECT) and _SUCCESS_LOW <= code < _SUCCESS_HIGH:
        return Framing.TUNNEL, 0, False
    if code == SWITCHING_PROTOCOLS and te is None and cl is None:
        return Framing.TUNNEL, 0, False
    if informational and code != SWITCHING_PROTOCOLS and te is None:
        length = parse_content_length(cl) if cl is not None else None
        if not length:
            return Framing.INTERIM, 0, False
    if is_method(tx, HEAD):
        return Framing.NONE, 0, False
    if (informational or code == NO_CONTENT or code == NOT_MODIFIED) and te is None and cl is None:
        return Framing.NONE, 0, False
    if te is None and cl is None:
        return Framing.CLOSE, 0, False
    return body_framing(te, cl, chunked_substring=True)
