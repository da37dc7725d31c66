"""PPP (RFC 1661) framing: optional HDLC address/control, a 1- or 2-byte protocol field."""

from __future__ import annotations

from mirrorwatch.core.decode.context import Layer, call
from mirrorwatch.core.decode.decode_events import PPP_PKT_TOO_SMALL
from mirrorwatch.core.decode.ipv4 import decode_ipv4
from mirrorwatch.core.decode.ipv6 import decode_ipv6
from mirrorwatch.core.decode.numbers import PPP_IPV4, PPP_IPV6
from mirrorwatch.core.decode.wire import u16

PPP_ADDRESS = 0xFF
PPP_CONTROL = 0x03
PPP_PROTO_LAST_BYTE = 0x01  # set in the last byte of the protocol field (compressed: the only one)

PPP_DECODERS = {PPP_IPV4: decode_ipv4, PPP_IPV6: decode_ipv6}


def ppp_protocol(f: bytes, off: int, end: int) -> tuple[int, int]:
    """(protocol, offset of its payload) of the PPP frame at ``off``; protocol -1 when truncated."""
    if end - off >= 2 and f[off] == PPP_ADDRESS and f[off + 1] == PPP_CONTROL:
        off += 2
    if end <= off:
        return -1, off
    if f[off] & PPP_PROTO_LAST_BYTE:
        return f[off], off + 1
    if end - off < 2:
        return -1, off
    return u16(f, off), off + 2


def ppp_layer(d, p, f: bytes, off: int, end: int, depth: int):
    proto, inner = ppp_protocol(f, off, end)
    if proto < 0:
        return d.fail(p, PPP_PKT_TOO_SMALL, "truncated_ppp")
    fn = PPP_DECODERS.get(proto)
    if fn is None:  # LCP, IPCP, CHAP...: control traffic
        d.note("non_ip")
        return p
    return call(fn, d, p, f, inner, end, depth + 1)


decode_ppp = Layer.of(ppp_layer)
