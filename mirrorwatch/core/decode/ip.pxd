from mirrorwatch.core.decode.context cimport DecodeContext, Layer, call
from mirrorwatch.core.decode.packet cimport Packet
from mirrorwatch.core.decode.wire cimport take

cdef dict IP_BY_VERSION
cdef Py_ssize_t RAW_IP_MIN

cdef object raw_ip_layer(DecodeContext d, Packet p, bytes f, Py_ssize_t off, Py_ssize_t end, int depth)
cdef object other_proto_layer(DecodeContext d, Packet p, bytes f, Py_ssize_t l4, Py_ssize_t ip_end, int depth)
