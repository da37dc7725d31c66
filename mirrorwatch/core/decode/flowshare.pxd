# The flow partitioner and a worker's per-frame pick as C structs (see flowshare.py): the frame is read in place.
cimport cython

from mirrorwatch.core.decode.flowsched cimport Scheduler


cdef int _FRAGMENT, _UNREAD_OWNER, _MAX_LAYERS, _UNREAD, _IPPAIR
cdef unsigned int _FNV_BASIS, _FNV_PRIME, _FMIX_1, _FMIX_2, _M32
cdef int LINKTYPE_ETHERNET, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_PPPOE_SESSION, ETHERTYPE_MPLS_UNICAST
cdef int ETHERTYPE_MPLS_MULTICAST, ETHERTYPE_ERSPAN_I_II, ETHERTYPE_ERSPAN_III, ETHERTYPE_TEB
cdef int PROTO_AH, PROTO_DSTOPTS, PROTO_FRAGMENT, PROTO_GRE, PROTO_HOPOPTS, PROTO_IPIP, PROTO_IPV6, PROTO_ROUTING
cdef int PROTO_SCTP, PROTO_TCP, PROTO_UDP
cdef int _IP4_ALEN, _IP6_ALEN, _PPP_IPV4, _PPP_IPV6, _PPPOE_HLEN, _MPLS_BOTTOM, _ETH_HLEN
cdef int _GRE_ROUTING, _GRE_VERSION, _GRE_SEQ, _ERSPAN_II_HLEN, _ERSPAN_III_HLEN, _ERSPAN_III_SUB, _UDP_HLEN
cdef int _VXLAN_HLEN, _VXLAN_I, _GENEVE_HLEN, _GENEVE_OPTLEN, _TEREDO_ORIGIN, _IP6_HLEN
cdef int _NO_TUNNEL, _VXLAN, _GENEVE, _TEREDO
cdef int _NO_LINK, _RAW, _SLL, _SLL2, _NULL, _SLL_PROTO, _SLL_HLEN, _SLL2_PROTO, _SLL2_HLEN, _NULL_HLEN

cdef unsigned int _fmix(unsigned int h)

# the frame is read through its C pointer: every read is behind a length check of the parser's own
cdef unsigned int _b16(const unsigned char *f, Py_ssize_t i) noexcept
cdef unsigned int _b32(const unsigned char *f, Py_ssize_t i) noexcept
@cython.locals(v=int)
cdef int _version_type(const unsigned char *f, Py_ssize_t o, Py_ssize_t end) noexcept

@cython.final
cdef class FlowPartitioner:
    cdef public int n, outer
    cdef public Scheduler sched
    cdef public object last_fragment
    cdef bytes _udp_ports
    cdef dict _links

    cpdef int owner(self, int linktype, bytes f)
    @cython.locals(own=int)
    cdef int owner_in(self, int linktype, const unsigned char *f, Py_ssize_t start, Py_ssize_t stop) noexcept
    @cython.locals(order=int, i=Py_ssize_t, h="unsigned int")
    cdef int _pair(self, int proto, const unsigned char *f, Py_ssize_t src, Py_ssize_t dst, int alen, int sp, int dp) noexcept
    @cython.locals(et=int)
    cdef int _ethernet_at(self, const unsigned char *f, Py_ssize_t o, Py_ssize_t end, int depth) noexcept
    cdef int _l3(self, int et, const unsigned char *f, Py_ssize_t o, Py_ssize_t end, int depth) noexcept
    @cython.locals(ppp=int, bottom=int)
    cdef (int, Py_ssize_t) _ethertype(self, const unsigned char *f, int et, Py_ssize_t o, Py_ssize_t end) noexcept
    cdef int _link(self, int kind, const unsigned char *f, Py_ssize_t o, Py_ssize_t end) noexcept
    @cython.locals(et=int, p=Py_ssize_t)
    cdef int _cooked(self, const unsigned char *f, Py_ssize_t o, Py_ssize_t end, Py_ssize_t at, Py_ssize_t hlen) noexcept
    @cython.locals(fam=set)
    cdef int _null(self, const unsigned char *f, Py_ssize_t o, Py_ssize_t end)
    @cython.locals(proto=int, tlen=Py_ssize_t, ip_end=Py_ssize_t, l4=Py_ssize_t, first=bint, pair=int, own=int)
    cdef int _ipv4(self, const unsigned char *f, Py_ssize_t o, Py_ssize_t end, int depth) noexcept
    @cython.locals(plen=Py_ssize_t, ip_end=Py_ssize_t, nh=int, p=Py_ssize_t, frag_at=Py_ssize_t, first=bint, offm=int, pair=int, own=int)
    cdef int _ipv6(self, const unsigned char *f, Py_ssize_t o, Py_ssize_t end, int depth) noexcept
    @cython.locals(sp=int, dp=int, inner=int, pair=int)
    cdef int _l4(self, int proto, const unsigned char *f, Py_ssize_t p, Py_ssize_t end, Py_ssize_t src, Py_ssize_t dst, int alen,
                 int depth) noexcept
    @cython.locals(flags=int, ptype=int, inner=Py_ssize_t, sub=int)
    cdef int _gre(self, const unsigned char *f, Py_ssize_t o, Py_ssize_t end, int depth) noexcept
    cdef int _inner(self, int ptype, const unsigned char *f, Py_ssize_t o, Py_ssize_t end, int depth) noexcept
    @cython.locals(kind=int, ulen=Py_ssize_t)
    cdef int _udp_tunnel(self, const unsigned char *f, Py_ssize_t p, Py_ssize_t end, int sp, int dp, int depth) noexcept
    cdef int _vxlan(self, const unsigned char *f, Py_ssize_t o, Py_ssize_t end, int depth) noexcept
    cdef int _geneve(self, const unsigned char *f, Py_ssize_t o, Py_ssize_t end, int depth) noexcept
    @cython.locals(plen=int)
    cdef int _teredo(self, const unsigned char *f, Py_ssize_t o, Py_ssize_t end, int depth) noexcept
