"""Sharing one capture among N engines: which worker keeps a frame's session, read from the raw frame.

``FlowPartitioner.owner`` is a symmetric hash of the frame's flow: equal for
both directions of a session and for every frame the engine puts in the same
session, so the key is the engine's own session key as far as it matters: the
endpoints sorted, each the IP address followed by the port for TCP, UDP and
SCTP, plus the IP protocol.  The hash mixes the key's 32-bit words (FNV-1a's
step, on words), then murmur3's finaliser, so every bit of the key moves the
low bits the worker is taken from (modulo the number of workers); it reads
the frame in place (no slices), so compiled (flowshare.pxd) a frame costs a
few dozen nanoseconds.  Choices, and why:

- Tunnels are keyed by the packet they carry, as the engine keys them
  (IP-in-IP, 6in4, GRE with IP, bridged Ethernet or ERSPAN inside, VXLAN and
  Geneve on their ``decoder.*.ports`` destination ports, Teredo on
  ``decoder.teredo.ports`` when the payload is exactly an IPv6 packet): the
  same inner session can be seen in two tunnels (e.g. both legs of a 6in4
  relay), whose outer headers differ.  A UDP tunnel is a session of its own
  too (the engine counts it, as Suricata): ``outer`` names its worker, which
  counts it while the carried packet's worker analyses the packet, as
  Suricata's autofp hands the tunnel packet and the carried one to the
  workers of their own flows.
- VLAN IDs are left out of the key.  The engine keys sessions by VLAN too
  (Suricata's ``vlan.use-for-tracking``), so leaving it out never splits a
  session; putting it in would split the two directions of a session that a
  router between VLANs forwards (one tag each way) whenever tracking by VLAN
  is turned off.  The kernel's fanout hash (live mode) leaves it out as well.
- Fragments: ``owner`` only recognises one (``FRAGMENT``) and describes it
  (``last_fragment``); the replay's ``FragmentRouter`` sends it to its flow.
- Frames this parser does not read (non-IP, truncated, link types and
  encapsulations other than Ethernet with VLAN/QinQ/PPPoE/MPLS, raw IP, Linux
  cooked v1/v2 and null/loopback, PPTP) go to worker 0, or by the outer
  address pair for an unread tunnel: correct, as every frame of whatever the
  engine makes of them goes there too.

Which worker a session's hash names is ``flowsched.Scheduler``'s (``autofp-scheduler``).

``core.decode.ownframes.OwnFrames`` is one worker's pick of the capture's frames.
"""

from __future__ import annotations

import cython

from mirrorwatch.core.decode.flowsched import IPPAIR, Scheduler
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
UNREAD_OWNER = 0  # the owner of frames this parser does not read
MAX_LAYERS = 16  # VLAN tags, MPLS labels, IPv6 extension headers or tunnels read (decoder.max-layers)
_FRAGMENT, _UNREAD_OWNER, _MAX_LAYERS = FRAGMENT, UNREAD_OWNER, MAX_LAYERS  # the same, as C constants (.pxd)

_IPPAIR = IPPAIR  # the same, as a C constant (.pxd)
_UNREAD = -3  # what the parsing methods return for what they do not read
_FNV_BASIS, _FNV_PRIME = 0x811C9DC5, 0x01000193
_FMIX_1, _FMIX_2 = 0x85EBCA6B, 0xC2B2AE35  # murmur3's fmix32
_M32 = 0xFFFFFFFF
_IP4_ALEN, _IP6_ALEN = 4, 16
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
_NO_TUNNEL, _VXLAN, _GENEVE, _TEREDO = 0, 1, 2, 3  # UDP tunnels, as _udp_ports holds them by port
_PORTS = 65536
_NO_LINK, _RAW, _SLL, _SLL2, _NULL = 0, 1, 2, 3, 4  # link types other than Ethernet, as _links holds them


def _ports(text) -> frozenset:
    """'4789' / '4789,8472' / '[4789, 8472]' -> the ports."""
    parts = str(text).strip().strip("[]").replace(",", " ").split()
    return frozenset(int(p) for p in parts if p.isdigit() and int(p) < _PORTS)


