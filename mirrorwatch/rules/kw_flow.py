"""Flow, state, threshold and header keywords.

flow, flowbits, threshold, detection_filter, dsize, flags / tcp.flags, and
the header checks (``Rule.header_checks``): ttl, itype, icode, icmp_id,
icmp_seq, ip_proto, id, seq, ack, window, tos, fragoffset, tcp.mss,
tcp.wscale, icmpv6.mtu, sameip, ipopts, fragbits, stream_size.
"""

from __future__ import annotations

from .kw_payload import bsize_value
from .model import FlowSpec, HeaderCheck, TcpFlags, Threshold
from .options import NOOPT, QUOTES_OPTIONAL, RuleError, Value
from .values import parse_cmp, parse_int, split_args

# dsize compares the payload size of one packet
DSIZE_MAX = 65535

# -- flags ---------------------------------------------------------------
TCP_FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80,
                 "2": 0x40, "1": 0x80, "0": 0}
FRAG_BITS = {"M": 0x1, "D": 0x2, "R": 0x4}


def parse_flagspec(value: str | None, what: str, table: dict[str, int]) -> TcpFlags:
    if value is None:
        raise RuleError(f"'{what}' needs a value")
    spec, _, mask = value.partition(",")
    spec = spec.strip()
    mode = ""
    if spec[:1] in ("+", "*", "!"):
        mode, spec = spec[0], spec[1:].strip()
    elif spec[-1:] in ("+", "*", "!"):
        mode, spec = spec[-1], spec[:-1].strip()
    if not spec:
        raise RuleError(f"{what}: no flags given")
    bits = 0
    for ch in spec.upper():
        if ch not in table:
            raise RuleError(f"{what}: unknown flag {ch!r}")
        if ch == "0" and len(spec) > 1:
            raise RuleError(f"{what}: '0' cannot be combined with other flags")
        bits |= table[ch]
    mbits = 0
    for ch in mask.strip().upper():
        if ch not in table or ch == "0":
            raise RuleError(f"{what}: unknown mask flag {ch!r}")
        mbits |= table[ch]
    return TcpFlags(mode, bits, mbits)


def kw_flow(st, v: Value) -> None:
    if st.rule.flow is not None:
        raise RuleError("more than one 'flow'")
    f = FlowSpec()
    for opt in split_args(v.text, "flow"):
        o = opt.lower()
        if o == "established":
            f.established = True
        elif o == "not_established":
            f.not_established = True
        elif o == "stateless":
            f.stateless = True
        elif o in ("to_server", "from_client"):
            if f.direction == "to_client":
                raise RuleError("flow: both to_server and to_client")
            f.direction = "to_server"
        elif o in ("to_client", "from_server"):
            if f.direction == "to_server":
                raise RuleError("flow: both to_server and to_client")
            f.direction = "to_client"
        elif o == "only_stream":
            f.only_stream = True
        elif o == "no_stream":
            f.no_stream = True
        elif o in ("only_frag", "no_frag"):
            st.rule.extra[o] = True
        else:
            raise RuleError(f"flow: unknown option {opt!r}")
    if f.established and f.not_established:
        raise RuleError("flow: both established and not_established")
    if f.only_stream and f.no_stream:
        raise RuleError("flow: both only_stream and no_stream")
    st.rule.flow = f


def kw_dsize(st, v: Value) -> None:
    if st.rule.dsize is not None:
        raise RuleError("more than one 'dsize'")
    st.rule.dsize = bsize_value(v.text, "dsize", DSIZE_MAX)


def kw_flags(st, v: Value) -> None:
    if st.rule.flags is not None:
        raise RuleError("more than one 'flags'")
    st.rule.flags = parse_flagspec(v.text, "flags", TCP_FLAG_BITS)


def kw_flowbits(st, v: Value) -> None:
    args = split_args(v.text, "flowbits")
    op = args[0].lower()
    if op == "noalert":
        if len(args) > 1:
            raise RuleError("flowbits:noalert takes no name")
        st.rule.flowbits.append(("noalert", []))
        st.rule.noalert = True
        return
    if op not in ("set", "isset", "isnotset", "unset", "toggle"):
        raise RuleError(f"flowbits: unknown command {args[0]!r}")
    if len(args) != 2 or not args[1]:
        raise RuleError(f"flowbits:{op} needs one name (a|b or a&b groups allowed)")
    expr = args[1].replace(" ", "")
    if "|" in expr and "&" in expr:
        raise RuleError("flowbits: cannot mix '|' and '&'")
    if "|" in expr:
        if op not in ("isset", "isnotset"):
            raise RuleError(f"flowbits:{op} does not take 'a|b' groups")
        st.rule.flowbits.append((op + "_any", expr.split("|")))
    else:
        st.rule.flowbits.append((op, expr.split("&")))


_THRESH_TRACK = ("by_src", "by_dst", "by_rule", "by_both", "by_flow")


