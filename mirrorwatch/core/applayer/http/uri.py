"""Request-URI: the split of the raw URI, the normalised form Suricata
inspects as ``http.uri``, and host/port extraction.

``normalized_uri`` is what Suricata builds (SCHTPGenerateNormalizedUri) from
libhtp's parsed URI under its default IDS personality with lowercasing turned
off: the path is %XX- and %uXXXX-decoded (an encoded '/' or '\\' decoded too),
'\\' becomes '/', runs of '/' collapse to one, UTF-8 sequences fold to one
byte ("best fit"), and dot-segments are removed the way libhtp does; the query
is %XX-decoded only ('+' stays); the fragment is decoded like the path's %
escapes. Invalid escapes keep their '%'.

Best fit: libhtp maps code points above U+00FF through Windows' best-fit table
for code page 1252. That table is not reproduced here; a code point folds to the
one ASCII character its compatibility decomposition reduces to (fullwidth
forms, accented Latin letters), else to '?'. The two agree on fullwidth ASCII
and the Latin-1 range, which is what evasions use.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from typing import NamedTuple

from mirrorwatch.core.applayer.http.framing import parse_decimal

SLASH = 0x2F
BACKSLASH = 0x5C
PERCENT = 0x25
DOT = 0x2E
QUESTION_MARK = 0x3F
REPLACEMENT_BYTE = 0x3F  # '?': libhtp's bestfit_replacement_byte default
_HEX = frozenset(b"0123456789abcdefABCDEF")
_U_MARKERS = frozenset(b"uU")
_SPACE = b" \t\r\n\x0b\x0c"
_ASCII_LIMIT = 0x80
_BYTE_LIMIT = 0x100
_BMP_LIMIT = 0x10000
MAX_PORT = 65535


class UriParts(NamedTuple):
    scheme: bytes | None = None
    username: bytes | None = None
    password: bytes | None = None
    hostname: bytes | None = None
    port: bytes | None = None
    path: bytes | None = None
    query: bytes | None = None
    fragment: bytes | None = None


def split_uri(raw: bytes) -> UriParts:
    """Split a request-URI as libhtp's htp_parse_uri does."""
    return UriParts(*_split(raw))


def _split(raw: bytes) -> tuple:
    """``split_uri``'s fields as a plain tuple."""
    data = raw.rstrip(b" ")
    if not data:
        return _NO_URI
    scheme = None
    pos = 0
    if data[0] != SLASH:
        colon = data.find(b":")
        if colon >= 0:
            scheme, pos = data[:colon], colon + 1
    authority = _NO_AUTHORITY
    if scheme is not None and data[pos:pos + 2] == b"//" and data[pos + 2:pos + 3] not in (b"/", b""):
        start = pos + 2
        pos = _find_any(data, _PATH_STOPS, start)
        authority = _split_authority(data[start:pos])
    end = _find_any(data, _QUERY_STOPS, pos)
    path = data[pos:end]
    query = fragment = None
    if end < len(data) and data[end] == QUESTION_MARK:
        qend = _find_any(data, _FRAGMENT_STOPS, end + 1)
        query, end = data[end + 1:qend], qend
    if end < len(data):
        fragment = data[end + 1:]
    username, password, hostname, port = authority
    return scheme, username, password, hostname, port, path, query, fragment


def _find_any(data: bytes, stops: bytes, start: int) -> int:
    """The first position at or after ``start`` of one of the bytes ``stops``, else len(data)
    (compiled: the bytes read in C)."""
    p = data
    q = stops
    for pos in range(start, len(data)):
        for i in range(len(stops)):
            if p[pos] == q[i]:
                return pos
    return len(data)


# What ends the authority, the path and the query.
_PATH_STOPS = b"?/#"
_QUERY_STOPS = b"?#"
_FRAGMENT_STOPS = b"#"
_NO_URI = tuple(UriParts())
_NO_AUTHORITY = (None, None, None, None)


def _split_authority(auth: bytes) -> tuple:
    """(username, password, hostname, port) of a URI's authority; None for each one absent."""
    username = password = port = None
    at = auth.find(b"@")
    if at >= 0:
        creds, auth = auth[:at], auth[at + 1:]
        username, sep, rest = creds.partition(b":")
        if sep:
            password = rest
    if auth.startswith(b"["):
        close = auth.find(b"]")
        if close < 0:
            return username, password, auth, None
        hostname, rest = auth[:close + 1], auth[close + 1:]
        colon = rest.find(b":")
        if colon >= 0:
            port = rest[colon + 1:]
        return username, password, hostname, port
    hostname, sep, rest = auth.partition(b":")
    if sep:
        port = rest
    return username, password, hostname, port


