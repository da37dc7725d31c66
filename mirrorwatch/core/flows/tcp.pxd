cimport cython

from mirrorwatch.core.decode.packet cimport Packet
from mirrorwatch.core.flows.caps cimport set_tclass
from mirrorwatch.core.flows.flow cimport Flow, really_killed
from mirrorwatch.core.reassembly.stream cimport Stream

cdef int ACK, FIN, RST, SYN, C, S, MAX_WSCALE
cdef long long HALF, M32, MAX_WINDOW, WINDOW_ALLOW_MAX
cdef dict _FIN_ACK_ROWS, _TCLASS
cdef str _FINACKED
cdef tuple _FIN_ACK_EVENTS

cdef int _fin_ack_slot(int d, bint fin, bint finacked) noexcept

@cython.locals(m="long long")
cpdef bint seq_ahead(long long end, object mark) except -1

@cython.locals(r=int, ack="long long", w="long long", ws=int, allow="long long", limit="long long")
cpdef bint in_window(Flow f, int d, long long seq, long long length)

# the per-packet path: C calls between the functions of the flow table ``ft``
@cython.locals(seq="long long", n=Py_ssize_t, end="long long", s=Stream)
cpdef int tcp_packet(object ft, Flow f, Packet pkt, int d, int fl) except? -1
@cython.locals(s=Stream, o=Stream)
cdef void _tcp_streams(object ft, Flow f, Packet pkt, int d, int fl, long long seq, Py_ssize_t n) except *
@cython.locals(row=tuple, fin=bint)
cdef void _fin_ack(object ft, Flow f, Packet pkt, int d, int fl, long long data_end) except *
cdef void set_state(object ft, Flow f, str st) except *
cdef bint _midstream_exception(object ft, Flow f) except? -1
@cython.locals(seq="long long")
cdef int _syn(object ft, Flow f, Packet pkt, int d, int fl) except? -1
@cython.locals(seq="long long")
cdef void _handshake_step(object ft, Flow f, Packet pkt, int d, str ev, str new) except *
cdef void _pickup(object ft, Flow f, Packet pkt, int d) except *
cdef bint _rst(object ft, Flow f, Packet pkt, int d) except? -1
cdef void _after_rst(object ft, Flow f, int d, Py_ssize_t n, int fl) except *
