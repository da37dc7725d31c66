"""SCTP (RFC 9260): the common header's ports, for the flow key; the chunks are the payload."""

from __future__ import annotations

import struct

SCTP_HLEN = 12

_HH = struct.Struct("!HH").unpack_from


def decode_sctp(d, p, f: bytes, l4: int, ip_end: int, depth: int):
    d.note("sctp")
    if ip_end - l4 < SCTP_HLEN:
        p.payload = f[l4:ip_end]
        return p
    p.sport, p.dport = _HH(f, l4)
    p.payload = f[l4 + SCTP_HLEN:ip_end]
    return p
