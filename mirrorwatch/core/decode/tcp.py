"""TCP (RFC 9293): the header, and the one parser of its options the engine has."""

from __future__ import annotations

import struct

from mirrorwatch.core.decode.numbers import PROTO_TCP

TCP_HLEN = 20
TCP_FLAGS_MASK = 0xFF

# option kinds
TCPOPT_EOL = 0
TCPOPT_NOP = 1
TCPOPT_MSS = 2
TCPOPT_WSCALE = 3
TCPOPT_WSCALE_LEN = 3
TCP_WSCALE_MAX = 14  # RFC 7323: a larger shift is taken as 14

_TCP = struct.Struct("!HHIIHHHH").unpack_from


def decode_tcp(d, p, f: bytes, l4: int, ip_end: int, depth: int):
    if ip_end - l4 < TCP_HLEN:
        return d.invalid(p, "truncated_tcp")
    sport, dport, seq, ack, offfl, win, _, urp = _TCP(f, l4)
    thl = (offfl >> 12) << 2
    if thl < TCP_HLEN or l4 + thl > ip_end:
        return d.invalid(p, "tcp_hlen_invalid")
    d.n_tcp += 1
    p.sport = sport
    p.dport = dport
    p.seq = seq
    p.ack = ack
    p.flags = offfl & TCP_FLAGS_MASK
    p.win = win
    p.urp = urp
    p.tcp_hlen = thl
    if thl > TCP_HLEN:
        p.tcp_opts = f[l4 + TCP_HLEN:l4 + thl]
    p.payload = f[l4 + thl:ip_end]
    if d.check:
        d.verify_transport(p, f, l4, ip_end, PROTO_TCP)
    return p


def tcp_option(opts: bytes, kind: int) -> bytes | None:
    """The value (bytes after kind and length) of the first option ``kind`` in the raw option
    bytes ``opts`` (``Packet.tcp_opts``); None when absent, or when the list ends (EOL) or
    turns malformed (a length under 2 or past the end) before it."""
    i, n = 0, len(opts)
    while i < n:
        k = opts[i]
        if k == TCPOPT_EOL:
            return None
        if k == TCPOPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            return None
        ln = opts[i + 1]
        if ln < 2 or i + ln > n:
            return None
        if k == kind:
            return opts[i + 2:i + ln]
        i += ln
    return None


def window_scale(opts: bytes) -> int:
    """The window scale shift a SYN's options announce (0 when absent or malformed), at most 14."""
    v = tcp_option(opts, TCPOPT_WSCALE)
    if v is None or len(v) != TCPOPT_WSCALE_LEN - 2:
        return 0
    return min(v[0], TCP_WSCALE_MAX)
