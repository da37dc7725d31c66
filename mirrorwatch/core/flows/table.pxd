cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.string cimport memcpy

from mirrorwatch.core.decode.packet cimport Packet
from mirrorwatch.core.flows.caps cimport ActivityOrder, Capacity, idle_timeout, refile, set_tclass
from mirrorwatch.core.flows.flow cimport Flow, really_killed
from mirrorwatch.core.flows.tcp cimport in_window, seq_ahead, tcp_packet
from mirrorwatch.core.flows.wheel cimport TimingWheel
from mirrorwatch.core.reassembly.stream cimport Stream

cdef int ACK, FIN, RST, SYN, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, _SYN_ACK_RST, _SYN_FIN_RST
cdef int T_CLOSED, T_ESTABLISHED, T_NEW
cdef long long M32

cdef Py_ssize_t KEY_ALEN_MAX, KEY_PORT_BYTES

# flow_key's bytes (table.py) made in C: both addresses, then the protocol and ports (n <= KEY_ALEN_MAX,
# checked by the caller)
cdef inline bytes _key_bytes(bytes lo, bytes hi, Py_ssize_t n, unsigned long long ports):
    cdef unsigned char buf[37]  # 2 * KEY_ALEN_MAX + KEY_PORT_BYTES
    cdef Py_ssize_t i
    memcpy(buf, <const char *>lo, n)
    memcpy(buf + n, <const char *>hi, n)
    for i in range(KEY_PORT_BYTES):
        buf[2 * n + i] = (ports >> (8 * i)) & 0xFF
    return PyBytes_FromStringAndSize(<char *>buf, 2 * n + KEY_PORT_BYTES)

@cython.locals(n=Py_ssize_t)
cpdef bytes flow_key(bytes lo, bytes hi, long long ports)
cdef int _port_rank(int p) noexcept
@cython.locals(proto=int)
cdef bint _sender_is_client(Packet pkt, int sp, int dp) except -1
@cython.locals(seq="long long", n=Py_ssize_t, st=Stream, end="long long", ack="long long")
cdef void established(object ft, Flow f, Packet pkt, int d, int fl) except *

# the table as a C struct: ``process`` and ``_new_flow`` read its fields without a dict lookup.  Its
# methods stay Python methods (a subclass may override them: bench/flows_reassembly.py), and every
# field is public (the engine sets the hooks, the exception policy its mode).
cdef class FlowTable(Capacity):
    cdef public dict flows, c, stream_events
    cdef public ActivityOrder order
    cdef public TimingWheel wheel
    cdef public bint midstream, async_oneside
    cdef public object midstream_policy, midstream_applied, reasm, host_os, on_new_stream, on_swap
    cdef public long long _seq
