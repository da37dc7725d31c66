# The IP-only address index as C structs (see groups.py): an IPv4 lookup is a binary search in C over
# the packed address; the rest (value tables, port splits) stays plain Python, every name importable.
cimport cython


@cython.final
cdef class _Segments:
    cdef public list starts, sets
    cdef unsigned long long[::1] _keys

    cpdef tuple lookup(self, object n)
    @cython.locals(b="const unsigned char *", n="unsigned long long", lo=Py_ssize_t, hi=Py_ssize_t, mid=Py_ssize_t)
    cpdef tuple lookup4(self, bytes packed)


@cython.final
cdef class AddrIndex:
    cdef public list _v4, _v6
    cdef public _Segments seg4, seg6

    cpdef tuple lookup(self, bytes packed)
