"""IP tunnels decoded to the packet they carry: IP-in-IP and 6in4 (RFC 2003, 4213), and on
configured UDP ports VXLAN (RFC 7348), Geneve (RFC 8926) and Teredo (RFC 4380).

Entering a tunnel pushes the current IP layer, ``(ipv, src, dst, proto, sport, dport)`` (the
ports of a UDP tunnel, else 0), onto ``p.tunnel`` (outermost first) and
counts one layer against ``decoder.max-layers``; the carried packet is then decoded
into the same record.  A UDP payload that does not look like the protocol its port
names stays what it is: a UDP packet to that port.
"""

from __future__ import annotations

import struct

from mirrorwatch.core.decode.decode_events import TOO_MANY_LAYERS
from mirrorwatch.core.decode.ethernet import decode_inner_ethernet
from mirrorwatch.core.decode.ipv4 import decode_ipv4
from mirrorwatch.core.decode.ipv6 import decode_ipv6
from mirrorwatch.core.decode.numbers import (
    ETH_HLEN,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ETHERTYPE_TEB,
    IPV6_EXT_MIN,
    IPV6_HLEN,
    IPV6_HLIM_OFF,
    IPV6_NXT_OFF,
    IPV6_PLEN_OFF,
)

VXLAN_HLEN = 8
VXLAN_FLAG_VNI = 0x08  # the I flag: a valid VNI, the header is VXLAN's
GENEVE_HLEN = 8
GENEVE_PROTO_OFF = 2
GENEVE_OPT_LEN_MASK = 0x3F  # in 4-byte words
TEREDO_ORIGIN_LEN = 8  # origin indication: 0x0000, port, address

# Geneve's protocol type is an EtherType
GENEVE_PAYLOAD = {ETHERTYPE_TEB: decode_inner_ethernet, ETHERTYPE_IPV4: decode_ipv4, ETHERTYPE_IPV6: decode_ipv6}

_H = struct.Struct("!H").unpack_from


def enter_tunnel(p, inner: int) -> None:
    """Push the current IP layer (with its UDP ports, if any) onto ``p.tunnel``; the carried payload
    starts at ``inner``."""
    p.tunnel = p.tunnel + ((p.ipv, p.src, p.dst, p.proto, p.sport, p.dport),)
    p.tunnel_off = inner
    p.ip_opts = b""
    p.sport = p.dport = 0
    p.payload = b""


def decode_ipip(d, p, f: bytes, l4: int, ip_end: int, depth: int):
    """IPv4 in IP (protocol 4)."""
    return _ip_in_ip(d, p, f, l4, ip_end, depth, "ipip", decode_ipv4)


def decode_ipv6_in_ip(d, p, f: bytes, l4: int, ip_end: int, depth: int):
    """IPv6 in IP (protocol 41: 6in4, 6in6)."""
    return _ip_in_ip(d, p, f, l4, ip_end, depth, "ipv6_in_ip", decode_ipv6)


def _ip_in_ip(d, p, f: bytes, l4: int, ip_end: int, depth: int, what: str, decode_inner):
    depth += 1
    if depth > d.max_layers:
        return d.fail(p, TOO_MANY_LAYERS, "too_many_layers")
    d.note(what)
    enter_tunnel(p, l4)
    return decode_inner(d, p, f, l4, ip_end, depth)


def decode_vxlan(d, p, f: bytes, off: int, end: int, depth: int):
    """VXLAN: flags (I bit), 3 reserved bytes, the VNI, 1 reserved byte; then an Ethernet frame."""
    depth += 1
    if depth > d.max_layers:
        return d.fail(p, TOO_MANY_LAYERS, "too_many_layers")
    if end - off < VXLAN_HLEN + ETH_HLEN or not f[off] & VXLAN_FLAG_VNI:
        return p
    d.note("vxlan")
    # Suricata 8's tunnel packet starts after the carried Ethernet header (a DLT_RAW packet)
    enter_tunnel(p, off + VXLAN_HLEN + ETH_HLEN)
    return decode_inner_ethernet(d, p, f, off + VXLAN_HLEN, end, depth)


def decode_geneve(d, p, f: bytes, off: int, end: int, depth: int):
    """Geneve version 0: options skipped, the protocol type names the payload."""
    depth += 1
    if depth > d.max_layers:
        return d.fail(p, TOO_MANY_LAYERS, "too_many_layers")
    if end - off < GENEVE_HLEN or f[off] >> 6:
        return p
    inner = off + GENEVE_HLEN + ((f[off] & GENEVE_OPT_LEN_MASK) << 2)
    fn = GENEVE_PAYLOAD.get(_H(f, off + GENEVE_PROTO_OFF)[0])
    if inner >= end or fn is None:
        return p
    d.note("geneve")
    enter_tunnel(p, inner)
    return fn(d, p, f, inner, end, depth)


def decode_teredo(d, p, f: bytes, off: int, end: int, depth: int):
    """Teredo as Suricata recognises it: an optional origin indication, then an IPv6 header
    whose payload length accounts for exactly the rest.  Anything else (authentication,
    bubbles, other UDP) stays a UDP packet."""
    depth += 1
    if depth > d.max_layers:
        return d.fail(p, TOO_MANY_LAYERS, "too_many_layers")
    if end - off < IPV6_HLEN:
        return p
    if f[off] == 0:
        if f[off + 1] != 0 or end - off < TEREDO_ORIGIN_LEN + IPV6_HLEN:
            return p
        off += TEREDO_ORIGIN_LEN
    if f[off] >> 4 != 6:
        return p
    plen = _H(f, off + IPV6_PLEN_OFF)[0]
    if off + IPV6_HLEN + plen != end or f[off + IPV6_HLIM_OFF] == 0 or (f[off + IPV6_NXT_OFF] == 0 and plen < IPV6_EXT_MIN):
        return p
    d.note("teredo")
    enter_tunnel(p, off)
    return decode_ipv6(d, p, f, off, end, depth)
