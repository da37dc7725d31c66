# compiled as plain Python: the rules' per-packet judging and the detector's build run as C;
# every name stays importable.  Typed: the getters (an op code dispatched in C, no Python call
# per buffer) and the header buffers built per transaction.
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.string cimport memcpy

from mirrorwatch.core.applayer.http.headers cimport header_value
from mirrorwatch.core.applayer.http.transaction cimport HttpTx

cdef int FIELD_, TEXT_, CALL_, HEADER_, HEADER_BLOCK_, HEADER_NAMES_, START_
cdef bytes _CRLF


cdef class Getter:
    cdef public int op
    cdef public object arg
    cdef public bint response, parted

    @cython.locals(h=HttpTx, headers=list, raw=bytes, parts=object)
    cpdef object fetch(self, object tx)
    @cython.locals(h=HttpTx, line=object, raw=bytes)
    cpdef object parts(self, object tx)
    @cython.locals(data=bytes)
    cpdef bytes join(self, tuple parts)
    @cython.locals(size=Py_ssize_t, part=bytes)
    cpdef Py_ssize_t size(self, tuple parts) except -1


cdef object _text(object v)
@cython.locals(parts=list, pair=tuple, name=bytes)
cpdef object _header_block(list headers, bytes skip)
@cython.locals(parts=list, pair=tuple)
cpdef object _header_names(list headers)


cdef inline bint _kept(bytes name, bytes skip) except -1:
    return skip is None or len(name) != len(skip) or name.lower() != skip


cdef inline char *_put(char *p, bytes piece) noexcept:
    cdef Py_ssize_t n = len(piece)
    memcpy(p, <const char *>piece, n)
    return p + n


# _header_block (``values``: 'Name: value\r\n' per header kept) and _header_names ('\r\n', then
# 'Name\r\n' per header, then '\r\n') made in C: their size first, then one bytes object filled
# piece by piece (bytes.join reads each piece through the buffer protocol)
cdef inline bytes _fill_headers(list headers, bytes skip, bint values):
    cdef Py_ssize_t size = 0 if values else 4
    cdef tuple pair
    cdef bytes name, out
    cdef char *p
    for pair in headers:
        name = pair[0]
        if not values:
            size += len(name) + 2
        elif _kept(name, skip):
            size += len(name) + 4 + len(<bytes>pair[1])
    out = PyBytes_FromStringAndSize(NULL, size)
    p = PyBytes_AS_STRING(out)
    if not values:
        p = _put(p, b"\r\n")
    for pair in headers:
        name = pair[0]
        if not values:
            p = _put(_put(p, name), b"\r\n")
        elif _kept(name, skip):
            p = _put(_put(_put(_put(p, name), b": "), <bytes>pair[1]), b"\r\n")
    if not values:
        _put(p, b"\r\n")
    return out
