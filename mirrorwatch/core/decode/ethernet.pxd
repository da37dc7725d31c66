from mirrorwatch.core.decode.context cimport DecodeContext, Layer, call
from mirrorwatch.core.decode.packet cimport Packet
from mirrorwatch.core.decode.wire cimport take, u16

cdef Py_ssize_t ETH_ALEN, ETH_HLEN, ETH_TYPE_OFF

cdef object ethernet_layer(DecodeContext d, Packet p, bytes f, Py_ssize_t off, Py_ssize_t end, int depth)
cpdef object decode_inner_ethernet(DecodeContext d, Packet p, bytes f, Py_ssize_t off, Py_ssize_t end, int depth)
cpdef object decode_ethertype(DecodeContext d, Packet p, bytes f, Py_ssize_t off, Py_ssize_t end, unsigned int etype,
                              int depth)
