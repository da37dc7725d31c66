"""Header blocks: folding, fields without a colon, repeated fields.

Follows libhtp's generic header processing: a line starting with SP, HT or
NUL continues the previous field; a line without a colon becomes a field with
an empty name and the whole line as value; a repeated name is folded into the
first one's value with ", " (Content-Length keeps its first value), up to a
number of repetitions; names keep the case they were first sent in and are
looked up case-insensitively.
"""

from __future__ import annotations

from collections.abc import Iterable

import cython

LWS = b" \t"
_LWS_BYTES = frozenset(LWS)
_FOLDING = b" \t\x00"
FOLDING_BYTES = frozenset(_FOLDING)
_COMMA = b","
_JOIN = b", "
CONTENT_LENGTH = b"content-length"
_NUL, _TAB, _LF, _CR, _SPACE, _COLON = 0x00, 0x09, 0x0A, 0x0D, 0x20, 0x3A  # the bytes the compiled checks look at
_UPPER_A, _UPPER_Z, _CASE = 0x41, 0x5A, 0x20  # ASCII 'A'..'Z', and what lowercasing adds to them


class HeaderResult:
    """What parsing one block added: counts the caller turns into stats, and the state of the
    block's merging (repeated names seen; the index of the names once the list outgrew a scan)."""

    __slots__ = ("invalid", "dropped", "repetitions", "index")

    def __init__(self) -> None:
        self.invalid = 0
        self.dropped = 0
        self.repetitions = 0
        self.index: dict[bytes, int] | None = None  # lowercased name -> position in the list


# Header lists up to this long are searched name by name (no lowercased key, no dict); a longer
# one (up to ``max_headers``, or without limit) is indexed by its lowercased names once.
SCAN_LIMIT = 32
_SCAN_LIMIT = SCAN_LIMIT  # compiled: a C constant


def unfold(lines: Iterable[bytes], result: HeaderResult) -> list[bytes]:
    """Join continuation lines (already without line ends) onto their field."""
    fields: list[bytes] = []
    for line in lines:
        if _folds(line):
            if fields:
                fields[-1] += line
                continue
            result.invalid += 1
            line = line.lstrip(_FOLDING)
        fields.append(line)
    return fields


def _folds(line: bytes) -> bool:
    """Whether a line continues the previous field: it starts with SP, HT or NUL (the compiled
    build reads its first byte in C)."""
    if not cython.compiled:
        return bool(line) and line[0] in FOLDING_BYTES
    p = line
    return len(line) > 0 and (p[0] == _SPACE or p[0] == _TAB or p[0] == _NUL)


def split_field(field: bytes, result: HeaderResult) -> tuple[bytes, bytes]:
    """(name, value) of one unfolded field line."""
    end = len(field)
    nul = field.find(b"\x00")
    if nul >= 0:
        end = nul
    colon = field.find(b":", 0, end)
    if colon < 0:
        result.invalid += 1
        return b"", field.strip(LWS)
    name = field[:colon]
    if not name or name[-1:] in (b" ", b"\t"):
        result.invalid += 1
    return name.rstrip(LWS), field[colon + 1:].strip(LWS)


def field_pair(field: bytes, result: HeaderResult) -> tuple[bytes, bytes]:
    """``split_field``, its common case (a colon after a name that does not end in LWS, no NUL)
    taken in one pass: the compiled build reads the bytes in C, the interpreted one with bytes
    methods."""
    return _range_pair(field, 0, len(field), False, result)


def _range_pair(data: bytes, start: int, end: int, nul_free: bool,
                result: HeaderResult) -> tuple[bytes, bytes]:
    """``field_pair`` of the field ``data[start:end]``, no copy of the field made in the common
    case (compiled: name and value are C slices of ``data``); ``nul_free``: ``data`` is known to
    have no NUL byte."""
    if not cython.compiled:
        field = data[start:end]
        name, sep, value = field.partition(b":")
        if sep and name and name[-1] not in _LWS_BYTES and b"\x00" not in field:
            return name, value.strip(LWS)
        return split_field(field, result)
    colon = _plain_colon(data, start, end, nul_free)
    if colon < 0:
        return split_field(data[start:end], result)
    p = data
    first = colon + 1
    while first < end and (p[first] == _SPACE or p[first] == _TAB):
        first += 1
    while end > first and (p[end - 1] == _SPACE or p[end - 1] == _TAB):
        end -= 1
    return p[start:colon], p[first:end]  # C slices: new bytes, no slice object


def _plain_colon(data: bytes, start: int, end: int, nul_free: bool) -> int:
    """Offset of the first colon of the field ``data[start:end]`` in ``split_field``'s common
    case; -1 when the field is not one (no colon, an empty name or one ending in LWS, a NUL
    anywhere)."""
    p = data
    colon = find_byte(data, _COLON, start, end)
    if colon <= start or p[colon - 1] == _SPACE or p[colon - 1] == _TAB:
        return -1
    return -1 if not nul_free and find_byte(data, _NUL, start, end) >= 0 else colon


