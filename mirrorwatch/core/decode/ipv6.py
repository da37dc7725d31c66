"""IPv6 (RFC 8200): the fixed header, the extension headers, fragments handed to the reassembler."""

from __future__ import annotations

from mirrorwatch.core.decode.context import Layer, call
from mirrorwatch.core.decode.decode_events import (
    IPV6_PKT_TOO_SMALL,
    IPV6_TRUNC_EXTHDR,
    IPV6_TRUNC_PKT,
    IPV6_WRONG_IP_VERSION,
    TOO_MANY_LAYERS,
)
from mirrorwatch.core.decode.fragments import (
    IP6F_MORE_FRAG,
    IP6F_OFF_MASK,
    IPV6_FRAG_HLEN,
    defragment_ipv6,
)
from mirrorwatch.core.decode.numbers import (
    IPV6_EXT_MIN,
    IPV6_HLEN,
    IPV6_HLIM_OFF,
    IPV6_NXT_OFF,
    IPV6_PLEN_OFF,
    PROTO_AH,
    PROTO_DSTOPTS,
    PROTO_EXPERIMENT1,
    PROTO_EXPERIMENT2,
    PROTO_FRAGMENT,
    PROTO_HIP,
    PROTO_HOPOPTS,
    PROTO_MOBILITY,
    PROTO_ROUTING,
    PROTO_SHIM6,
)
from mirrorwatch.core.decode.wire import take, u16, u32

# extension headers walked to reach the upper layer
EXTENSION_HEADERS = frozenset((PROTO_HOPOPTS, PROTO_ROUTING, PROTO_FRAGMENT, PROTO_AH, PROTO_DSTOPTS, PROTO_MOBILITY,
                               PROTO_HIP, PROTO_SHIM6, PROTO_EXPERIMENT1, PROTO_EXPERIMENT2))
# the same set as a byte per next-header value, 1 for an extension header: compiled, one C read
IS_EXTENSION = bytes(nh in EXTENSION_HEADERS for nh in range(256))
IP6F_BITS = IP6F_OFF_MASK | IP6F_MORE_FRAG  # offset or M flag: a real fragment (else an atomic one)

IPV6_SRC_OFF = 8
IPV6_DST_OFF = 24
IPV6_ALEN = 16
IPV6_TCLASS_SHIFT = 4  # the traffic class: the 8 bits after the version nibble
IP6F_OFFLG_OFF = 2  # where the fragment header's offset and flags are, and its identification
IP6F_IDENT_OFF = 4


def ipv6_layer(d, p, f: bytes, off: int, end: int, depth: int):
    if end - off < IPV6_HLEN:
        return d.fail(p, IPV6_PKT_TOO_SMALL, "truncated_ipv6")
    if f[off] >> 4 != 6:
        return d.fail(p, IPV6_WRONG_IP_VERSION, "bad_ip_version")
    plen = u16(f, off + IPV6_PLEN_OFF)
    nh = f[off + IPV6_NXT_OFF]
    ip_end = off + IPV6_HLEN + plen
    if plen == 0 and nh == PROTO_HOPOPTS:
        ip_end = end  # jumbogram / BIG TCP: the length is in a hop-by-hop option
        d.note("ipv6_jumbo")
    if ip_end > end:
        return d.fail(p, IPV6_TRUNC_PKT, "truncated_ipv6")
    d.n_ipv6 += 1
    p.ipv = 6
    p.src = take(f, off + IPV6_SRC_OFF, off + IPV6_SRC_OFF + IPV6_ALEN)
    p.dst = take(f, off + IPV6_DST_OFF, off + IPV6_DST_OFF + IPV6_ALEN)
    p.ttl = f[off + IPV6_HLIM_OFF]
    p.tos = (u16(f, off) >> IPV6_TCLASS_SHIFT) & 0xFF
    p.ip_off = off
    p.ip_len = ip_end - off
    if IS_EXTENSION[nh]:
        return _extension_headers(d, p, f, off, ip_end, nh, depth)
    return _upper_layer(d, p, f, off, off + IPV6_HLEN, ip_end, nh, depth)


def _upper_layer(d, p, f: bytes, off: int, l4: int, ip_end: int, nh: int, depth: int):
    p.proto = nh
    p.ip_hlen = l4 - off
    p.l4_off = l4
    return call(d.ip_protos[nh], d, p, f, l4, ip_end, depth)


def _extension_headers(d, p, f: bytes, off: int, ip_end: int, nh: int, depth: int):
    """Walk the extension headers (one layer each) to the upper layer; a fragment header
    with an offset or the M flag hands the fragment to the reassembler."""
    l4 = off + IPV6_HLEN
    nh_pos = off + IPV6_NXT_OFF  # the byte that names the header at l4
    while IS_EXTENSION[nh]:
        depth += 1
        if depth > d.max_layers:
            return d.fail(p, TOO_MANY_LAYERS, "too_many_layers")
        if ip_end - l4 < IPV6_EXT_MIN:
            return d.fail(p, IPV6_TRUNC_EXTHDR, "truncated_ipv6_ext")
        if nh == PROTO_FRAGMENT:
            nxt = f[l4]
            offm = u16(f, l4 + IP6F_OFFLG_OFF)
            if offm & IP6F_BITS:
                p.proto = nxt
                p.ip_id = u32(f, l4 + IP6F_IDENT_OFF)
                whole = defragment_ipv6(d, p, f, off, nh_pos, l4, ip_end, offm)
                if whole is None:
                    return None
                d.n_ipv6 -= 1  # counted again for the whole datagram
                return ipv6_layer(d, whole, whole.frame, whole.ip_off, len(whole.frame), depth)
            d.note("ipv6_atomic_fragment")
            hl = IPV6_FRAG_HLEN
        else:
            nxt = f[l4]
            hl = (f[l4 + 1] + 2) << 2 if nh == PROTO_AH else (f[l4 + 1] + 1) << 3
            if l4 + hl > ip_end:
                return d.fail(p, IPV6_TRUNC_EXTHDR, "truncated_ipv6_ext")
        nh_pos = l4
        l4 += hl
        nh = nxt
    p.ip_opts = take(f, off + IPV6_HLEN, l4)
    return _upper_layer(d, p, f, off, l4, ip_end, nh, depth)


decode_ipv6 = Layer.of(ipv6_layer)
