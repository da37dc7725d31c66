# A rule's buffer groups and transaction spec as C structs (see txrule.py): judging a transaction
# candidate (``ready``, ``match``) is C calls; everything else stays plain Python.
cimport cython

from mirrorwatch.core.detect.buffers cimport Getter
from mirrorwatch.core.detect.payload cimport Matcher


cdef class Group:
    cdef public object name, key, transforms, matches
    cdef public Getter get
    cdef public Py_ssize_t slot
    cdef public int side, ready
    cdef public Matcher match

    cpdef object data(self, object tx)


cdef class TxSpec:
    cdef public object proto, sides, groups, tests, fps
    cdef public tuple needs

    @cython.locals(need=tuple, ts=int, tc=int, progress=int)
    cpdef bint ready(self, object tx, int d) except -1

    @cython.locals(g=Group, m=Matcher, slot=Py_ssize_t)
    cpdef bint match(self, object tx, int d, Py_ssize_t recursion_limit, list bufs) except -1


cpdef list new_bufs()
