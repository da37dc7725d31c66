"""PPPoE session stage (RFC 2516): version/type, code, session id, length, then PPP."""

from __future__ import annotations

import struct

from mirrorwatch.core.decode.ppp import decode_ppp

PPPOE_HLEN = 6
PPPOE_LEN_OFF = 4
PPP_PROTO_MIN = 2  # room for a PPP protocol field after the header

_H = struct.Struct("!H").unpack_from


def decode_pppoe_session(d, p, f: bytes, off: int, end: int, depth: int):
    if end - off < PPPOE_HLEN + PPP_PROTO_MIN:
        return d.error("truncated_pppoe")
    end = min(end, off + PPPOE_HLEN + _H(f, off + PPPOE_LEN_OFF)[0])  # Ethernet padding after the payload
    d.note("pppoe")
    return decode_ppp(d, p, f, off + PPPOE_HLEN, end, depth + 1)
