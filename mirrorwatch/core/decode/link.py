"""Link layers other than Ethernet: Linux cooked (SLL, SLL2), raw IP, BSD null/loopback, PPP,
Cisco HDLC, PPPoE, NFLOG, SLIP, Solaris ipnet and Apple PKTAP; and the table by pcap link
type that the decoder enters every frame through (``LINKTYPE_DECODERS``).

As Suricata's decoders, Cisco HDLC, BSD null and Linux cooked count every frame they are
given, well-formed or not, under Suricata's counter names (``decoder.chdlc``,
``decoder.null``, ``decoder.sll``, ``decoder.sll2``)."""

from __future__ import annotations

import struct

from mirrorwatch.core.decode.decode_events import (
    CHDLC_PKT_TOO_SMALL,
    LTNULL_PKT_TOO_SMALL,
    SLL_PKT_TOO_SMALL,
)
from mirrorwatch.core.decode.ethernet import decode_ethernet, decode_ethertype
from mirrorwatch.core.decode.ip import decode_raw_ip
from mirrorwatch.core.decode.ipv4 import decode_ipv4
from mirrorwatch.core.decode.ipv6 import decode_ipv6
from mirrorwatch.core.decode.numbers import (
    AF_INET,
    BSD_AF_INET6,
    DLT_RAW,
    DLT_RAW_BSDOS,
    IPNET_AF_INET6,
    LINKTYPE_C_HDLC,
    LINKTYPE_ETHERNET,
    LINKTYPE_IPNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NFLOG,
    LINKTYPE_NULL,
    LINKTYPE_PKTAP,
    LINKTYPE_PPP,
    LINKTYPE_PPP_ETHER,
    LINKTYPE_PPP_HDLC,
    LINKTYPE_RAW,
    LINKTYPE_SLIP,
    NFPROTO_IPV4,
    NFPROTO_IPV6,
)
from mirrorwatch.core.decode.ppp import decode_ppp
from mirrorwatch.core.decode.pppoe import decode_pppoe_session

MAC_LEN = 6  # an SLL/SLL2 link-layer address of this length is the sender's MAC address
SLL_HLEN = 16
SLL_HALEN_OFF = 4
SLL_ADDR_OFF = 6
SLL_PROTO_OFF = 14
SLL2_HLEN = 20
SLL2_HALEN_OFF = 11
SLL2_ADDR_OFF = 12
NULL_HLEN = 4
AF_MAX = 0xFFFF  # a larger 32-bit value is a family written in the other byte order
CHDLC_HLEN = 4
CHDLC_PROTO_OFF = 2
SLIP_HLEN = 16  # libpcap's pseudo-header: direction and compressed-header information
IPNET_HLEN = 24
IPNET_FAMILY_OFF = 1
PKTAP_MIN_HLEN = 8
NFLOG_HLEN = 4
NFLOG_TLV_HLEN = 4
NFULA_PAYLOAD = 9  # the TLV that carries the packet
NFLOG_TLV_ALIGN = 3  # TLVs are padded to 4 bytes

BSD_AF = {AF_INET: decode_ipv4, **dict.fromkeys(BSD_AF_INET6, decode_ipv6)}
IPNET_AF = {AF_INET: decode_ipv4, IPNET_AF_INET6: decode_ipv6}
NFLOG_FAMILY = {NFPROTO_IPV4: decode_ipv4, NFPROTO_IPV6: decode_ipv6}

_H = struct.Struct("!H").unpack_from
_I = struct.Struct("!I").unpack_from
_LE32 = struct.Struct("<I").unpack_from
_LE32x2 = struct.Struct("<II").unpack_from
_NATIVE_HH = struct.Struct("=HH").unpack_from  # NFLOG TLV headers are in the capturing host's order


def decode_sll(d, p, f: bytes, off: int, end: int, depth: int):
    """Linux cooked v1: packet type, hardware type, address length, address (8), protocol."""
    d.note("sll")
    if end - off < SLL_HLEN:
        return d.fail(p, SLL_PKT_TOO_SMALL, "truncated_sll")
    if _H(f, off + SLL_HALEN_OFF)[0] == MAC_LEN:
        p.src_mac = f[off + SLL_ADDR_OFF:off + SLL_ADDR_OFF + MAC_LEN]
    return decode_ethertype(d, p, f, off + SLL_HLEN, end, _H(f, off + SLL_PROTO_OFF)[0], depth)


def decode_sll2(d, p, f: bytes, off: int, end: int, depth: int):
    """Linux cooked v2: protocol, reserved, interface index, hardware type, packet type,
    address length, address (8)."""
    d.note("sll2")
    if end - off < SLL2_HLEN:
        return d.error("truncated_sll2")
    if f[off + SLL2_HALEN_OFF] == MAC_LEN:
        p.src_mac = f[off + SLL2_ADDR_OFF:off + SLL2_ADDR_OFF + MAC_LEN]
    return decode_ethertype(d, p, f, off + SLL2_HLEN, end, _H(f, off)[0], depth)


