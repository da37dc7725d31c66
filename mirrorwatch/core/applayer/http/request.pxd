# Compiled with its .py (mirrorwatch.COMPILED): the request line and what the request headers
# decide, as typed functions the request side calls in C.
cimport cython

from mirrorwatch.core.applayer.http.framing cimport body_framing
from mirrorwatch.core.applayer.http.transaction cimport HttpTx

@cython.locals(pos=Py_ssize_t)
cpdef Py_ssize_t _first_space(object data, Py_ssize_t start)
@cython.locals(data=bytes, end=Py_ssize_t, method=bytes)
cpdef bint looks_like_request_line(bytes line) except -1
@cython.locals(pos=Py_ssize_t)
cpdef Py_ssize_t _last_space(object data)
@cython.locals(data=bytes, end=Py_ssize_t, uri_end=Py_ssize_t, rest=bytes)
cdef tuple _split_request_line(bytes line)
cpdef void apply_request_line(HttpTx tx, bytes line)
cpdef void apply_host_header(HttpTx tx)
cpdef bint is_method(HttpTx tx, bytes method) except -1
cpdef tuple request_framing(HttpTx tx)
