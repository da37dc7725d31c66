"""Status lines and what the response headers (and the request) decide."""

from __future__ import annotations

from typing import NamedTuple

from mirrorwatch.core.applayer.http.framing import (
    CONTENT_LENGTH, TRANSFER_ENCODING, Framing, body_framing, parse_content_length,
)
from mirrorwatch.core.applayer.http.request import CONNECT, HEAD, SPACE_BYTES, is_method
from mirrorwatch.core.applayer.http.transaction import HttpTx

_HTTP = b"HTTP"
_LEADING = SPACE_BYTES + b"\x00"
# libhtp HTP_VALID_STATUS_MIN / MAX
STATUS_MIN = 100
STATUS_MAX = 999
SWITCHING_PROTOCOLS = 101
NO_CONTENT = 204
NOT_MODIFIED = 304
INFORMATIONAL = range(100, 200)
SUCCESS = range(200, 300)
CLIENT_ERROR = range(400, 500)


class StatusLine(NamedTuple):
    protocol: bytes | None
    status: bytes | None
    message: bytes | None


def looks_like_status_line(line: bytes) -> bool:
    """libhtp's test (inverse of htp_treat_response_line_as_body): "HTTP" after
    any white space or NUL bytes, in any case."""
    return line.lstrip(_LEADING)[:len(_HTTP)].upper() == _HTTP


def parse_status_line(line: bytes) -> StatusLine:
    """Protocol, status and reason phrase of a chomped status line."""
    return StatusLine(*_split_status_line(line))


def _split_status_line(line: bytes) -> list[bytes | None]:
    """``parse_status_line``'s fields as a plain list."""
    fields = line.strip(SPACE_BYTES).split(None, 2)
    while len(fields) < 3:
        fields.append(None)
    return fields


def parse_status_code(status: bytes | None) -> int | None:
    """The status as a number in 100..999 (blanks allowed around it), else None."""
    if status is None:
        return None
    digits = status.strip(b" \t")
    if not digits.isdigit():
        return None
    code = int(digits)
    return code if STATUS_MIN <= code <= STATUS_MAX else None


def apply_status_line(tx: HttpTx, line: bytes) -> None:
    """Fill the response-line fields of ``tx`` (replacing an interim response's)."""
    protocol, status, message = _split_status_line(line)
    tx.response_line = line
    tx.response_protocol = protocol
    tx.status = status
    tx.status_msg = message
    tx.status_code = parse_status_code(status)


def response_framing(tx: HttpTx) -> tuple[Framing, int, bool]:
    """(framing, content length, malformed) of the response body, as libhtp's
    RES_BODY_DETERMINE decides it."""
    code = tx.status_code or 0
    te = tx.response_header(TRANSFER_ENCODING)
    cl = tx.response_header(CONTENT_LENGTH)
    if is_method(tx, CONNECT) and code in SUCCESS:
        return Framing.TUNNEL, 0, False
    if code == SWITCHING_PROTOCOLS and te is None and cl is None:
        return Framing.TUNNEL, 0, False
    if code in INFORMATIONAL and code != SWITCHING_PROTOCOLS and te is None:
        length = parse_content_length(cl) if cl is not None else None
        if not length:
            return Framing.INTERIM, 0, False
    if is_method(tx, HEAD):
        return Framing.NONE, 0, False
    if (code in INFORMATIONAL or code in (NO_CONTENT, NOT_MODIFIED)) and te is None and cl is None:
        return Framing.NONE, 0, False
    if te is None and cl is None:
        return Framing.CLOSE, 0, False
    return body_framing(te, cl, chunked_substring=True)
