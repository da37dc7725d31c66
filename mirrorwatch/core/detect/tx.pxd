# The transaction prefilter's per-buffer records as C structs (see tx.py); the mixin stays a plain class.
cimport cython

from mirrorwatch.core.detect.buffers cimport Getter
from mirrorwatch.core.detect.hsdb cimport BlockScanner
from mirrorwatch.core.detect.state cimport FlowDet
from mirrorwatch.core.detect.txrule cimport new_bufs


cdef class TxScanner:
    cdef public object group
    cdef public Getter get
    cdef public tuple transforms, rules
    cdef public int side, ready
    cdef public bint by_parts
    cdef public Py_ssize_t slot, shortest, known_bytes, limit, memo_max, reach
    cdef public BlockScanner scanner
    cdef public dict known

    cpdef void remember(self, object key, Py_ssize_t size, list woken) except *


@cython.locals(s=TxScanner, ts=int, tc=int, scans=int, size=Py_ssize_t, woken=list, memo=bint)
cpdef int prefilter_tx(object tx, tuple scanners, set cands, list got) except -1

@cython.locals(size=Py_ssize_t)
cdef Py_ssize_t _size(object data) except -1

@cython.locals(scans=int, shortest=Py_ssize_t)
cdef int _scan(TxScanner s, object data, Py_ssize_t size, list woken) except -1

@cython.locals(i=int)
cdef void _wake(TxScanner s, object data, list woken) except *
