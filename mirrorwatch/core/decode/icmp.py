"""ICMPv4 (RFC 792) and ICMPv6 (RFC 4443): type, code, and the id/sequence of echo-like messages."""

from __future__ import annotations

import struct

from mirrorwatch.core.decode.checksum import CHECK_ON
from mirrorwatch.core.decode.decode_events import (
    ICMPV4_PKT_TOO_SMALL,
    ICMPV6_PKT_TOO_SMALL,
)
from mirrorwatch.core.decode.numbers import PROTO_ICMP, PROTO_ICMPV6

ICMP_HLEN = 8
# messages whose second word is an identifier and a sequence number
ICMPV4_ECHO_LIKE = frozenset((
    0, 8,  # echo reply, echo request
    13, 14,  # timestamp request, reply
    15, 16,  # information request, reply
    17, 18,  # address mask request, reply
))
ICMPV6_ECHO_LIKE = frozenset((128, 129))  # echo request, echo reply

_ICMP = struct.Struct("!BBHHH").unpack_from


def decode_icmpv4(d, p, f: bytes, l4: int, ip_end: int, depth: int):
    if ip_end - l4 < ICMP_HLEN:
        return d.invalid(p, "truncated_icmpv4", ICMPV4_PKT_TOO_SMALL)
    d.n_icmpv4 += 1
    return _decode_icmp(d, p, f, l4, ip_end, PROTO_ICMP, ICMPV4_ECHO_LIKE)


def decode_icmpv6(d, p, f: bytes, l4: int, ip_end: int, depth: int):
    if ip_end - l4 < ICMP_HLEN:
        return d.invalid(p, "truncated_icmpv6", ICMPV6_PKT_TOO_SMALL)
    d.n_icmpv6 += 1
    return _decode_icmp(d, p, f, l4, ip_end, PROTO_ICMPV6, ICMPV6_ECHO_LIKE)


def _decode_icmp(d, p, f: bytes, l4: int, ip_end: int, proto: int, echo_like: frozenset):
    t, code, _, ident, seq = _ICMP(f, l4)
    p.icmp_type = t
    p.icmp_code = code
    if t in echo_like:
        p.icmp_id = ident
        p.icmp_seq = seq
    p.payload = f[l4 + ICMP_HLEN:ip_end]
    if d.check == CHECK_ON:
        d.verify_transport(p, f, l4, ip_end, proto)
    return p
