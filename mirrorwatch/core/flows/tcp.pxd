cimport cython

from mirrorwatch.core.decode.packet cimport Packet
from mirrorwatch.core.flows.flow cimport Flow, really_killed
from mirrorwatch.core.reassembly.stream cimport Stream

cdef int ACK, FIN, RST, SYN, C, S, MAX_WSCALE
cdef long long HALF, M32, MAX_WINDOW, WINDOW_ALLOW_MAX

@cython.locals(r=int, allow="long long", limit="long long")
cpdef bint in_window(Flow f, int d, long long seq, long long length)
