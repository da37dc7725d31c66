# Judging as C functions on a typed record (``Judging``), the compiled rule, the packet, the flow and its
# detect state (C structs): no Python method call and no dictionary counter per candidate.
cimport cython

from mirrorwatch.core.decode.packet cimport Packet
from mirrorwatch.core.detect.compile cimport AddrMatcher, CRule, PortMatcher
from mirrorwatch.core.detect.state cimport FlowDet
from mirrorwatch.core.detect.stream cimport data_added
from mirrorwatch.core.detect.txrule cimport TxSpec, new_bufs
from mirrorwatch.core.flows.flow cimport Flow

cdef int TCP
cdef long long NO_MATCH, PACKET_MATCH


cdef class Judging:
    cdef public list crules, skipped
    cdef public object crule, thresholds, xbits, flowints
    cdef public Py_ssize_t alert_max, guess_limit, recursion_limit
    cdef public bint guess_tx
    cdef public long long lookback
    cdef public dict tx_bufs, matchers
    cdef public long long candidates, alerts, alerts_dropped_max, passed_flows, tx_inspected


@cython.locals(cr=CRule, r=cython.longlong, added=cython.bint, stream=cython.int, mode=cython.int, crules=list,
               nums=list, seen=set)
cpdef list judge_all(Judging j, object pc, object sc, Packet pkt, Flow flow, FlowDet fd, int d, object to_server,
                     object chunk, bint pseudo, dict tc)

@cython.locals(union=set)
cdef list _in_order(object pc, object sc, dict tc)

cdef void _judge_txs(Judging j, CRule cr, object txs, Packet pkt, Flow flow, FlowDet fd, int d, object to_server,
                     bint pseudo, list alerts) except *

@cython.locals(spec=TxSpec, got=list)
cdef bint judge_tx(Judging j, CRule cr, Packet pkt, Flow flow, FlowDet fd, int d, object tx, bint pseudo) except -1

@cython.locals(done=dict)
cdef void alert_tx(Judging j, CRule cr, Packet pkt, Flow flow, FlowDet fd, object to_server, object tx,
                   list alerts) except *

cdef void _pass_flow(Judging j, Flow flow, FlowDet fd) except *

cdef bint _allowed(Judging j, CRule cr, Packet pkt, FlowDet fd) except -1

cdef object _alert(Judging j, CRule cr, Packet pkt, Flow flow, FlowDet fd, int d, object to_server, int stream,
                   object payload, bint pseudo)

cdef object _guess_tx(Judging j, Flow flow, FlowDet fd, int d)

cdef object _matcher(Judging j, CRule cr)

cdef long long _judge(Judging j, CRule cr, int mode, Packet pkt, Flow flow, FlowDet fd, int d, object chunk,
                      object payload, bint added, bint pseudo) except -3

@cython.locals(src=AddrMatcher, dst=AddrMatcher, sp=PortMatcher, dp=PortMatcher, fwd=bint, est=bint)
cpdef bint pre(CRule cr, Packet pkt, Flow flow, FlowDet fd, int d, object payload, bint pseudo) except -1

@cython.locals(upto=cython.longlong, end=cython.longlong, cut=cython.longlong, off=cython.longlong, ctx=dict)
cdef long long _judge_payload(Judging j, CRule cr, int mode, FlowDet fd, int d, object chunk, object payload,
                              bint added, bint pseudo) except -3

cdef void write_flowbits(CRule cr, FlowDet fd) except *

cdef bint _flowbits_test(object op, object names, object bits) except -1
