"""The decoded packet: one flat record per frame.

The decoder creates it once per frame with every field at its default; each
layer then fills the fields of the header it decodes, in one forward pass.
Every field is a plain int/bytes/float so the hot path never builds an object
graph.  Addresses are packed bytes (4 or 16), converted to text only when an
event is written.  Fields a protocol does not have keep their default.

Compiled (packet.pxd), the record is a C struct: the numeric fields are C integers
(``seq``/``ack`` 64-bit, so sequence arithmetic never overflows), ``ts`` a double,
``frag`` a C boolean; the others are Python objects.  The interpreted build keeps the
same fields in ``__slots__``.
"""

from __future__ import annotations

# The IP protocol numbers the other rooms read ``Packet.proto`` against.
from mirrorwatch.core.decode.numbers import (  # noqa: F401
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
)

# TCP flag bits.
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80


class Packet:
    """One decoded frame.

    Link layer: ``linktype`` (DLT), ``src_mac``/``dst_mac`` (6 bytes or b''),
    ``vlans`` (tuple of raw (tpid, tci) pairs, outermost first; copied verbatim
    by the injector), ``vlan_id`` (tuple of VLAN ids, used in the flow key),
    ``l2_proto`` (the EtherType that carried the network layer, 0 if none;
    e.g. 0x0806 for ARP, whose Packet has ``ipv`` = 0).
    Network: ``ipv`` 4/6, ``src``/``dst`` packed, ``proto``, ``ttl`` (hop
    limit), ``ip_id``, ``ip_off`` (offset of the IP header in ``frame``),
    ``ip_hlen`` (IPv4 header incl. options; IPv6 fixed header plus extension
    headers), ``ip_len`` (total length incl. header), ``frag`` (True when
    rebuilt from fragments; ``frame`` then holds the offset-0 fragment's bytes
    before its IP header (link layer, outer tunnel headers) followed by the
    rebuilt datagram, ``ip_off`` pointing at it and ``linktype`` unchanged, as
    Suricata's rebuilt packets), ``ip_opts`` (raw IPv4 options,
    or the raw IPv6 extension headers), ``tos`` (IPv4 TOS / IPv6 traffic class),
    ``tunnel`` (tuple of outer (ipv, src, dst, proto, sport, dport) layers,
    outermost first, when the packet was carried in GRE / IP-in-IP / 6in4 /
    VXLAN / Geneve / Teredo; the ports a UDP tunnel's, else 0) and
    ``tunnel_off`` (offset in ``frame`` where the innermost tunnel's carried
    packet starts, e.g. the PPP header in GRE, past the carried Ethernet header
    in VXLAN, as Suricata 8: ``frame[tunnel_off:]`` is what Suricata logs as the
    tunnel packet, link type DLT_RAW).
    Transport: ``sport``/``dport``; ``l4_off`` (offset of the L4 header in
    ``frame``); TCP ``seq``/``ack``/``flags``/``win``/``urp``/``tcp_hlen``/
    ``tcp_opts`` (raw option bytes); ICMP ``icmp_type``/``icmp_code``/
    ``icmp_id``/``icmp_seq`` (id/seq only for echo-like messages, else -1).
    ``payload`` is bytes of the L4 payload (bounded by the IP length, so
    Ethernet padding is never payload).
    ``csum_ok`` is None when not checked, else True/False for IP+L4 checksums.
    ``invalid`` is "" or the decoder's reason (e.g. "tcp_hlen_invalid") when the
    IP header is valid but the transport header is not: such a packet gets no
    flow (Suricata), only packet-level / IP-only inspection.
    ``events`` is a tuple of the Suricata decoder events the frame raised
    (``decode_events``; empty on a clean packet): a frame that failed to decode
    past a header carries its event, ``invalid`` set, and the fields of the
    layers decoded before it (``ipv`` 0 when the IP header itself failed).
    """

    __slots__ = (
        "ts", "pcap_cnt", "linktype", "frame", "wirelen",
        "src_mac", "dst_mac", "vlans", "vlan_id", "l2_proto",
        "ipv", "src", "dst", "proto", "ttl", "ip_id", "ip_off", "ip_hlen", "ip_len", "frag", "ip_opts", "tos",
        "sport", "dport", "l4_off",
        "seq", "ack", "flags", "win", "urp", "tcp_hlen", "tcp_opts",
        "icmp_type", "icmp_code", "icmp_id", "icmp_seq",
        "payload", "csum_ok", "tunnel", "tunnel_off", "invalid", "events",
    )

    def __init__(self, ts: float = 0.0, pcap_cnt: int = 0, linktype: int = 1, frame: bytes = b""):
        self._fill(ts, pcap_cnt, linktype, frame)

    def _fill(self, ts: float, pcap_cnt: int, linktype: int, frame: bytes) -> None:
        """The frame's fields, every other field at its default."""
        self.ts = ts
        self.pcap_cnt = pcap_cnt
        self.linktype = linktype
        self.frame = frame
        self.wirelen = len(frame)
        self.src_mac = b""
        self.dst_mac = b""
        self.vlans = ()
        self.vlan_id = ()
        self.l2_proto = 0
        self.ipv = 0
        self.src = b""
        self.dst = b""
        self.proto = 0
        self.ttl = 0
        self.ip_id = 0
        self.ip_off = 0
        self.ip_hlen = 0
        self.ip_len = 0
        self.frag = False
        self.ip_opts = b""
        self.tos = 0
        self.sport = 0
        self.dport = 0
        self.l4_off = 0
        self.seq = 0
        self.ack = 0
        self.flags = 0
        self.win = 0
        self.urp = 0
        self.tcp_hlen = 0
        self.tcp_opts = b""
        self.icmp_type = -1
        self.icmp_code = -1
        self.icmp_id = -1
        self.icmp_seq = -1
        self.payload = b""
        self.csum_ok = None
        self.tunnel = ()
        self.tunnel_off = 0
        self.invalid = ""
        self.events = ()

    def __repr__(self) -> str:  # debugging aid only
        from ipaddress import ip_address

        s = ip_address(self.src) if self.src else "?"
        d = ip_address(self.dst) if self.dst else "?"
        return f"<Packet #{self.pcap_cnt} {self.proto} {s}:{self.sport} -> {d}:{self.dport} len={len(self.payload)}>"


def new_packet(ts: float, pcap_cnt: int, linktype: int, frame: bytes) -> Packet:
    """``Packet(ts, pcap_cnt, linktype, frame)`` for the decoder: compiled, a C call (no Python
    call of the type with boxed arguments)."""
    p = Packet.__new__(Packet)
    p._fill(ts, pcap_cnt, linktype, frame)
    return p
