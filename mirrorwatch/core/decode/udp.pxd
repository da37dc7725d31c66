cimport cython

from mirrorwatch.core.decode.context cimport DecodeContext, Layer, call
from mirrorwatch.core.decode.packet cimport Packet
from mirrorwatch.core.decode.wire cimport take, u16

cdef int PROTO_UDP
cdef Py_ssize_t UDP_HLEN, UDP_DPORT_OFF, UDP_LEN_OFF, UDP_CSUM_OFF

@cython.locals(sport=int, dport=int, ulen=Py_ssize_t, end=Py_ssize_t)
cdef object udp_layer(DecodeContext d, Packet p, bytes f, Py_ssize_t l4, Py_ssize_t ip_end, int depth)
