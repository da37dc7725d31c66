cimport cython

from mirrorwatch.core.decode.packet cimport Packet
from mirrorwatch.core.detect.hsdb cimport LiteralStream
from mirrorwatch.core.detect.state cimport FlowDet, GapKeeper

cdef int SYN

cpdef bint data_added(object flow, int d, Packet pkt)
cpdef void release(object flow)
@cython.locals(anys=object, dmap=object, smap=object)
cpdef void expand(object ids, object split, int dport, int sport, object add)
