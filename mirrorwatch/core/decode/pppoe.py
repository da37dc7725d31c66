"""PPPoE session stage (RFC 2516): version/type, code, session id, length, then PPP."""

from __future__ import annotations

from mirrorwatch.core.decode.context import Layer, call
from mirrorwatch.core.decode.decode_events import PPPOE_PKT_TOO_SMALL
from mirrorwatch.core.decode.ppp import decode_ppp
from mirrorwatch.core.decode.wire import u16

PPPOE_HLEN = 6
PPPOE_LEN_OFF = 4
PPP_PROTO_MIN = 2  # room for a PPP protocol field after the header


def pppoe_session_layer(d, p, f: bytes, off: int, end: int, depth: int):
    if end - off < PPPOE_HLEN + PPP_PROTO_MIN:  # Suricata's PPPOE_SESSION_HEADER_MIN_LEN
        return d.fail(p, PPPOE_PKT_TOO_SMALL, "truncated_pppoe")
    end = min(end, off + PPPOE_HLEN + u16(f, off + PPPOE_LEN_OFF))  # Ethernet padding after the payload
    d.note("pppoe")
    return call(decode_ppp, d, p, f, off + PPPOE_HLEN, end, depth + 1)


decode_pppoe_session = Layer.of(pppoe_session_layer)
