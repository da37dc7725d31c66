"""What the IPv4 and IPv6 layers share: raw IP told apart by its version, and IP
protocols the decoder does not decode further."""

from __future__ import annotations

from mirrorwatch.core.decode.context import Layer, call
from mirrorwatch.core.decode.decode_events import (
    IPRAW_INVALID_IP_VERSION,
    IPV4_PKT_TOO_SMALL,
)
from mirrorwatch.core.decode.ipv4 import decode_ipv4
from mirrorwatch.core.decode.ipv6 import decode_ipv6
from mirrorwatch.core.decode.wire import take

IP_BY_VERSION = {4: decode_ipv4, 6: decode_ipv6}
RAW_IP_MIN = 20  # Suricata's DecodeRaw: IPv4 or IPv6, at least the size of an IPv4 header


def raw_ip_layer(d, p, f: bytes, off: int, end: int, depth: int):
    """An IP packet with nothing before it to name its version (raw link types)."""
    if end - off < RAW_IP_MIN:
        return d.fail(p, IPV4_PKT_TOO_SMALL, "truncated_ip")
    fn = IP_BY_VERSION.get(f[off] >> 4)
    if fn is None:
        return d.fail(p, IPRAW_INVALID_IP_VERSION, "bad_ip_version")
    return call(fn, d, p, f, off, end, depth)


decode_raw_ip = Layer.of(raw_ip_layer)


def other_proto_layer(d, p, f: bytes, l4: int, ip_end: int, depth: int):
    """An IP protocol without a decoder here (ESP, OSPF, PIM...): its bytes are the payload."""
    p.payload = take(f, l4, ip_end)
    d.note("ip_proto_other")
    return p


decode_other_proto = Layer.of(other_proto_layer)
