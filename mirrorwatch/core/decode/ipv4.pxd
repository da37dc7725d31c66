cimport cython

from mirrorwatch.core.decode.checksum cimport partial
from mirrorwatch.core.decode.context cimport DecodeContext, Layer, call
from mirrorwatch.core.decode.packet cimport Packet
from mirrorwatch.core.decode.wire cimport take, u16

cdef int CHECK_ON
cdef Py_ssize_t IPV4_HLEN, IPV4_TOS_OFF, IPV4_LEN_OFF, IPV4_ID_OFF, IPV4_FRAG_OFF, IPV4_TTL_OFF, IPV4_PROTO_OFF
cdef Py_ssize_t IPV4_SRC_OFF, IPV4_DST_OFF, IPV4_ALEN
cdef unsigned int IP_FRAG_BITS

@cython.locals(vhl=int, hlen=Py_ssize_t, tlen=Py_ssize_t, ip_end=Py_ssize_t, l4=Py_ssize_t, proto=int,
               foff="unsigned int", whole=Packet)
cdef object ipv4_layer(DecodeContext d, Packet p, bytes f, Py_ssize_t off, Py_ssize_t end, int depth)
