"""Frame bytes -> flat ``Packet`` record: link layers, VLAN/MPLS, IPv4/IPv6,
tunnels, fragments and TCP/UDP/ICMP headers.

This is the per-packet hot path.  Plain Ethernet -> IPv4 -> TCP/UDP runs
through ``decode`` (Ethernet + IPv4 in one unpack) -> ``_l4`` with precompiled
``struct.Struct`` readers straight on the frame bytes; everything unusual leaves
that path through a method call: other link types (Linux SLL/SLL2, raw IPv4/IPv6,
BSD null/loop, PPP, Cisco HDLC, PPPoE, SLIP, NFLOG, ipnet, PKTAP), VLAN/QinQ
stacks, MPLS, IPv4 options, IPv6 extension headers, fragments, and tunnels
(GRE incl. PPP/PPTP, Ethernet bridging and ERSPAN, IP-in-IP, 6in4/4in6,
VXLAN, Geneve and Teredo on their configured UDP ports).  A tunnelled packet is
decoded to its innermost IP packet; the outer layers are listed in
``pkt.tunnel`` and every layer counts against ``decoder.max-layers``.

Robustness contract: ``decode`` never raises.  Every length is checked before
it is used; a malformed or unsupported frame increments one per-reason counter
(``decoder.<reason>``) and ``decoder.errors``, and returns None.  A frame whose
IP header is valid but whose TCP/UDP/ICMP header is not (truncated, bad header
or length field) is returned as a Packet with ``invalid`` = the reason, IP
fields filled and no transport fields or payload, counted in
``decoder.invalid`` and by reason: as in Suricata it gets no flow, but IP-only
rules still see it.  A fragment that is held for reassembly returns None and is
counted as ``defrag.fragments_held``, not as an error, so ``decoder.pkts ==
decoder.decoded + decoder.errors + defrag.fragments_held`` always holds
(``decoded`` includes the invalid packets).  A frame that is valid but not IP
(ARP, LLDP, PPP control...) is a Packet with ``ipv`` = 0.

Checksums (``checksum_mode``, Suricata's ``-k``): ``all`` verifies the IPv4
header and the TCP/UDP/ICMP/ICMPv6 checksums and sets ``pkt.csum_ok``; ``none``
never verifies (``csum_ok`` stays None); ``auto`` verifies like ``all`` until
``detect.checksum-auto-sample`` frames were seen, then, if more than one in
ten checked packets was bad (checksum offloading on the capturing host), stops
verifying for the rest of the capture (``checksum.auto_disabled`` = 1).
A packet with a bad checksum is still returned, with ``csum_ok`` False, and
counted (``checksum.bad``, ``decoder.<proto>_csum_bad``); the rooms after
decode leave it out of stream reassembly and detection, as Suricata does for
TCP (the receiving host would have dropped it; here a bad UDP/ICMP or IPv4
header checksum is treated the same, which denies decoy packets to evaders).
"""

from __future__ import annotations

import struct

from mirrorwatch.core.decode.defrag import IPV4_MAX, Defragmenter
from mirrorwatch.core.decode.packet import Packet

# Link types (pcap LINKTYPE_* values) the decoder understands.
LINKTYPE_NAMES = {
    0: "NULL", 1: "ETHERNET", 8: "SLIP", 9: "PPP", 12: "RAW (OpenBSD)", 14: "RAW (BSD/OS)", 50: "PPP_HDLC",
    51: "PPP_ETHER", 101: "RAW", 104: "C_HDLC", 108: "LOOP", 113: "LINUX_SLL", 226: "IPNET", 228: "IPV4",
    229: "IPV6", 239: "NFLOG", 258: "PKTAP", 276: "LINUX_SLL2",
}
SUPPORTED_LINKTYPES = frozenset(LINKTYPE_NAMES)
DLT_RAW = 12  # libpcap's DLT_RAW on Linux: the link type of a rebuilt tunnelled datagram (as Suricata reports)

_H = struct.Struct("!H").unpack_from
_ETH = struct.Struct("!6s6sH").unpack_from
_ETH_IP4 = struct.Struct("!6s6sHBBHHHBBH4s4s").unpack_from
_ETH_VLAN_IP4 = struct.Struct("!6s6sHHHBBHHHBBH4s4s").unpack_from
_ETH_IP4_TCP = struct.Struct("!6s6sHBBHHHBBH4s4sHHIIHHHH").unpack_from
_ETH_VLAN_IP4_TCP = struct.Struct("!6s6sHHHBBHHHBBH4s4sHHIIHHHH").unpack_from
_HH = struct.Struct("!HH").unpack_from
_I = struct.Struct("!I").unpack_from
_IP4 = struct.Struct("!BBHHHBBH4s4s").unpack_from
_IP6 = struct.Struct("!IHBB16s16s").unpack_from
_TCP = struct.Struct("!HHIIHHHH").unpack_from
_UDP = struct.Struct("!HHH").unpack_from
_ICMP = struct.Struct("!BBHHH").unpack_from
_FRAG6 = struct.Struct("!BBHI").unpack_from
_LE32 = struct.Struct("<I").unpack_from
_LE32x2 = struct.Struct("<II").unpack_from
_NATIVE_HH = struct.Struct("=HH").unpack_from  # NFLOG TLV headers are in the capturing host's order
_from = int.from_bytes
_IP_TCP = Packet.ip_tcp

_VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))
# IPv6 extension headers walked to reach the upper layer (44 = fragment, 51 = AH).
_IP6_EXT = frozenset((0, 43, 44, 51, 60, 135, 139, 140, 253, 254))
_BSD_AF_INET6 = frozenset((24, 28, 30))
_ICMP_ECHO = frozenset((0, 8, 13, 14, 15, 16, 17, 18))
_ICMP6_ECHO = frozenset((128, 129))
_NOT_IP = object()  # _ppp inside a tunnel: "not IP, keep the outer packet"
_PROTO_COUNTER = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}
_VXLAN, _GENEVE = 1, 2  # UDP tunnel kinds, by configured destination port


