# One transaction as a C struct (transaction.py): the parser sets its fields by C access; the
# detection and logging rooms read them as attributes.
cimport cython

from mirrorwatch.core.applayer.http.headers cimport header_value
from mirrorwatch.core.applayer.http.uri cimport request_uri_normalized

cdef class HttpTx:
    cdef public long long tx_id
    cdef public int progress_ts, progress_tc
    cdef public object method, uri_raw, protocol, request_line, _uri_normalized, host, host_raw, port
    cdef public object response_protocol, status, status_code, status_msg, response_line
    cdef public object request_file, response_file
    cdef public list request_headers, response_headers
    cdef public bytes request_headers_raw, _request_body, response_headers_raw, _response_body
    cdef public list _request_kept, _response_kept  # the collector's kept pieces
    cdef public long long request_body_len, response_body_len
    cdef public bint request_body_truncated, response_body_truncated, is_http09, dirty, reported

    cpdef object request_header(self, object name)
    cpdef object response_header(self, object name)
    cpdef void normalize_uri_later(self)
    cpdef void body_grew(self, bint request, list kept)
    @cython.locals(request=Py_ssize_t, response=Py_ssize_t)
    cpdef Py_ssize_t held(self) except -1

@cython.locals(size=Py_ssize_t, piece=bytes)
cdef Py_ssize_t _size(list pieces) except -1
