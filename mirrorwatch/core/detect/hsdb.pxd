# The scanners and one direction's hyperscan stream as C structs (see hsdb.py).
cimport cython

cdef class BlockScanner:
    cdef public object db, _cb
    cdef public list hits

    cpdef list scan(self, object data)


cdef class StreamScanner:
    cdef public object db, _cb
    cdef public dict last


cdef class LiteralStream:
    cdef public object scanner, hs
    cdef public long long base, pos
    cdef public dict recent

    @cython.locals(last=dict, recent=dict, base="long long")
    cpdef dict feed(self, StreamScanner scanner, long long off, object data)
