# The engine as a C struct: its per-frame path reads its fields and the packet's directly.
cimport cython

from mirrorwatch.core.applayer.session cimport AppFlow, AppLayer, uninspected
from mirrorwatch.core.decode.decoder cimport Decoder
from mirrorwatch.core.decode.packet cimport Packet
from mirrorwatch.core.flows.flow cimport Flow
from mirrorwatch.core.inline cimport InlineJudge

cdef class Engine:
    cdef public Decoder decoder  # typed: its decode is a C call
    cdef public object settings, flows, detector, killer, tags
    cdef public AppLayer applayer  # typed: its per-packet entry points are C calls
    cdef public list stream_hooks
    cdef dict _tag_flows, _tag_hosts
    cdef public InlineJudge judge  # inline mode's killer, called as C; None otherwise
    cdef public long long pcap_cnt, bytes
    cdef public object first_ts, last_ts
    cdef public double _sweep_interval, sweep_due
    cdef public bint count_outer  # a UDP tunnel's own session is counted here; replay --workers: by its worker
    cdef object _outer_decoder

    @cython.locals(n="long long", pkt=Packet, events=list, flow=Flow, judge=InlineJudge, app=AppFlow)
    cpdef list process(self, object ts, int linktype, object frame, object wirelen=*)
    @cython.locals(fd=object)
    cdef void _log_txs(self, Flow flow, AppFlow app, Packet pkt, list events) except *
    @cython.locals(events=list)
    cpdef object advance(self, double ts)
    @cython.locals(events=list, judge=InlineJudge)
    cpdef tuple process_inline(self, object ts, int linktype, object frame, bint csum_ready=*)
