"""Plain rule objects: what the parser produces and the detect room compiles.

Nothing here knows about packets.  The parser (``rules.parser``) fills these;
``detect`` reads them.  The payload keywords a rule keeps in ``Rule.matches``
are records of their own (``rules.matches``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mirrorwatch.rules.matches import Bsize, compare


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
        return compare(self.op, self.value, self.value2, n)


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
class XBit:
    """One xbits / hostbits command: ``cmd`` set|unset|toggle|isset|isnotset, ``name`` the bit,
    ``track`` ip_src|ip_dst (the host table) or ip_pair (the IP pair table), ``expire`` seconds
    a set bit lives, ``keyword`` xbits|hostbits (Suricata orders rules by them differently)."""

    cmd: str
    name: str
    track: str
    expire: int
    keyword: str = "xbits"


@dataclass
class FlowInt:
    """One flowint: ``name`` the flow variable; ``op`` a modifier (=, +, -: applied when the rule
    matched) or a condition (==, !=, <, <=, >, >=, isset, isnotset); ``value`` the operand, a
    number (0..2**32-1) or the name of another flowint (str), None for isset / isnotset."""

    name: str
    op: str
    value: int | str | None = None


@dataclass(frozen=True)
class TagSpec:
    """tag: as detect-tag.c: ``type`` 'session' (the flow) or 'host' (the packet's ``direction``
    address, 'src' or 'dst'); the packets that follow are tagged for ``count`` ``metric``
    ('packets', at most 256; 'seconds'; 'bytes')."""

    type: str
    count: int
    metric: str
    direction: str


@dataclass
class AppCheck:
    """An application-layer keyword that tests a parsed value, not a buffer.

    - 'app-layer-protocol': ``value`` protocol name (Suricata's, or 'unknown' /
      'failed'), ``negated``, ``mode`` 'direction' | 'to_server' | 'to_client' |
      'either' | 'final' | 'original';
    - 'tls.version': ``value`` the version number (0x0301 TLS 1.0 ... 0x0304 TLS 1.3);
      ``mode`` 'raw' when written as 0xNNNN (a TLS 1.3 draft is then not taken for 1.3);
    - 'ssl_version': ``value`` frozenset of 'sslv2' 'sslv3' 'tls1.0' 'tls1.1'
      'tls1.2' 'tls1.3'; ``negated``: none of them;
    - 'ssl_state': ``value`` frozenset of the states named ('client_hello'
      'server_hello' 'client_keyx' 'server_keyx' 'unknown'), ``value2`` those
      written with '!'; Suricata matches when (value & seen) ^ value2 is not empty;
    - 'tls_cert_expired', 'tls_cert_valid': no value;
    - 'tls.subject', 'tls.issuerdn', 'tls.fingerprint' (Suricata's value
      keywords): ``value`` the text the field must contain (``negated``: must not);
    - 'dns.opcode' (0..15), 'dns.rrtype' (0..65535): ``op``/``value``/``value2``
      as ``HeaderCheck``.
    """

    keyword: str
    value: Any = None
    op: str = "="
    value2: Any = None
    negated: bool = False
    mode: str = ""

    def test(self, n: int) -> bool:
        """Numeric comparison for dns.opcode / dns.rrtype."""
        return compare(self.op, self.value, self.value2, n)


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
    xbits: list = field(default_factory=list)  # XBit per xbits / hostbits command, in rule order
    flowints: list = field(default_factory=list)  # FlowInt per flowint keyword, in rule order
    noalert: bool = False
    threshold: Threshold | None = None
    detection_filter: Threshold | None = None
    header_checks: list = field(default_factory=list)  # ttl, itype, icode, icmp_id, icmp_seq, ip_proto, id, seq, ack, window, sameip, fragbits, ...
    tags: list = field(default_factory=list)  # TagSpec per tag: keyword, in rule order
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
    # application layer: ``app_proto`` is Suricata's protocol name ('http',
    # 'dns', 'tls', 'ssh', 'smtp', 'ftp', 'smb', 'dcerpc') from the header
    # (``alert http ...``; http1 -> http, ssl -> tls) or implied by a buffer or
    # keyword (http.uri -> http), None for plain rules; ``transport`` the
    # transports it runs on (('tcp',), or ('tcp', 'udp') for dns and dcerpc
    # headers; then ``proto`` is 'ip'), () for plain rules.  ``app_checks``:
    # AppCheck records (tls.version, ssl_state, app-layer-protocol...).
    app_proto: str | None = None
    transport: tuple[str, ...] = ()
    app_checks: list = field(default_factory=list)
    # the source / destination address expression uses negation ('!'), directly
    # or through a variable: Suricata keeps such rules out of its IP-only engine
    src_negated: bool = False
    dst_negated: bool = False
    file: str = ""
    line: int = 0
    raw: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple[int, int]:
        return (self.gid, self.sid)
