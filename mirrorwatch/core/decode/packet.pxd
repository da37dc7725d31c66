# The packet record as a C struct (see packet.py): C integers for the header fields.
cimport cython


cdef class Packet:
    cdef public double ts
    cdef public long long pcap_cnt
    cdef public int linktype
    cdef public object frame
    cdef public long long wirelen
    cdef public object src_mac, dst_mac, vlans, vlan_id
    cdef public int l2_proto, ipv
    cdef public object src, dst
    cdef public int proto, ttl, ip_off, ip_hlen, ip_len
    cdef public long long ip_id  # IPv6: the fragment header's 32-bit identification
    cdef public bint frag
    cdef public object ip_opts, tcp_opts
    cdef public int tos, sport, dport, l4_off
    cdef public long long seq, ack
    cdef public int flags, win, urp, tcp_hlen
    cdef public int icmp_type, icmp_code, icmp_id, icmp_seq
    cdef public object payload, csum_ok, tunnel
    cdef public int tunnel_off
    cdef public object invalid
    cdef public tuple events

    cdef object _fill(self, double ts, long long pcap_cnt, int linktype, object frame)


@cython.locals(p=Packet)
cpdef Packet new_packet(double ts, long long pcap_cnt, int linktype, bytes frame)