def _ports(settings, key: str) -> list[int]:
    """'4789' / '4789,8472' / '[4789, 8472]' / '' -> list of ports (SettingError when malformed)."""
    from mirrorwatch.core.settings import SettingError

    text = str(settings[key]).strip().strip("[]")
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or not 0 < int(part) < 65536:
            raise SettingError(f"{key}: {part!r} is not a port number")
        out.append(int(part))
    return out


def _sum_le(f: bytes, a: int, end: int) -> int:
    """Sum of ``f[a:end]`` as one little-endian number, for a ones'-complement checksum
    (only its remainder modulo 0xFFFF matters; see ``Decoder._verify_l4``), taken in 2 or 4
    pieces at even offsets: the pieces' sums add, and the one remainder (CPython divides digit
    by digit) is then taken of a number half or a quarter as long, which costs less in all.
    For 400 bytes and more; below that one ``int.from_bytes`` is cheaper."""
    m = end - a
    if m < 1000:
        h = a + ((m >> 2) << 1)
        return _from(f[a:h], "little") + _from(f[h:end], "little")
    q = (m >> 3) << 1
    h1 = a + q
    h2 = h1 + q
    h3 = h2 + q
    return _from(f[a:h1], "little") + _from(f[h1:h2], "little") + _from(f[h2:h3], "little") + _from(
        f[h3:end], "little")


