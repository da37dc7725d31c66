"""Frame bytes -> one flat ``Packet`` record, in one forward pass through the layers.

The decoder creates the record and hands it to the first layer; each layer
checks and reads its header, fills its fields of the record and hands the rest
to the layer its header names, through a table (dpkt's and Suricata's shape):

    link.py          pcap link type -> first layer (``LINKTYPE_DECODERS``): SLL/SLL2,
                     raw IP, null/loopback, PPP, Cisco HDLC, NFLOG, SLIP, ipnet, PKTAP
    ethernet.py      Ethernet; EtherType -> layer (``ETHERTYPE_DECODERS``)
    vlan.py, mpls.py, pppoe.py, ppp.py, nsh.py
    ipv4.py, ipv6.py the IP layers (IPv6 with its extension headers); IP protocol
                     -> layer (``IP_PROTO_DECODERS``)
    fragments.py     fragments to the reassembler (defrag.py), the rebuilt datagram back
    tcp.py, udp.py, icmp.py, sctp.py, ip.py (raw IP by version; other protocols)
    tunnel.py, gre.py IP-in-IP, 6in4, VXLAN, Geneve, Teredo; GRE, PPTP, ERSPAN
    checksum.py      the one Internet checksum implementation

A tunnelled packet is decoded to its innermost IP packet; the outer layers are
listed in ``pkt.tunnel`` and every layer counts against ``decoder.max-layers``.

Robustness contract: ``decode`` never raises.  Every length is checked before
it is used; a malformed or unsupported frame increments one per-reason counter
(``decoder.<reason>``) and ``decoder.errors``.  Where Suricata's decoder flags
the malformed header with an event (decode_events.py: ``ipv4.trunc_pkt``,
``ethernet.pkt_too_small``...), the frame is still returned, as Suricata's
packet: ``invalid`` = the reason, ``events`` = the event, the fields of the layers
before the bad header filled (``ipv`` 0 when the IP header failed), for the
``decode-event`` rules only (no flow); otherwise it returns None.  A frame whose
IP header is valid but whose TCP/UDP/ICMP header is not (truncated, bad header
or length field) is returned as a Packet with ``invalid`` = the reason, IP
fields filled and no transport fields or payload, counted in
``decoder.invalid`` and by reason: as in Suricata it gets no flow, but IP-only
rules still see it.  A fragment that is held for reassembly returns None and is
counted as ``defrag.fragments_held``, not as an error, so ``decoder.pkts ==
decoder.decoded + decoder.errors + defrag.fragments_held`` always holds
(``decoded`` includes the invalid packets, not the failed frames returned with
their event).  Events are counted as ``decoder.event.<layer>.<name>``, Suricata's
stats names.  A frame that is valid but not IP
(ARP, LLDP, PPP control...) is a Packet with ``ipv`` = 0.

Checksums (``checksum_mode``, Suricata's ``-k``): ``all`` verifies the IPv4
header and the TCP/UDP/ICMPv4/ICMPv6 checksums and sets ``pkt.csum_ok``;
``none`` never verifies (``csum_ok`` stays None).  ``auto`` starts without
judging any packet (no blind start: a sensor whose host offloads checksums
loses no session while it learns so); it verifies the first
``detect.checksum-auto-sample`` checksummed TCP/UDP packets only to sample
them, then decides: more than one bad checksum in ten means offloading on the
capturing host and checks stay off for the rest of the capture
(``checksum.auto_disabled`` = 1, ``auto_sample`` says on what); otherwise it
verifies from then on as ``all`` does.  A packet with a bad checksum is still
returned, with ``csum_ok`` False, and counted (``checksum.bad``,
``decoder.<proto>_csum_bad``); the rooms after decode leave it out of stream
reassembly and detection, as Suricata does for TCP (the receiving host would
have dropped it; here a bad UDP/ICMP or IPv4 header checksum is treated the
same, which denies decoy packets to evaders).
"""

from __future__ import annotations

from mirrorwatch.core.decode.checksum import CHECK_OFF, CHECK_ON, CHECK_SAMPLE
from mirrorwatch.core.decode.context import DecodeContext, call
from mirrorwatch.core.decode.decode_events import stats_name
from mirrorwatch.core.decode.defrag import Defragmenter
from mirrorwatch.core.decode.gre import decode_gre
from mirrorwatch.core.decode.icmp import decode_icmpv4, decode_icmpv6
from mirrorwatch.core.decode.ip import decode_other_proto
from mirrorwatch.core.decode.ipv4 import decode_ipv4
from mirrorwatch.core.decode.ipv6 import decode_ipv6
from mirrorwatch.core.decode.link import LINKTYPE_DECODERS
from mirrorwatch.core.decode.mpls import decode_mpls
from mirrorwatch.core.decode.nsh import decode_nsh
from mirrorwatch.core.decode.numbers import (
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ETHERTYPE_MPLS_MULTICAST,
    ETHERTYPE_MPLS_UNICAST,
    ETHERTYPE_NSH,
    ETHERTYPE_PPPOE_SESSION,
    PROTO_GRE,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_IPIP,
    PROTO_IPV6,
    PROTO_SCTP,
    PROTO_TCP,
    PROTO_UDP,
    VLAN_TPIDS,
)
from mirrorwatch.core.decode.packet import Packet, new_packet
from mirrorwatch.core.decode.pppoe import decode_pppoe_session
from mirrorwatch.core.decode.sctp import decode_sctp
from mirrorwatch.core.decode.tcp import decode_tcp
from mirrorwatch.core.decode.tunnel import (
    decode_geneve,
    decode_ipip,
    decode_ipv6_in_ip,
    decode_teredo,
    decode_vxlan,
)
from mirrorwatch.core.decode.udp import decode_udp
from mirrorwatch.core.decode.vlan import decode_vlan