def _fmix(h: int) -> int:
    """murmur3's finaliser: every bit of ``h`` moves every bit of the result."""
    h ^= h >> 16
    h = (h * _FMIX_1) & _M32
    h ^= h >> 13
    h = (h * _FMIX_2) & _M32
    return h ^ (h >> 16)


def _b16(f: bytes, i: int) -> int:
    """The big-endian 16-bit number at ``f[i:i + 2]`` (compiled: read in place; the caller checked the length)."""
    return f[i] << 8 | f[i + 1]


def _b32(f: bytes, i: int) -> int:
    """The big-endian 32-bit number at ``f[i:i + 4]`` (as ``_b16``)."""
    return _b16(f, i) << 16 | _b16(f, i + 2)


def _version_type(f: bytes, o: int, end: int) -> int:
    """Raw IP: the ethertype its version nibble names (0 if neither)."""
    v = f[o] >> 4 if o < end else 0
    return ETHERTYPE_IPV4 if v == 4 else ETHERTYPE_IPV6 if v == 6 else 0


class FlowPartitioner:
    """``owner(linktype, frame)``: the worker (0..workers-1) that keeps the frame's session, or FRAGMENT."""

    def __init__(self, workers: int, *, vxlan=(), geneve=(), teredo=(), scheduler: str = "hash",
                 idle: float = 0.0):
        if workers < 1:
            raise ValueError("at least one worker")
        self.n = workers
        self.sched = Scheduler(workers, scheduler, idle)  # its ``now`` is the latest time read (OwnFrames sets it)
        table = bytearray(_PORTS)  # UDP port -> the tunnel it is the port of (Teredo's wins a conflict)
        for kind, ports in ((_VXLAN, vxlan), (_GENEVE, geneve), (_TEREDO, teredo)):
            for p in ports:
                table[p] = kind
        self._udp_ports = bytes(table)
        self._links = {  # the other link types read -> how (``_link``)
            LINKTYPE_RAW: _RAW, DLT_RAW: _RAW, DLT_RAW_BSDOS: _RAW, LINKTYPE_IPV4: _RAW, LINKTYPE_IPV6: _RAW,
            LINKTYPE_LINUX_SLL: _SLL, LINKTYPE_LINUX_SLL2: _SLL2, LINKTYPE_NULL: _NULL, LINKTYPE_LOOP: _NULL,
        }
        # the last fragment owner() saw: (datagram key, is first, owner if first, owner of its address pair)
        self.last_fragment = None
        # the last frame's UDP tunnel session (VXLAN, Geneve, Teredo), when it carried a packet the worker
        # was taken from: that session's own worker (it counts the tunnel's session), else -1
        self.outer = -1

    @classmethod
    def from_settings(cls, settings, workers: int):
        idle = 2 * max(float(v) for k, v in settings.as_dict().items() if k.startswith("flow-timeouts."))
        return cls(workers, vxlan=_ports(settings["decoder.vxlan.ports"]),
                   geneve=_ports(settings["decoder.geneve.ports"]), teredo=_ports(settings["decoder.teredo.ports"]),
                   scheduler=settings["autofp-scheduler"], idle=idle)

    def owner(self, linktype: int, f: bytes) -> int:
        return self.owner_in(linktype, f, 0, len(f))

    def owner_in(self, linktype: int, f: bytes, start: int, stop: int) -> int:
        """``owner`` of the frame at ``f[start:stop]`` (compiled: ``f`` is a pointer into a reader's block)."""
        self.outer = -1
        if linktype == LINKTYPE_ETHERNET:
            own = self._ethernet_at(f, start, stop, 0)
        else:
            own = self._link(self._links.get(linktype, _NO_LINK), f, start, stop)
        if own == _UNREAD:
            own = _UNREAD_OWNER
        if own >= 0:
            self.sched.give(own, stop - start)
        return own

    def _pair(self, proto: int, f: bytes, src: int, dst: int, alen: int, sp: int, dp: int) -> int:
        """The owner of the endpoints (address at ``f[src:src + alen]``, port ``sp``) and (``dst``, ``dp``), in
        either order: the lower endpoint (address, then port) is mixed in first."""
        order = 0
        for i in range(alen):
            order = f[src + i] - f[dst + i]
            if order:
                break
        if self.sched.kind == _IPPAIR:
            sp = dp = 0
        if order > 0 or (order == 0 and sp > dp):
            src, dst, sp, dp = dst, src, dp, sp
        h = _FNV_BASIS ^ proto
        for i in range(0, alen, 4):
            h = ((h ^ _b32(f, src + i)) * _FNV_PRIME) & _M32
        for i in range(0, alen, 4):
            h = ((h ^ _b32(f, dst + i)) * _FNV_PRIME) & _M32
        h = ((h ^ (sp << 16 | dp)) * _FNV_PRIME) & _M32
        return self.sched.pick(_fmix(h))

    # -- link layers ----------------------------------------------------------------
    def _ethernet_at(self, f: bytes, o: int, end: int, depth: int) -> int:
        if end - o < _ETH_HLEN:
            return _UNREAD
        et, o = self._ethertype(f, _b16(f, o + 12), o + _ETH_HLEN, end)
        return self._l3(et, f, o, end, depth)

    def _l3(self, et: int, f: bytes, o: int, end: int, depth: int) -> int:
        if et == ETHERTYPE_IPV4:
            return self._ipv4(f, o, end, depth)
        if et == ETHERTYPE_IPV6:
            return self._ipv6(f, o, end, depth)
        return _UNREAD

    def _ethertype(self, f: bytes, et: int, o: int, end: int):
        """Past VLAN/QinQ tags, a PPPoE session header or an MPLS label stack: (ethertype, offset)."""
        for _ in range(_MAX_LAYERS):
            if et == ETHERTYPE_IPV4 or et == ETHERTYPE_IPV6:
                return et, o
            if et in VLAN_TPIDS and o + 4 <= end:
                et, o = _b16(f, o + 2), o + 4
            elif et == ETHERTYPE_PPPOE_SESSION and o + _PPPOE_HLEN <= end:
                ppp = _b16(f, o + 6)
                return (ETHERTYPE_IPV4 if ppp == _PPP_IPV4 else ETHERTYPE_IPV6 if ppp == _PPP_IPV6 else 0), o + 8
            elif (et == ETHERTYPE_MPLS_UNICAST or et == ETHERTYPE_MPLS_MULTICAST) and o + 4 <= end:
                bottom = f[o + 2] & _MPLS_BOTTOM
                o += 4
                if bottom:
                    return _version_type(f, o, end), o
            else:
                return et, o
        return 0, o

    def _link(self, kind: int, f: bytes, o: int, end: int) -> int:
        """The frame at ``f[o:end]`` by a link layer other than Ethernet (``kind``: how ``_links`` reads it)."""
        if kind == _RAW:
            return self._l3(_version_type(f, o, end), f, o, end, 0)
        if kind == _SLL:
            return self._cooked(f, o, end, _SLL_PROTO, _SLL_HLEN)
        if kind == _SLL2:
            return self._cooked(f, o, end, _SLL2_PROTO, _SLL2_HLEN)
        if kind == _NULL:
            return self._null(f, o, end)
        return _UNREAD

    def _cooked(self, f: bytes, o: int, end: int, at: int, hlen: int) -> int:
        if end - o < hlen:
            return _UNREAD
        et, p = self._ethertype(f, _b16(f, o + at), o + hlen, end)
        return self._l3(et, f, p, end, 0)

    def _null(self, f: bytes, o: int, end: int) -> int:
        if end - o < _NULL_HLEN:
            return _UNREAD
        fam = {int.from_bytes(f[o:o + 4], "little"), int.from_bytes(f[o:o + 4], "big")}  # in either byte order
        if AF_INET in fam:
            return self._ipv4(f, o + _NULL_HLEN, end, 0)
        if fam & BSD_AF_INET6 or _LINUX_AF_INET6 in fam:
            return self._ipv6(f, o + _NULL_HLEN, end, 0)
        return _UNREAD

    # -- IP -------------------------------------------------------------------------------
    def _ipv4(self, f: bytes, o: int, end: int, depth: int) -> int:
        if end - o < 20 or f[o] >> 4 != 4:
            return _UNREAD
        proto = f[o + 9]
        tlen = _b16(f, o + 2)  # 0: TSO/GSO or BIG TCP, what was captured (as the decoder takes it)
        ip_end = min(end, o + tlen) if tlen else end
        l4 = o + ((f[o] & 0x0F) << 2)
        if not (f[o + 6] & 0x3F or f[o + 7]):  # neither MF nor a fragment offset
            return self._l4(proto, f, l4, ip_end, o + 12, o + 16, _IP4_ALEN, depth)
        first = not (f[o + 6] & 0x1F or f[o + 7])
        pair = self._pair(proto, f, o + 12, o + 16, _IP4_ALEN, 0, 0)
        own = self._l4(proto, f, l4, ip_end, o + 12, o + 16, _IP4_ALEN, depth) if first else pair
        key = (bytes(f[o + 12:o + 16]), bytes(f[o + 16:o + 20]), proto, bytes(f[o + 4:o + 6]))  # f: a block
        self.last_fragment = (key, first, pair if own == _FRAGMENT else own, pair)
        return _FRAGMENT

    def _ipv6(self, f: bytes, o: int, end: int, depth: int) -> int:
        if end - o < _IP6_HLEN or f[o] >> 4 != 6:
            return _UNREAD
        plen = _b16(f, o + 4)
        nh, p = f[o + 6], o + _IP6_HLEN
        ip_end = min(end, p + plen) if plen or nh != PROTO_HOPOPTS else end  # 0: a jumbogram, as the decoder
        frag_at, first = -1, False
        for _ in range(_MAX_LAYERS):
            if p + 8 > ip_end:
                break
            if nh == PROTO_HOPOPTS or nh == PROTO_ROUTING or nh == PROTO_DSTOPTS:
                nh, p = f[p], p + ((f[p + 1] + 1) << 3)
            elif nh == PROTO_AH:
                nh, p = f[p], p + ((f[p + 1] + 2) << 2)
            elif nh == PROTO_FRAGMENT:
                offm = _b16(f, p + 2)
                if offm & 0xFFF9:  # an offset or MF: a real fragment (else RFC 6946's atomic fragment)
                    frag_at, first = p + 4, not offm & 0xFFF8
                    if not first:
                        break  # a later fragment: no upper-layer header to read
                nh, p = f[p], p + 8
            else:
                break
        if frag_at < 0:
            return self._l4(nh, f, p, ip_end, o + 8, o + 24, _IP6_ALEN, depth)
        pair = self._pair(0, f, o + 8, o + 24, _IP6_ALEN, 0, 0)
        own = self._l4(nh, f, p, ip_end, o + 8, o + 24, _IP6_ALEN, depth) if first else pair
        key = (bytes(f[o + 8:o + 24]), bytes(f[o + 24:o + 40]), 0, bytes(f[frag_at:frag_at + 4]))
        self.last_fragment = (key, first, pair if own == _FRAGMENT else own, pair)
        return _FRAGMENT

    def _l4(self, proto: int, f: bytes, p: int, end: int, src: int, dst: int, alen: int, depth: int) -> int:
        """The owner by the transport header at ``p``: a tunnel's inner packet, ports, or the address pair."""
        if proto == PROTO_TCP or proto == PROTO_UDP or proto == PROTO_SCTP:
            if p + 4 > end:
                return self._pair(proto, f, src, dst, alen, 0, 0)
            sp, dp = _b16(f, p), _b16(f, p + 2)
            if proto == PROTO_UDP and depth < _MAX_LAYERS and (self._udp_ports[sp] or self._udp_ports[dp]):
                pair = self._pair(proto, f, src, dst, alen, sp, dp)  # the tunnel's own session
                inner = self._udp_tunnel(f, p, end, sp, dp, depth + 1)
                if inner != _UNREAD:
                    if self.outer < 0:
                        self.outer = pair  # the outermost UDP tunnel's session: its worker counts it
                    return inner
                return pair
            return self._pair(proto, f, src, dst, alen, sp, dp)
        inner = _UNREAD
        if depth < _MAX_LAYERS:  # the IP tunnels: IP-in-IP, 6in4/6in6, GRE
            if proto == PROTO_IPIP:
                inner = self._ipv4(f, p, end, depth + 1)
            elif proto == PROTO_IPV6:
                inner = self._ipv6(f, p, end, depth + 1)
            elif proto == PROTO_GRE:
                inner = self._gre(f, p, end, depth + 1)
        return inner if inner != _UNREAD else self._pair(proto, f, src, dst, alen, 0, 0)

    # -- tunnels: each returns the inner packet's owner, or _UNREAD when it does not read one ------
    def _gre(self, f: bytes, o: int, end: int, depth: int) -> int:
        if end - o < 4:
            return _UNREAD
        flags, ptype = _b16(f, o), _b16(f, o + 2)
        if flags & (_GRE_ROUTING | _GRE_VERSION):
            return _UNREAD  # routing, or PPTP's GRE: keyed by the outer pair
        inner = o + 4
        for bit in _GRE_OPTIONAL:
            if flags & bit:
                inner += 4
        if ptype == ETHERTYPE_ERSPAN_I_II:
            return self._ethernet_at(f, inner + (_ERSPAN_II_HLEN if flags & _GRE_SEQ else 0), end, depth)
        if ptype == ETHERTYPE_ERSPAN_III:
            if end - inner < _ERSPAN_III_HLEN:
                return _UNREAD
            sub = _ERSPAN_III_SUB if f[inner + _ERSPAN_III_HLEN - 1] & 0x01 else 0
            return self._ethernet_at(f, inner + _ERSPAN_III_HLEN + sub, end, depth)
        return self._inner(ptype, f, inner, end, depth)

    def _inner(self, ptype: int, f: bytes, o: int, end: int, depth: int) -> int:
        """A GRE or Geneve payload by its protocol type: IPv4, IPv6 or bridged Ethernet."""
        if o >= end:
            return _UNREAD
        if ptype == ETHERTYPE_TEB:
            return self._ethernet_at(f, o, end, depth)
        return self._l3(ptype, f, o, end, depth)

    def _udp_tunnel(self, f: bytes, p: int, end: int, sp: int, dp: int, depth: int) -> int:
        kind = self._udp_ports[dp]  # by the destination port; Teredo by either port
        if kind == _NO_TUNNEL and self._udp_ports[sp] == _TEREDO:
            kind = _TEREDO
        ulen = _b16(f, p + 4) if p + _UDP_HLEN <= end else 0
        if kind == _NO_TUNNEL or ulen < _UDP_HLEN or p + ulen > end:
            return _UNREAD
        o, end = p + _UDP_HLEN, p + ulen
        if kind == _VXLAN:
            return self._vxlan(f, o, end, depth)
        if kind == _GENEVE:
            return self._geneve(f, o, end, depth)
        return self._teredo(f, o, end, depth)

    def _vxlan(self, f: bytes, o: int, end: int, depth: int) -> int:
        if end - o < _VXLAN_HLEN + _ETH_HLEN or not f[o] & _VXLAN_I:
            return _UNREAD
        return self._ethernet_at(f, o + _VXLAN_HLEN, end, depth)

    def _geneve(self, f: bytes, o: int, end: int, depth: int) -> int:
        if end - o < _GENEVE_HLEN or f[o] >> 6:
            return _UNREAD
        return self._inner(_b16(f, o + 2), f, o + _GENEVE_HLEN + ((f[o] & _GENEVE_OPTLEN) << 2), end, depth)

    def _teredo(self, f: bytes, o: int, end: int, depth: int) -> int:
        """As the decoder: an optional origin indication, then exactly one IPv6 packet."""
        if end - o >= _TEREDO_ORIGIN + _IP6_HLEN and f[o] == 0 and f[o + 1] == 0:
            o += _TEREDO_ORIGIN
        if end - o < _IP6_HLEN or f[o] >> 4 != 6:
            return _UNREAD
        plen = _b16(f, o + 4)
        if o + _IP6_HLEN + plen != end or not f[o + 7] or (f[o + 6] == PROTO_HOPOPTS and plen < 8):
            return _UNREAD
        return self._ipv6(f, o, end, depth)
