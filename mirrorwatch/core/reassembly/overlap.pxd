# One direction's stream as a C struct (see stream.py): its fields are declared here, on the
# base class, because both halves of Stream work on them (overlap.py the out-of-order half).
cimport cython

from mirrorwatch.core.reassembly.context cimport ReassemblyContext

cdef long long M32, HALF
cdef int LAST

cdef class OutOfOrder:
    cdef public bytearray buf
    cdef public long long buf_base, end, epoch, missed_bytes, nxt, off, final, acked_hi, rewrites, gaps
    cdef public bint depth_reached, settle_now, peer_visible, closed_out
    cdef public object _observer, _obs_data, fin_off, _ooo
    cdef public list _bounds
    cdef public long long _ooo_bytes, _depth, _unacked_max, _unacked_segs
    cdef public int max_regions
    cdef public ReassemblyContext _ctx
    cdef public int _policy

    @cython.locals(ctx=ReassemblyContext, s="long long", n=Py_ssize_t, e="long long", s0="long long", bounds=list,
                   i=Py_ssize_t)
    cpdef void _add_slow(self, long long seq, object data, bint fin)
    @cython.locals(pol=int, lose=list, bounds=list, i=Py_ssize_t, j=Py_ssize_t, out=list, pos="long long")
    cpdef list _winning(self, long long s0, long long e, long long lo)
    @cython.locals(ctx=ReassemblyContext, i=Py_ssize_t, pos="long long", added="long long", oe="long long",
                   stop="long long")
    cpdef void _insert_ooo(self, long long a, long long e, object data, long long s, list win)
    @cython.locals(n=int, reach="long long", ce="long long")
    cpdef void _regions(self)
    @cython.locals(ctx=ReassemblyContext)
    cpdef void _drain(self)
    @cython.locals(g="long long")
    cpdef void _skip_gap(self, long long to, str why)
