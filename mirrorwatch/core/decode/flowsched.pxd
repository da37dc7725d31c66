# The worker a flow hash names (see flowsched.py), as a C struct: a pick is a few loads.
cimport cython

cdef int _BALANCED, _BUCKET_SHIFT, _BUCKETS, WORK_FRAME, WORK_BYTE_SHIFT, WORK_SESSION

@cython.final
cdef class Scheduler:
    cdef public int n, kind
    cdef public double idle, now
    cdef int[::1] _bucket_worker
    cdef double[::1] _bucket_seen
    cdef long long[::1] _given

    @cython.locals(b=Py_ssize_t, w=int, i=int)
    cdef int pick(self, unsigned int h) noexcept
    cpdef void give(self, int w, Py_ssize_t nbytes) noexcept
