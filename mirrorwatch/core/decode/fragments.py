"""IPv4 and IPv6 fragments: handed to the ``Defragmenter`` (defrag.py), and the datagram it
completes rebuilt as the packet Suricata makes of it.

As Suricata (since 7.0.5) the rebuilt frame keeps the link type and the bytes before the
IP header of the offset-0 fragment, so EVE's ``packet`` shows the frame as it would have
been on the wire (outer lengths unchanged).  Inside a tunnel, as Suricata's tunnel
packets, the frame starts where the carried payload starts (e.g. the PPP header in GRE)
and is DLT_RAW; the outer layers stay listed in ``tunnel``.  The IP layer then decodes
the rebuilt packet as if it had arrived whole.
"""

from __future__ import annotations

from mirrorwatch.core.decode.checksum import ipv4_header_checksum
from mirrorwatch.core.decode.defrag import IPV4_MAX
from mirrorwatch.core.decode.numbers import DLT_RAW, IPV6_HLEN
from mirrorwatch.core.decode.packet import Packet

IP_MF = 0x2000
IP_OFFMASK = 0x1FFF
IP6F_OFF_MASK = 0xFFF8
IP6F_MORE_FRAG = 0x0001
IPV6_FRAG_HLEN = 8
IPV6_PLEN_MAX = 65535


def _l2_of(p, f: bytes, off: int) -> tuple:
    """What the rebuilt packet keeps of the offset-0 fragment: the bytes before its IP header
    (from the frame's start, or inside a tunnel from the carried payload's) and its link fields."""
    return (f[p.tunnel_off:off], p.src_mac, p.dst_mac, p.vlans, p.vlan_id, p.l2_proto, p.tunnel,
            DLT_RAW if p.tunnel else p.linktype)


def _hold(d, p, key, f: bytes, off: int, fo: int, data: bytes, more: bool, header, max_payload: int):
    """One fragment to the reassembler: its ``(header, payload, l2)`` once complete, else None
    (held, or invalid and counted)."""
    if p.frag:
        return d.error("frag_nested")
    r = d.defrag.add(key, p.ts, fo, data, more, header, _l2_of(p, f, off), max_payload)
    if r is None:
        return None
    if type(r) is str:
        return d.error(r)
    return r


def _rebuilt(d, p, datagram: bytes, l2: tuple) -> Packet:
    prefix, src_mac, dst_mac, vlans, vlan_id, l2_proto, tunnel, linktype = l2
    frame = prefix + datagram
    whole = Packet(p.ts, p.pcap_cnt, linktype, frame)
    whole.src_mac = src_mac
    whole.dst_mac = dst_mac
    whole.vlans = vlans
    whole.vlan_id = vlan_id
    whole.l2_proto = l2_proto
    whole.tunnel = tunnel
    whole.frag = True
    whole.ip_off = len(prefix)
    d.note("frag_reassembled")
    return whole


def defragment_ipv4(d, p, f: bytes, off: int, hlen: int, ip_end: int, foff: int) -> Packet | None:
    """The IPv4 fragment ``f[off:ip_end]`` (its fields in ``p``): the rebuilt packet (its IP
    header at ``ip_off``) when this fragment completes the datagram, else None."""
    d.note("ipv4_frag")
    fo = (foff & IP_OFFMASK) << 3
    key = (4, p.src, p.dst, p.ip_id, p.proto, p.vlan_id, p.tunnel)
    r = _hold(d, p, key, f, off, fo, f[off + hlen:ip_end], bool(foff & IP_MF),
              f[off:off + hlen] if fo == 0 else None, IPV4_MAX - hlen)
    if r is None:
        return None
    header, payload, l2 = r
    tlen = len(header) + len(payload)
    if tlen > IPV4_MAX:
        return d.error("frag_too_large")
    h = bytearray(header)
    h[2:4] = tlen.to_bytes(2, "big")
    h[6:8] = b"\0\0"  # no longer a fragment
    h[10:12] = ipv4_header_checksum(h).to_bytes(2, "big")
    return _rebuilt(d, p, bytes(h) + payload, l2)


def defragment_ipv6(d, p, f: bytes, off: int, nh_pos: int, fh: int, ip_end: int, offm: int) -> Packet | None:
    """The IPv6 fragment whose fragment header is at ``fh`` (``nh_pos``: the byte that names
    it; ``p.proto`` and ``p.ip_id`` hold its next header and identification): the rebuilt
    packet when this fragment completes the datagram, else None."""
    d.note("ipv6_frag")
    fo = offm & IP6F_OFF_MASK
    key = (6, p.src, p.dst, p.ip_id, p.vlan_id, p.tunnel)
    header = None
    if fo == 0:  # the unfragmentable part, with the fragment header cut out
        h = bytearray(f[off:fh])
        h[nh_pos - off] = p.proto
        header = bytes(h)
    r = _hold(d, p, key, f, off, fo, f[fh + IPV6_FRAG_HLEN:ip_end], bool(offm & IP6F_MORE_FRAG), header,
              IPV6_PLEN_MAX - (fh + IPV6_FRAG_HLEN - off - IPV6_HLEN))
    if r is None:
        return None
    header, payload, l2 = r
    plen = len(header) - IPV6_HLEN + len(payload)
    if plen > IPV6_PLEN_MAX:
        return d.error("frag_too_large")
    h = bytearray(header)
    h[4:6] = plen.to_bytes(2, "big")
    return _rebuilt(d, p, bytes(h) + payload, l2)
