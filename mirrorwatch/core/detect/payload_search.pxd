# The keyword steps and their scratch as C structs (see payload_search.py): one keyword calls the next
# one's ``step`` as a C call.
cimport cython

cdef int MATCH_, NO_MATCH_, DISCONTINUE_


cdef class Run:
    cdef public Py_ssize_t count, end, limit
    cdef public object low
    cdef public dict vars


cdef class Step:
    cdef public Step nxt

    cpdef int step(self, object buf, Py_ssize_t blen, Py_ssize_t cur, Run run) except? -2


cdef class Done(Step):
    cpdef int step(self, object buf, Py_ssize_t blen, Py_ssize_t cur, Run run) except? -2


cdef class FnStep(Step):
    cdef public object fn

    cpdef int step(self, object buf, Py_ssize_t blen, Py_ssize_t cur, Run run) except? -2


cdef class ContentStep(Step):
    cdef public bytes pat
    cdef public Py_ssize_t plen, dist, within, off, depth
    cdef public bint nocase, negated, endswith, relative, has_dist, has_within, has_off, has_depth, single, retry
    cdef public object dist_var, within_var, off_var, depth_var

    @cython.locals(offset=Py_ssize_t, depth=Py_ssize_t, dist=Py_ssize_t, w=Py_ssize_t, lim=Py_ssize_t,
                   prev_buffer_offset=Py_ssize_t, prev_offset=Py_ssize_t, found=Py_ssize_t,
                   match_offset=Py_ssize_t, plen=Py_ssize_t, r=int, negated=bint, endswith=bint)
    cpdef int step(self, object buf, Py_ssize_t blen, Py_ssize_t cur, Run run) except? -2


cdef class PcreStep(Step):
    cdef public object do
    cdef public bint relative, negated, relnext

    @cython.locals(base=Py_ssize_t, start=Py_ssize_t, new_cur=Py_ssize_t, r=int)
    cpdef int step(self, object buf, Py_ssize_t blen, Py_ssize_t cur, Run run) except? -2


cdef Py_ssize_t _bounded(object v) except? -1
