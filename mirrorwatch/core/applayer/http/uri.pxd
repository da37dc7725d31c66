# Compiled with its .py (mirrorwatch.COMPILED): every request's Host is split by it, and a file
# named by its request's URI takes its split and normalised path; the functions stay callable
# from Python (detection normalises URIs through them too).
cimport cython

from mirrorwatch.core.applayer.http.framing cimport parse_decimal

cpdef object split_uri(bytes raw)
@cython.locals(data=bytes, pos=Py_ssize_t, colon=Py_ssize_t, start=Py_ssize_t, end=Py_ssize_t,
               qend=Py_ssize_t)
cdef tuple _split(bytes raw)
@cython.locals(fields=tuple)
cpdef bytes request_uri_normalized(bytes raw)
cdef int _PATH, _QUERY, _FRAGMENT
@cython.locals(out=bytes)
cdef bytes _normalized(object path, object query, object fragment)
@cython.locals(pos=Py_ssize_t, end=Py_ssize_t)
cpdef bytes urldecode(bytes data, bint u_decode)
@cython.locals(p="const unsigned char *", size=Py_ssize_t, pos=Py_ssize_t, c="unsigned char")
cdef bint _plain_path(bytes path) except -1
@cython.locals(p="const unsigned char *", pos=Py_ssize_t)
cdef bint _dot_segment(bytes path) except -1
cdef int SLASH, BACKSLASH, PERCENT, DOT

@cython.locals(p="const unsigned char *", q="const unsigned char *", pos=Py_ssize_t, i=Py_ssize_t)
cdef Py_ssize_t _find_any(bytes data, bytes stops, Py_ssize_t start) except -1
@cython.locals(at=Py_ssize_t, close=Py_ssize_t, colon=Py_ssize_t)
cdef tuple _split_authority(bytes auth)
@cython.locals(data=bytes, close=Py_ssize_t, host=bytes, rest=bytes, sep=bytes)
cpdef tuple split_hostport(bytes value)
cpdef bytes normalize_path(bytes path)
@cython.locals(pos=Py_ssize_t, end=Py_ssize_t, byte=int, previous_was_separator=bint)
cpdef bytes decode_path(bytes path)
cpdef bytes utf8_bestfit(bytes data)
@cython.locals(pos=Py_ssize_t, end=Py_ssize_t, pending=int, stop=Py_ssize_t)
cpdef bytes remove_dot_segments(bytes path)
