# Compiled with its .py (mirrorwatch.COMPILED): the status line and what the response headers
# decide, as typed functions the response side calls in C.
from mirrorwatch.core.applayer.http.framing cimport body_framing, parse_content_length
from mirrorwatch.core.applayer.http.request cimport is_method
from mirrorwatch.core.applayer.http.transaction cimport HttpTx

cpdef bint looks_like_status_line(bytes line) except -1
cdef list _split_status_line(bytes line)
cpdef object parse_status_code(object status)
cpdef void apply_status_line(HttpTx tx, bytes line)
cpdef tuple response_framing(HttpTx tx)
