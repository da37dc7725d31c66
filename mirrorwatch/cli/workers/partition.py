"""Which worker keeps which session in a replay: a symmetric hash of the frame's flow.

The replay dispatcher asks ``FlowPartitioner.owner`` once per frame; the
answer must be equal for both directions of a session and for every frame the
engine puts in the same session, so the key is the engine's own session key
as far as it matters: the endpoints sorted, each the IP address followed by
the port for TCP, UDP and SCTP, plus the IP protocol, hashed with CRC-32
modulo the number of workers.  Choices, and why:

- Tunnels are keyed by the packet they carry, as the engine keys them
  (IP-in-IP, 6in4, GRE with IP, bridged Ethernet or ERSPAN inside, VXLAN and
  Geneve on their ``decoder.*.ports`` destination ports, Teredo on
  ``decoder.teredo.ports`` when the payload is exactly an IPv6 packet): the
  same inner session can be seen in two tunnels (e.g. both legs of a 6in4
  relay), whose outer headers differ.
- VLAN IDs are left out of the key.  The engine keys sessions by VLAN too
  (Suricata's ``vlan.use-for-tracking``), so leaving it out never splits a
  session; putting it in would split the two directions of a session that a
  router between VLANs forwards (one tag each way) whenever tracking by VLAN
  is turned off.  The kernel's fanout hash (live mode) leaves it out as well.
- Fragments: see ``fragments.FragmentRouter``; here a fragment is only
  recognised (``FRAGMENT``) and described (``last_fragment``).
- Frames this parser does not read (non-IP, truncated, link types and
  encapsulations other than Ethernet with VLAN/QinQ/PPPoE/MPLS, raw IP, Linux
  cooked v1/v2 and null/loopback, PPTP) go to worker 0, or by the outer
  address pair for an unread tunnel: correct, as every frame of whatever the
  engine makes of them goes there too.
"""

from __future__ import annotations

from zlib import crc32

from mirrorwatch.core.decode.numbers import (
    AF_INET,
    BSD_AF_INET6,
    DLT_RAW,
    DLT_RAW_BSDOS,
    ETHERTYPE_ERSPAN_I_II,
    ETHERTYPE_ERSPAN_III,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ETHERTYPE_MPLS_MULTICAST,
    ETHERTYPE_MPLS_UNICAST,
    ETHERTYPE_PPPOE_SESSION,
    ETHERTYPE_TEB,
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    PROTO_AH,
    PROTO_DSTOPTS,
    PROTO_FRAGMENT,
    PROTO_GRE,
    PROTO_HOPOPTS,
    PROTO_IPIP,
    PROTO_IPV6,
    PROTO_ROUTING,
    PROTO_SCTP,
    PROTO_TCP,
    PROTO_UDP,
    VLAN_TPIDS,
)

FRAGMENT = -1  # owner(): the frame is an IP fragment (see last_fragment)
MAX_LAYERS = 16  # VLAN tags, MPLS labels, IPv6 extension headers or tunnels read (decoder.max-layers)

_PORT_PROTOS = frozenset((PROTO_TCP, PROTO_UDP, PROTO_SCTP))
_IP6_SKIP = frozenset((PROTO_HOPOPTS, PROTO_ROUTING, PROTO_DSTOPTS))
_PPP_IPV4, _PPP_IPV6 = 0x0021, 0x0057
_PPPOE_HLEN = 8  # PPPoE session header (6) and the PPP protocol field (2)
_MPLS_BOTTOM = 0x01  # bottom-of-stack bit, in a label entry's third byte
_SLL_PROTO, _SLL_HLEN = 14, 16
_SLL2_PROTO, _SLL2_HLEN = 0, 20
_NULL_HLEN = 4
_LINUX_AF_INET6 = 10
_ETH_HLEN = 14
_GRE_OPTIONAL = (0x8000, 0x2000, 0x1000)  # checksum, key, sequence: 4 bytes each when present
_GRE_ROUTING, _GRE_VERSION, _GRE_SEQ = 0x4000, 0x0007, 0x1000
_ERSPAN_II_HLEN, _ERSPAN_III_HLEN, _ERSPAN_III_SUB = 8, 12, 8
_UDP_HLEN = 8
_VXLAN_HLEN, _VXLAN_I = 8, 0x08
_GENEVE_HLEN, _GENEVE_OPTLEN = 8, 0x3F
_TEREDO_ORIGIN = 8
_IP6_HLEN = 40
_UNREAD = None  # what the parsing functions return for what they do not read
UNREAD_OWNER = 0  # the owner of such frames


