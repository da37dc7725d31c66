"""Suricata's decoder events: their names, the ones this decoder raises, and their stats names.

A layer that finds a header Suricata's decoder flags (a truncated IPv4 packet, a
TCP header longer than the segment...) records the event on the packet under
Suricata's name (``decoder.ipv4.trunc_pkt``): ``DecodeContext.fail`` for a
header the packet cannot be decoded past (the packet still goes to detection,
without a flow), ``DecodeContext.event`` for a condition it is decoded past.
``Packet.events`` is a tuple of these names, empty on a clean packet; at most
``PACKET_EVENT_MAX`` are kept (Suricata's PACKET_ENGINE_EVENT_MAX), and each kept
one is counted as ``decoder.event.<layer>.<name>`` (Suricata's stats name).
The rule keyword ``decode-event:ipv4.trunc_pkt`` (``rules.kw_events``, with every
name Suricata knows) names one without the ``decoder.`` prefix; EVE's anomaly
record (type ``decode``) names it in full, as Suricata does.
"""

from __future__ import annotations

EVENT_PREFIX = "decoder."
STATS_PREFIX = "decoder.event."
PACKET_EVENT_MAX = 15  # Suricata's PACKET_ENGINE_EVENT_MAX

# the events raised here, each where Suricata's decoder raises it (decode-*.c)
ETHERNET_PKT_TOO_SMALL = "decoder.ethernet.pkt_too_small"
SLL_PKT_TOO_SMALL = "decoder.sll.pkt_too_small"
LTNULL_PKT_TOO_SMALL = "decoder.ltnull.pkt_too_small"
CHDLC_PKT_TOO_SMALL = "decoder.chdlc.pkt_too_small"
VLAN_HEADER_TOO_SMALL = "decoder.vlan.header_too_small"
MPLS_HEADER_TOO_SMALL = "decoder.mpls.header_too_small"
MPLS_PKT_TOO_SMALL = "decoder.mpls.pkt_too_small"
MPLS_UNKNOWN_PAYLOAD_TYPE = "decoder.mpls.unknown_payload_type"
PPPOE_PKT_TOO_SMALL = "decoder.pppoe.pkt_too_small"
PPP_PKT_TOO_SMALL = "decoder.ppp.pkt_too_small"
NSH_HEADER_TOO_SMALL = "decoder.nsh.header_too_small"
NSH_UNSUPPORTED_VERSION = "decoder.nsh.unsupported_version"
NSH_BAD_HEADER_LENGTH = "decoder.nsh.bad_header_length"
NSH_RESERVED_TYPE = "decoder.nsh.reserved_type"
NSH_UNSUPPORTED_TYPE = "decoder.nsh.unsupported_type"
NSH_UNKNOWN_PAYLOAD = "decoder.nsh.unknown_payload"
IPRAW_INVALID_IP_VERSION = "decoder.ipraw.invalid_ip_version"
IPV4_PKT_TOO_SMALL = "decoder.ipv4.pkt_too_small"
IPV4_HLEN_TOO_SMALL = "decoder.ipv4.hlen_too_small"
IPV4_IPLEN_SMALLER_THAN_HLEN = "decoder.ipv4.iplen_smaller_than_hlen"
IPV4_TRUNC_PKT = "decoder.ipv4.trunc_pkt"
IPV4_WRONG_IP_VERSION = "decoder.ipv4.wrong_ip_version"
IPV6_PKT_TOO_SMALL = "decoder.ipv6.pkt_too_small"
IPV6_TRUNC_PKT = "decoder.ipv6.trunc_pkt"
IPV6_TRUNC_EXTHDR = "decoder.ipv6.trunc_exthdr"
IPV6_WRONG_IP_VERSION = "decoder.ipv6.wrong_ip_version"
TCP_PKT_TOO_SMALL = "decoder.tcp.pkt_too_small"
TCP_HLEN_TOO_SMALL = "decoder.tcp.hlen_too_small"
TCP_INVALID_OPTLEN = "decoder.tcp.invalid_optlen"
UDP_HLEN_TOO_SMALL = "decoder.udp.hlen_too_small"
UDP_PKT_TOO_SMALL = "decoder.udp.pkt_too_small"
UDP_LEN_INVALID = "decoder.udp.len_invalid"
ICMPV4_PKT_TOO_SMALL = "decoder.icmpv4.pkt_too_small"
ICMPV6_PKT_TOO_SMALL = "decoder.icmpv6.pkt_too_small"
GRE_PKT_TOO_SMALL = "decoder.gre.pkt_too_small"
GRE_WRONG_VERSION = "decoder.gre.wrong_version"
GRE_VERSION0_HDR_TOO_BIG = "decoder.gre.version0_hdr_too_big"
GRE_VERSION1_HDR_TOO_BIG = "decoder.gre.version1_hdr_too_big"
ERSPAN_HEADER_TOO_SMALL = "decoder.erspan.header_too_small"
TOO_MANY_LAYERS = "decoder.too_many_layers"

RAISED = frozenset((
    ETHERNET_PKT_TOO_SMALL, SLL_PKT_TOO_SMALL, LTNULL_PKT_TOO_SMALL, CHDLC_PKT_TOO_SMALL, VLAN_HEADER_TOO_SMALL,
    MPLS_HEADER_TOO_SMALL, MPLS_PKT_TOO_SMALL, MPLS_UNKNOWN_PAYLOAD_TYPE, PPPOE_PKT_TOO_SMALL, PPP_PKT_TOO_SMALL,
    NSH_HEADER_TOO_SMALL, NSH_UNSUPPORTED_VERSION, NSH_BAD_HEADER_LENGTH, NSH_RESERVED_TYPE, NSH_UNSUPPORTED_TYPE,
    NSH_UNKNOWN_PAYLOAD, IPRAW_INVALID_IP_VERSION, IPV4_PKT_TOO_SMALL, IPV4_HLEN_TOO_SMALL,
    IPV4_IPLEN_SMALLER_THAN_HLEN, IPV4_TRUNC_PKT, IPV4_WRONG_IP_VERSION, IPV6_PKT_TOO_SMALL, IPV6_TRUNC_PKT,
    IPV6_TRUNC_EXTHDR, IPV6_WRONG_IP_VERSION, TCP_PKT_TOO_SMALL, TCP_HLEN_TOO_SMALL, TCP_INVALID_OPTLEN,
    UDP_HLEN_TOO_SMALL, UDP_PKT_TOO_SMALL, UDP_LEN_INVALID, ICMPV4_PKT_TOO_SMALL, ICMPV6_PKT_TOO_SMALL,
    GRE_PKT_TOO_SMALL, GRE_WRONG_VERSION, GRE_VERSION0_HDR_TOO_BIG, GRE_VERSION1_HDR_TOO_BIG,
    ERSPAN_HEADER_TOO_SMALL, TOO_MANY_LAYERS,
))


def stats_name(event: str) -> str:
    """``decoder.ipv4.trunc_pkt`` -> ``decoder.event.ipv4.trunc_pkt`` (Suricata's counter)."""
    return STATS_PREFIX + event.removeprefix(EVENT_PREFIX)
