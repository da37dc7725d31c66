"""MPLS label stacks (RFC 3032), then what the bottom label carries: IPv4 or IPv6 (explicit
null labels, or told apart by the version nibble) or an Ethernet pseudowire (RFC 4448)."""

from __future__ import annotations

from mirrorwatch.core.decode.context import Layer, call
from mirrorwatch.core.decode.decode_events import (
    MPLS_HEADER_TOO_SMALL,
    MPLS_PKT_TOO_SMALL,
    MPLS_UNKNOWN_PAYLOAD_TYPE,
    TOO_MANY_LAYERS,
)
from mirrorwatch.core.decode.ethernet import decode_inner_ethernet
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
# Suricata's best guess at what another bottom label carries, by the payload's first nibble
MPLS_PROTO_ETHERNET_PW = 0
MPLS_GUESS = {4: decode_ipv4, 6: decode_ipv6}


def mpls_layer(d, p, f: bytes, off: int, end: int, depth: int):
    while True:
        depth += 1
        if depth > d.max_layers:
            return d.fail(p, TOO_MANY_LAYERS, "too_many_layers")
        if end - off < MPLS_HLEN:
            return d.fail(p, MPLS_HEADER_TOO_SMALL, "truncated_mpls")
        shim = u32(f, off)
        off += MPLS_HLEN
        if shim & MPLS_BOTTOM_OF_STACK:
            break
    d.note("mpls")
    fn = EXPLICIT_NULL.get(shim >> MPLS_LABEL_SHIFT)
    if fn is not None:
        return call(fn, d, p, f, off, end, depth)
    # Suricata's best guess at the payload: room for a control word, then the first nibble
    if end - off < PW_CONTROL_WORD_LEN:
        return d.fail(p, MPLS_PKT_TOO_SMALL, "truncated_mpls")
    nibble = f[off] >> 4
    if nibble == MPLS_PROTO_ETHERNET_PW:
        return decode_inner_ethernet(d, p, f, off + PW_CONTROL_WORD_LEN, end, depth)
    fn = MPLS_GUESS.get(nibble)
    if fn is None:
        return d.fail(p, MPLS_UNKNOWN_PAYLOAD_TYPE, "bad_ip_version")
    return call(fn, d, p, f, off, end, depth)


decode_mpls = Layer.of(mpls_layer)
