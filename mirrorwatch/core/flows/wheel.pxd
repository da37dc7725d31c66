cimport cython

from mirrorwatch.core.flows.flow cimport Flow

cdef Py_ssize_t _ENTRY_ROOM

cdef class TimingWheel:
    cdef dict _buckets
    cdef list _keys  # heap of the seconds that have a bucket
    @cython.locals(b=dict)
    cpdef void file(self, Flow f, double deadline)
    cpdef void unfile(self, Flow f)
    @cython.locals(buckets=dict, b=dict, n=Py_ssize_t)
    cpdef void _drop(self, object k, Flow f)
