# The transaction prefilter's per-buffer records as C structs (see tx.py); the mixin stays a plain class.
cimport cython

from mirrorwatch.core.detect.compile cimport CRule
from mirrorwatch.core.detect.hsdb cimport BlockScanner
from mirrorwatch.core.detect.judge cimport pre
from mirrorwatch.core.detect.state cimport FlowDet
from mirrorwatch.core.detect.txrule cimport TxSpec


cdef class TxScanner:
    cdef public object group, slot, get
    cdef public tuple transforms, rules
    cdef public int side, ready
    cdef public Py_ssize_t shortest, known_bytes, limit, memo_max
    cdef public BlockScanner scanner
    cdef public dict known

    cpdef void remember(self, object data, Py_ssize_t size, list woken) except *


@cython.locals(s=TxScanner, ts=int, tc=int, scans=int, size=Py_ssize_t, shortest=Py_ssize_t, woken=list,
               multi=bint, memo=bint)
cpdef int prefilter_tx(object tx, tuple scanners, set cands, dict got) except -1

@cython.locals(i=int)
cdef void _wake(TxScanner s, object data, list woken) except *
