"""TCP (RFC 9293): the header, and the one parser of its options the engine has."""

from __future__ import annotations

from mirrorwatch.core.decode.context import Layer
from mirrorwatch.core.decode.decode_events import (
    TCP_HLEN_TOO_SMALL,
    TCP_INVALID_OPTLEN,
    TCP_PKT_TOO_SMALL,
)
from mirrorwatch.core.decode.numbers import PROTO_TCP
from mirrorwatch.core.decode.wire import take, u16, u32

TCP_HLEN = 20

# option kinds
TCPOPT_EOL = 0
TCPOPT_NOP = 1
TCPOPT_MSS = 2
TCPOPT_WSCALE = 3
TCPOPT_WSCALE_LEN = 3
TCP_WSCALE_MAX = 14  # RFC 7323: a larger shift is taken as 14
# where the header's fields are
TCP_DPORT_OFF = 2
TCP_SEQ_OFF = 4
TCP_ACK_OFF = 8
TCP_OFF_OFF = 12  # data offset (high nibble)
TCP_FLAGS_OFF = 13
TCP_WIN_OFF = 14
TCP_URP_OFF = 18


def tcp_layer(d, p, f: bytes, l4: int, ip_end: int, depth: int):
    if ip_end - l4 < TCP_HLEN:
        return d.invalid(p, "truncated_tcp", TCP_PKT_TOO_SMALL)
    thl = (f[l4 + TCP_OFF_OFF] >> 4) << 2
    if l4 + thl > ip_end:
        return d.invalid(p, "tcp_hlen_invalid", TCP_HLEN_TOO_SMALL)
    if thl < TCP_HLEN:  # Suricata: the option length (hlen - 20, 8 bits) wraps past its maximum
        return d.invalid(p, "tcp_hlen_invalid", TCP_INVALID_OPTLEN)
    d.n_tcp += 1
    p.sport = u16(f, l4)
    p.dport = u16(f, l4 + TCP_DPORT_OFF)
    p.seq = u32(f, l4 + TCP_SEQ_OFF)
    p.ack = u32(f, l4 + TCP_ACK_OFF)
    p.flags = f[l4 + TCP_FLAGS_OFF]
    p.win = u16(f, l4 + TCP_WIN_OFF)
    p.urp = u16(f, l4 + TCP_URP_OFF)
    p.tcp_hlen = thl
    if thl > TCP_HLEN:
        p.tcp_opts = take(f, l4 + TCP_HLEN, l4 + thl)
    p.payload = take(f, l4 + thl, ip_end)
    if d.check:
        d.verify_transport(p, f, l4, ip_end, PROTO_TCP)
    return p


decode_tcp = Layer.of(tcp_layer)


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
