"""Text forms shared by the sinks, matching Suricata's own.

Timestamps are written in UTC.  Suricata writes local time; on a sensor whose
clock is UTC (the usual case) both agree, and UTC keeps logs comparable across
sensors and test runs.
"""

from __future__ import annotations

import base64
import socket
import time

from mirrorwatch.core.decode.numbers import (
    DLT_RAW,
    LINKTYPE_C_HDLC,
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_NULL,
    LINKTYPE_PPP,
    LINKTYPE_RAW,
)
from mirrorwatch.core.decode.packet import (
    ACK,
    FIN,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    PSH,
    RST,
    SYN,
    URG,
)

# Suricata's util-proto-name table for the protocols a mirror port commonly carries.
PROTO_NAMES = {
    PROTO_ICMP: "ICMP", 2: "IGMP", 4: "IPIP", PROTO_TCP: "TCP", PROTO_UDP: "UDP", 41: "IPv6",
    47: "GRE", 50: "ESP", 51: "AH", PROTO_ICMPV6: "IPv6-ICMP", 89: "OSPFIGP", 103: "PIM",
    112: "VRRP", 132: "SCTP",
}
ICMP_PROTOS = (PROTO_ICMP, PROTO_ICMPV6)
# Suricata 8's util-datalink.c names for packet_info.linktype_name ("n/a" for the rest); a
# capture's link type 101 is libpcap's DLT_RAW (12) once read, named RAW, as there
LINKTYPE_NAMES = {
    LINKTYPE_NULL: "NULL", LINKTYPE_ETHERNET: "EN10MB", LINKTYPE_LINUX_SLL: "LINUX_SLL",
    LINKTYPE_LINUX_SLL2: "LINUX_SLL2", LINKTYPE_PPP: "PPP", DLT_RAW: "RAW", LINKTYPE_RAW: "RAW2",
    LINKTYPE_C_HDLC: "C_HDLC", LINKTYPE_IPV4: "IPv4", LINKTYPE_IPV6: "IPv6",
}


def packet_fields(ev: dict, pkt) -> None:
    """Suricata's EvePacket: the whole packet in base64, its link type and the type's name.  A tunnelled
    packet is Suricata's tunnel packet: what the innermost tunnel carries (``tunnel_off``), DLT_RAW."""
    if pkt.tunnel:
        data, linktype = bytes(pkt.frame[pkt.tunnel_off:]), DLT_RAW
    else:
        data, linktype = bytes(pkt.frame), pkt.linktype
    ev["packet"] = base64.b64encode(data).decode("ascii")
    ev["packet_info"] = {"linktype": linktype, "linktype_name": LINKTYPE_NAMES.get(linktype, "n/a")}


def proto_name(proto: int) -> str:
    """'TCP', 'IPv6-ICMP', ... or Suricata's 'PROTO:047' form for the rest."""
    name = PROTO_NAMES.get(proto)
    return name if name is not None else f"PROTO:{proto:03d}"


class _SecondCache(dict):
    """Formats the whole-second part of timestamps once per distinct second (a hit is one
    dict lookup: ``cache[sec]``).

    Events interleave a few seconds (a flow's start, its end, the current
    packet), so a small dict is kept, emptied when it grows past ``size``.
    """

    __slots__ = ("fmt", "size")

    def __init__(self, fmt: str, size: int = 4096):
        super().__init__()
        self.fmt = fmt
        self.size = size

    def __missing__(self, sec: int) -> str:
        if len(self) >= self.size:
            self.clear()
        text = self[sec] = time.strftime(self.fmt, time.gmtime(sec))
        return text


_iso_sec = _SecondCache("%Y-%m-%dT%H:%M:%S")
_fast_sec = _SecondCache("%m/%d/%Y-%H:%M:%S")


def _usec(frac: float) -> int:
    """``round(frac)``, half to even, as Python rounds a float: the same integer interpreted and
    compiled (C's ``round`` rounds halves away from zero). ``frac``: microseconds, a float."""
    usec = int(frac)  # towards zero; frac - usec is exact
    rest = frac - usec
    if rest > 0.5 or (rest == 0.5 and usec & 1):
        usec += 1
    elif rest < -0.5 or (rest == -0.5 and usec & 1):
        usec -= 1
    return usec


