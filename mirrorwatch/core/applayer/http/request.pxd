# Compiled with its .py (mirrorwatch.COMPILED): the request line and what the request headers
# decide, as typed functions the request side calls in C.
cimport cython

from mirrorwatch.core.applayer.http.framing cimport body_framing
from mirrorwatch.core.applayer.http.transaction cimport HttpTx

cdef int _SP, _HT, _CR

@cython.locals(pos=Py_ssize_t, p="const unsigned char *")
cpdef Py_ssize_t _first_space(bytes data, Py_ssize_t start)
cpdef bint _is_space(int byte) noexcept
@cython.locals(data=bytes, end=Py_ssize_t, method=bytes)
cpdef bint looks_like_request_line(bytes line) except -1
@cython.locals(pos=Py_ssize_t, p="const unsigned char *")
cpdef Py_ssize_t _last_space(bytes data)
@cython.locals(data=bytes, end=Py_ssize_t, uri_end=Py_ssize_t, rest=bytes)
cdef tuple _split_request_line(bytes line)
cpdef void apply_request_line(HttpTx tx, bytes line)
cpdef void apply_host_header(HttpTx tx)
cpdef bint is_method(HttpTx tx, bytes method) except -1
cpdef tuple request_framing(HttpTx tx)