def _threshold(v, what):
    fields: dict[str, str] = {}
    for part in split_args(v, what):
        k, _, val = part.strip().partition(" ")
        if not val.strip():
            raise RuleError(f"{what}: '{part}' needs a value")
        fields[k.strip().lower()] = val.strip()
    ttype = fields.pop("type", None)
    if what == "detection_filter":
        if ttype is not None:
            raise RuleError("detection_filter takes no 'type'")
        ttype = "detection_filter"
    elif ttype not in ("limit", "threshold", "both", "backoff"):
        raise RuleError(f"{what}: type must be limit, threshold, both or backoff")
    track = fields.pop("track", None)
    if track not in _THRESH_TRACK:
        raise RuleError(f"{what}: track must be one of {', '.join(_THRESH_TRACK)}")
    multiplier = None
    if ttype == "backoff":
        if "count" not in fields or "multiplier" not in fields or "seconds" in fields:
            raise RuleError(f"{what}: backoff needs count and multiplier (no seconds)")
        multiplier = parse_int(fields.pop("multiplier"), f"{what} multiplier", lo=1)
        fields["seconds"] = "0"
    if "count" not in fields or "seconds" not in fields:
        raise RuleError(f"{what}: needs count and seconds")
    count = parse_int(fields.pop("count"), f"{what} count", lo=0)
    seconds = parse_int(fields.pop("seconds"), f"{what} seconds", lo=0)
    unique = fields.pop("unique_on", None)
    if unique is not None and unique not in ("src_port", "dst_port"):
        raise RuleError(f"{what}: unique_on must be src_port or dst_port")
    if fields:
        raise RuleError(f"{what}: unknown option {next(iter(fields))!r}")
    return Threshold(ttype, track, count, float(seconds), unique, multiplier)


def kw_threshold(st, v: Value) -> None:
    if st.rule.threshold is not None:
        raise RuleError("more than one 'threshold'")
    st.rule.threshold = _threshold(v.text, "threshold")


def kw_detection_filter(st, v: Value) -> None:
    if st.rule.detection_filter is not None:
        raise RuleError("more than one 'detection_filter'")
    st.rule.detection_filter = _threshold(v.text, "detection_filter")


def kw_tcp_flags(st, v: Value) -> None:
    kw_flags(st, v)


# header keywords -> HeaderCheck
_NUMERIC_HEADER = {
    "ttl": 255, "itype": 255, "icode": 255, "icmp_id": 65535, "icmp_seq": 65535, "id": 65535,
    "seq": 2**32 - 1, "ack": 2**32 - 1, "window": 65535, "tos": 255, "fragoffset": 8191,
    "tcp.mss": 65535, "tcp.wscale": 255, "ip_proto": 255, "icmpv6.mtu": 2**32 - 1,
}
_IP_PROTO_NAMES = {"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "ipv6": 41, "gre": 47, "esp": 50, "ah": 51,
                   "ipv6-icmp": 58, "icmpv6": 58, "sctp": 132, "ipip": 4, "pim": 103}
_IPOPTS = ("rr", "eol", "nop", "ts", "sec", "esec", "lsrr", "lsrre", "ssrr", "satid", "any")


def _header_numeric(keyword):
    limit = _NUMERIC_HEADER[keyword]

    def handler(st, v: Value) -> None:
        text = v.text
        if keyword == "ip_proto":
            t = text.strip()
            body = t.lstrip("!<>= ")
            if body.lower() in _IP_PROTO_NAMES:
                text = t[:len(t) - len(body)] + str(_IP_PROTO_NAMES[body.lower()])
        op, a, b = parse_cmp(text, keyword, limit)
        st.rule.header_checks.append(HeaderCheck(keyword, op, a, b))

    return handler


def kw_sameip(st, v: Value) -> None:
    st.rule.header_checks.append(HeaderCheck("sameip", "=", True))


def kw_ipopts(st, v: Value) -> None:
    o = v.text.strip().lower()
    if o not in _IPOPTS:
        raise RuleError(f"ipopts: unknown option {v!r}")
    st.rule.header_checks.append(HeaderCheck("ipopts", "=", o))


def kw_fragbits(st, v: Value) -> None:
    st.rule.header_checks.append(HeaderCheck("fragbits", "flags", parse_flagspec(v.text, "fragbits", FRAG_BITS)))


def kw_stream_size(st, v: Value) -> None:
    args = split_args(v.text, "stream_size")
    if len(args) != 3:
        raise RuleError("stream_size needs side, operator, value")
    side = args[0].lower()
    if side not in ("server", "client", "both", "either"):
        raise RuleError("stream_size: side must be server, client, both or either")
    op = args[1]
    if op not in ("<", ">", "=", "!=", "<=", ">="):
        raise RuleError(f"stream_size: unknown operator {op!r}")
    st.rule.header_checks.append(HeaderCheck("stream_size", op, (side, op, parse_int(args[2], "stream_size", lo=0))))


KEYWORDS = {
    "flow": (kw_flow, 0),
    "flowbits": (kw_flowbits, 0),
    "threshold": (kw_threshold, 0),
    "detection_filter": (kw_detection_filter, 0),
    "dsize": (kw_dsize, 0),
    "flags": (kw_flags, 0),
    "tcp.flags": (kw_tcp_flags, 0),
    "sameip": (kw_sameip, NOOPT),
    "ipopts": (kw_ipopts, 0),
    "fragbits": (kw_fragbits, 0),
    "stream_size": (kw_stream_size, 0),
}
KEYWORDS.update({k: (_header_numeric(k), QUOTES_OPTIONAL if k == "ip_proto" else 0) for k in _NUMERIC_HEADER})