def split_hostport(value: bytes) -> tuple[bytes | None, int | None, bool]:
    """(hostname lowercased, port, invalid) of a Host header or CONNECT target."""
    data = value.strip(_SPACE)
    if not data:
        return None, None, True
    if data.startswith(b"["):
        close = data.find(b"]")
        if close < 0:
            return None, None, True
        host, rest = data[:close + 1].lower(), data[close + 1:]
        if not rest:
            return host, None, False
        if rest[0] != ord(":"):
            return host, None, True
        port = parse_decimal(rest[1:], 1, MAX_PORT)
        return host, port, port is None
    host, sep, rest = data.partition(b":")
    if not sep:
        return host.lower(), None, False
    port = parse_decimal(rest, 1, MAX_PORT)
    return host.rstrip(_SPACE).lower(), port, port is None


def normalize_hostname(hostname: bytes) -> bytes:
    """URI hostname as libhtp keeps it: %-decoded, lowercased, trailing dots dropped."""
    return urldecode(hostname, True).lower().rstrip(b".")


def normalized_uri(parts: UriParts) -> bytes:
    """The ``http.uri`` buffer: normalised path, decoded query and fragment."""
    return _normalized(parts.path, parts.query, parts.fragment)


def request_uri_normalized(raw: bytes) -> bytes:
    """``normalized_uri(split_uri(raw))``, made without the split's record (the ``http.uri``
    buffer of a request, made once per inspected request)."""
    fields = _split(raw)
    return _normalized(fields[_PATH], fields[_QUERY], fields[_FRAGMENT])


_PATH, _QUERY, _FRAGMENT = 5, 6, 7  # their places in UriParts


def _normalized(path: bytes | None, query: bytes | None, fragment: bytes | None) -> bytes:
    out = normalize_path(path) if path is not None else b""
    if query is not None:
        out += b"?" + urldecode(query, False)
    if fragment is not None:
        out += b"#" + urldecode(fragment, True)
    return out


def normalize_path(path: bytes) -> bytes:
    """Decode, best-fit and remove dot-segments from a URI path."""
    return remove_dot_segments(utf8_bestfit(decode_path(path)))


def decode_path(path: bytes) -> bytes:
    """libhtp's path decoder, IDS personality, no lowercasing."""
    if _plain_path(path):
        return bytes(path)  # nothing to decode, no separator to fold
    out = bytearray()
    pos, end = 0, len(path)
    previous_was_separator = False
    while pos < end:
        byte = path[pos]
        if byte == PERCENT:
            byte, pos = _decode_escape(path, pos, u_decode=True)
        else:
            pos += 1
        if byte == BACKSLASH:
            byte = SLASH
        if byte == SLASH:
            if previous_was_separator:
                continue
            previous_was_separator = True
        else:
            previous_was_separator = False
        out.append(byte)
    return bytes(out)


def _plain_path(path: bytes) -> bool:
    """No '%', no '\\' and no "//" in ``path`` (compiled: the bytes read in C)."""
    p = path
    size = len(path)
    for pos in range(size):
        c = p[pos]
        if c == PERCENT or c == BACKSLASH or (c == SLASH and pos + 1 < size and p[pos + 1] == SLASH):
            return False
    return True


def urldecode(data: bytes, u_decode: bool) -> bytes:
    """%XX (and optionally %uXXXX) decoding; an invalid escape keeps its '%'."""
    if b"%" not in data:
        return bytes(data)
    out = bytearray()
    pos, end = 0, len(data)
    while pos < end:
        byte = data[pos]
        if byte == PERCENT:
            byte, pos = _decode_escape(data, pos, u_decode=u_decode)
        else:
            pos += 1
        out.append(byte)
    return bytes(out)


def _decode_escape(data: bytes, pos: int, *, u_decode: bool) -> tuple[int, int]:
    """(decoded byte, next position) for the '%' at ``pos``."""
    end = len(data)
    if pos + 2 >= end:
        return PERCENT, pos + 1
    if u_decode and data[pos + 1] in _U_MARKERS:
        digits = data[pos + 2:pos + 6]
        if pos + 5 < end and all(d in _HEX for d in digits):
            return _bestfit(int(digits, 16)), pos + 6
        return PERCENT, pos + 1
    if data[pos + 1] in _HEX and data[pos + 2] in _HEX:
        return int(data[pos + 1:pos + 3], 16), pos + 3
    return PERCENT, pos + 1