class Decoder:
    """Decodes frames into Packets; see the module docstring for the contract."""

    def __init__(self, settings, checksum_mode: str = "auto"):
        if checksum_mode not in ("auto", "all", "none"):
            raise ValueError(f"checksum mode must be auto, all or none, not {checksum_mode!r}")
        self.mode = checksum_mode
        self.verify = checksum_mode != "none"
        self._auto = checksum_mode == "auto"
        self._sample = settings["detect.checksum-auto-sample"]
        self.max_layers = settings["decoder.max-layers"]
        self.udp_tunnels = {p: _VXLAN for p in _ports(settings, "decoder.vxlan.ports")}
        self.udp_tunnels.update({p: _GENEVE for p in _ports(settings, "decoder.geneve.ports")})
        self.teredo_ports = frozenset(_ports(settings, "decoder.teredo.ports"))
        self.defrag = Defragmenter(settings)
        self.pkts = 0
        self.errors = 0
        self.n_invalid = 0
        self.n_ipv4 = self.n_ipv6 = self.n_tcp = self.n_udp = self.n_icmp = self.n_vlan = 0
        self.csum_checked = self.csum_bad = 0
        self.auto_disabled = 0
        self.notes: dict[str, int] = {}  # protocol / encapsulation counts off the fast path
        self.errs: dict[str, int] = {}  # per-reason error counts

    # -- bookkeeping ----------------------------------------------------------
    def _err(self, reason: str):
        self.errors += 1
        e = self.errs
        e[reason] = e.get(reason, 0) + 1
        return None

    def _invalid(self, pkt: Packet, reason: str) -> Packet:
        """Valid IP, malformed transport header: the packet goes on flagged (Suricata: no flow, IP-only rules)."""
        self.n_invalid += 1
        e = self.errs
        e[reason] = e.get(reason, 0) + 1
        pkt.invalid = reason
        return pkt

    def _note(self, what: str) -> None:
        n = self.notes
        n[what] = n.get(what, 0) + 1

    def counters(self) -> dict:
        held = self.defrag.c["defrag.fragments_held"]
        c = {
            "decoder.pkts": self.pkts,
            "decoder.decoded": self.pkts - self.errors - held,
            "decoder.errors": self.errors,
            "decoder.invalid": self.n_invalid,
            "decoder.ipv4": self.n_ipv4,
            "decoder.ipv6": self.n_ipv6,
            "decoder.tcp": self.n_tcp,
            "decoder.udp": self.n_udp,
            "decoder.icmp": self.n_icmp,
            "decoder.vlan": self.n_vlan,
        }
        for k, v in self.notes.items():
            c["decoder." + k] = v
        for k, v in self.errs.items():
            c["decoder." + k] = v
        c["checksum.checked"] = self.csum_checked
        c["checksum.bad"] = self.csum_bad
        c["checksum.auto_disabled"] = self.auto_disabled
        c.update(self.defrag.counters())
        return c

    def expire(self, now: float) -> None:
        """Drop fragment datagrams that timed out (packet time)."""
        self.defrag.expire(now)

    # -- entry point ----------------------------------------------------------
    def decode(self, ts: float, linktype: int, frame: bytes, pcap_cnt: int) -> Packet | None:
        """One frame -> Packet, or None (counted by reason / held fragment). Never raises."""
        self.pkts += 1
        try:
            if linktype == 1:
                end = len(frame)
                if end >= 34:
                    # Fast paths: Ethernet, untagged or with one 802.1Q tag, then TCP in
                    # option-less unfragmented IPv4 (one unpack from the MAC addresses to the
                    # urgent pointer) or in IPv6 without extension headers (``_eth_ipv6_tcp``);
                    # other IPv4 in one unpack up to the addresses, then ``_l4``.  Whatever
                    # does not fit takes the general path, which decodes it to the same Packet.
                    o = 0
                    if frame[12] == 8 and frame[13] == 0:
                        if frame[23] == 6 and frame[14] == 0x45 and end >= 54:
                            (dmac, smac, _, _, tos, tlen, ipid, foff, ttl, _, _, src, dst,
                             sport, dport, seq, ack, offfl, win, _, urp) = _ETH_IP4_TCP(frame, 0)
                            o = 14
                            vlans = vlan_id = ()
                        else:
                            dmac, smac, _, vhl, tos, tlen, ipid, foff, ttl, proto, _, src, dst = _ETH_IP4(frame, 0)
                            if vhl == 0x45 and 20 <= tlen <= end - 14 and not foff & 0x3FFF:
                                return self._eth_ip4(ts, pcap_cnt, frame, dmac, smac, (), (), 14, tos, tlen, ipid,
                                                     ttl, proto, src, dst)
                    elif frame[12] == 0x81 and frame[13] == 0 and end >= 38 and self.max_layers:
                        if frame[16] == 8 and frame[17] == 0:
                            if frame[27] == 6 and frame[18] == 0x45 and end >= 58:
                                (dmac, smac, _, tci, _, _, tos, tlen, ipid, foff, ttl, _, _, src, dst,
                                 sport, dport, seq, ack, offfl, win, _, urp) = _ETH_VLAN_IP4_TCP(frame, 0)
                                o = 18
                            else:
                                (dmac, smac, _, tci, _, vhl, tos, tlen, ipid, foff, ttl, proto, _, src,
                                 dst) = _ETH_VLAN_IP4(frame, 0)
                                if vhl == 0x45 and 20 <= tlen <= end - 18 and not foff & 0x3FFF:
                                    self.n_vlan += 1  # as _ethertype: one tag is one layer
                                    return self._eth_ip4(ts, pcap_cnt, frame, dmac, smac, ((0x8100, tci),),
                                                         (tci & 0xFFF,), 18, tos, tlen, ipid, ttl, proto, src, dst)
                        elif frame[16] == 0x86 and frame[17] == 0xDD:
                            pkt = self._eth_ipv6_tcp(ts, pcap_cnt, frame, 18, end)
                            if pkt is not None:
                                return pkt
                    elif frame[12] == 0x86 and frame[13] == 0xDD:
                        pkt = self._eth_ipv6_tcp(ts, pcap_cnt, frame, 14, end)
                        if pkt is not None:
                            return pkt
                    if o:
                        l4 = o + 20
                        ip_end = o + tlen
                        thl = (offfl >> 12) << 2
                        if 20 <= thl <= tlen - 20 and ip_end <= end and not foff & 0x3FFF:
                            if o == 18:  # as _ethertype: one tag is one layer
                                self.n_vlan += 1
                                vlans = ((0x8100, tci),)
                                vlan_id = (tci & 0xFFF,)
                            self.n_ipv4 += 1
                            self.n_tcp += 1
                            pkt = _IP_TCP(ts, pcap_cnt, frame, dmac, smac, vlans, vlan_id, 4, 0x0800, src, dst, ttl,
                                          tos, ipid, o, 20, tlen, sport, dport, seq, ack, offfl & 0xFF, win, urp,
                                          thl, frame[l4 + 20:l4 + thl] if thl > 20 else b"", frame[l4 + thl:ip_end])
                            if self.verify:  # _ipv4_csum inlined, then the TCP checksum
                                ok = True
                                if _from(frame[o:l4], "little") % 0xFFFF:
                                    ok = False
                                    self._note("ipv4_csum_bad")
                                self._tcp_csum(pkt, frame, o + 12, ip_end, (tlen - 14) << 8, ok)
                            return pkt
                pkt = Packet(ts, pcap_cnt, linktype, frame)
                if end < 14:
                    return self._err("truncated_ethernet")
                pkt.dst_mac, pkt.src_mac, etype = _ETH(frame, 0)
                if etype == 0x0800:
                    pkt.l2_proto = 0x0800
                    return self._ipv4(pkt, frame, 14, end, 0)
                return self._ethertype(pkt, frame, 14, end, etype, 0)
            return self._link(Packet(ts, pcap_cnt, linktype, frame), linktype, frame)
        except Exception as e:  # a decoder bug must not take the engine down
            return self._err("internal_error_" + type(e).__name__)

    def _eth_ip4(self, ts, pcap_cnt, frame, dmac, smac, vlans, vlan_id, o, tos, tlen, ipid, ttl, proto, src, dst):
        """The fast path's option-less unfragmented IPv4 that is not a plain TCP segment
        (UDP, ICMP, a bad TCP header...): the IP fields as read, then ``_l4``."""
        pkt = Packet(ts, pcap_cnt, 1, frame)
        pkt.dst_mac, pkt.src_mac, pkt.l2_proto, pkt.vlans, pkt.vlan_id = dmac, smac, 0x0800, vlans, vlan_id
        (pkt.ipv, pkt.src, pkt.dst, pkt.proto, pkt.ttl, pkt.tos, pkt.ip_id, pkt.ip_off, pkt.ip_hlen,
         pkt.ip_len) = 4, src, dst, proto, ttl, tos, ipid, o, 20, tlen
        self.n_ipv4 += 1
        l4 = o + 20
        if self.verify:
            pkt.csum_ok = self._ipv4_csum(frame, o, l4)
        return self._l4(pkt, frame, l4, o + tlen, proto, (o - 14) >> 2)

    def _eth_ipv6_tcp(self, ts: float, pcap_cnt: int, frame: bytes, o: int, end: int) -> Packet | None:
        """Fast path for IPv6 at ``o`` (after Ethernet and at most one 802.1Q tag) with no
        extension header, carrying a valid TCP header; None sends the frame down the general
        path, which decodes it to the same Packet (and handles, counts or rejects the rest)."""
        if end - o < 60:
            return None
        vtf, plen, nh, hlim, src, dst = _IP6(frame, o)
        l4 = o + 40
        ip_end = l4 + plen
        if nh != 6 or vtf >> 28 != 6 or plen < 20 or ip_end > end:
            return None
        sport, dport, seq, ack, offfl, win, _, urp = _TCP(frame, l4)
        thl = (offfl >> 12) << 2
        if thl < 20 or thl > plen:
            return None
        if o == 18:  # as _ethertype: one tag is one layer
            tci = _H(frame, 14)[0]
            self.n_vlan += 1
            vlans = ((0x8100, tci),)
            vlan_id = (tci & 0xFFF,)
        else:
            vlans = vlan_id = ()
        self.n_ipv6 += 1
        self.n_tcp += 1
        pkt = _IP_TCP(ts, pcap_cnt, frame, frame[0:6], frame[6:12], vlans, vlan_id, 6, 0x86DD, src, dst, hlim,
                      (vtf >> 20) & 0xFF, 0, o, 40, 40 + plen, sport, dport, seq, ack, offfl & 0xFF, win, urp, thl,
                      frame[l4 + 20:l4 + thl] if thl > 20 else b"", frame[l4 + thl:ip_end])
        if self.verify:
            self._tcp_csum(pkt, frame, o + 8, ip_end, (plen + 6) << 8, True)
        return pkt

    def _tcp_csum(self, pkt: Packet, f: bytes, a: int, end: int, pseudo: int, ok: bool) -> None:
        """The fast paths' TCP checksum (``_verify_l4`` for the case where the pseudo-header's
        addresses at ``f[a:]`` are directly followed by the segment: one sum); ``pseudo`` is
        protocol + length, already byte-swapped; ``ok`` is the IP header's verdict."""
        self.csum_checked += 1
        if ((_from(f[a:end], "little") if end - a < 400 else _sum_le(f, a, end)) + pseudo) % 0xFFFF:
            ok = False
            self.csum_bad += 1
            self._note("tcp_csum_bad")
        pkt.csum_ok = ok
        if self._auto and self.pkts >= self._sample:
            self._auto_decide()

    # -- link layers ----------------------------------------------------------
    def _link(self, pkt: Packet, lt: int, f: bytes):
        end = len(f)
        if lt == 113:  # Linux cooked v1: type, hatype, halen, addr[8], protocol
            if end < 16:
                return self._err("truncated_sll")
            if _H(f, 4)[0] == 6:
                pkt.src_mac = f[6:12]
            return self._ethertype(pkt, f, 16, end, _H(f, 14)[0], 0)
        if lt == 276:  # Linux cooked v2: protocol, rsvd, ifindex, hatype, pkttype, halen, addr[8]
            if end < 20:
                return self._err("truncated_sll2")
            if f[11] == 6:
                pkt.src_mac = f[12:18]
            return self._ethertype(pkt, f, 20, end, _H(f, 0)[0], 0)
        if lt == 101 or lt == 12 or lt == 14:
            return self._raw_ip(pkt, f, 0, end, 0)
        if lt == 228:
            return self._ipv4(pkt, f, 0, end, 0)
        if lt == 229:
            return self._ipv6(pkt, f, 0, end, 0)
        if lt == 0 or lt == 108:  # BSD loopback: 4-byte address family, host or network order
            if end < 4:
                return self._err("truncated_null")
            af = _LE32(f, 0)[0]
            if af > 0xFFFF:
                af = _I(f, 0)[0]
            if af == 2:
                return self._ipv4(pkt, f, 4, end, 0)
            if af in _BSD_AF_INET6:
                return self._ipv6(pkt, f, 4, end, 0)
            self._note("non_ip")
            return pkt
        if lt == 9 or lt == 50:
            return self._ppp(pkt, f, 0, end, 0)
        if lt == 104:  # Cisco HDLC: address, control, EtherType
            if end < 4:
                return self._err("truncated_chdlc")
            return self._ethertype(pkt, f, 4, end, _H(f, 2)[0], 0)
        if lt == 51:
            return self._pppoe(pkt, f, 0, end, 0)
        if lt == 239:
            return self._nflog(pkt, f, end)
        if lt == 8:  # SLIP: 16-byte pseudo-header (direction + compressed-header info)
            if end < 16:
                return self._err("truncated_slip")
            return self._raw_ip(pkt, f, 16, end, 0)
        if lt == 226:  # Solaris ipnet: 24-byte header, address family in byte 1
            if end < 24:
                return self._err("truncated_ipnet")
            if f[1] == 2:
                return self._ipv4(pkt, f, 24, end, 0)
            if f[1] == 26:
                return self._ipv6(pkt, f, 24, end, 0)
            self._note("non_ip")
            return pkt
        if lt == 258:  # Apple PKTAP: little-endian header length and inner DLT, then that frame
            if end < 8:
                return self._err("truncated_pktap")
            hl, dlt = _LE32x2(f, 0)
            if hl < 8 or hl > end:
                return self._err("pktap_hlen_invalid")
            if dlt == 1:
                return self._ethernet(pkt, f, hl, end, 0, True)
            if dlt in (12, 14, 101):
                return self._raw_ip(pkt, f, hl, end, 0)
            return self._err("unsupported_linktype")
        return self._err("unsupported_linktype")

    def _nflog(self, pkt: Packet, f: bytes, end: int):
        """Linux NFLOG: family, version, resource id, then TLVs; type 9 carries the packet."""
        if end < 4:
            return self._err("truncated_nflog")
        family = f[0]
        off = 4
        while end - off >= 4:
            tlen, ttype = _NATIVE_HH(f, off)
            if tlen < 4 or off + tlen > end:
                return self._err("nflog_tlv_invalid")
            if ttype == 9:
                if family == 2:
                    return self._ipv4(pkt, f, off + 4, off + tlen, 0)
                if family == 10:
                    return self._ipv6(pkt, f, off + 4, off + tlen, 0)
                break
            off += (tlen + 3) & ~3
        self._note("non_ip")
        return pkt

    def _ethertype(self, pkt: Packet, f: bytes, off: int, end: int, etype: int, depth: int):
        """Dispatch on an EtherType; ``off`` is the first byte after the type field."""
        if etype in _VLAN_TPIDS:  # 802.1Q / 802.1ad / old QinQ tags, any depth up to max-layers
            vlans = pkt.vlans
            ids = pkt.vlan_id
            while etype in _VLAN_TPIDS:
                depth += 1
                if depth > self.max_layers:
                    return self._err("too_many_layers")
                if end - off < 4:
                    return self._err("truncated_vlan")
                tci, nxt = _HH(f, off)
                vlans += ((etype, tci),)
                ids += (tci & 0xFFF,)
                off += 4
                etype = nxt
            pkt.vlans = vlans
            pkt.vlan_id = ids
            self.n_vlan += 1
            if len(ids) > 1:
                self._note("vlan_qinq")
        pkt.l2_proto = etype
        if etype == 0x0800:
            return self._ipv4(pkt, f, off, end, depth)
        if etype == 0x86DD:
            return self._ipv6(pkt, f, off, end, depth)
        if etype == 0x8847 or etype == 0x8848:
            return self._mpls(pkt, f, off, end, depth)
        if etype == 0x8864:
            return self._pppoe(pkt, f, off, end, depth)
        self._note("non_ip")
        return pkt

    def _raw_ip(self, pkt: Packet, f: bytes, off: int, end: int, depth: int):
        if end <= off:
            return self._err("truncated_ip")
        v = f[off] >> 4
        if v == 4:
            return self._ipv4(pkt, f, off, end, depth)
        if v == 6:
            return self._ipv6(pkt, f, off, end, depth)
        return self._err("bad_ip_version")

    def _mpls(self, pkt: Packet, f: bytes, off: int, end: int, depth: int):
        while True:
            depth += 1
            if depth > self.max_layers:
                return self._err("too_many_layers")
            if end - off < 4:
                return self._err("truncated_mpls")
            shim = _I(f, off)[0]
            off += 4
            if shim & 0x100:  # bottom of stack
                break
        self._note("mpls")
        label = shim >> 12
        if label == 0:
            return self._ipv4(pkt, f, off, end, depth)
        if label == 2:
            return self._ipv6(pkt, f, off, end, depth)
        if end > off and f[off] >> 4 == 0:  # pseudowire control word, then an Ethernet frame
            return self._ethernet(pkt, f, off + 4, end, depth)
        return self._raw_ip(pkt, f, off, end, depth)

    def _ethernet(self, pkt: Packet, f: bytes, off: int, end: int, depth: int, macs: bool = False):
        """An Ethernet header at ``off``: the frame's own (``macs``: record them) or one
        carried inside another protocol (MPLS PW, GRE TEB, ERSPAN, VXLAN, Geneve),
        whose MACs are not the wire's and are not recorded."""
        if end - off < 14:
            return self._err("truncated_ethernet")
        if macs:
            pkt.dst_mac = f[off:off + 6]
            pkt.src_mac = f[off + 6:off + 12]
        return self._ethertype(pkt, f, off + 14, end, _H(f, off + 12)[0], depth + 1)

    def _pppoe(self, pkt: Packet, f: bytes, off: int, end: int, depth: int):
        """PPPoE session stage: ver/type, code, session id, length, then PPP."""
        if end - off < 8:
            return self._err("truncated_pppoe")
        plen = _H(f, off + 4)[0]
        if off + 6 + plen < end:
            end = off + 6 + plen
        self._note("pppoe")
        return self._ppp(pkt, f, off + 6, end, depth + 1)

    def _ppp(self, pkt: Packet, f: bytes, off: int, end: int, depth: int, outer_ip: bool = False):
        """PPP (optionally HDLC-framed ff 03, optionally compressed protocol field)."""
        if end - off >= 2 and f[off] == 0xFF and f[off + 1] == 0x03:
            off += 2
        if end <= off:
            return self._err("truncated_ppp")
        p = f[off]
        if p & 1:
            off += 1
        else:
            if end - off < 2:
                return self._err("truncated_ppp")
            p = _H(f, off)[0]
            off += 2
        if p == 0x21:
            return self._ipv4(pkt, f, off, end, depth + 1)
        if p == 0x57:
            return self._ipv6(pkt, f, off, end, depth + 1)
        if outer_ip:
            return _NOT_IP  # caller keeps the outer packet
        self._note("non_ip")
        return pkt

    # -- network layer --------------------------------------------------------
    def _ipv4(self, pkt: Packet, f: bytes, off: int, end: int, depth: int):
        if end - off < 20:
            return self._err("truncated_ipv4")
        vhl, tos, tlen, ipid, foff, ttl, proto, _, src, dst = _IP4(f, off)
        if vhl >> 4 != 4:
            return self._err("bad_ip_version")
        hlen = (vhl & 15) << 2
        if hlen < 20:
            return self._err("ipv4_hlen_invalid")
        if tlen < hlen:
            if tlen or end - off < hlen:
                return self._err("ipv4_len_invalid")
            tlen = end - off  # total length 0: TSO/GSO or BIG TCP capture, use what was captured
            self._note("ipv4_len_zero")
        ip_end = off + tlen
        if ip_end > end:
            return self._err("truncated_ipv4")
        self.n_ipv4 += 1
        (pkt.ipv, pkt.src, pkt.dst, pkt.proto, pkt.ttl, pkt.tos, pkt.ip_id, pkt.ip_off, pkt.ip_hlen,
         pkt.ip_len) = 4, src, dst, proto, ttl, tos, ipid, off, hlen, tlen
        l4 = off + hlen
        if hlen > 20:
            pkt.ip_opts = f[off + 20:l4]
        if self.verify:
            pkt.csum_ok = self._ipv4_csum(f, off, l4)
        if foff & 0x3FFF:
            return self._frag4(pkt, f, off, hlen, ip_end, ipid, foff, proto, depth)
        return self._l4(pkt, f, l4, ip_end, proto, depth)

    def _ipv4_csum(self, f: bytes, off: int, l4: int) -> bool:
        if _from(f[off:l4], "little") % 0xFFFF:  # zero either byte order (see _verify_l4)
            self._note("ipv4_csum_bad")
            return False
        return True

    def _ipv6(self, pkt: Packet, f: bytes, off: int, end: int, depth: int):
        if end - off < 40:
            return self._err("truncated_ipv6")
        vtf, plen, nh, hlim, src, dst = _IP6(f, off)
        if vtf >> 28 != 6:
            return self._err("bad_ip_version")
        ip_end = off + 40 + plen
        if plen == 0 and nh == 0:
            ip_end = end  # jumbogram / BIG TCP: length is in a hop-by-hop option
            self._note("ipv6_jumbo")
        if ip_end > end:
            return self._err("truncated_ipv6")
        self.n_ipv6 += 1
        pkt.ipv = 6
        pkt.src = src
        pkt.dst = dst
        pkt.ttl = hlim
        pkt.tos = (vtf >> 20) & 0xFF
        pkt.ip_off = off
        pkt.ip_len = ip_end - off
        l4 = off + 40
        if nh in _IP6_EXT:
            nh_pos = off + 6  # where the "next header" byte pointing at the current header is
            while nh in _IP6_EXT:
                depth += 1
                if depth > self.max_layers:
                    return self._err("too_many_layers")
                if nh == 44:
                    if ip_end - l4 < 8:
                        return self._err("truncated_ipv6_ext")
                    nxt, _, offm, ident = _FRAG6(f, l4)
                    if offm & 0xFFF9:  # offset or M flag: a real fragment
                        pkt.proto = nxt
                        pkt.ip_id = ident
                        return self._frag6(pkt, f, off, nh_pos, l4, ip_end, nxt, offm, ident, depth)
                    self._note("ipv6_atomic_fragment")
                    hl = 8
                else:
                    if ip_end - l4 < 8:
                        return self._err("truncated_ipv6_ext")
                    nxt = f[l4]
                    hl = (f[l4 + 1] + 2) << 2 if nh == 51 else (f[l4 + 1] + 1) << 3
                    if l4 + hl > ip_end:
                        return self._err("truncated_ipv6_ext")
                nh_pos = l4
                l4 += hl
                nh = nxt
            pkt.ip_opts = f[off + 40:l4]
        pkt.proto = nh
        pkt.ip_hlen = l4 - off
        return self._l4(pkt, f, l4, ip_end, nh, depth)

    # -- fragments ------------------------------------------------------------
    def _frag4(self, pkt, f, off, hlen, ip_end, ipid, foff, proto, depth):
        self._note("ipv4_frag")
        if pkt.frag:
            return self._err("frag_nested")
        fo = (foff & 0x1FFF) << 3
        key = (4, pkt.src, pkt.dst, ipid, proto, pkt.vlan_id, pkt.tunnel)
        header = f[off:off + hlen] if fo == 0 else None
        r = self.defrag.add(key, pkt.ts, fo, f[off + hlen:ip_end], bool(foff & 0x2000), header,
                            self._l2_of(pkt, f, off), IPV4_MAX - hlen)
        if r is None or type(r) is str:
            return r and self._err(r)
        header, payload, l2 = r
        tlen = len(header) + len(payload)
        if tlen > IPV4_MAX:
            return self._err("frag_too_large")
        h = bytearray(header)
        h[2:4] = tlen.to_bytes(2, "big")
        h[6:8] = b"\0\0"
        h[10:12] = b"\0\0"
        s = _from(h, "big") % 0xFFFF
        h[10:12] = ((~s) & 0xFFFF if s else 0xFFFF).to_bytes(2, "big")
        return self._rebuilt(pkt, bytes(h) + payload, l2, 4, depth)

    def _frag6(self, pkt, f, off, nh_pos, fh, ip_end, nxt, offm, ident, depth):
        self._note("ipv6_frag")
        if pkt.frag:
            return self._err("frag_nested")
        fo = offm & 0xFFF8
        key = (6, pkt.src, pkt.dst, ident, pkt.vlan_id, pkt.tunnel)
        header = None
        if fo == 0:  # unfragmentable part, with the fragment header cut out
            h = bytearray(f[off:fh])
            h[nh_pos - off] = nxt
            header = bytes(h)
        r = self.defrag.add(key, pkt.ts, fo, f[fh + 8:ip_end], bool(offm & 1), header,
                            self._l2_of(pkt, f, off), 65535 - (fh + 8 - off - 40))
        if r is None or type(r) is str:
            return r and self._err(r)
        header, payload, l2 = r
        plen = len(header) - 40 + len(payload)
        if plen > 65535:
            return self._err("frag_too_large")
        h = bytearray(header)
        h[4:6] = plen.to_bytes(2, "big")
        return self._rebuilt(pkt, bytes(h) + payload, l2, 6, depth)

    @staticmethod
    def _l2_of(pkt: Packet, f: bytes, off: int):
        # the bytes before the IP header: from the frame's start, or inside a tunnel from
        # the start of the carried payload (Suricata's tunnel packet), which is then DLT_RAW
        return (f[pkt.tunnel_off:off], pkt.src_mac, pkt.dst_mac, pkt.vlans, pkt.vlan_id, pkt.l2_proto, pkt.tunnel,
                DLT_RAW if pkt.tunnel else pkt.linktype)

    def _rebuilt(self, pkt: Packet, datagram: bytes, l2, ipv: int, depth: int):
        """Decode a reassembled datagram behind the first fragment's link-layer (and tunnel) headers.

        As Suricata (since 7.0.5) the rebuilt frame keeps the original link type and
        the bytes before the IP header of the offset-0 fragment, so EVE's ``packet``
        shows the frame as it would have been on the wire (outer lengths unchanged).
        Inside a tunnel, as Suricata's tunnel packets, the frame starts where the
        carried payload starts (e.g. the PPP header in GRE) and is DLT_RAW; the
        outer layers stay listed in ``tunnel``.
        """
        prefix = l2[0]
        frame = prefix + datagram
        p = Packet(pkt.ts, pkt.pcap_cnt, l2[7], frame)
        p.wirelen = len(frame)
        _, p.src_mac, p.dst_mac, p.vlans, p.vlan_id, p.l2_proto, p.tunnel, _ = l2
        p.frag = True
        self._note("frag_reassembled")
        # The layers counted for the fragments are counted again for the whole datagram.
        if ipv == 4:
            self.n_ipv4 -= 1
            return self._ipv4(p, frame, len(prefix), len(frame), depth)
        self.n_ipv6 -= 1
        return self._ipv6(p, frame, len(prefix), len(frame), depth)

    # -- transport layer ------------------------------------------------------
    def _l4(self, pkt: Packet, f: bytes, l4: int, ip_end: int, proto: int, depth: int):
        pkt.l4_off = l4
        if proto == 6:
            if ip_end - l4 < 20:
                return self._invalid(pkt, "truncated_tcp")
            sport, dport, seq, ack, offfl, win, _, urp = _TCP(f, l4)
            thl = (offfl >> 12) << 2
            if thl < 20 or l4 + thl > ip_end:
                return self._invalid(pkt, "tcp_hlen_invalid")
            self.n_tcp += 1
            pkt.sport = sport
            pkt.dport = dport
            pkt.seq = seq
            pkt.ack = ack
            pkt.flags = offfl & 0xFF
            pkt.win = win
            pkt.urp = urp
            pkt.tcp_hlen = thl
            if thl > 20:
                pkt.tcp_opts = f[l4 + 20:l4 + thl]
            pkt.payload = f[l4 + thl:ip_end]
            if self.verify:
                self._verify_l4(pkt, f, l4, ip_end, 6)
            return pkt
        if proto == 17:
            if ip_end - l4 < 8:
                return self._invalid(pkt, "truncated_udp")
            sport, dport, ulen = _UDP(f, l4)
            if ulen < 8:
                if ulen or pkt.ipv != 6:
                    return self._invalid(pkt, "udp_len_invalid")
                ulen = ip_end - l4  # IPv6 jumbogram UDP
            if l4 + ulen > ip_end:
                return self._invalid(pkt, "truncated_udp")
            self.n_udp += 1
            pkt.sport = sport
            pkt.dport = dport
            pkt.payload = f[l4 + 8:l4 + ulen]
            if self.verify and (pkt.ipv == 6 or f[l4 + 6] or f[l4 + 7]):  # IPv4 checksum 0 = none sent
                self._verify_l4(pkt, f, l4, l4 + ulen, 17)
            if dport in self.udp_tunnels:
                return self._udp_tunnel(pkt, f, l4 + 8, l4 + ulen, self.udp_tunnels[dport], depth + 1)
            if (sport in self.teredo_ports or dport in self.teredo_ports) and ulen >= 48:
                return self._teredo(pkt, f, l4 + 8, l4 + ulen, depth + 1)
            return pkt
        if proto == 1 or proto == 58:
            if ip_end - l4 < 8:
                return self._invalid(pkt, "truncated_icmp")
            t, code, _, ident, seq = _ICMP(f, l4)
            self.n_icmp += 1
            pkt.icmp_type = t
            pkt.icmp_code = code
            if t in (_ICMP_ECHO if proto == 1 else _ICMP6_ECHO):
                pkt.icmp_id = ident
                pkt.icmp_seq = seq
            pkt.payload = f[l4 + 8:ip_end]
            if self.verify:
                self._verify_l4(pkt, f, l4, ip_end, proto)
            return pkt
        return self._other_proto(pkt, f, l4, ip_end, proto, depth)

    def _verify_l4(self, pkt: Packet, f: bytes, l4: int, end: int, proto: int) -> None:
        """Checksum of the L4 segment f[l4:end] (plus the pseudo-header except for ICMPv4).

        The pseudo-header's addresses are read from the IP header in place: when
        the segment follows them directly (no IPv4 options / IPv6 extension
        headers) addresses + segment are one ``int.from_bytes`` call.  Every
        part starts at an even offset, so the parts' sums simply add.

        The sum is taken over little-endian words (``from_bytes(..., "little")``
        is markedly faster than "big"): byte-swapping every word multiplies the
        ones'-complement sum by 256 modulo 0xFFFF, which is invertible, so it is
        zero exactly when the big-endian sum is; an odd trailing byte is then the
        low byte of its word, i.e. already zero-padded.  Values given as
        big-endian words (protocol, length) are multiplied by 256 to match.
        """
        n = end - l4
        if proto == 1:
            a = l4
            v = 0
        else:
            if pkt.ipv == 4:
                a, a_end = pkt.ip_off + 12, pkt.ip_off + 20
            else:
                a, a_end = pkt.ip_off + 8, pkt.ip_off + 40
            v = (proto + n) << 8  # big-endian words, byte-swapped into the little-endian sum
            if a_end != l4:
                v += _from(f[a:a_end], "little")
                a = l4
        v += _from(f[a:end], "little") if end - a < 400 else _sum_le(f, a, end)
        self.csum_checked += 1
        if v % 0xFFFF:
            self.csum_bad += 1
            pkt.csum_ok = False
            self._note(_PROTO_COUNTER[proto] + "_csum_bad")
        elif pkt.csum_ok is None:
            pkt.csum_ok = True
        if self._auto and self.pkts >= self._sample:
            self._auto_decide()

    def _auto_decide(self) -> None:
        """``-k auto``: the sample is in; more than one bad checksum in ten means offloading."""
        self._auto = False
        if self.csum_bad * 10 > self.csum_checked:
            self.verify = False
            self.auto_disabled = 1

    def _other_proto(self, pkt: Packet, f: bytes, l4: int, ip_end: int, proto: int, depth: int):
        """Tunnels (IP-in-IP, 6in4, GRE) are decoded to the inner packet; others keep their payload."""
        pkt.payload = f[l4:ip_end]
        if proto == 4 or proto == 41:
            depth += 1
            if depth > self.max_layers:
                return self._err("too_many_layers")
            self._note("ipip" if proto == 4 else "ipv6_in_ip")
            self._enter_tunnel(pkt, l4)
            if proto == 4:
                return self._ipv4(pkt, f, l4, ip_end, depth)
            return self._ipv6(pkt, f, l4, ip_end, depth)
        if proto == 47:
            return self._gre(pkt, f, l4, ip_end, depth + 1)
        if proto == 132 and ip_end - l4 >= 12:  # SCTP: ports for the flow key
            pkt.sport, pkt.dport = _HH(f, l4)
            pkt.payload = f[l4 + 12:ip_end]
        self._note("ip_proto_other")
        return pkt

    def _udp_tunnel(self, pkt: Packet, f: bytes, off: int, end: int, kind: int, depth: int):
        """VXLAN / Geneve on their configured ports: decode the inner frame.

        A payload that does not look like the protocol (flags, version, room for
        the inner header) stays what it is: a UDP packet to that port.
        """
        if depth > self.max_layers:
            return self._err("too_many_layers")
        if kind == _VXLAN:  # flags (I bit), 3 reserved, VNI, 1 reserved; then Ethernet
            if end - off < 22 or not f[off] & 0x08:
                return pkt
            self._note("vxlan")
            self._enter_tunnel(pkt, off + 8)
            return self._ethernet(pkt, f, off + 8, end, depth)
        if end - off < 8 or f[off] >> 6:  # Geneve version 0 only
            return pkt
        inner = off + 8 + ((f[off] & 0x3F) << 2)
        ptype = _H(f, off + 2)[0]
        if inner >= end or ptype not in (0x6558, 0x0800, 0x86DD):
            return pkt
        self._note("geneve")
        self._enter_tunnel(pkt, inner)
        if ptype == 0x6558:
            return self._ethernet(pkt, f, inner, end, depth)
        return self._ethertype(pkt, f, inner, end, ptype, depth)

    def _teredo(self, pkt: Packet, f: bytes, off: int, end: int, depth: int):
        """Teredo (RFC 4380) as Suricata recognises it: an optional origin indication,
        then an IPv6 header whose payload length accounts for exactly the rest.
        Anything else (authentication/bubbles, other UDP) stays a UDP packet."""
        if depth > self.max_layers:
            return self._err("too_many_layers")
        if f[off] == 0:
            if f[off + 1] != 0 or end - off < 8 + 40:
                return pkt
            off += 8  # origin indication
        if f[off] >> 4 != 6 or end - off < 40:
            return pkt
        plen = _H(f, off + 4)[0]
        if off + 40 + plen != end or f[off + 7] == 0 or (f[off + 6] == 0 and plen < 8):
            return pkt
        self._note("teredo")
        self._enter_tunnel(pkt, off)
        return self._ipv6(pkt, f, off, end, depth)

    @staticmethod
    def _enter_tunnel(pkt: Packet, inner: int) -> None:
        """Push the current IP layer onto ``pkt.tunnel``; the carried payload starts at ``inner``."""
        pkt.tunnel = pkt.tunnel + ((pkt.ipv, pkt.src, pkt.dst, pkt.proto),)
        pkt.tunnel_off = inner
        pkt.ip_opts = b""
        pkt.sport = pkt.dport = 0
        pkt.payload = b""

    def _gre(self, pkt: Packet, f: bytes, l4: int, ip_end: int, depth: int):
        if depth > self.max_layers:
            return self._err("too_many_layers")
        if ip_end - l4 < 4:
            return self._err("truncated_gre")
        flags, ptype = _HH(f, l4)
        ver = flags & 7
        off = l4 + 4
        if ver == 0:
            if flags & 0x4000:
                return self._err("gre_routing_unsupported")
            if flags & 0x8000:
                off += 4
            if flags & 0x2000:
                off += 4
            if flags & 0x1000:
                off += 4
        elif ver == 1:  # PPTP enhanced GRE: key (payload len + call id) always, seq and ack optional
            if ptype != 0x880B or not flags & 0x2000:
                return self._err("gre_version1_invalid")
            off += 4
            if flags & 0x1000:
                off += 4
            if flags & 0x0080:
                off += 4
        else:
            return self._err("gre_version_invalid")
        if off > ip_end:
            return self._err("truncated_gre")
        self._note("gre")
        if off == ip_end:
            return pkt  # keepalive / PPTP ack: a GRE packet with nothing inside
        if ptype == 0x0800 or ptype == 0x86DD:
            self._enter_tunnel(pkt, off)
            return self._ipv4(pkt, f, off, ip_end, depth) if ptype == 0x0800 else self._ipv6(pkt, f, off, ip_end, depth)
        if ptype == 0x880B:
            saved = (pkt.ipv, pkt.src, pkt.dst, pkt.proto, pkt.ip_opts, pkt.tunnel, pkt.tunnel_off, pkt.payload)
            self._enter_tunnel(pkt, off)
            r = self._ppp(pkt, f, off, ip_end, depth, outer_ip=True)
            if r is not _NOT_IP:
                return r
            pkt.ipv, pkt.src, pkt.dst, pkt.proto, pkt.ip_opts, pkt.tunnel, pkt.tunnel_off, pkt.payload = saved
            return pkt  # PPP control traffic: keep the outer GRE packet
        if ptype == 0x6558:  # transparent Ethernet bridging
            self._enter_tunnel(pkt, off)
            return self._ethernet(pkt, f, off, ip_end, depth)
        if ptype == 0x88BE and flags & 0x1000:  # ERSPAN type II: 8-byte header
            self._enter_tunnel(pkt, off + 8)
            return self._ethernet(pkt, f, off + 8, ip_end, depth)
        if ptype == 0x88BE:  # ERSPAN type I: no header
            self._enter_tunnel(pkt, off)
            return self._ethernet(pkt, f, off, ip_end, depth)
        if ptype == 0x22EB:  # ERSPAN type III: 12-byte header, 8 more with the O flag
            if ip_end - off < 12:
                return self._err("truncated_erspan")
            inner = off + (20 if f[off + 11] & 1 else 12)
            self._enter_tunnel(pkt, inner)
            return self._ethernet(pkt, f, inner, ip_end, depth)
        return pkt
