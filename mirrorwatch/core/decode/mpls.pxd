cimport cython

from mirrorwatch.core.decode.context cimport DecodeContext, Layer, call
from mirrorwatch.core.decode.ethernet cimport decode_inner_ethernet
from mirrorwatch.core.decode.packet cimport Packet
from mirrorwatch.core.decode.wire cimport u32

cdef Py_ssize_t MPLS_HLEN, PW_CONTROL_WORD_LEN
cdef unsigned long long MPLS_BOTTOM_OF_STACK
cdef int MPLS_LABEL_SHIFT
cdef dict EXPLICIT_NULL, MPLS_GUESS
cdef int MPLS_PROTO_ETHERNET_PW

@cython.locals(shim="unsigned long long", nibble=int)
cdef object mpls_layer(DecodeContext d, Packet p, bytes f, Py_ssize_t off, Py_ssize_t end, int depth)
