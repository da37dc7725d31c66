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

    The parser evaluates lists, negation and variables exactly, so ``include``
    is the final set (summarised networks) and ``exclude`` stays empty; the same
    set is also given as sorted disjoint inclusive integer ranges ``v4``/``v6``.
    Identical expressions share one AddrSet object: treat it as read-only.
    """

    include: list = field(default_factory=list)
    exclude: list = field(default_factory=list)
    any: bool = False
    v4: list[tuple[int, int]] = field(default_factory=list)
    v6: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class PortSet:
    """A parsed port expression: inclusive (lo, hi) ranges to include and exclude.

    As for AddrSet, the parser leaves the exact final set in ``include`` (sorted,
    disjoint) and ``exclude`` empty.  Shared between rules: read-only.
    """

    include: list[tuple[int, int]] = field(default_factory=list)
    exclude: list[tuple[int, int]] = field(default_factory=list)
    any: bool = False


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


@dataclass
class Pcre:
    """pcre:"/re/flags"; ``regex`` is the Python-compiled pattern, ``relative`` is flag R.

    ``regex`` is a compiled ``bytes`` ``re`` pattern (PCRE syntax translated
    by ``rules.pcre``); ``detect.payload`` matches with
    ``rules.pcre.guarded(regex)``, the same pattern under the ``regex`` engine.  ``anchored`` is PCRE flag A: match only at the start
    position (use ``regex.match``, not ``search``).  ``rawbytes`` is flag B.
    """

    source: str
    flags: str
    regex: Any
    negated: bool = False
    relative: bool = False
    buffer: str = "payload"
    anchored: bool = False
    rawbytes: bool = False


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


@dataclass
class IsDataAt:
    offset: int | str
    relative: bool = False
    negated: bool = False
    rawbytes: bool = False


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


@dataclass
class Bsize:
    """bsize / dsize: ``op`` '=', '!=', '<', '>', '<=', '>=', '<>' (exclusive range lo < n < hi, as Suricata)."""

    op: str  # '=', '<', '>', '<=', '>=', '<>'
    lo: int
    hi: int | None = None

    def test(self, n: int) -> bool:
        op = self.op
        if op == "=":
            return n == self.lo
        if op == "<":
            return n < self.lo
        if op == ">":
            return n > self.lo
        if op == "<=":
            return n <= self.lo
        if op == ">=":
            return n >= self.lo
        if op == "!=":
            return n != self.lo
        return self.lo < n < self.hi  # '<>'


@dataclass
class TcpFlags:
    """flags: / tcp.flags: (and fragbits:, with IP flag bits R=4 D=2 M=1).

    ``mode``: '' exact (the bits after masking must equal ``bits``), '+' all of
    ``bits`` set (others allowed), '*' any of ``bits`` set, '!' none of ``bits``
    set.  ``mask`` holds the bits to ignore (the part after the comma).
    TCP bits: F=0x01 S=0x02 R=0x04 P=0x08 A=0x10 U=0x20 E(ECE, '2')=0x40 C(CWR, '1')=0x80.
    ``flags:0`` is exact with bits 0 (no flag set).
    """

    mode: str
    bits: int
    mask: int = 0

    def test(self, value: int) -> bool:
        v = value & ~self.mask & 0xFF
        if self.mode == "":
            return v == self.bits
        if self.mode == "+":
            return v & self.bits == self.bits
        if self.mode == "*":
            return bool(v & self.bits)
        return not v & self.bits  # '!'


@dataclass
class HeaderCheck:
    """One header keyword.  ``op``/``value``/``value2`` as parsed:

    - numeric keywords (ttl, itype, icode, icmp_id, icmp_seq, ip_proto, id, seq,
      ack, window, tos, fragoffset, tcp.mss, tcp.wscale...): ``op`` in '=', '!=',
      '<', '>', '<=', '>=', '<>' (exclusive range ``value < x < value2``),
      '!<>' (outside it);
    - sameip: op '=' value True;  ipopts: op '=' value option name;
    - fragbits: op 'flags' value ``TcpFlags`` (IP bits R=4 D=2 M=1);
    - stream_size: ``value`` (side, op, n) with side server|client|both|either.
    """

    keyword: str
    op: str
    value: Any
    value2: Any = None

    def test(self, n: int) -> bool:
        """Numeric comparison for the numeric keywords."""
        op, a = self.op, self.value
        if op == "=":
            return n == a
        if op == "!=":
            return n != a
        if op == "<":
            return n < a
        if op == ">":
            return n > a
        if op == "<=":
            return n <= a
        if op == ">=":
            return n >= a
        if op == "<>":
            return a < n < self.value2
        if op == "!<>":
            return not a < n < self.value2
        return False


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
    """threshold / detection_filter: ``type`` limit|threshold|both|backoff|detection_filter; ``track`` by_src|by_dst|by_rule|by_both|by_flow."""

    type: str
    track: str
    count: int
    seconds: float
    unique_on: str | None = None  # detection_filter unique_on src_port|dst_port
    # type 'backoff' (Suricata 8): alert on the 1st match, then on the
    # count-th, count*multiplier-th, count*multiplier**2-th ...
    multiplier: int | None = None


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
    flags: Any = None  # TcpFlags from flags: / tcp.flags:, or None
    # (op, names): set/unset/toggle/noalert; 'isset'/'isnotset' = every name
    # (is/is not) set ('a&b' or one name); 'isset_any'/'isnotset_any' = at least
    # one of the names ('a|b').
    flowbits: list[tuple[str, list[str]]] = field(default_factory=list)
    noalert: bool = False
    threshold: Threshold | None = None
    detection_filter: Threshold | None = None
    header_checks: list = field(default_factory=list)  # ttl, itype, icode, icmp_id, icmp_seq, ip_proto, id, seq, ack, window, sameip, fragbits, ...
    tag: Any = None  # tag: arguments as a list of strings, e.g. ['session', '10', 'packets']
    target: str | None = None  # 'src_ip' | 'dest_ip'
    # metadata: one "key value" string per comma-separated item; references:
    # "system,id" strings.  ``extra`` holds flags detect may honour:
    # only_frag/no_frag (flow:), prefilter, ports_ignored (ports on a portless
    # protocol).
    # protocol details: proto is normalised to tcp|udp|icmp|icmpv6|ip ('icmp'
    # covers ICMPv4 and ICMPv6, as in Suricata; 'icmpv4' gives icmp + ipv 4);
    # ``ipv`` 4/6 restricts the IP version (from ipv4/ipv6 or icmpv6: 6), 0 = any;
    # ``tcp_scope`` 'packet' (tcp-pkt: per-packet payload only) or 'stream'
    # (tcp-stream: reassembled stream only) or None (both, Suricata's default).
    ipv: int = 0
    tcp_scope: str | None = None
    file: str = ""
    line: int = 0
    raw: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple[int, int]:
        return (self.gid, self.sid)
