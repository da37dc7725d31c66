cimport cython

from mirrorwatch.core.decode.context cimport DecodeContext
from mirrorwatch.core.decode.packet cimport Packet
from mirrorwatch.core.decode.wire cimport u16

cdef Py_ssize_t VLAN_HLEN, VLAN_TYPE_OFF
cdef unsigned int VLAN_ID_MASK

@cython.locals(tpid="unsigned int", tci="unsigned int", etype="unsigned int")
cpdef object decode_vlan(DecodeContext d, Packet p, bytes f, Py_ssize_t off, Py_ssize_t end, int depth)