@lru_cache(maxsize=4096)
def _bestfit(codepoint: int) -> int:
    """One byte standing for a code point (see the module note)."""
    if codepoint < _BYTE_LIMIT:
        return codepoint
    if codepoint >= _BMP_LIMIT or 0xD800 <= codepoint <= 0xDFFF:
        return REPLACEMENT_BYTE
    folded = unicodedata.normalize("NFKD", chr(codepoint))
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    if len(folded) == 1 and ord(folded) < _ASCII_LIMIT:
        return ord(folded)
    return REPLACEMENT_BYTE


# UTF-8 lead byte -> (continuation bytes, allowed range of the first continuation).
# Overlong forms are accepted, as libhtp's decoder does; surrogates and code
# points above U+10FFFF are not.
_ANY_CONT = (0x80, 0xBF)
_LEADS: dict[int, tuple[int, tuple[int, int]]] = {}
_LEADS.update({b: (1, _ANY_CONT) for b in range(0xC0, 0xE0)})
_LEADS.update({b: (2, _ANY_CONT) for b in range(0xE0, 0xF0)})
_LEADS[0xED] = (2, (0x80, 0x9F))
_LEADS.update({b: (3, _ANY_CONT) for b in range(0xF0, 0xF4)})
_LEADS[0xF4] = (3, (0x80, 0x8F))
_CONT_BITS = 6
_CONT_MASK = 0x3F
_LEAD_MASKS = {1: 0x1F, 2: 0x0F, 3: 0x07}


def utf8_bestfit(data: bytes) -> bytes:
    """Fold each UTF-8 sequence to one byte; a broken one becomes '?'.

    A sequence cut short by a byte that cannot continue it yields '?' and that
    byte starts afresh; one cut short by the end of the path is dropped (both
    as libhtp does).
    """
    if data.isascii():
        return data
    out = bytearray()
    pos, end = 0, len(data)
    while pos < end:
        byte = data[pos]
        if byte < _ASCII_LIMIT:
            out.append(byte)
            pos += 1
            continue
        lead = _LEADS.get(byte)
        if lead is None:
            out.append(REPLACEMENT_BYTE)
            pos += 1
            continue
        count, (low, high) = lead
        codepoint = byte & _LEAD_MASKS[count]
        nxt = pos + 1
        for i in range(count):
            if nxt >= end:
                return bytes(out)
            cont = data[nxt]
            lo, hi = (low, high) if i == 0 else _ANY_CONT
            if not lo <= cont <= hi:
                break
            codepoint = (codepoint << _CONT_BITS) | (cont & _CONT_MASK)
            nxt += 1
        else:
            out.append(_bestfit(codepoint))
            pos = nxt
            continue
        out.append(REPLACEMENT_BYTE)
        pos = nxt
    return bytes(out)


def remove_dot_segments(path: bytes) -> bytes:
    """libhtp's dot-segment removal (RFC 3986 5.2.4 with libhtp's edge cases)."""
    if not _dot_segment(path):
        return bytes(path)
    out = bytearray()
    pos, end = 0, len(path)
    pending = -1
    while pos < end:
        if pending < 0:
            pending = path[pos]
            pos += 1
        rest = path[pos:pos + 3]
        if pending == DOT:
            if rest[:2] == b"./":
                pending, pos = -1, pos + 2
                continue
            if rest[:1] == b"/":
                pending, pos = -1, pos + 1
                continue
        if pending == SLASH:
            step = _slash_dot_step(rest)
            if step:
                skip, drop_segment = step
                pos += skip
                if drop_segment:
                    _drop_last_segment(out)
                continue
        if pending == DOT and path[pos:] in (b"", b"."):
            break       # a final "." or ".." segment
        out.append(pending)
        stop = path.find(b"/", pos)
        stop = end if stop < 0 else stop
        out += path[pos:stop]
        pos = stop
        pending = -1
    return bytes(out)


def _dot_segment(path: bytes) -> bool:
    """Whether a segment of ``path`` starts with a dot ("/." in it, or a leading ".")."""
    p = path
    for pos in range(len(path)):
        if p[pos] == DOT and (pos == 0 or p[pos - 1] == SLASH):
            return True
    return False


# After a '/', the (up to three) next bytes -> (bytes to skip, drop the last segment).
_SLASH_DOT_STEPS = {b".": (1, False), b"..": (2, True), b"../": (3, True)}


def _slash_dot_step(rest: bytes) -> tuple[int, bool] | None:
    """How a "/." ("/./", "/.", "/../", "/..") form at this point collapses."""
    if rest[:2] == b"./":
        return 2, False
    return _SLASH_DOT_STEPS.get(rest)


def _drop_last_segment(out: bytearray) -> None:
    cut = out.rfind(b"/")
    del out[max(cut, 0):]
