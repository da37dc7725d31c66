# A capture's frames into an engine, as C structs (see ownframes.py): the engine's process is a C call.
cimport cython

from mirrorwatch.core.decode.flowshare cimport FlowPartitioner
from mirrorwatch.core.engine cimport Engine

cdef int _FRAGMENT

cdef bytes frame_bytes(const unsigned char *f, Py_ssize_t start, Py_ssize_t stop)

cdef class FrameSink:
    cpdef frame(self, double ts, long long wirelen, bytes data)
    cdef frame_in(self, double ts, long long wirelen, const unsigned char *f, Py_ssize_t start, Py_ssize_t stop)

@cython.final
cdef class AllFrames(FrameSink):
    cdef public Engine engine  # typed: its process is a C call
    cdef public int linktype
    cdef public object emit

@cython.final
cdef class OwnFrames(FrameSink):
    cdef public FlowPartitioner part
    cdef public Engine engine  # typed: its process is a C call
    cdef public int me, linktype
    cdef public long long n, mask, own
    cdef public double last_ts
    cdef public object take, emit, fragment, every, sample

    cdef _frame(self, double ts, long long wirelen, const unsigned char *f, Py_ssize_t start, Py_ssize_t stop,
                bytes data)
