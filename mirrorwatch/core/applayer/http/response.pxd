# Compiled with its .py (mirrorwatch.COMPILED): the status line and what the response headers
# decide, as typed functions the response side calls in C.
from mirrorwatch.core.applayer.http.framing cimport body_framing, parse_content_length, parse_decimal
cimport cython

from mirrorwatch.core.applayer.http.headers cimport same_name
from mirrorwatch.core.applayer.http.request cimport first_space, is_method, is_space, skip_space, trim_space
from mirrorwatch.core.applayer.http.transaction cimport HttpTx

cdef int _NUL

@cython.locals(p="const unsigned char *", start=Py_ssize_t)
cpdef bint looks_like_status_line(bytes line) except -1
cdef long STATUS_MIN, STATUS_MAX, SWITCHING_PROTOCOLS, NO_CONTENT, NOT_MODIFIED
cdef long _INFORMATIONAL_LOW, _INFORMATIONAL_HIGH, _SUCCESS_LOW, _SUCCESS_HIGH

@cython.locals(start=Py_ssize_t, stop=Py_ssize_t, end=Py_ssize_t, second=Py_ssize_t,
               second_end=Py_ssize_t, third=Py_ssize_t)
cdef tuple _split_status_line(bytes line)
cpdef void apply_status_line(HttpTx tx, bytes line)
@cython.locals(code=long, informational=bint)
cpdef tuple response_framing(HttpTx tx)
