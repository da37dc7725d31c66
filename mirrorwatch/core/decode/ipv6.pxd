cimport cython

from mirrorwatch.core.decode.context cimport DecodeContext
from mirrorwatch.core.decode.packet cimport Packet
from mirrorwatch.core.decode.wire cimport take, u16

cdef Py_ssize_t IPV6_HLEN, IPV6_PLEN_OFF, IPV6_NXT_OFF, IPV6_HLIM_OFF, IPV6_SRC_OFF, IPV6_DST_OFF, IPV6_ALEN
cdef int IPV6_TCLASS_SHIFT, PROTO_HOPOPTS

@cython.locals(plen=Py_ssize_t, nh=int, ip_end=Py_ssize_t)
cpdef object decode_ipv6(DecodeContext d, Packet p, bytes f, Py_ssize_t off, Py_ssize_t end, int depth)
cdef object _upper_layer(DecodeContext d, Packet p, bytes f, Py_ssize_t off, Py_ssize_t l4, Py_ssize_t ip_end, int nh,
                         int depth)
