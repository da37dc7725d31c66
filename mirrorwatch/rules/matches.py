"""The payload keywords of a rule, as plain records (the rest of the rule: ``rules.model``), and
Suricata's integer comparisons (``compare``) they and the value keywords share.

Payload keywords (Content, Pcre, ByteTest, ByteJump,
ByteExtract, ByteMath, IsDataAt, Bsize, Base64Decode) are kept in rule order in
``Rule.matches``; each names the buffer it inspects (the keywords after
``base64_data`` are a Base64Decode's ``data``, not in ``Rule.matches``):

- ``buffer``: 'payload' (packet payload / reassembled stream, Suricata's
  pkt_data) or a Suricata sticky buffer by its canonical keyword name
  ('http.uri', 'file.data', 'dns.query'...; table: ``rules.buffers``);
- ``transforms``: the transforms applied to that buffer, in order
  ('dotprefix', 'to_lowercase', 'xor:0d0ac8ff'...).

``(buffer, transforms)`` identifies one inspected buffer.  Its keywords are
the subsequence of ``Rule.matches`` with that key, in order, and relative
keywords (distance/within, pcre R, relative byte_*/isdataat) refer to the
previous keyword of that subsequence: a legacy modifier (``content:"x";
http_uri;``) moves its content to the tail of the http.uri subsequence, as
Suricata moves it to that list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_COMPARE = {
    "=": lambda n, a, b: n == a,
    "!=": lambda n, a, b: n != a,
    "<": lambda n, a, b: n < a,
    ">": lambda n, a, b: n > a,
    "<=": lambda n, a, b: n <= a,
    ">=": lambda n, a, b: n >= a,
    "<>": lambda n, a, b: a < n < b,
    "!<>": lambda n, a, b: not a < n < b,
}


def compare(op: str, a: int, b: int | None, n: int) -> bool:
    """Suricata's unsigned-integer comparison modes; ranges are exclusive."""
    fn = _COMPARE.get(op)
    return fn is not None and fn(n, a, b)


@dataclass
class Content:
    """content:"..."; with its modifiers.  ``pattern`` is the unescaped bytes.

    ``depth`` counts from ``offset`` (the window is [offset, offset+depth)), as
    in Suricata.  ``startswith`` = at offset 0 exactly; ``endswith`` = the match
    must end at the end of the buffer.  See ``detect.payload`` for the rest.
    """

    pattern: bytes
    negated: bool = False
    nocase: bool = False
    offset: int | str | None = None  # str = byte_extract variable name
    depth: int | str | None = None
    distance: int | str | None = None
    within: int | str | None = None
    fast_pattern: bool = False
    fast_pattern_only: bool = False
    fast_pattern_chop: tuple[int, int] | None = None
    startswith: bool = False
    endswith: bool = False
    rawbytes: bool = False
    buffer: str = "payload"
    transforms: tuple[str, ...] = ()


@dataclass
class Pcre:
    """pcre:"/re/flags"; ``relative`` is flag R, ``anchored`` flag A, ``rawbytes`` flag B.

    ``regex`` is a ``rules.pcre.CompiledPcre`` (PCRE2, Suricata's options and
    match limits); detect matches with ``rules.pcre.guarded(regex)`` (the JIT
    form): ``match(subject, pos)`` when ``anchored``, else ``search``.  The
    HTTP buffer flags (U, H, ...) are resolved into ``buffer``.
    """

    source: str
    flags: str
    regex: Any
    negated: bool = False
    relative: bool = False
    buffer: str = "payload"
    anchored: bool = False
    rawbytes: bool = False
    transforms: tuple[str, ...] = ()


@dataclass
class ByteTest:
    """byte_test; ``op`` is one of '<' '>' '=' '<=' '>=' '&' '^'; a leading '!' sets ``negate``.

    ``nbytes``/``offset``/``value`` may name a byte_extract variable (str).  ``string``
    with ``nbytes`` up to 10 (dec) reads ASCII digits; 'hex'/'oct' likewise.
    """

    nbytes: int | str
    op: str  # '<' '>' '=' '<=' '>=' '&' '^' '!' forms normalised; 'negate' below
    value: int | str
    offset: int | str
    relative: bool = False
    endian: str = "big"
    string: str | None = None  # None, 'hex', 'dec', 'oct'
    bitmask: int | None = None
    negate: bool = False
    dce: bool = False
    buffer: str = "payload"
    transforms: tuple[str, ...] = ()


@dataclass
class ByteJump:
    """byte_jump: read ``nbytes`` at ``offset`` (relative to the cursor when
    ``relative``), ``value * multiplier``, round up to 4 when ``align``, then move
    the cursor to (start-of-read-end | beginning | end) + value + ``post_offset``.
    ``nbytes`` may name a byte_extract variable (str), as Suricata 7 allows."""

    nbytes: int | str
    offset: int | str
    relative: bool = False
    endian: str = "big"
    string: str | None = None
    multiplier: int = 1
    post_offset: int = 0
    align: bool = False
    from_beginning: bool = False
    from_end: bool = False
    bitmask: int | None = None
    buffer: str = "payload"
    transforms: tuple[str, ...] = ()


@dataclass
class ByteExtract:
    """byte_extract: read a value into variable ``name`` (used by later keywords);
    ``align`` is 0, 2 or 4 (round the value up)."""

    nbytes: int
    offset: int
    name: str
    relative: bool = False
    endian: str = "big"
    string: str | None = None
    multiplier: int = 1
    align: int = 0
    bitmask: int | None = None
    buffer: str = "payload"
    transforms: tuple[str, ...] = ()


@dataclass
class IsDataAt:
    offset: int | str
    relative: bool = False
    negated: bool = False
    rawbytes: bool = False
    buffer: str = "payload"
    transforms: tuple[str, ...] = ()


@dataclass
class ByteMath:
    """byte_math: ``result = (read bytes, shifted by rshift) <oper> rvalue`` stored in ``name``.

    ``oper`` is one of + - * / << >>; ``rvalue`` may be a byte_extract variable.
    """

    nbytes: int
    offset: int | str
    oper: str
    rvalue: int | str
    name: str
    relative: bool = False
    endian: str = "big"
    string: str | None = None
    bitmask: int | None = None
    buffer: str = "payload"
    transforms: tuple[str, ...] = ()


@dataclass
class Bsize:
    """bsize / urilen / dsize: ``op`` '=', '!=', '<', '>', '<=', '>=', '<>'
    (exclusive range lo < n < hi, as Suricata).

    In ``Rule.matches`` it tests the length of its buffer: ``bsize`` of the
    sticky buffer (after its transforms), ``urilen`` of 'http.uri' or
    'http.uri.raw' (never transformed).  ``Rule.dsize`` is the payload size.
    """

    op: str  # '=', '<', '>', '<=', '>=', '<>'
    lo: int
    hi: int | None = None
    buffer: str = "payload"
    transforms: tuple[str, ...] = ()

    def test(self, n: int) -> bool:
        return compare(self.op, self.lo, self.hi, n)


@dataclass
class Base64Decode:
    """base64_decode: decode up to ``nbytes`` bytes of its buffer (from ``offset``, after the
    previous keyword's match when ``relative``) into the rule's base64_data buffer, whose
    keywords are ``data`` (the rule's one base64_data list, shared by its base64_decodes; not in
    ``Rule.matches``: they inspect the decoded bytes, never a buffer of their own)."""

    nbytes: int
    offset: int = 0
    relative: bool = False
    data: list = field(default_factory=list)
    buffer: str = "payload"
    transforms: tuple[str, ...] = ()
