"""How a message body is delimited, decided from its headers (RFC 7230 3.3.3
as libhtp applies it, made tolerant where libhtp stops parsing)."""

from __future__ import annotations

from mirrorwatch.core.applayer.http.headers import has_token

TRANSFER_ENCODING = b"transfer-encoding"
CONTENT_LENGTH = b"content-length"
CHUNKED = b"chunked"
_ZERO, _NINE = 0x30, 0x39  # ASCII '0', '9'
_SP, _HT = 0x20, 0x09  # the blanks a bounded number may have around it
MAX_CONTENT_LENGTH = (1 << 63) - 1


class Framing:
    """How a body is delimited: plain int constants (see ``stream.Phase``)."""

    NONE = 0        # no body: the message ends with its headers
    LENGTH = 1      # Content-Length bytes follow
    CHUNKED = 2     # chunked transfer coding
    CLOSE = 3       # the body runs until the direction closes
    TUNNEL = 4      # the connection stops being HTTP (CONNECT 2xx, 101)
    INTERIM = 5     # a 1xx interim response: the real one follows


def parse_content_length(value: bytes) -> int | None:
    """libhtp's reading of Content-Length: leading junk and trailing junk are
    skipped (libhtp warns), the first run of digits counts; None if none."""
    p = value  # compiled: the bytes read in C
    size = len(value)
    start = 0
    while start < size and not _ZERO <= p[start] <= _NINE:
        start += 1
    if start == size:
        return None
    length = 0
    for end in range(start, size):
        digit = p[end] - _ZERO
        if not 0 <= digit <= _NINE - _ZERO:
            break
        if length > (MAX_CONTENT_LENGTH - digit) // 10:
            return None  # more than MAX_CONTENT_LENGTH, and more digits only add to it
        length = length * 10 + digit
    return length


def body_framing(headers_te: bytes | None, headers_cl: bytes | None,
                 chunked_substring: bool) -> tuple[Framing, int, bool]:
    """(framing, length, malformed) from Transfer-Encoding / Content-Length.

    Requests look for the ``chunked`` token, responses (like libhtp) for the
    substring. A Transfer-Encoding without chunked falls back to
    Content-Length; an unreadable Content-Length means no body, flagged.
    """
    if headers_te is not None:
        if chunked_substring:
            if CHUNKED in headers_te.lower():
                return Framing.CHUNKED, 0, False
        elif has_token(headers_te, CHUNKED):
            return Framing.CHUNKED, 0, False
        if headers_cl is None:
            return Framing.NONE, 0, True
    if headers_cl is None:
        return Framing.NONE, 0, False
    length = parse_content_length(headers_cl)
    if length is None:
        return Framing.NONE, 0, True
    return (Framing.LENGTH if length else Framing.NONE), length, headers_te is not None


def parse_decimal(text: bytes | None, low: int, high: int) -> int | None:
    """A number in ``low``..``high`` (``high`` < 2^31 / 10) written in ASCII digits only, blanks (SP, HT)
    allowed around it, else None: a status code, a port."""
    if text is None:
        return None
    p = text  # compiled: the bytes read in C
    start = 0
    end = len(text)
    while start < end and (p[start] == _SP or p[start] == _HT):
        start += 1
    while end > start and (p[end - 1] == _SP or p[end - 1] == _HT):
        end -= 1
    if start == end:
        return None
    number = 0
    for pos in range(start, end):
        digit = p[pos] - _ZERO
        if not 0 <= digit <= _NINE - _ZERO:
            return None
        if number <= high:  # (a longer number is out of range: only its digits are checked)
            number = number * 10 + digit
    return number if low <= number <= high else None
