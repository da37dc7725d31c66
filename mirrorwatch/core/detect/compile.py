"""Rule -> ``CRule``: everything detect needs to judge one packet, precomputed once.

Classification follows Suricata's signature types:

- ``iponly``: no payload keyword, no flow/dsize/flags/header keyword, flowbits
  only ``set``, no flowint (xbits / hostbits of any kind, Suricata's SIGMATCH_IPONLY_COMPAT):
  judged once per flow direction (first packet each way).
- ``pkt``: no payload literal to prefilter on (header-only rules, pcre-only,
  negated-content-only, byte_test-only...): judged on every packet of its
  protocol/port group.
- ``mpm``: has a positive content; its fast pattern goes into hyperscan and the
  rule is judged only when that literal is present.

TCP payload rules get Suricata's stream/packet requirements
(``SIG_FLAG_REQUIRE_STREAM``/``REQUIRE_PACKET``): plain ``tcp``/``ip`` content
rules inspect reassembled stream data, and also single packets when a content
has depth/offset or the rule uses stream_size; ``tcp-pkt`` rules and rules with
dsize, flags or another header keyword (ttl, seq, window, itype...) only
packets, that one included when its data went into the stream (a TCP Fast Open
SYN's); ``tcp-stream`` only the stream.
"""

from __future__ import annotations

from bisect import bisect_right

from mirrorwatch.core.detect.buffers import VALUE_KEYWORDS
from mirrorwatch.core.detect.flowint import compile_flowints
from mirrorwatch.core.detect.xbits import compile_xbits
from mirrorwatch.rules.matches import Content
from mirrorwatch.rules.model import Rule

PROTO_NUMS: dict[str, tuple[int, ...] | None] = {
    "tcp": (6,),
    "udp": (17,),
    "icmp": (1, 58),  # Suricata: 'icmp' matches ICMPv4 and ICMPv6
    "icmpv4": (1,),
    "icmpv6": (58,),
    "sctp": (132,),
    "ip": None,
    "ipv4": None,
    "ipv6": None,
    "tcp-pkt": (6,),
    "tcp-stream": (6,),
    "pkthdr": None,
}
# Application-layer protocols the applayer room detects by content: their rules
# apply only to flows detected as that protocol (Suricata's names).
APP_PROTOS = {"http": (6,), "tls": (6,), "dns": (17, 6), "ssh": (6,), "smtp": (6,), "ftp": (6,), "smb": (6,),
              "dcerpc": (6, 17)}
PROTO_ALIASES = {"http1": "http", "ssl": "tls"}
# Application-layer protocols without detection here: their rules are judged on
# the transport they ride on (any port).
APP_PROTO_TRANSPORT = {"ntp": (17,), "dhcp": (17,), "snmp": (17,), "tftp": (17,),
                       "krb5": (6, 17), "sip": (6, 17), "ike": (17,), "quic": (17,), "mdns": (17,)}

ACTION_RANK = {"pass": 0, "drop": 1, "reject": 2, "rejectsrc": 2, "rejectdst": 2, "rejectboth": 2, "alert": 3}

# flowbits commands that change state vs. the ones that test it
FB_WRITE = {"set", "unset", "toggle"}
# the one header keyword that leaves a tcp payload rule inspecting the stream (and packets too)
STREAM_AND_PACKET_HEADERS = frozenset(("stream_size",))
FB_READ = {"isset", "isnotset", "isset_any", "isnotset_any"}


class Unsupported(ValueError):
    """A rule uses something detect cannot judge faithfully; it is skipped with this reason."""


def pattern_strength(pat: bytes) -> int:
    """Suricata's PatternStrength: rarer-looking literals make better fast patterns."""
    seen = set()
    s = 0
    for b in pat:
        if b in seen:
            s += 1
            continue
        seen.add(b)
        if 65 <= b <= 90 or 97 <= b <= 122:
            s += 3
        elif 32 <= b < 127 or b in (0, 1, 0xFF):
            s += 4
        else:
            s += 6
    return s


