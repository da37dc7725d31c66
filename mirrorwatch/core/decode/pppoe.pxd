from mirrorwatch.core.decode.context cimport DecodeContext, Layer, call
from mirrorwatch.core.decode.packet cimport Packet
from mirrorwatch.core.decode.wire cimport u16

cdef Py_ssize_t PPPOE_HLEN, PPPOE_LEN_OFF, PPP_PROTO_MIN

cdef object pppoe_session_layer(DecodeContext d, Packet p, bytes f, Py_ssize_t off, Py_ssize_t end, int depth)
