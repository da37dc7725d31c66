"""GRE (RFC 2784/2890), PPTP's enhanced GRE (RFC 2637) and ERSPAN types I-III in GRE.

The protocol type is an EtherType: IPv4, IPv6 and bridged Ethernet are decoded
through ``GRE_PAYLOAD``; PPP (PPTP) is decoded when it carries IP, else the
packet stays the outer GRE packet (PPP control traffic); ERSPAN carries a
mirrored Ethernet frame behind its own header.  A GRE packet with nothing
inside (keepalive, PPTP acknowledgement) is a packet of protocol 47.
"""

from __future__ import annotations

import struct

from mirrorwatch.core.decode.decode_events import (
    ERSPAN_HEADER_TOO_SMALL,
    GRE_PKT_TOO_SMALL,
    GRE_VERSION0_HDR_TOO_BIG,
    GRE_VERSION1_HDR_TOO_BIG,
    GRE_WRONG_VERSION,
    PPP_PKT_TOO_SMALL,
    TOO_MANY_LAYERS,
)
from mirrorwatch.core.decode.ethernet import decode_inner_ethernet
from mirrorwatch.core.decode.ipv4 import decode_ipv4
from mirrorwatch.core.decode.ipv6 import decode_ipv6
from mirrorwatch.core.decode.numbers import (
    ETHERTYPE_ERSPAN_I_II,
    ETHERTYPE_ERSPAN_III,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ETHERTYPE_PPP,
    ETHERTYPE_TEB,
)
from mirrorwatch.core.decode.ppp import PPP_DECODERS, ppp_protocol
from mirrorwatch.core.decode.tunnel import enter_tunnel

GRE_HLEN = 4
GRE_FIELD_LEN = 4  # each optional field (checksum+reserved, key, sequence, acknowledgement)
GRE_CSUM = 0x8000
GRE_ROUTING = 0x4000
GRE_KEY = 0x2000
GRE_SEQ = 0x1000
GRE_ACK = 0x0080  # PPTP (version 1) only
GRE_VERSION_MASK = 0x0007
GRE_VERSION_PPTP = 1
ERSPAN_II_HLEN = 8  # type II: the sequence number flag is set
ERSPAN_III_HLEN = 12
ERSPAN_III_SUBHEADER_LEN = 8  # with the O flag
ERSPAN_III_FLAGS_OFF = 11
ERSPAN_III_O_FLAG = 0x01

GRE_PAYLOAD = {ETHERTYPE_IPV4: decode_ipv4, ETHERTYPE_IPV6: decode_ipv6, ETHERTYPE_TEB: decode_inner_ethernet}

_HH = struct.Struct("!HH").unpack_from
# Suricata's event for a header longer than the packet, by GRE version (0 or 1: the others are refused)
_HDR_TOO_BIG = {0: GRE_VERSION0_HDR_TOO_BIG, GRE_VERSION_PPTP: GRE_VERSION1_HDR_TOO_BIG}
# the refusals of ``_header_len`` Suricata flags with the same condition (its version 1 checks are
# finer-grained than ``gre_version1_invalid``: that one stays a plain error)
_REFUSED_EVENT = {"gre_version_invalid": GRE_WRONG_VERSION}


def _header_len(flags: int, ptype: int) -> int | str:
    """Length of the GRE header with its optional fields, or the reason it is refused."""
    ver = flags & GRE_VERSION_MASK
    n = GRE_HLEN
    if ver == 0:
        if flags & GRE_ROUTING:
            return "gre_routing_unsupported"
        for bit in (GRE_CSUM, GRE_KEY, GRE_SEQ):
            if flags & bit:
                n += GRE_FIELD_LEN
        return n
    if ver == GRE_VERSION_PPTP:  # the key (payload length + call id) always, sequence and ack optional
        if ptype != ETHERTYPE_PPP or not flags & GRE_KEY:
            return "gre_version1_invalid"
        for bit in (GRE_KEY, GRE_SEQ, GRE_ACK):
            if flags & bit:
                n += GRE_FIELD_LEN
        return n
    return "gre_version_invalid"


def decode_gre(d, p, f: bytes, l4: int, ip_end: int, depth: int):
    p.payload = f[l4:ip_end]  # what a GRE packet not decoded further carries
    depth += 1
    if depth > d.max_layers:
        return d.fail(p, TOO_MANY_LAYERS, "too_many_layers")
    if ip_end - l4 < GRE_HLEN:
        return d.fail(p, GRE_PKT_TOO_SMALL, "truncated_gre")
    flags, ptype = _HH(f, l4)
    hl = _header_len(flags, ptype)
    if type(hl) is str:
        event = _REFUSED_EVENT.get(hl)
        return d.error(hl) if event is None else d.fail(p, event, hl)
    off = l4 + hl
    if off > ip_end:
        return d.fail(p, _HDR_TOO_BIG[flags & GRE_VERSION_MASK], "truncated_gre")
    d.note("gre")
    if off == ip_end:
        return p
    if ptype == ETHERTYPE_PPP:
        return _pptp(d, p, f, off, ip_end, depth)
    if ptype == ETHERTYPE_ERSPAN_I_II:
        inner = off + ERSPAN_II_HLEN if flags & GRE_SEQ else off
    elif ptype == ETHERTYPE_ERSPAN_III:
        if ip_end - off < ERSPAN_III_HLEN:
            return d.fail(p, ERSPAN_HEADER_TOO_SMALL, "truncated_erspan")
        inner = off + ERSPAN_III_HLEN
        if f[off + ERSPAN_III_FLAGS_OFF] & ERSPAN_III_O_FLAG:
            inner += ERSPAN_III_SUBHEADER_LEN
    else:
        fn = GRE_PAYLOAD.get(ptype)
        if fn is None:
            return p
        enter_tunnel(p, off)
        return fn(d, p, f, off, ip_end, depth)
    enter_tunnel(p, inner)
    return decode_inner_ethernet(d, p, f, inner, ip_end, depth)


def _pptp(d, p, f: bytes, off: int, ip_end: int, depth: int):
    proto, inner = ppp_protocol(f, off, ip_end)
    if proto < 0:
        return d.fail(p, PPP_PKT_TOO_SMALL, "truncated_ppp")
    fn = PPP_DECODERS.get(proto)
    if fn is None:
        return p  # PPP control traffic: the outer GRE packet
    enter_tunnel(p, off)
    return fn(d, p, f, inner, ip_end, depth + 1)
