# Compiled with its .py (every flow passes through it: protocol detection, the parsers' common
# bookkeeping). The per-flow detection state is C structs, probed with C calls from the
# application layer (session.py); every other name stays plain Python, importable as before.
cimport cython

cdef class _Direction:
    cdef public bytearray buf
    cdef public long long seen
    cdef public bint done
    cdef public object proto

cdef class ProtoDetect:
    cdef public tuple _dirs
    cdef public long long max_detect_bytes, probe_window
    cdef public bint mismatch
    cdef public object proto

    cpdef bytearray kept(self, int direction)
    cpdef object direction_proto(self, int direction)
    @cython.locals(side=_Direction)
    cpdef object probe(self, int direction, object data)
    cdef void _classify(self, int direction, _Direction side) except *
    @cython.locals(dirs=tuple, first=_Direction, second=_Direction)
    cdef bint _undecidable(self, _Direction side) except -1
