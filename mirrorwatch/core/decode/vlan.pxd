cimport cython

from mirrorwatch.core.decode.context cimport DecodeContext, Layer
from mirrorwatch.core.decode.ethernet cimport decode_ethertype
from mirrorwatch.core.decode.packet cimport Packet
from mirrorwatch.core.decode.wire cimport u16

cdef Py_ssize_t VLAN_HLEN, VLAN_TYPE_OFF
cdef unsigned int VLAN_ID_MASK

@cython.locals(tpid="unsigned int", tci="unsigned int", etype="unsigned int")
cdef object vlan_layer(DecodeContext d, Packet p, bytes f, Py_ssize_t off, Py_ssize_t end, int depth)
