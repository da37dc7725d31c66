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
_NUL, _TAB, _SPACE, _COLON = 0x00, 0x09, 0x20, 0x3A  # the bytes the compiled checks look at
_UPPER_A, _UPPER_Z, _CASE = 0x41, 0x5A, 0x20  # ASCII 'A'..'Z', and what lowercasing adds to them


class HeaderResult:
    """What parsing one block added: counts the caller turns into stats."""

    __slots__ = ("invalid", "dropped")

    def __init__(self) -> None:
        self.invalid = 0
        self.dropped = 0


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
    if not cython.compiled:
        name, sep, value = field.partition(b":")
        if sep and name and name[-1] not in _LWS_BYTES and b"\x00" not in field:
            return name, value.strip(LWS)
        return split_field(field, result)
    colon = _plain_colon(field)
    if colon <= 0:
        return split_field(field, result)
    p = field
    start = colon + 1
    end = len(field)
    while start < end and (p[start] == _SPACE or p[start] == _TAB):
        start += 1
    while end > start and (p[end - 1] == _SPACE or p[end - 1] == _TAB):
        end -= 1
    return p[:colon], p[start:end]  # C slices: new bytes, no slice object


def _plain_colon(field: bytes) -> int:
    """Offset of the first colon of a field in ``split_field``'s common case; -1 when the field
    is not one (no colon, an empty name or one ending in LWS, a NUL anywhere)."""
    p = field
    colon = -1
    for i in range(len(field)):
        c = p[i]
        if c == _NUL:
            return -1
        if c == _COLON and colon < 0:
            colon = i
    if colon <= 0 or p[colon - 1] == _SPACE or p[colon - 1] == _TAB:
        return -1
    return colon


def add_fields(headers: list[tuple[bytes, bytes]], fields: list[bytes], max_headers: int,
               max_repetitions: int, result: HeaderResult) -> None:
    """Add unfolded fields to ``headers`` in place, merging repeated names."""
    index = {name.lower(): i for i, (name, _value) in enumerate(headers)}
    repetitions = 0
    for field in fields:
        pair = field_pair(field, result)
        key = pair[0].lower()
        at = index.get(key)
        if at is None:
            if max_headers and len(headers) >= max_headers:
                result.dropped += 1
                continue
            index[key] = len(headers)
            headers.append(pair)
            continue
        repetitions += 1
        if repetitions > max_repetitions or key == CONTENT_LENGTH:
            result.dropped += key != CONTENT_LENGTH
            continue
        first_name, first_value = headers[at]
        headers[at] = (first_name, first_value + _JOIN + pair[1])


def header_value(headers: list[tuple[bytes, bytes]], name: bytes | str) -> bytes | None:
    """Value for ``name`` (case-insensitive), or None."""
    key = name.encode("latin-1") if isinstance(name, str) else name
    key = key.lower()
    size = len(key)
    for pair in headers:
        field_name = pair[0]
        if len(field_name) == size and _is_name(field_name, key):
            return pair[1]
    return None


def _is_name(field_name: bytes, key: bytes) -> bool:
    """``field_name`` is the lowercase ``key`` (of the same length) but for ASCII case: compared
    byte by byte, no lowercased copy made."""
    p = field_name
    q = key
    for i in range(len(key)):
        c = p[i]
        if c != q[i] and not (_UPPER_A <= c <= _UPPER_Z and c + _CASE == q[i]):
            return False
    return True


def has_token(value: bytes, token: bytes) -> bool:
    """Whether a comma-separated header value lists ``token`` (case-insensitive)."""
    return any(part.strip(b" \t\r\n\x0b\x0c").lower() == token for part in value.split(_COMMA))


def list_tokens(value: bytes) -> list[bytes]:
    """The comma-separated items of a header value, lowercased, empty ones dropped."""
    parts = (part.strip(b" \t\r\n\x0b\x0c").lower() for part in value.split(_COMMA))
    return [part for part in parts if part]