def iso_time(ts: float) -> str:
    """EVE form: 2024-01-01T12:00:00.123456+0000."""
    sec = int(ts)
    usec = _usec((ts - sec) * 1_000_000)
    if usec < 1_000_000:  # the usual case inline (a flood writes a record a packet); else rounding carried
        return f"{_iso_sec[sec]}.{usec:06d}+0000"
    return f"{_iso_sec[sec + 1]}.{usec - 1_000_000:06d}+0000"


def fast_time(ts: float) -> str:
    """fast.log form: 01/01/2024-12:00:00.123456."""
    sec = int(ts)
    usec = _usec((ts - sec) * 1_000_000)
    if usec >= 1_000_000:  # rounding carried into the next second
        sec += 1
        usec -= 1_000_000
    return f"{_fast_sec[sec]}.{usec:06d}"


def addr(packed: bytes) -> str:
    """Packed 4- or 16-byte address as text ('' for none)."""
    n = len(packed)
    if n == 4:
        if type(packed) is bytes:  # dotted quad made here: inet_ntop formats with sprintf, 5x slower
            octets = packed  # compiled: the bytes' own buffer, read as C numbers
            a, b, c, d = octets[0], octets[1], octets[2], octets[3]
            return f"{a}.{b}.{c}.{d}"
        return socket.inet_ntop(socket.AF_INET, packed)
    if n == 16:
        return socket.inet_ntop(socket.AF_INET6, packed)
    return ""


def log_addr(packed: bytes, ipv6_compress: bool = False) -> str:
    """An address as Suricata writes it in EVE and fast.log (util-print.c PrintInet): IPv6 in full,
    every group four digits (``2001:0db8:0000:...:0001``), unless ``ipv6_compress`` (Suricata 9's
    ``outputs.eve-log.ipv6-compress``); IPv4 dotted. ``addr`` is the short form for people."""
    if len(packed) != 16 or ipv6_compress:
        return addr(packed)
    h = bytes(packed).hex()
    return f"{h[0:4]}:{h[4:8]}:{h[8:12]}:{h[12:16]}:{h[16:20]}:{h[20:24]}:{h[24:28]}:{h[28:32]}"


def packet_ports(pkt) -> tuple[int, int]:
    """The two numbers Suricata prints after the addresses: ports, or ICMP type and code."""
    if pkt.proto in ICMP_PROTOS:
        return max(pkt.icmp_type, 0), max(pkt.icmp_code, 0)
    return pkt.sport, pkt.dport


def metadata_dict(entries) -> dict[str, list[str]]:
    """Rule metadata ('key value' strings) in Suricata's EVE form {key: [values...]}."""
    out: dict[str, list[str]] = {}
    for entry in entries or ():
        if isinstance(entry, (tuple, list)) and len(entry) == 2:
            key, value = entry
        else:
            key, _, value = str(entry).strip().partition(" ")
        key = str(key).strip()
        if key:
            out.setdefault(key, []).append(str(value).strip())
    return out


_FLAG_LETTERS = ((FIN, "F"), (SYN, "S"), (RST, "R"), (PSH, "P"), (ACK, "A"), (URG, "U"))
ZERO_MAC = b"\0" * 6


def flag_letters(flags: int) -> str:
    return "".join(ch for bit, ch in _FLAG_LETTERS if flags & bit)


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in (mac or ZERO_MAC))


def segment_dict(seg, ipv6_compress: bool = False) -> dict:
    """A forged segment as EVE renders it (``kill.segments[]``): exactly the values put on the wire."""
    return {
        "direction": "to_server" if seg.to_server else "to_client",
        "src_ip": log_addr(seg.src, ipv6_compress),
        "src_port": seg.sport,
        "dest_ip": log_addr(seg.dst, ipv6_compress),
        "dest_port": seg.dport,
        "seq": seg.seq,
        "ack": seg.ack,
        "tcp_flags": flag_letters(seg.flags),
        "ttl": seg.ttl,
        "ip_id": seg.ip_id if seg.ipv == 4 else None,
        "src_mac": mac_text(seg.src_mac),
        "dest_mac": mac_text(seg.dst_mac),
        "vlan": [tci & 0x0FFF for _tpid, tci in seg.vlans],
    }
