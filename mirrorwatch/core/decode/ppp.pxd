cimport cython

from mirrorwatch.core.decode.context cimport DecodeContext, Layer, call
from mirrorwatch.core.decode.packet cimport Packet
from mirrorwatch.core.decode.wire cimport u16

cdef int PPP_ADDRESS, PPP_CONTROL, PPP_PROTO_LAST_BYTE

cpdef (int, Py_ssize_t) ppp_protocol(bytes f, Py_ssize_t off, Py_ssize_t end)

@cython.locals(proto=int, inner=Py_ssize_t)
cdef object ppp_layer(DecodeContext d, Packet p, bytes f, Py_ssize_t off, Py_ssize_t end, int depth)
