"""Network Service Header (RFC 8300, EtherType 0x894F), then the packet it carries, as Suricata's
decode-nsh.c: IPv4, IPv6, Ethernet or MPLS after a header of MD type 1 (24 bytes) or 2
(variable length, at least the 8 bytes of the base and service path headers).  Another version, a reserved or unknown MD type or next protocol: the packet
ends at the header (counted, not an error, with Suricata's event); a header longer than the frame
is an error."""

from __future__ import annotations

from mirrorwatch.core.decode.decode_events import (
    NSH_BAD_HEADER_LENGTH,
    NSH_HEADER_TOO_SMALL,
    NSH_RESERVED_TYPE,
    NSH_UNKNOWN_PAYLOAD,
    NSH_UNSUPPORTED_TYPE,
    NSH_UNSUPPORTED_VERSION,
    TOO_MANY_LAYERS,
)
from mirrorwatch.core.decode.ethernet import decode_inner_ethernet
from mirrorwatch.core.decode.ipv4 import decode_ipv4
from mirrorwatch.core.decode.ipv6 import decode_ipv6
from mirrorwatch.core.decode.mpls import decode_mpls
from mirrorwatch.core.decode.wire import u16

NSH_BASE_HLEN = 8  # base header (4) + service path header (4)
NSH_VERSION_SHIFT = 14
NSH_LENGTH_MASK = 0x003F  # the header's length in 4-byte words
NSH_WORD = 4
NSH_MD_TYPE_OFF = 2
NSH_MD_TYPE_MASK = 0x0F
NSH_NEXT_PROTO_OFF = 3
NSH_MD_TYPE_FIXED = 1
NSH_MD_TYPE_VARIABLE = 2
NSH_MD1_HLEN = 24

NSH_NEXT = {
    0x1: decode_ipv4,
    0x2: decode_ipv6,
    0x3: decode_inner_ethernet,
    0x5: decode_mpls,
}
# why a well-formed header carries nothing decodable, by MD type (the others: unsupported)
_MD_TYPE_UNSUPPORTED = ("nsh_unsupported_type", NSH_UNSUPPORTED_TYPE)
_MD_TYPE_NOTE = dict.fromkeys((0x0, 0xF), ("nsh_reserved_type", NSH_RESERVED_TYPE))


def decode_nsh(d, p, f: bytes, off: int, end: int, depth: int):
    d.note("nsh")
    if end - off < NSH_BASE_HLEN:
        return d.fail(p, NSH_HEADER_TOO_SMALL, "truncated_nsh")
    depth += 1
    if depth > d.max_layers:
        return d.fail(p, TOO_MANY_LAYERS, "too_many_layers")
    word = u16(f, off)
    if word >> NSH_VERSION_SHIFT:
        d.note("nsh_unsupported_version")
        d.event(p, NSH_UNSUPPORTED_VERSION)
        return p
    hlen = (word & NSH_LENGTH_MASK) * NSH_WORD
    if hlen < NSH_BASE_HLEN or hlen >= end - off:
        return d.fail(p, NSH_BAD_HEADER_LENGTH, "nsh_bad_header_length")
    md_type = f[off + NSH_MD_TYPE_OFF] & NSH_MD_TYPE_MASK
    if md_type == NSH_MD_TYPE_FIXED and hlen != NSH_MD1_HLEN:
        return d.fail(p, NSH_BAD_HEADER_LENGTH, "nsh_bad_header_length")
    if md_type != NSH_MD_TYPE_FIXED and md_type != NSH_MD_TYPE_VARIABLE:
        note, event = _MD_TYPE_NOTE.get(md_type, _MD_TYPE_UNSUPPORTED)
        d.note(note)
        d.event(p, event)
        return p
    fn = NSH_NEXT.get(f[off + NSH_NEXT_PROTO_OFF])
    if fn is None:
        d.note("nsh_unknown_payload")
        d.event(p, NSH_UNKNOWN_PAYLOAD)
        return p
    return fn(d, p, f, off + hlen, end, depth)
