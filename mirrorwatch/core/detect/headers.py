"""Header keywords (ttl, itype, icmp_id, seq, fragbits, ipopts, stream_size ...) as predicates.

``compile_check(hc)`` turns one parsed ``HeaderCheck`` into ``f(pkt, flow, d) -> bool``
once, at rule-compile time; unknown keywords raise ``Unsupported``.
"""

from __future__ import annotations

from mirrorwatch.core.decode.tcp import TCPOPT_MSS, TCPOPT_WSCALE, tcp_option
from mirrorwatch.core.detect.compile import Unsupported
from mirrorwatch.core.detect.decode_event import event_check
from mirrorwatch.rules.kw_events import KEYWORD as DECODE_EVENT

# IPv4 option type -> Suricata ipopts name
_IPOPTS = {0x07: "rr", 0x00: "eol", 0x01: "nop", 0x83: "lsrr", 0x89: "ssrr", 0x44: "ts",
           0x82: "sec", 0x85: "esec", 0x88: "satid", 0x94: "rtralt"}


def _num(attr: str, valid=None):
    def get(pkt, flow, d):
        if valid is not None and not valid(pkt):
            return None
        v = getattr(pkt, attr)
        return None if v is None or v < 0 else v

    return get


def _is_icmp(pkt) -> bool:
    return pkt.proto == 1 or pkt.proto == 58


def _is_tcp(pkt) -> bool:
    return pkt.proto == 6


def _ip_flags(pkt):
    """IPv4 flag bits (R=4, D=2, M=1) read from the frame; None for IPv6."""
    if pkt.ipv != 4:
        return None
    off = pkt.ip_off + 6
    frame = pkt.frame
    if len(frame) <= off:
        return None
    return frame[off] >> 5


def _frag_offset(pkt, flow, d):
    if pkt.ipv != 4:
        return None
    off = pkt.ip_off + 6
    frame = pkt.frame
    if len(frame) <= off + 1:
        return None
    return ((frame[off] & 0x1F) << 8 | frame[off + 1]) * 8


def _tcp_opt(kind: int):
    def get(pkt, flow, d):
        if pkt.proto != 6:
            return None
        body = tcp_option(pkt.tcp_opts, kind)
        return int.from_bytes(body, "big") if body else None

    return get


NUMERIC = {
    "ttl": _num("ttl"),
    "itype": _num("icmp_type", _is_icmp),
    "icode": _num("icmp_code", _is_icmp),
    "icmp_id": _num("icmp_id", _is_icmp),
    "icmp_seq": _num("icmp_seq", _is_icmp),
    "ip_proto": _num("proto"),
    "id": _num("ip_id", lambda p: p.ipv == 4),
    "seq": _num("seq", _is_tcp),
    "ack": _num("ack", _is_tcp),
    "window": _num("win", _is_tcp),
    "tcp.hdr_len": _num("tcp_hlen", _is_tcp),
    "tos": _num("tos"),
    "fragoffset": _frag_offset,
    "tcp.mss": _tcp_opt(TCPOPT_MSS),
    "tcp.wscale": _tcp_opt(TCPOPT_WSCALE),
}


def _stream_sizes(flow, d):
    """(client, server) stream sizes as Suricata's stream_size: next_seq - isn of each side
    (data bytes plus the SYN and FIN), 0 for a side whose handshake was not seen."""
    out = []
    isn = getattr(flow, "isn", None) or (None, None)
    for i in (0, 1):
        nxt = flow.next_seq[i]
        out.append((nxt - isn[i]) & 0xFFFFFFFF if nxt is not None and isn[i] is not None else 0)
    return out


_CMP = {
    "=": lambda a, b: a == b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b,
}


def compile_check(hc):
    kw = hc.keyword
    getter = NUMERIC.get(kw)
    if getter is not None:
        if isinstance(hc.value, str):
            raise Unsupported(f"{kw} with a variable value")
        test = hc.test

        def check(pkt, flow, d):
            v = getter(pkt, flow, d)
            return v is not None and test(v)

        return check
    if kw == DECODE_EVENT:
        return event_check(hc.value)
    if kw == "sameip":
        want = bool(hc.value) if hc.op != "!=" else not bool(hc.value)
        return lambda pkt, flow, d: (pkt.src == pkt.dst) == want
    if kw == "fragbits":
        fl = hc.value
        return lambda pkt, flow, d: (lambda v: v is not None and fl.test(v))(_ip_flags(pkt))
    if kw == "ipopts":
        name = str(hc.value).lower()

        def ipopts(pkt, flow, d):
            if pkt.ipv != 4:
                return False
            o = pkt.ip_opts
            if name == "any":
                return len(o) > 0
            i, n = 0, len(o)
            while i < n:
                t = o[i]
                if _IPOPTS.get(t) == name:
                    return True
                if t in (0, 1):
                    i += 1
                    continue
                if i + 1 >= n or o[i + 1] < 2:
                    break
                i += o[i + 1]
            return False

        return ipopts
    if kw == "stream_size":
        side, op, n = hc.value
        cmp = _CMP.get(op)
        if cmp is None:
            raise Unsupported(f"stream_size operator {op!r}")

        def stream_size(pkt, flow, d):
            if pkt.proto != 6 or flow is None:
                return False
            c, s = _stream_sizes(flow, d)
            if side == "client":
                return cmp(c, n)
            if side == "server":
                return cmp(s, n)
            if side == "both":
                return cmp(c, n) and cmp(s, n)
            return cmp(c, n) or cmp(s, n)  # either

        return stream_size
    raise Unsupported(f"keyword {kw}")
