"""Plain rule objects: what the parser produces and the detect room compiles.

Nothing here knows about packets.  The parser (``rules.parser``) fills these;
``detect`` reads them.  Payload keywords are kept in rule order as a list of
``Match`` records, each bound to the buffer it inspects (``buffer``: 'payload'
for classic content; sticky buffers such as 'http.uri' are recorded so an
unsupported one can be reported cleanly).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class AddrSet:
    """A parsed address expression: (network, prefix) ranges to include and exclude.

    ``any`` means no restriction.  Networks are ``ipaddress`` networks; the
    detect room compiles them to integer ranges.
    """

    include: list = field(default_factory=list)
    exclude: list = field(default_factory=list)
    any: bool = False


@dataclass
class PortSet:
    """A parsed port expression: inclusive (lo, hi) ranges to include and exclude."""

    include: list[tuple[int, int]] = field(default_factory=list)
    exclude: list[tuple[int, int]] = field(default_factory=list)
    any: bool = False


@dataclass
class Content:
    """content:"..."; with its modifiers.  ``pattern`` is the unescaped bytes."""

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


@dataclass
class Pcre:
    """pcre:"/re/flags"; ``regex`` is the Python-compiled pattern, ``relative`` is flag R."""

    source: str
    flags: str
    regex: Any
    negated: bool = False
    relative: bool = False
    buffer: str = "payload"


@dataclass
class ByteTest:
    nbytes: int
    op: str  # '<' '>' '=' '<=' '>=' '&' '^' '!' forms normalised; 'negate' below
    value: int | str
    offset: int | str
    relative: bool = False
    endian: str = "big"
    string: str | None = None  # None, 'hex', 'dec', 'oct'
    bitmask: int | None = None
    negate: bool = False
    dce: bool = False


@dataclass
class ByteJump:
    nbytes: int
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


@dataclass
class ByteExtract:
    nbytes: int
    offset: int
    name: str
    relative: bool = False
    endian: str = "big"
    string: str | None = None
    multiplier: int = 1
    align: int = 0
    bitmask: int | None = None


@dataclass
class IsDataAt:
    offset: int | str
    relative: bool = False
    negated: bool = False
    rawbytes: bool = False


@dataclass
class Bsize:
    op: str  # '=', '<', '>', '<=', '>=', '<>'
    lo: int
    hi: int | None = None


@dataclass
class FlowSpec:
    """flow: options.  ``direction`` is 'to_server', 'to_client' or None."""

    established: bool = False
    not_established: bool = False
    stateless: bool = False
    direction: str | None = None
    only_stream: bool = False
    no_stream: bool = False


@dataclass
class Threshold:
    """threshold / detection_filter: ``type`` limit|threshold|both|detection_filter; ``track`` by_src|by_dst|by_rule|by_both|by_flow."""

    type: str
    track: str
    count: int
    seconds: float
    unique_on: str | None = None  # detection_filter unique_on src_port|dst_port


@dataclass
class Rule:
    """One signature.  ``matches`` holds payload keywords in rule order."""

    action: str
    proto: str
    src: AddrSet
    sport: PortSet
    direction: str  # '->' or '<>'
    dst: AddrSet
    dport: PortSet
    sid: int = 0
    gid: int = 1
    rev: int = 0
    msg: str = ""
    classtype: str | None = None
    category: str = ""
    priority: int = 3
    references: list[str] = field(default_factory=list)
    metadata: list[str] = field(default_factory=list)
    matches: list = field(default_factory=list)
    flow: FlowSpec | None = None
    dsize: Bsize | None = None
    flags: Any = None  # parsed flags: spec (see parser)
    flowbits: list[tuple[str, list[str]]] = field(default_factory=list)  # (op, names)
    noalert: bool = False
    threshold: Threshold | None = None
    detection_filter: Threshold | None = None
    header_checks: list = field(default_factory=list)  # ttl, itype, icode, icmp_id, icmp_seq, ip_proto, id, seq, ack, window, sameip, fragbits, ...
    tag: Any = None
    target: str | None = None
    file: str = ""
    line: int = 0
    raw: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple[int, int]:
        return (self.gid, self.sid)