def find_byte(data: bytes | bytearray, byte: int, start: int, stop: int) -> int:
    """``data.find(byte, start, stop)`` (compiled: one memchr)."""
    if not cython.compiled:
        return data.find(byte, start, stop)
    size = len(data)
    if stop > size:
        stop = size
    if start >= stop:
        return -1
    p = data
    hit = memchr(p + start, byte, stop - start)
    if hit == cython.NULL:
        return -1
    return cython.cast("const unsigned char *", hit) - p


def add_fields(headers: list[tuple[bytes, bytes]], fields: list[bytes], max_headers: int,
               max_repetitions: int, result: HeaderResult) -> None:
    """Add unfolded fields to ``headers`` in place, merging repeated names."""
    for field in fields:
        add_pair(headers, field_pair(field, result), max_headers, max_repetitions, result)


def add_block(headers: list[tuple[bytes, bytes]], block: bytes, max_headers: int,
              max_repetitions: int, result: HeaderResult) -> None:
    """``add_fields`` of a whole header block read straight from its bytes: lines ended by LF
    (CRs before it dropped), none of them folded, up to the first empty one (which ends it)."""
    p = block
    size = len(block)
    nul_free = find_byte(block, _NUL, 0, size) < 0  # (then no field of it needs looking for one)
    start = 0
    while start < size:
        lf = _line_end(block, start)
        end = lf
        while end > start and p[end - 1] == _CR:  # chomp()
            end -= 1
        if end == start:
            return
        add_pair(headers, _range_pair(block, start, end, nul_free, result), max_headers, max_repetitions,
                 result)
        start = lf + 1


def _line_end(data: bytes, start: int) -> int:
    """Offset of the LF ending the line at ``start`` (the length of ``data`` if none)."""
    lf = find_byte(data, _LF, start, len(data))
    return len(data) if lf < 0 else lf


def add_pair(headers: list[tuple[bytes, bytes]], pair: tuple[bytes, bytes], max_headers: int,
             max_repetitions: int, result: HeaderResult) -> None:
    """Add one field to ``headers``: a new name at the end (up to ``max_headers``), a repeated one
    folded into the first one's value with ", " (up to ``max_repetitions`` a block; Content-Length
    keeps its first value)."""
    name = pair[0]
    at = _position(headers, name, result)
    if at < 0:
        if max_headers and len(headers) >= max_headers:
            result.dropped += 1
            return
        if result.index is not None:
            result.index[name.lower()] = len(headers)
        headers.append(pair)
        return
    result.repetitions += 1
    content_length = same_name(name, CONTENT_LENGTH)
    if result.repetitions > max_repetitions or content_length:
        result.dropped += not content_length
        return
    first_name, first_value = headers[at]
    headers[at] = (first_name, first_value + _JOIN + pair[1])


def _position(headers: list[tuple[bytes, bytes]], name: bytes, result: HeaderResult) -> int:
    """Where ``headers`` has ``name`` (ASCII case aside), else -1."""
    if result.index is None:
        if len(headers) <= _SCAN_LIMIT:
            for i in range(len(headers)):
                if same_name(headers[i][0], name):
                    return i
            return -1
        result.index = {pair[0].lower(): i for i, pair in enumerate(headers)}
    return result.index.get(name.lower(), -1)


def header_value(headers: list[tuple[bytes, bytes]], name: bytes | str) -> bytes | None:
    """Value for ``name`` (case-insensitive), or None."""
    key = name.encode("latin-1") if isinstance(name, str) else name
    for pair in headers:
        if same_name(pair[0], key):
            return pair[1]
    return None


def same_name(field_name: bytes, key: bytes) -> bool:
    """The two names (header names, methods) are equal but for ASCII case: compared byte by byte
    in the compiled build, no lowercased copy made."""
    if not cython.compiled:
        return len(field_name) == len(key) and field_name.lower() == key.lower()
    if len(field_name) != len(key):
        return False
    p = field_name
    q = key
    for i in range(len(key)):
        c = p[i]
        d = q[i]
        if c != d and _lower(c) != _lower(d):
            return False
    return True


def _lower(c: int) -> int:
    """ASCII lowercase of one byte (``bytes.lower``'s)."""
    return c + _CASE if _UPPER_A <= c <= _UPPER_Z else c


def has_token(value: bytes, token: bytes) -> bool:
    """Whether a comma-separated header value lists ``token`` (case-insensitive)."""
    return any(part.strip(b" \t\r\n\x0b\x0c").lower() == token for part in value.split(_COMMA))


def list_tokens(value: bytes) -> list[bytes]:
    """The comma-separated items of a header value, lowercased, empty ones dropped."""
    parts = (part.strip(b" \t\r\n\x0b\x0c").lower() for part in value.split(_COMMA))
    return [part for part in parts if part]
