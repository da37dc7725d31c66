cimport cython

from mirrorwatch.core.decode.context cimport DecodeContext, Layer
from mirrorwatch.core.decode.packet cimport Packet
from mirrorwatch.core.decode.wire cimport take, u16, u32

cdef int PROTO_TCP
cdef Py_ssize_t TCP_HLEN, TCP_DPORT_OFF, TCP_SEQ_OFF, TCP_ACK_OFF, TCP_OFF_OFF, TCP_FLAGS_OFF, TCP_WIN_OFF, TCP_URP_OFF

@cython.locals(thl=Py_ssize_t)
cdef object tcp_layer(DecodeContext d, Packet p, bytes f, Py_ssize_t l4, Py_ssize_t ip_end, int depth)
