# compiled as plain Python: the rules' per-packet judging and the detector's build run as C;
# every name stays importable.  Typed: the header buffers built per transaction (C list appends).
cimport cython


@cython.locals(parts=list, pair=tuple, name=bytes)
cpdef object _header_block(list headers, bytes skip)
@cython.locals(parts=list, pair=tuple)
cpdef object _header_names(list headers)