def _ports(text) -> frozenset:
    """'4789' / '4789,8472' / '[4789, 8472]' -> the ports."""
    parts = str(text).strip().strip("[]").replace(",", " ").split()
    return frozenset(int(p) for p in parts if p.isdigit() and int(p) < 65536)


class FlowPartitioner:
    """``owner(linktype, frame)``: the worker (0..workers-1) that keeps the frame's session, or FRAGMENT."""

    def __init__(self, workers: int, *, vxlan=(), geneve=(), teredo=()):
        if workers < 1:
            raise ValueError("at least one worker")
        self.n = workers
        self.udp_dst = {p: self._vxlan for p in vxlan} | {p: self._geneve for p in geneve}
        self.udp_dst.update({p: self._teredo for p in teredo})
        self.udp_src = {p: self._teredo for p in teredo}
        # the fast path's test: a UDP port pair that may be a tunnel, as 2-byte keys
        self._tunnel_keys = frozenset(p.to_bytes(2, "big") for p in set(self.udp_dst) | set(self.udp_src))
        self._links = {
            LINKTYPE_ETHERNET: self._ethernet, LINKTYPE_RAW: self._raw, DLT_RAW: self._raw,
            DLT_RAW_BSDOS: self._raw, LINKTYPE_IPV4: self._raw, LINKTYPE_IPV6: self._raw,
            LINKTYPE_LINUX_SLL: self._sll, LINKTYPE_LINUX_SLL2: self._sll2,
            LINKTYPE_NULL: self._null, LINKTYPE_LOOP: self._null,
        }
        self._l3 = {ETHERTYPE_IPV4: self._ipv4, ETHERTYPE_IPV6: self._ipv6}
        self._ip_tunnels = {PROTO_IPIP: self._ipv4, PROTO_IPV6: self._ipv6, PROTO_GRE: self._gre}
        self._gre_inner = {ETHERTYPE_IPV4: self._ipv4, ETHERTYPE_IPV6: self._ipv6, ETHERTYPE_TEB: self._ethernet_at}
        # the last fragment owner() saw: (datagram key, is first, owner if first, owner of its address pair)
        self.last_fragment: tuple | None = None

    @classmethod
    def from_settings(cls, settings, workers: int) -> FlowPartitioner:
        return cls(workers, vxlan=_ports(settings["decoder.vxlan.ports"]),
                   geneve=_ports(settings["decoder.geneve.ports"]), teredo=_ports(settings["decoder.teredo.ports"]))

    def owner(self, linktype: int, f: bytes) -> int:
        # fast path, inlined (it runs for every frame): Ethernet, IPv4 without options or fragmentation,
        # TCP or UDP off the tunnel ports; the key _l4 computes for the same frame
        if linktype == LINKTYPE_ETHERNET and f[12:15] == b"\x08\x00\x45" and len(f) >= 38 \
                and not (f[20] & 0x3F or f[21]):
            proto = f[23]
            if proto == PROTO_TCP or (proto == PROTO_UDP and not (f[34:36] in self._tunnel_keys
                                                                  or f[36:38] in self._tunnel_keys)):
                a, b = f[26:30] + f[34:36], f[30:34] + f[36:38]
                return (crc32(a + b, proto) if a <= b else crc32(b + a, proto)) % self.n
        link = self._links.get(linktype)
        owner = link(f) if link is not None else None
        return UNREAD_OWNER if owner is None else owner

    def _sym(self, proto: int, a: bytes, b: bytes) -> int:
        return (crc32(a + b, proto) if a <= b else crc32(b + a, proto)) % self.n

    # -- link layers ----------------------------------------------------------------
    def _ethernet(self, f: bytes) -> int | None:
        return self._ethernet_at(f, 0, len(f), 0)

    def _ethernet_at(self, f: bytes, o: int, end: int, depth: int) -> int | None:
        if end - o < _ETH_HLEN:
            return _UNREAD
        et, o = self._ethertype(f, (f[o + 12] << 8) | f[o + 13], o + _ETH_HLEN, end)
        l3 = self._l3.get(et)
        return _UNREAD if l3 is None else l3(f, o, end, depth)

    def _ethertype(self, f: bytes, et: int, o: int, end: int) -> tuple[int, int]:
        """Past VLAN/QinQ tags, a PPPoE session header or an MPLS label stack: (ethertype, offset)."""
        for _ in range(MAX_LAYERS):
            if et in VLAN_TPIDS and o + 4 <= end:
                et, o = (f[o + 2] << 8) | f[o + 3], o + 4
            elif et == ETHERTYPE_PPPOE_SESSION and o + _PPPOE_HLEN <= end:
                ppp = (f[o + 6] << 8) | f[o + 7]
                return (ETHERTYPE_IPV4 if ppp == _PPP_IPV4 else ETHERTYPE_IPV6 if ppp == _PPP_IPV6 else 0), o + 8
            elif (et == ETHERTYPE_MPLS_UNICAST or et == ETHERTYPE_MPLS_MULTICAST) and o + 4 <= end:
                bottom = f[o + 2] & _MPLS_BOTTOM
                o += 4
                if bottom:
                    return _version_type(f, o), o
            else:
                return et, o
        return 0, o

    def _raw(self, f: bytes) -> int | None:
        l3 = self._l3.get(_version_type(f, 0))
        return _UNREAD if l3 is None else l3(f, 0, len(f), 0)

    def _sll(self, f: bytes) -> int | None:
        return self._cooked(f, _SLL_PROTO, _SLL_HLEN)

    def _sll2(self, f: bytes) -> int | None:
        return self._cooked(f, _SLL2_PROTO, _SLL2_HLEN)

    def _cooked(self, f: bytes, at: int, hlen: int) -> int | None:
        if len(f) < hlen:
            return _UNREAD
        et, o = self._ethertype(f, (f[at] << 8) | f[at + 1], hlen, len(f))
        l3 = self._l3.get(et)
        return _UNREAD if l3 is None else l3(f, o, len(f), 0)

    def _null(self, f: bytes) -> int | None:
        if len(f) < _NULL_HLEN:
            return _UNREAD
        fam = {int.from_bytes(f[:4], "little"), int.from_bytes(f[:4], "big")}  # written in either byte order
        if AF_INET in fam:
            return self._ipv4(f, _NULL_HLEN, len(f), 0)
        if fam & BSD_AF_INET6 or _LINUX_AF_INET6 in fam:
            return self._ipv6(f, _NULL_HLEN, len(f), 0)
        return _UNREAD

    # -- IP -------------------------------------------------------------------------------
    def _ipv4(self, f: bytes, o: int, end: int, depth: int) -> int | None:
        if end - o < 20 or f[o] >> 4 != 4:
            return _UNREAD
        proto = f[o + 9]
        src, dst = f[o + 12:o + 16], f[o + 16:o + 20]
        ip_end = min(end, o + ((f[o + 2] << 8) | f[o + 3]))
        l4 = o + ((f[o] & 0x0F) << 2)
        if f[o + 6] & 0x3F or f[o + 7]:  # MF set or a fragment offset
            first = not (f[o + 6] & 0x1F or f[o + 7])
            pair = self._sym(proto, src, dst)
            own = self._l4(proto, f, l4, ip_end, src, dst, depth) if first else pair
            self.last_fragment = ((src, dst, proto, f[o + 4:o + 6]), first, pair if own == FRAGMENT else own, pair)
            return FRAGMENT
        return self._l4(proto, f, l4, ip_end, src, dst, depth)

    def _ipv6(self, f: bytes, o: int, end: int, depth: int) -> int | None:
        if end - o < _IP6_HLEN or f[o] >> 4 != 6:
            return _UNREAD
        src, dst = f[o + 8:o + 24], f[o + 24:o + 40]
        ip_end = min(end, o + _IP6_HLEN + ((f[o + 4] << 8) | f[o + 5]))
        nh, p = f[o + 6], o + _IP6_HLEN
        frag = None
        for _ in range(MAX_LAYERS):
            if p + 8 > ip_end:
                break
            if nh in _IP6_SKIP:
                nh, p = f[p], p + ((f[p + 1] + 1) << 3)
            elif nh == PROTO_AH:
                nh, p = f[p], p + ((f[p + 1] + 2) << 2)
            elif nh == PROTO_FRAGMENT:
                offm = (f[p + 2] << 8) | f[p + 3]
                if offm & 0xFFF9:  # an offset or MF: a real fragment (else RFC 6946's atomic fragment)
                    frag = (f[p + 4:p + 8], not offm & 0xFFF8)
                    if not frag[1]:
                        break  # a later fragment: no upper-layer header to read
                nh, p = f[p], p + 8
            else:
                break
        if frag is None:
            return self._l4(nh, f, p, ip_end, src, dst, depth)
        pair = self._sym(0, src, dst)
        own = self._l4(nh, f, p, ip_end, src, dst, depth) if frag[1] else pair
        self.last_fragment = ((src, dst, 0, frag[0]), frag[1], pair if own == FRAGMENT else own, pair)
        return FRAGMENT

    def _l4(self, proto: int, f: bytes, p: int, end: int, src: bytes, dst: bytes, depth: int) -> int:
        """The owner by the transport header at ``p``: a tunnel's inner packet, ports, or the address pair."""
        tunnel = self._ip_tunnels.get(proto)
        if tunnel is not None and depth < MAX_LAYERS:
            inner = tunnel(f, p, end, depth + 1)
            return inner if inner is not None else self._sym(proto, src, dst)
        if proto in _PORT_PROTOS and p + 4 <= end:
            sp, dp = f[p:p + 2], f[p + 2:p + 4]
            if proto == PROTO_UDP and depth < MAX_LAYERS:
                inner = self._udp_tunnel(f, p, end, sp, dp, depth + 1)
                if inner is not None:
                    return inner
            return self._sym(proto, src + sp, dst + dp)
        return self._sym(proto, src, dst)

    # -- tunnels: each returns the inner packet's owner, or None (_UNREAD) when it does not read one ------
    def _gre(self, f: bytes, o: int, end: int, depth: int) -> int | None:
        if end - o < 4:
            return _UNREAD
        flags, ptype = (f[o] << 8) | f[o + 1], (f[o + 2] << 8) | f[o + 3]
        if flags & (_GRE_ROUTING | _GRE_VERSION):
            return _UNREAD  # routing, or PPTP's GRE: keyed by the outer pair
        inner = o + 4 + 4 * sum(1 for bit in _GRE_OPTIONAL if flags & bit)
        if ptype == ETHERTYPE_ERSPAN_I_II:
            return self._ethernet_at(f, inner + (_ERSPAN_II_HLEN if flags & _GRE_SEQ else 0), end, depth)
        if ptype == ETHERTYPE_ERSPAN_III:
            if end - inner < _ERSPAN_III_HLEN:
                return _UNREAD
            sub = _ERSPAN_III_SUB if f[inner + _ERSPAN_III_HLEN - 1] & 0x01 else 0
            return self._ethernet_at(f, inner + _ERSPAN_III_HLEN + sub, end, depth)
        fn = self._gre_inner.get(ptype)
        return _UNREAD if fn is None or inner >= end else fn(f, inner, end, depth)

    def _udp_tunnel(self, f: bytes, p: int, end: int, sp: bytes, dp: bytes, depth: int) -> int | None:
        fn = self.udp_dst.get((dp[0] << 8) | dp[1]) or self.udp_src.get((sp[0] << 8) | sp[1])
        if fn is None:
            return None
        ulen = (f[p + 4] << 8) | f[p + 5] if p + _UDP_HLEN <= end else 0
        if ulen < _UDP_HLEN or p + ulen > end:
            return None
        return fn(f, p + _UDP_HLEN, p + ulen, depth)

    def _vxlan(self, f: bytes, o: int, end: int, depth: int) -> int | None:
        if end - o < _VXLAN_HLEN + _ETH_HLEN or not f[o] & _VXLAN_I:
            return _UNREAD
        return self._ethernet_at(f, o + _VXLAN_HLEN, end, depth)

    def _geneve(self, f: bytes, o: int, end: int, depth: int) -> int | None:
        if end - o < _GENEVE_HLEN or f[o] >> 6:
            return _UNREAD
        inner = o + _GENEVE_HLEN + ((f[o] & _GENEVE_OPTLEN) << 2)
        fn = self._gre_inner.get((f[o + 2] << 8) | f[o + 3])
        return _UNREAD if fn is None or inner >= end else fn(f, inner, end, depth)

    def _teredo(self, f: bytes, o: int, end: int, depth: int) -> int | None:
        """As the decoder: an optional origin indication, then exactly one IPv6 packet."""
        if end - o >= _TEREDO_ORIGIN + _IP6_HLEN and f[o] == 0 and f[o + 1] == 0:
            o += _TEREDO_ORIGIN
        if end - o < _IP6_HLEN or f[o] >> 4 != 6:
            return _UNREAD
        plen = (f[o + 4] << 8) | f[o + 5]
        if o + _IP6_HLEN + plen != end or not f[o + 7] or (f[o + 6] == PROTO_HOPOPTS and plen < 8):
            return _UNREAD
        return self._ipv6(f, o, end, depth)


def _version_type(f: bytes, o: int) -> int:
    """Raw IP: the ethertype its version nibble names (0 if neither)."""
    v = f[o] >> 4 if o < len(f) else 0
    return ETHERTYPE_IPV4 if v == 4 else ETHERTYPE_IPV6 if v == 6 else 0
