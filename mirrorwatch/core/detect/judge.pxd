# The judging mixin stays a plain class; the per-candidate steps are C functions on the compiled rule,
# the packet, the flow and its detect state (C structs): no Python method call per candidate.
cimport cython

from mirrorwatch.core.decode.packet cimport Packet
from mirrorwatch.core.detect.compile cimport AddrMatcher, CRule, PortMatcher
from mirrorwatch.core.detect.state cimport FlowDet
from mirrorwatch.core.detect.stream cimport data_added
from mirrorwatch.core.flows.flow cimport Flow

cdef int TCP
cdef long long NO_MATCH, PACKET_MATCH

cdef long long _judge(object det, CRule cr, int mode, Packet pkt, Flow flow, FlowDet fd, int d, object chunk,
                      object payload, bint added, bint pseudo) except -3

@cython.locals(src=AddrMatcher, dst=AddrMatcher, sp=PortMatcher, dp=PortMatcher, fwd=bint, est=bint)
cpdef bint pre(CRule cr, Packet pkt, Flow flow, FlowDet fd, int d, object payload, bint pseudo) except -1

@cython.locals(upto=cython.longlong, end=cython.longlong, cut=cython.longlong, off=cython.longlong, ctx=dict)
cdef long long _judge_payload(object det, CRule cr, int mode, FlowDet fd, int d, object chunk, object payload,
                              bint added, bint pseudo) except -3

cdef bint _flowbits_test(object op, object names, object bits) except -1
