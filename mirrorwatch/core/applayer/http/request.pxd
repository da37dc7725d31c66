# Compiled with its .py (mirrorwatch.COMPILED): the request line and what the request headers
# decide, as typed functions the request side calls in C.
cimport cython

from mirrorwatch.core.applayer.http.framing cimport body_framing, parse_decimal
from mirrorwatch.core.applayer.http.headers cimport same_name
from mirrorwatch.core.applayer.http.transaction cimport HttpTx
from mirrorwatch.core.applayer.http.uri cimport split_hostport

cdef int _SP, _HT, _CR, _SLASH

@cython.locals(pos=Py_ssize_t, p="const unsigned char *")
cpdef Py_ssize_t first_space(bytes data, Py_ssize_t start)
@cython.locals(pos=Py_ssize_t, p="const unsigned char *")
cpdef Py_ssize_t skip_space(bytes data, Py_ssize_t start) except -1
@cython.locals(end=Py_ssize_t, p="const unsigned char *")
cpdef Py_ssize_t trim_space(bytes data, Py_ssize_t start) except -1
cpdef bint is_space(int byte) noexcept
@cython.locals(start=Py_ssize_t, stop=Py_ssize_t, end=Py_ssize_t, target=Py_ssize_t, last=Py_ssize_t)
cpdef bint looks_like_request_line(bytes line) except -1
@cython.locals(pos=Py_ssize_t, p="const unsigned char *", table="const unsigned char *")
cdef bint _all_token(bytes data, Py_ssize_t start, Py_ssize_t end) except -1
@cython.locals(pos=Py_ssize_t, p="const unsigned char *")
cdef Py_ssize_t _last_space(bytes data, Py_ssize_t start, Py_ssize_t stop) except -2
@cython.locals(start=Py_ssize_t, end=Py_ssize_t, uri_end=Py_ssize_t, rest=Py_ssize_t, first=Py_ssize_t,
               last=Py_ssize_t, method=bytes)
cdef tuple _split_request_line(bytes line)
cpdef void apply_request_line(HttpTx tx, bytes line)
cpdef void apply_host_header(HttpTx tx)
cpdef bint is_method(HttpTx tx, bytes method) except -1
cpdef tuple request_framing(HttpTx tx)
