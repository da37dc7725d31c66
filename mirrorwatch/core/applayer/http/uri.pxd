# Compiled with its .py (mirrorwatch.COMPILED): every request's Host is split by it, and a file
# named by its request's URI takes its split and normalised path; the functions stay callable
# from Python (detection normalises URIs through them too).
cimport cython

@cython.locals(data=bytes, pos=Py_ssize_t, colon=Py_ssize_t, start=Py_ssize_t, end=Py_ssize_t,
               qend=Py_ssize_t)
cpdef object split_uri(bytes raw)
@cython.locals(end=Py_ssize_t, at=Py_ssize_t, stop=bytes)
cdef Py_ssize_t _find_any(bytes data, tuple stops, Py_ssize_t start)
@cython.locals(at=Py_ssize_t, close=Py_ssize_t, colon=Py_ssize_t)
cdef tuple _split_authority(bytes auth)
cpdef bytes normalize_path(bytes path)
@cython.locals(pos=Py_ssize_t, end=Py_ssize_t, byte=int, previous_was_separator=bint)
cpdef bytes decode_path(bytes path)
cpdef bytes utf8_bestfit(bytes data)
@cython.locals(pos=Py_ssize_t, end=Py_ssize_t, pending=int, stop=Py_ssize_t)
cpdef bytes remove_dot_segments(bytes path)
