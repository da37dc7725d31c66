cimport cython

from mirrorwatch.core.decode.context cimport DecodeContext, Layer, call
from mirrorwatch.core.decode.packet cimport Packet
from mirrorwatch.core.decode.wire cimport take, u16, u32

cdef Py_ssize_t IPV6_HLEN, IPV6_PLEN_OFF, IPV6_NXT_OFF, IPV6_HLIM_OFF, IPV6_SRC_OFF, IPV6_DST_OFF, IPV6_ALEN
cdef Py_ssize_t IPV6_EXT_MIN, IPV6_FRAG_HLEN, IP6F_OFFLG_OFF, IP6F_IDENT_OFF
cdef int IPV6_TCLASS_SHIFT, PROTO_HOPOPTS, PROTO_FRAGMENT, PROTO_AH
cdef unsigned int IP6F_BITS
cdef bytes IS_EXTENSION

@cython.locals(plen=Py_ssize_t, nh=int, ip_end=Py_ssize_t)
cdef object ipv6_layer(DecodeContext d, Packet p, bytes f, Py_ssize_t off, Py_ssize_t end, int depth)
cdef object _upper_layer(DecodeContext d, Packet p, bytes f, Py_ssize_t off, Py_ssize_t l4, Py_ssize_t ip_end, int nh,
                         int depth)
@cython.locals(l4=Py_ssize_t, nh_pos=Py_ssize_t, nxt=int, offm="unsigned int", hl=Py_ssize_t, whole=Packet)
cdef object _extension_headers(DecodeContext d, Packet p, bytes f, Py_ssize_t off, Py_ssize_t ip_end, int nh, int depth)
