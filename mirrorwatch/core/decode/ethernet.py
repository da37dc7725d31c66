"""Ethernet II, and the EtherType dispatch every layer that names its payload by EtherType uses.

Layer functions (here and in every module of the room) share one shape::

    decode_x(d, p, f, off, end, depth) -> Packet | None

``d`` is the ``Decoder`` (tables, settings, counters), ``p`` the packet record
being filled, ``f[off:end]`` the bytes this layer owns, ``depth`` the
encapsulation layers decoded so far (bounded by ``decoder.max-layers``).  A
layer checks every length it reads, fills its fields of ``p`` and hands the
rest to the next layer; a malformed header is ``d.fail(p, event, reason)`` (the packet, flagged with
Suricata's decoder event) or, where Suricata names no event, ``d.error(reason)`` (None).
A compiled layer's C function is named ``x_layer`` and its table entry (and
the name other modules import) ``decode_x = Layer.of(x_layer)`` (context.py).
"""

from __future__ import annotations

from mirrorwatch.core.decode.context import Layer, call
from mirrorwatch.core.decode.decode_events import ETHERNET_PKT_TOO_SMALL
from mirrorwatch.core.decode.numbers import ETH_ALEN, ETH_HLEN, ETH_TYPE_OFF
from mirrorwatch.core.decode.wire import take, u16


def ethernet_layer(d, p, f: bytes, off: int, end: int, depth: int):
    """The frame's own Ethernet header: its MAC addresses are the wire's, recorded."""
    d.n_eth += 1
    if end - off < ETH_HLEN:
        return d.fail(p, ETHERNET_PKT_TOO_SMALL, "truncated_ethernet")
    p.dst_mac = take(f, off, off + ETH_ALEN)
    p.src_mac = take(f, off + ETH_ALEN, off + 2 * ETH_ALEN)
    return decode_ethertype(d, p, f, off + ETH_HLEN, end, u16(f, off + ETH_TYPE_OFF), depth)


decode_ethernet = Layer.of(ethernet_layer)


def decode_inner_ethernet(d, p, f: bytes, off: int, end: int, depth: int):
    """An Ethernet header carried inside another protocol (MPLS pseudowire, GRE bridging,
    ERSPAN, VXLAN, Geneve): one more layer, and its MACs are not the wire's (not recorded)."""
    d.n_eth += 1
    if end - off < ETH_HLEN:
        return d.fail(p, ETHERNET_PKT_TOO_SMALL, "truncated_ethernet")
    return decode_ethertype(d, p, f, off + ETH_HLEN, end, u16(f, off + ETH_TYPE_OFF), depth + 1)


def decode_ethertype(d, p, f: bytes, off: int, end: int, etype: int, depth: int):
    """The payload at ``off`` named by EtherType ``etype``, through ``d.ethertypes`` (its index,
    ``set_ethertypes``); a type the decoder does not know (ARP, LLDP...) is a packet without an
    IP layer (``ipv`` 0)."""
    p.l2_proto = etype
    fn = d.ethertype_entry[d.ethertype_slot[etype]]
    if fn is None:
        d.note("non_ip")
        p.ipv = 0  # inside a tunnel the outer IP layer was read: what is carried has none
        return p
    return call(fn, d, p, f, off, end, depth)
