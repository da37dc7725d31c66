# The engine as a C struct: its per-frame path reads its fields and the packet's directly.
cimport cython

from mirrorwatch.core.decode.packet cimport Packet

cdef class Engine:
    cdef public object settings, decoder, flows, detector, applayer, killer
    cdef public list stream_hooks
    cdef public bint _judge_every
    cdef public long long pcap_cnt, bytes
    cdef public object first_ts, last_ts
    cdef public double _sweep_interval, _next_sweep

    @cython.locals(n="long long", pkt=Packet, events=list)
    cpdef list process(self, object ts, int linktype, object frame, object wirelen=*)
