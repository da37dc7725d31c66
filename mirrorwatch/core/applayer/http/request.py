"""Request lines and what the request headers decide (body framing, host)."""

from __future__ import annotations

from typing import NamedTuple

from mirrorwatch.core.applayer.http.framing import (
    CONTENT_LENGTH, TRANSFER_ENCODING, Framing, body_framing, parse_decimal,
)
from mirrorwatch.core.applayer.http.headers import same_name
from mirrorwatch.core.applayer.http.transaction import HttpTx
from mirrorwatch.core.applayer.http.uri import (
    MAX_PORT, UriParts, normalize_hostname, split_hostport, split_uri,
)

# htp_is_space: the bytes libhtp treats as white space on a request line.
SPACE_BYTES = b" \t\r\n\x0b\x0c"
_SP, _HT, _CR = 0x20, 0x09, 0x0D  # SPACE_BYTES is SP and the run HT LF VT FF CR
# RFC 7230 token characters (libhtp htp_is_token): visible ASCII minus separators.
_SEPARATORS = frozenset(b'()<>@,;:\\"/[]?={} \t')
TOKEN_BYTES = frozenset(b for b in range(0x21, 0x7F) if b not in _SEPARATORS)
_TOKEN_TABLE = bytes(b in TOKEN_BYTES for b in range(256))  # 1 at each token byte
_SLASH = 0x2F
HTTP_PREFIX = b"HTTP/"
# libhtp htp_convert_method_to_number's list.
KNOWN_METHODS = frozenset((
    b"GET", b"PUT", b"POST", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH",
    b"PROPFIND", b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK",
    b"VERSION-CONTROL", b"CHECKOUT", b"UNCHECKOUT", b"CHECKIN", b"UPDATE", b"LABEL",
    b"REPORT", b"MKWORKSPACE", b"MKACTIVITY", b"BASELINE-CONTROL", b"MERGE", b"INVALID",
    b"HEAD",
))
CONNECT = b"CONNECT"
HEAD = b"HEAD"
HOST = b"host"


class RequestLine(NamedTuple):
    method: bytes
    uri: bytes | None
    protocol: bytes | None


def first_space(data: bytes, start: int) -> int:
    """The first white space at or after ``start`` (``len(data)`` if none)."""
    p = data  # compiled: the bytes read in C
    for pos in range(start, len(data)):
        if is_space(p[pos]):
            return pos
    return len(data)


def skip_space(data: bytes, start: int) -> int:
    """The first position at or after ``start`` that is not white space (``len(data)`` if none)."""
    p = data
    for pos in range(start, len(data)):
        if not is_space(p[pos]):
            return pos
    return len(data)


def trim_space(data: bytes, start: int) -> int:
    """The end of ``data`` without its trailing white space, not before ``start``."""
    p = data
    end = len(data)
    while end > start and is_space(p[end - 1]):
        end -= 1
    return end


def is_space(byte: int) -> bool:
    """htp_is_space: SP, or HT, LF, VT, FF, CR (``SPACE_BYTES``)."""
    return byte == _SP or _HT <= byte <= _CR


def looks_like_request_line(line: bytes) -> bool:
    """Whether a (chomped) line can start a request.

    The method must be a token. A method libhtp knows (in any case) may stand
    alone (``OPTIONS``: HTTP/0.9 style); any other needs a target and either an
    origin-form target (``/...``) or an HTTP/ version at the end: so
    ``BITS_POST /x HTTP/1.1``, ``head /x`` and ``CCM_POST /HTTP/1.1`` start
    requests, while header lines, most body text and binary garbage between
    messages do not.
    """
    start = skip_space(line, 0)
    stop = trim_space(line, start)
    end = min(first_space(line, start), stop)
    if end == start or not _all_token(line, start, end):
        return False
    if line[start:end].upper() in KNOWN_METHODS:
        return True
    target = skip_space(line, end)
    if target >= stop:
        return False
    last = _last_space(line, start, stop) + 1
    return line[target] == _SLASH or line[last:min(last + len(HTTP_PREFIX), stop)].upper() == HTTP_PREFIX


def _all_token(data: bytes, start: int, end: int) -> bool:
    """Whether ``data[start:end]`` is all token bytes (``TOKEN_BYTES``)."""
    p = data
    table = _TOKEN_TABLE
    for pos in range(start, end):
        if not table[p[pos]]:
            return False
    return True


def _last_space(data: bytes, start: int, stop: int) -> int:
    """The last white space of ``data[start:stop]``, else ``start - 1``."""
    p = data
    for pos in range(stop - 1, start - 1, -1):
        if is_space(p[pos]):
            return pos
    return start - 1


def parse_request_line(line: bytes) -> RequestLine:
    """Method, request-target and protocol of a chomped request line, as
    libhtp's generic parser splits it: leading white space is skipped, the
    method ends at white space, the target at the first SP (at other white
    space only if there is no SP), the protocol is the rest; no target or no
    protocol means HTTP/0.9. So ``GET /a b HTTP/1.1`` asks for ``/a`` with the
    protocol ``b HTTP/1.1``, as Suricata sees it."""
    return RequestLine(*_split_request_line(line))


def _split_request_line(line: bytes) -> tuple[bytes, bytes | None, bytes | None]:
    """``parse_request_line``'s fields as a plain tuple."""
    start = skip_space(line, 0)
    end = first_space(line, start)
    method = line[start:end]
    rest = skip_space(line, end)
    if rest == len(line):
        return method, None, None
    uri_end = line.find(b" ", rest)
    if uri_end < 0:
        uri_end = first_space(line, rest)
    first = skip_space(line, uri_end)
    last = trim_space(line, first)
    return method, line[rest:uri_end], line[first:last] if last > first else None


def apply_request_line(tx: HttpTx, line: bytes) -> None:
    """Fill the request-line fields and the URI buffers of ``tx``."""
    method, uri, protocol = _split_request_line(line)
    tx.request_line = line
    tx.method = method
    tx.uri_raw = uri
    tx.protocol = protocol
    if uri is None:
        return
    if is_method(tx, CONNECT):
        host, port, _invalid = split_hostport(uri)
        tx.host, tx.port, tx.host_raw = host, port, (uri if host else None)
        tx.uri_normalized = b""
        return
    tx.normalize_uri_later()
    if uri[:1] != b"/":  # origin-form ("/...") names no host: no need to split it
        _host_from_uri(tx, split_uri(uri))


def _host_from_uri(tx: HttpTx, parts: UriParts) -> None:
    if parts.hostname is None:
        return
    tx.host = normalize_hostname(parts.hostname)
    tx.host_raw = parts.hostname
    tx.port = parse_decimal(parts.port, 1, MAX_PORT)


def apply_host_header(tx: HttpTx) -> None:
    """The Host header names the host when the URI did not (libhtp's rule)."""
    if tx.host is not None:
        return
    value = tx.request_header(HOST)
    if value is None:
        return
    host, port, _invalid = split_hostport(value)
    if host:
        tx.host, tx.port, tx.host_raw = host, port, value


def is_method(tx: HttpTx, method: bytes) -> bool:
    """Case-insensitive method test (a lowercase ``head`` gets HEAD's framing)."""
    return tx.method is not None and same_name(tx.method, method)


def request_framing(tx: HttpTx) -> tuple[Framing, int, bool]:
    """(framing, content length, malformed) of a request body."""
    if is_method(tx, CONNECT):
        return Framing.TUNNEL, 0, False
    return body_framing(tx.request_header(TRANSFER_ENCODING), tx.request_header(CONTENT_LENGTH),
                        chunked_substring=False)
