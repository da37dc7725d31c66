"""The wire's numbers the decode room dispatches on, by name.

Link types are pcap's ``LINKTYPE_*`` values, EtherTypes IEEE's, IP protocol
numbers IANA's (``PROTO_*``, as ``Packet.proto`` holds them), as Suricata's
decoder names them.  Each layer keeps the flags and field values only it reads.
"""

from __future__ import annotations

# pcap link types (LINKTYPE_*; the DLT value where libpcap's differs is named after it)
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_SLIP = 8
LINKTYPE_PPP = 9
DLT_RAW = 12  # libpcap's DLT_RAW on Linux/OpenBSD; also the link type of a rebuilt tunnelled datagram
DLT_RAW_BSDOS = 14
LINKTYPE_PPP_HDLC = 50
LINKTYPE_PPP_ETHER = 51
LINKTYPE_RAW = 101
LINKTYPE_C_HDLC = 104
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPNET = 226
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_NFLOG = 239
LINKTYPE_PKTAP = 258
LINKTYPE_LINUX_SLL2 = 276

# Ethernet: header length, where the EtherType is, the length of a MAC address
ETH_HLEN = 14
ETH_TYPE_OFF = 12
ETH_ALEN = 6

# EtherTypes (also GRE's and Geneve's protocol type field)
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_VLAN = 0x8100  # 802.1Q
ETHERTYPE_QINQ = 0x88A8  # 802.1ad service tag
ETHERTYPE_QINQ_9100 = 0x9100  # pre-standard QinQ tags
ETHERTYPE_QINQ_9200 = 0x9200
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_PPP = 0x880B  # PPP in GRE (PPTP)
ETHERTYPE_MPLS_UNICAST = 0x8847
ETHERTYPE_MPLS_MULTICAST = 0x8848
ETHERTYPE_PPPOE_SESSION = 0x8864
ETHERTYPE_ERSPAN_I_II = 0x88BE
ETHERTYPE_ERSPAN_III = 0x22EB
ETHERTYPE_TEB = 0x6558  # transparent Ethernet bridging
ETHERTYPE_NSH = 0x894F  # Network Service Header (RFC 8300)

VLAN_TPIDS = frozenset((ETHERTYPE_VLAN, ETHERTYPE_QINQ, ETHERTYPE_QINQ_9100, ETHERTYPE_QINQ_9200))

# IP protocol numbers (IPv4 protocol / IPv6 next header)
PROTO_HOPOPTS = 0
PROTO_ICMP = 1
PROTO_IPIP = 4  # IPv4 in IP
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_IPV6 = 41  # IPv6 in IP (6in4, 6in6)
PROTO_ROUTING = 43
PROTO_FRAGMENT = 44
PROTO_GRE = 47
PROTO_AH = 51
PROTO_ICMPV6 = 58
PROTO_DSTOPTS = 60
PROTO_SCTP = 132
PROTO_MOBILITY = 135
PROTO_HIP = 139
PROTO_SHIM6 = 140
PROTO_EXPERIMENT1 = 253
PROTO_EXPERIMENT2 = 254

# The IPv6 fixed header: its length, where the payload length and the next header are, and
# the smallest extension header
IPV6_HLEN = 40
IPV6_PLEN_OFF = 4
IPV6_NXT_OFF = 6
IPV6_HLIM_OFF = 7
IPV6_EXT_MIN = 8

# Address families of the BSD null/loopback header and Solaris ipnet
AF_INET = 2
BSD_AF_INET6 = frozenset((24, 28, 30))  # NetBSD/OpenBSD, FreeBSD, Darwin
IPNET_AF_INET6 = 26
NFPROTO_IPV4 = 2
NFPROTO_IPV6 = 10

# PPP protocol field values
PPP_IPV4 = 0x0021
PPP_IPV6 = 0x0057