ETHERTYPE_DECODERS = {
    ETHERTYPE_IPV4: decode_ipv4,
    ETHERTYPE_IPV6: decode_ipv6,
    **dict.fromkeys(VLAN_TPIDS, decode_vlan),
    ETHERTYPE_MPLS_UNICAST: decode_mpls,
    ETHERTYPE_MPLS_MULTICAST: decode_mpls,
    ETHERTYPE_PPPOE_SESSION: decode_pppoe_session,
    ETHERTYPE_NSH: decode_nsh,
}
IP_PROTO_DECODERS = {
    PROTO_TCP: decode_tcp,
    PROTO_UDP: decode_udp,
    PROTO_ICMP: decode_icmpv4,
    PROTO_ICMPV6: decode_icmpv6,
    PROTO_IPIP: decode_ipip,
    PROTO_IPV6: decode_ipv6_in_ip,
    PROTO_GRE: decode_gre,
    PROTO_SCTP: decode_sctp,
}
IP_PROTOS = 256
CHECKSUM_MODES = {"all": CHECK_ON, "none": CHECK_OFF, "auto": CHECK_SAMPLE}


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


class Decoder(DecodeContext):
    """Decodes frames into Packets; see the module docstring for the contract.

    What the layers read from it and report to is its base, ``context.DecodeContext``.
    """

    def __init__(self, settings, checksum_mode: str = "auto"):
        if checksum_mode not in CHECKSUM_MODES:
            raise ValueError(f"checksum mode must be auto, all or none, not {checksum_mode!r}")
        super().__init__(CHECKSUM_MODES[checksum_mode], settings["detect.checksum-auto-sample"],
                         settings["decoder.max-layers"])
        self.mode = checksum_mode
        self.linktypes = LINKTYPE_DECODERS
        self.set_ethertypes(ETHERTYPE_DECODERS)
        self.ip_protos = [IP_PROTO_DECODERS.get(n, decode_other_proto) for n in range(IP_PROTOS)]
        teredo = _ports(settings, "decoder.teredo.ports")
        self.udp_dports = dict.fromkeys(teredo, decode_teredo)  # Teredo on either port, VXLAN/Geneve first
        self.udp_dports.update(dict.fromkeys(_ports(settings, "decoder.vxlan.ports"), decode_vxlan))
        self.udp_dports.update(dict.fromkeys(_ports(settings, "decoder.geneve.ports"), decode_geneve))
        self.udp_sports = dict.fromkeys(teredo, decode_teredo)
        self.defrag = Defragmenter(settings)

    def decode(self, ts: float, linktype: int, frame: bytes, pcap_cnt: int) -> Packet | None:
        """One frame -> Packet, or None (counted by reason / held fragment). Never raises."""
        self.pkts += 1
        fn = self.linktypes.get(linktype)
        if fn is None:
            return self.error("unsupported_linktype")
        if type(frame) is not bytes:
            frame = bytes(frame)  # the layers read bytes (compiled: their C type)
        try:
            return call(fn, self, new_packet(ts, pcap_cnt, linktype, frame), frame, 0, len(frame), 0)
        except Exception as e:  # noqa: BLE001 - a decoder bug must not take the engine down
            return self.error("internal_error_" + type(e).__name__)

    # -- time and counters --------------------------------------------------------
    def expire(self, now: float) -> None:
        """Drop fragment datagrams that timed out (packet time).  Every sweep calls it (each second of packet
        time, in every worker of a replay: sweeps are not shared out), mostly with none held: a C call then."""
        if self.defrag.table:
            self.defrag.expire(now)

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
            "decoder.icmpv4": self.n_icmpv4,
            "decoder.icmpv6": self.n_icmpv6,
            "decoder.vlan": self.n_vlan,
            "decoder.ethernet": self.n_eth,
        }
        for k, v in self.notes.items():
            c["decoder." + k] = v
        for k, v in self.errs.items():
            c["decoder." + k] = v
        for k, v in self.events.items():
            c[stats_name(k)] = v
        c["checksum.checked"] = self.csum_checked
        c["checksum.bad"] = self.csum_bad
        c["checksum.auto_disabled"] = self.auto_disabled
        c.update(self.defrag.counters())
        return c
