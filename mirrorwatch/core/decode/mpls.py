"""MPLS label stacks (RFC 3032), then what the bottom label carries: IPv4 or IPv6 (explicit
null labels, or told apart by the version nibble) or an Ethernet pseudowire (RFC 4448)."""

from __future__ import annotations

from mirrorwatch.core.decode.context import Layer, call
from mirrorwatch.core.decode.ethernet import decode_inner_ethernet
from mirrorwatch.core.decode.ip import decode_raw_ip
from mirrorwatch.core.decode.ipv4 import decode_ipv4
from mirrorwatch.core.decode.ipv6 import decode_ipv6
from mirrorwatch.core.decode.wire import u32

MPLS_HLEN = 4
MPLS_BOTTOM_OF_STACK = 0x100
MPLS_LABEL_SHIFT = 12
MPLS_LABEL_IPV4_NULL = 0
MPLS_LABEL_IPV6_NULL = 2
PW_CONTROL_WORD_LEN = 4  # first nibble 0: a pseudowire control word, then the Ethernet frame

EXPLICIT_NULL = {MPLS_LABEL_IPV4_NULL: decode_ipv4, MPLS_LABEL_IPV6_NULL: decode_ipv6}


def mpls_layer(d, p, f: bytes, off: int, end: int, depth: int):
    while True:
        depth += 1
        if depth > d.max_layers:
            return d.error("too_many_layers")
        if end - off < MPLS_HLEN:
            return d.error("truncated_mpls")
        shim = u32(f, off)
        off += MPLS_HLEN
        if shim & MPLS_BOTTOM_OF_STACK:
            break
    d.note("mpls")
    fn = EXPLICIT_NULL.get(shim >> MPLS_LABEL_SHIFT)
    if fn is not None:
        return call(fn, d, p, f, off, end, depth)
    if end > off and f[off] >> 4 == 0:
        return decode_inner_ethernet(d, p, f, off + PW_CONTROL_WORD_LEN, end, depth)
    return call(decode_raw_ip, d, p, f, off, end, depth)


decode_mpls = Layer.of(mpls_layer)
