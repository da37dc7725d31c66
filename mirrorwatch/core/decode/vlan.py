"""802.1Q VLAN tags and their stacks (802.1ad QinQ and the older 0x9100/0x9200 tags)."""

from __future__ import annotations

from mirrorwatch.core.decode.context import Layer
from mirrorwatch.core.decode.decode_events import TOO_MANY_LAYERS, VLAN_HEADER_TOO_SMALL
from mirrorwatch.core.decode.ethernet import decode_ethertype
from mirrorwatch.core.decode.numbers import VLAN_TPIDS
from mirrorwatch.core.decode.wire import u16

VLAN_HLEN = 4
VLAN_TYPE_OFF = 2
VLAN_ID_MASK = 0x0FFF


def vlan_layer(d, p, f: bytes, off: int, end: int, depth: int):
    """Every tag of the stack at ``off`` (the EtherType dispatch set ``p.l2_proto`` to the first
    tag's TPID), one layer each: raw (tpid, tci) pairs to ``p.vlans``, ids to ``p.vlan_id``."""
    tpid = p.l2_proto
    vlans = p.vlans
    ids = p.vlan_id
    while True:
        depth += 1
        if depth > d.max_layers:
            return d.fail(p, TOO_MANY_LAYERS, "too_many_layers")
        if end - off < VLAN_HLEN:
            return d.fail(p, VLAN_HEADER_TOO_SMALL, "truncated_vlan")
        tci = u16(f, off)
        etype = u16(f, off + VLAN_TYPE_OFF)
        vlans += ((tpid, tci),)
        ids += (tci & VLAN_ID_MASK,)
        off += VLAN_HLEN
        if etype not in VLAN_TPIDS:
            break
        tpid = etype
    p.vlans = vlans
    p.vlan_id = ids
    d.n_vlan += 1
    if len(ids) > 1:
        d.note("vlan_qinq")
    return decode_ethertype(d, p, f, off, end, etype, depth)


decode_vlan = Layer.of(vlan_layer)
