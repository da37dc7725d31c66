# The inline judge as a C record: the engine calls on_packet and take as C on every packet.
cimport cython

from mirrorwatch.core.decode.packet cimport Packet
from mirrorwatch.core.flows.flow cimport Flow
from mirrorwatch.core.reassembly.stream cimport Stream

cdef class InlineJudge:
    cdef public str mode
    cdef public object forge, verdict, _blocked, sink
    cdef public bint bypass_depth
    cdef public Py_ssize_t reset_memory
    cdef public dict c

    cpdef object take(self, list events)
    cpdef void on_uninspected(self, Packet pkt, Flow flow, bint to_server, list events)
    @cython.locals(standing=object, fd=object)
    cpdef void on_packet(self, Packet pkt, Flow flow, bint to_server, object alerts, list events)

@cython.locals(st=Stream)
cpdef bint _depth_reached(Flow flow)