def fast_pattern_content(contents: list[Content]) -> Content | None:
    """Suricata's fast_pattern choice: explicit one, else the longest positive
    content (ties: strongest, then first).  None when only negated contents exist."""
    chosen = next((c for c in contents if c.fast_pattern), None)
    if chosen is None:
        pos = [c for c in contents if not c.negated and c.pattern]
        if not pos:
            return None
        maxlen = max(len(c.pattern) for c in pos)
        best = -1
        for c in pos:
            if len(c.pattern) == maxlen:
                st = pattern_strength(c.pattern)
                if st > best:
                    best, chosen = st, c
    if chosen is None or chosen.negated or not chosen.pattern:
        return None
    return chosen


def fast_literal(c: Content) -> tuple[bytes, bool]:
    """The literal a fast-pattern content puts into hyperscan (after fast_pattern:chop)."""
    lit = c.pattern
    if c.fast_pattern_chop:
        off, ln = c.fast_pattern_chop
        lit = lit[off:off + ln] or lit
    return bytes(lit), bool(c.nocase)


def select_fast_pattern(contents: list[Content]) -> tuple[bytes, bool] | None:
    """The fast-pattern literal of a list of contents, or None (see ``fast_pattern_content``)."""
    chosen = fast_pattern_content(contents)
    return fast_literal(chosen) if chosen is not None else None


# -- addresses and ports ------------------------------------------------------

# addresses remembered per address set: a scan of random addresses must not
# grow memory with (address sets x addresses seen)
_ADDR_CACHE = 1024
# a port set with at most this many ports is tested as a set of them, a larger one by its ranges
PORT_VALUES_MAX = 4096


class AddrMatcher:
    """Membership test for one address set on packed (4 or 16 byte) addresses.

    Uses the parser's exact sorted disjoint ranges (``AddrSet.v4``/``v6``).
    """

    __slots__ = ("starts4", "ends4", "starts6", "ends6", "cache")

    def __init__(self, aset):
        v4, v6 = aset.v4, aset.v6
        self.starts4 = [r[0] for r in v4]
        self.ends4 = [r[1] for r in v4]
        self.starts6 = [r[0] for r in v6]
        self.ends6 = [r[1] for r in v6]
        self.cache = {}

    def test(self, packed) -> bool:
        r = self.cache.get(packed)
        if r is None:
            n = int.from_bytes(packed, "big")
            if len(packed) == 4:
                i = bisect_right(self.starts4, n) - 1
                r = i >= 0 and n <= self.ends4[i]
            else:
                i = bisect_right(self.starts6, n) - 1
                r = i >= 0 and n <= self.ends6[i]
            if len(self.cache) >= _ADDR_CACHE:
                self.cache.clear()
            self.cache[packed] = r
        return r


def port_values(pset, limit: int = 64) -> frozenset | None:
    """The explicit ports of a port set when there are at most ``limit``, else None."""
    if pset is None or pset.any or pset.exclude:
        return None
    ports: set = set()
    for lo, hi in pset.include:
        if hi - lo + 1 + len(ports) > limit:
            return None
        ports.update(range(lo, hi + 1))
    return frozenset(ports)


class PortMatcher:
    """Membership test for one port set: its explicit ports (``values``) when there are at most
    ``PORT_VALUES_MAX``, else its included/excluded ranges (``inc``/``exc``)."""

    __slots__ = ("values", "inc", "exc")

    def __init__(self, pset):
        self.values = port_values(pset, PORT_VALUES_MAX)
        self.inc = tuple(pset.include) or ((0, 65535),)
        self.exc = tuple(pset.exclude)

    def test(self, port: int) -> bool:
        if self.values is not None:
            return port in self.values
        for lo, hi in self.exc:
            if lo <= port <= hi:
                return False
        for lo, hi in self.inc:
            if lo <= port <= hi:
                return True
        return False