def _by_family(d, p, f: bytes, off: int, end: int, depth: int, fn):
    if fn is None:
        d.note("non_ip")
        return p
    return fn(d, p, f, off, end, depth)


def decode_null(d, p, f: bytes, off: int, end: int, depth: int):
    """BSD null/loopback: a 4-byte address family in the capturing host's byte order."""
    d.note("null")
    if end - off < NULL_HLEN:
        return d.fail(p, LTNULL_PKT_TOO_SMALL, "truncated_null")
    af = _LE32(f, off)[0]
    if af > AF_MAX:
        af = _I(f, off)[0]
    return _by_family(d, p, f, off + NULL_HLEN, end, depth, BSD_AF.get(af))


def decode_chdlc(d, p, f: bytes, off: int, end: int, depth: int):
    """Cisco HDLC: address, control, EtherType."""
    d.note("chdlc")
    if end - off < CHDLC_HLEN:
        return d.fail(p, CHDLC_PKT_TOO_SMALL, "truncated_chdlc")
    return decode_ethertype(d, p, f, off + CHDLC_HLEN, end, _H(f, off + CHDLC_PROTO_OFF)[0], depth)


def decode_slip(d, p, f: bytes, off: int, end: int, depth: int):
    if end - off < SLIP_HLEN:
        return d.error("truncated_slip")
    return decode_raw_ip(d, p, f, off + SLIP_HLEN, end, depth)


def decode_ipnet(d, p, f: bytes, off: int, end: int, depth: int):
    """Solaris ipnet: a 24-byte header with the address family in byte 1."""
    if end - off < IPNET_HLEN:
        return d.error("truncated_ipnet")
    return _by_family(d, p, f, off + IPNET_HLEN, end, depth, IPNET_AF.get(f[off + IPNET_FAMILY_OFF]))


def decode_nflog(d, p, f: bytes, off: int, end: int, depth: int):
    """Linux NFLOG: family, version, resource id, then TLVs; one of them carries the packet."""
    if end - off < NFLOG_HLEN:
        return d.error("truncated_nflog")
    fn = NFLOG_FAMILY.get(f[off])
    t = off + NFLOG_HLEN
    while end - t >= NFLOG_TLV_HLEN:
        tlen, ttype = _NATIVE_HH(f, t)
        if tlen < NFLOG_TLV_HLEN or t + tlen > end:
            return d.error("nflog_tlv_invalid")
        if ttype == NFULA_PAYLOAD:
            return _by_family(d, p, f, t + NFLOG_TLV_HLEN, t + tlen, depth, fn)
        t += (tlen + NFLOG_TLV_ALIGN) & ~NFLOG_TLV_ALIGN
    d.note("non_ip")
    return p


def decode_pktap(d, p, f: bytes, off: int, end: int, depth: int):
    """Apple PKTAP: little-endian header length and inner link type, then that frame."""
    if end - off < PKTAP_MIN_HLEN:
        return d.error("truncated_pktap")
    hl, dlt = _LE32x2(f, off)
    if hl < PKTAP_MIN_HLEN or hl > end - off:
        return d.error("pktap_hlen_invalid")
    fn = PKTAP_INNER.get(dlt)
    if fn is None:
        return d.error("unsupported_linktype")
    return fn(d, p, f, off + hl, end, depth + 1)


PKTAP_INNER = {LINKTYPE_ETHERNET: decode_ethernet, DLT_RAW: decode_raw_ip, DLT_RAW_BSDOS: decode_raw_ip,
               LINKTYPE_RAW: decode_raw_ip}

LINKTYPE_DECODERS = {
    LINKTYPE_NULL: decode_null, LINKTYPE_LOOP: decode_null,
    LINKTYPE_ETHERNET: decode_ethernet,
    LINKTYPE_SLIP: decode_slip,
    LINKTYPE_PPP: decode_ppp, LINKTYPE_PPP_HDLC: decode_ppp,
    LINKTYPE_PPP_ETHER: decode_pppoe_session,
    LINKTYPE_RAW: decode_raw_ip, DLT_RAW: decode_raw_ip, DLT_RAW_BSDOS: decode_raw_ip,
    LINKTYPE_C_HDLC: decode_chdlc,
    LINKTYPE_LINUX_SLL: decode_sll, LINKTYPE_LINUX_SLL2: decode_sll2,
    LINKTYPE_IPNET: decode_ipnet,
    LINKTYPE_IPV4: decode_ipv4, LINKTYPE_IPV6: decode_ipv6,
    LINKTYPE_NFLOG: decode_nflog,
    LINKTYPE_PKTAP: decode_pktap,
}
SUPPORTED_LINKTYPES = frozenset(LINKTYPE_DECODERS)
