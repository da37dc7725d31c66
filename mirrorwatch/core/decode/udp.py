"""UDP (RFC 768), and the tunnels carried on configured UDP ports (VXLAN, Geneve, Teredo)."""

from __future__ import annotations

from mirrorwatch.core.decode.context import Layer, call
from mirrorwatch.core.decode.decode_events import (
    UDP_HLEN_TOO_SMALL,
    UDP_LEN_INVALID,
    UDP_PKT_TOO_SMALL,
)
from mirrorwatch.core.decode.numbers import PROTO_UDP
from mirrorwatch.core.decode.wire import take, u16

UDP_HLEN = 8
UDP_DPORT_OFF = 2
UDP_LEN_OFF = 4
UDP_CSUM_OFF = 6


def udp_layer(d, p, f: bytes, l4: int, ip_end: int, depth: int):
    if ip_end - l4 < UDP_HLEN:
        return d.invalid(p, "truncated_udp", UDP_HLEN_TOO_SMALL)
    sport = u16(f, l4)
    dport = u16(f, l4 + UDP_DPORT_OFF)
    ulen = u16(f, l4 + UDP_LEN_OFF)
    if ulen < UDP_HLEN:
        if ulen or p.ipv != 6:
            return d.invalid(p, "udp_len_invalid", UDP_LEN_INVALID)
        ulen = ip_end - l4  # IPv6 jumbogram: the length is the IP layer's
    end = l4 + ulen
    if end > ip_end:
        return d.invalid(p, "truncated_udp", UDP_PKT_TOO_SMALL)
    d.n_udp += 1
    p.sport = sport
    p.dport = dport
    p.payload = take(f, l4 + UDP_HLEN, end)
    # over IPv4 a zero checksum means none was sent
    if d.check and (p.ipv == 6 or f[l4 + UDP_CSUM_OFF] or f[l4 + UDP_CSUM_OFF + 1]):
        d.verify_transport(p, f, l4, end, PROTO_UDP)
    fn = d.udp_dports.get(dport) or d.udp_sports.get(sport)
    if fn is not None:
        return call(fn, d, p, f, l4 + UDP_HLEN, end, depth)
    return p


decode_udp = Layer.of(udp_layer)