def port_matcher(pset) -> PortMatcher | None:
    """The port set's matcher, or None when the set is 'any'."""
    if pset is None or pset.any:
        return None
    return PortMatcher(pset)


# -- the compiled rule --------------------------------------------------------

class CRule:
    """Flat, precomputed view of one Rule used on the hot path (its fields' C types: compile.pxd)."""

    __slots__ = (
        "rule", "key", "num", "order", "kind", "action", "protos", "ipv",
        "src", "dst", "sport", "dport", "bidir",
        "established", "not_established", "to_server", "to_client", "flowspec", "needs_flow",
        "dsize", "dsize_needs_payload", "flags", "hdr", "fb_read", "fb_write", "xb_read", "xb_write", "fi_read",
        "fi_write", "noalert",
        "matches", "fp", "req_stream", "req_packet", "stream_only",
        "threshold", "dfilter", "app_proto", "tx", "app_checks",
    )

    def __init__(self, rule: Rule, addr_cache: dict):
        self.rule = rule
        self.key = (rule.gid, rule.sid)
        self.num = 0
        self.action = (rule.action or "alert").lower()
        if self.action not in ACTION_RANK:
            raise Unsupported(f"action {rule.action!r}")
        proto = (rule.proto or "ip").lower()
        if proto in PROTO_NUMS:
            self.protos = PROTO_NUMS[proto]
        elif PROTO_ALIASES.get(proto, proto) in APP_PROTOS:
            self.protos = APP_PROTOS[PROTO_ALIASES.get(proto, proto)]
        elif proto in APP_PROTO_TRANSPORT:
            self.protos = APP_PROTO_TRANSPORT[proto]
        else:
            raise Unsupported(f"protocol {proto}")
        self.ipv = rule.ipv or (4 if proto == "ipv4" else 6 if proto in ("ipv6", "icmpv6") else 0)
        scope = rule.tcp_scope or ("packet" if proto == "tcp-pkt" else "stream" if proto == "tcp-stream" else None)

        def addr(aset):
            if aset is None or aset.any:
                return None
            m = addr_cache.get(id(aset))
            if m is None:
                m = addr_cache[id(aset)] = AddrMatcher(aset)
            return m

        self.src, self.dst = addr(rule.src), addr(rule.dst)
        self.sport, self.dport = port_matcher(rule.sport), port_matcher(rule.dport)
        self.bidir = rule.direction == "<>"

        fs = rule.flow
        self.flowspec = fs
        self.established = bool(fs and fs.established)
        self.not_established = bool(fs and fs.not_established)
        direction = fs.direction if fs else None
        self.to_server = direction in ("to_server", "from_client")
        self.to_client = direction in ("to_client", "from_server")
        self.dsize = rule.dsize
        # Suricata's SIG_MASK_REQUIRE_PAYLOAD: dsize >, >=, != and ranges never match an empty payload
        self.dsize_needs_payload = rule.dsize is not None and rule.dsize.op in (">", ">=", "!=", "<>")
        self.flags = rule.flags
        self.hdr = list(rule.header_checks)
        self.fb_read = [(op, names) for op, names in rule.flowbits if op in FB_READ]
        self.fb_write = [(op, names) for op, names in rule.flowbits if op in FB_WRITE]
        self.noalert = bool(rule.noalert or any(op == "noalert" for op, _ in rule.flowbits))
        # xbits / hostbits (``xbits``): checks and commands, and their part in the rule order
        self.xb_read, self.xb_write, xb_order = compile_xbits(rule.xbits)
        # flowint (``flowint``): conditions, modifiers, and their part in the rule order
        self.fi_read, self.fi_write, fi_order = compile_flowints(rule.flowints)
        # flowbits, flowint conditions, and flow: with anything but 'stateless', only match packets
        # that have a flow
        flow_opts = fs is not None and (self.established or self.not_established or direction is not None
                                        or fs.only_stream or fs.no_stream)
        self.needs_flow = bool(flow_opts or self.fb_read or self.fb_write or self.fi_read)
        self.threshold = rule.threshold
        self.dfilter = rule.detection_filter

        app = [m for m in rule.matches if getattr(m, "buffer", "payload") != "payload"]
        payload = [m for m in rule.matches if getattr(m, "buffer", "payload") == "payload"]
        self.tx = None
        self.app_proto = rule_proto(rule)
        checks = getattr(rule, "app_checks", ())
        self.app_checks = [_app_check(a) for a in checks if a.keyword not in VALUE_KEYWORDS] or None
        if app or any(a.keyword in VALUE_KEYWORDS for a in checks):
            # the buffer keywords (payload ones included): ``txrule.compile_tx`` makes them a TxSpec at build
            self.tx = list(rule.matches)
            payload = []
        elif self.app_proto is not None and self.app_proto not in APP_PROTOS:
            raise Unsupported(f"application protocol {self.app_proto}")
        if self.app_proto is not None:
            self.protos = APP_PROTOS[self.app_proto] if self.protos is None else self.protos
        self.matches = payload or None
        contents = [m for m in payload if isinstance(m, Content)]
        self.fp = select_fast_pattern(contents) if contents else None

        tcp_possible = self.protos is None or 6 in self.protos
        only_stream = bool(fs and fs.only_stream) or scope == "stream"
        no_stream = bool(fs and fs.no_stream) or scope == "packet"
        self.req_stream = self.req_packet = self.stream_only = False
        if self.matches:
            if no_stream or self.dsize is not None or self.flags is not None or any(
                    h.keyword not in STREAM_AND_PACKET_HEADERS for h in self.hdr):
                # dsize, flags and the header keywords set SIG_FLAG_REQUIRE_PACKET while parsing:
                # such rules inspect every packet's payload and never the stream
                self.req_packet = True
            elif only_stream:
                self.req_stream = self.stream_only = True
            elif tcp_possible:
                self.req_stream = True
                anchored = any(isinstance(c, Content) and (c.depth is not None or c.offset is not None)
                               for c in contents)
                self.req_packet = anchored or any(h.keyword == "stream_size" for h in self.hdr)
            else:
                self.req_packet = True
        elif no_stream:
            self.req_packet = True

        if self.tx is not None:
            self.kind = "tx"
        elif self.matches:
            self.kind = "mpm" if self.fp is not None else "pkt"
        elif (direction is None and self.app_proto is None and not self.established and not self.not_established
              and self.dsize is None and self.flags is None and not self.hdr and not self.fb_read
              and all(op in ("set", "noalert") for op, _ in rule.flowbits) and not rule.flowints
              and not only_stream):
            self.kind = "iponly"
        else:
            self.kind = "pkt"

        fb_type = 1  # Suricata sigorder: flowbits set-only, set+read, read-only, unused
        if self.fb_write and self.fb_read:
            fb_type = 3
        elif self.fb_write:
            fb_type = 4
        elif self.fb_read:
            fb_type = 2
        self.order = (ACTION_RANK[self.action], -fb_type, -fi_order, -xb_order[0], -xb_order[1], rule.priority)

    def __repr__(self) -> str:
        return f"<CRule {self.key[0]}:{self.key[1]} {self.kind} #{self.num}>"


def rule_proto(rule) -> str | None:
    """The application protocol a rule is gated on (Suricata's name), or None."""
    p = getattr(rule, "app_proto", None) or (rule.proto or "").lower()
    p = PROTO_ALIASES.get(p, p)
    return p if p in APP_PROTOS else None


def _app_check(a):
    """An application-layer value keyword as ``check(flow) -> bool`` (app-layer-protocol only)."""
    if a.keyword != "app-layer-protocol":
        raise Unsupported(f"keyword {a.keyword}")
    want = None if a.value == "unknown" else PROTO_ALIASES.get(a.value, a.value)

    def check(flow) -> bool:
        proto = flow.app.proto if flow is not None and flow.app is not None else None
        return (proto == want) != a.negated

    return check
