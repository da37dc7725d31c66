"""IPv4 (RFC 791): the header, its options, and fragments handed to the reassembler."""

from __future__ import annotations

from mirrorwatch.core.decode.checksum import CHECK_ON, partial
from mirrorwatch.core.decode.context import Layer, call
from mirrorwatch.core.decode.decode_events import (
    IPV4_HLEN_TOO_SMALL,
    IPV4_IPLEN_SMALLER_THAN_HLEN,
    IPV4_PKT_TOO_SMALL,
    IPV4_TRUNC_PKT,
    IPV4_WRONG_IP_VERSION,
)
from mirrorwatch.core.decode.fragments import defragment_ipv4
from mirrorwatch.core.decode.wire import take, u16

IPV4_HLEN = 20
IP_FRAG_BITS = 0x3FFF  # MF flag and fragment offset: any set means a fragment
# where the header's fields are
IPV4_TOS_OFF = 1
IPV4_LEN_OFF = 2
IPV4_ID_OFF = 4
IPV4_FRAG_OFF = 6
IPV4_TTL_OFF = 8
IPV4_PROTO_OFF = 9
IPV4_SRC_OFF = 12
IPV4_DST_OFF = 16
IPV4_ALEN = 4


def ipv4_layer(d, p, f: bytes, off: int, end: int, depth: int):
    # Suricata's DecodeIPV4Packet checks, in its order
    if end - off < IPV4_HLEN:
        return d.fail(p, IPV4_PKT_TOO_SMALL, "truncated_ipv4")
    vhl = f[off]
    if vhl >> 4 != 4:
        return d.fail(p, IPV4_WRONG_IP_VERSION, "bad_ip_version")
    hlen = (vhl & 15) << 2
    if hlen < IPV4_HLEN:
        return d.fail(p, IPV4_HLEN_TOO_SMALL, "ipv4_hlen_invalid")
    tlen = u16(f, off + IPV4_LEN_OFF)
    if tlen < hlen:
        if tlen or end - off < hlen:
            return d.fail(p, IPV4_IPLEN_SMALLER_THAN_HLEN, "ipv4_len_invalid")
        tlen = end - off  # total length 0: TSO/GSO or BIG TCP capture, use what was captured
        d.note("ipv4_len_zero")
    ip_end = off + tlen
    if ip_end > end:
        return d.fail(p, IPV4_TRUNC_PKT, "truncated_ipv4")
    d.n_ipv4 += 1
    p.ipv = 4
    p.src = take(f, off + IPV4_SRC_OFF, off + IPV4_SRC_OFF + IPV4_ALEN)
    p.dst = take(f, off + IPV4_DST_OFF, off + IPV4_DST_OFF + IPV4_ALEN)
    proto = p.proto = f[off + IPV4_PROTO_OFF]
    p.ttl = f[off + IPV4_TTL_OFF]
    p.tos = f[off + IPV4_TOS_OFF]
    p.ip_id = u16(f, off + IPV4_ID_OFF)
    p.ip_off = off
    p.ip_hlen = hlen
    p.ip_len = tlen
    l4 = off + hlen
    if hlen > IPV4_HLEN:
        p.ip_opts = take(f, off + IPV4_HLEN, l4)
    if d.check == CHECK_ON:
        if partial(f, off, l4):  # a correct header sums to zero
            p.csum_ok = False
            d.note("ipv4_csum_bad")
        else:
            p.csum_ok = True
    foff = u16(f, off + IPV4_FRAG_OFF)
    if foff & IP_FRAG_BITS:
        whole = defragment_ipv4(d, p, f, off, hlen, ip_end, foff)
        if whole is None:
            return None
        d.n_ipv4 -= 1  # counted again for the whole datagram
        return ipv4_layer(d, whole, whole.frame, whole.ip_off, len(whole.frame), depth)
    p.l4_off = l4
    return call(d.ip_protos[proto], d, p, f, l4, ip_end, depth)


decode_ipv4 = Layer.of(ipv4_layer)
