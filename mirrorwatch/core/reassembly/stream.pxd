cimport cython

from mirrorwatch.core.reassembly.context cimport ReassemblyContext
from mirrorwatch.core.reassembly.overlap cimport OutOfOrder

cdef long long M32, HALF, ACK_AHEAD_MAX
cdef int FIRST, VISTA

cdef class Stream(OutOfOrder):
    cpdef long long offset_of(self, long long seq)
    @cython.locals(n=Py_ssize_t, s="long long", e="long long", ctx=ReassemblyContext, bounds=list)
    cpdef void add(self, long long seq, object data, bint fin=*)
    @cython.locals(off="long long", a="long long")
    cpdef void ack(self, long long ack_seq)
    @cython.locals(keep="long long")
    cpdef void trim(self, long long keep_from)
    cpdef void peer_seen(self)
    cpdef void flush(self)
    cpdef void detach(self)
    @cython.locals(n=Py_ssize_t, s="long long", k="long long", ctx=ReassemblyContext)
    cpdef void _deliver(self, object data)
    @cython.locals(f="long long", start="long long", stop="long long", p="const unsigned char *")
    cpdef void _settle(self, long long upto)
