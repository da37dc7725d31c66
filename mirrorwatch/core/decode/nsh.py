"""Network Service Header (RFC 8300, EtherType 0x894F), then the packet it carries, as Suricata's
decode-nsh.c: IPv4, IPv6, Ethernet or MPLS after a header of MD type 1 (24 bytes) or 2
(variable length, at least the 8 bytes of the base and service path headers).  Another version, a reserved or unknown MD type or next protocol: the packet
ends at the header (counted, not an error); a header longer than the frame is an error."""

from __future__ import annotations

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
_MD_TYPE_NOTE = {0x0: "nsh_reserved_type", 0xF: "nsh_reserved_type"}


def decode_nsh(d, p, f: bytes, off: int, end: int, depth: int):
    d.note("nsh")
    if end - off < NSH_BASE_HLEN:
        return d.error("truncated_nsh")
    depth += 1
    if depth > d.max_layers:
        return d.error("too_many_layers")
    word = u16(f, off)
    if word >> NSH_VERSION_SHIFT:
        d.note("nsh_unsupported_version")
        return p
    hlen = (word & NSH_LENGTH_MASK) * NSH_WORD
    if hlen < NSH_BASE_HLEN or hlen >= end - off:
        return d.error("nsh_bad_header_length")
    md_type = f[off + NSH_MD_TYPE_OFF] & NSH_MD_TYPE_MASK
    if md_type == NSH_MD_TYPE_FIXED and hlen != NSH_MD1_HLEN:
        return d.error("nsh_bad_header_length")
    if md_type != NSH_MD_TYPE_FIXED and md_type != NSH_MD_TYPE_VARIABLE:
        d.note(_MD_TYPE_NOTE.get(md_type, "nsh_unsupported_type"))
        return p
    fn = NSH_NEXT.get(f[off + NSH_NEXT_PROTO_OFF])
    if fn is None:
        d.note("nsh_unknown_payload")
        return p
    return fn(d, p, f, off + hlen, end, depth)
