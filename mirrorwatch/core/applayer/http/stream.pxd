# One direction's parse state and the machinery both directions share, as C structs: the
# per-packet steps are C calls on typed objects (see stream.py). The chain of cdef classes
# StreamMachine -> MessageMachine -> RequestMachine -> ResponseMachine -> HttpState is one
# parser object; each level's .pxd declares its attributes and typed methods.
cimport cython

from mirrorwatch.core.applayer.http.body cimport BodyCollector
from mirrorwatch.core.applayer.http.config cimport HttpConfig, HttpStats
from mirrorwatch.core.applayer.http.headers cimport HeaderResult, add_block, add_fields, find_byte, unfold
from mirrorwatch.core.applayer.http.transaction cimport HttpTx

cdef Py_ssize_t COMPACT_AT
cdef int _STOPPED_FROM
cdef int _CR, _LF, _NUL, _TAB, _SPACE, _PLAIN, _FOLDED, _REFUSED

cdef class Side:
    cdef public int direction, phase
    cdef public bytearray buf, raw
    cdef public Py_ssize_t pos
    cdef public HttpTx tx
    cdef public BodyCollector collector
    cdef public bint closed, file_checked, skip_to_lf
    cdef public long long remaining, wire
    cdef public list lines
    cdef public bytes block

    cpdef Py_ssize_t available(self)
    @cython.locals(start=Py_ssize_t, stop=Py_ssize_t, p="const unsigned char *", data=bytes)
    cpdef bytes take(self, Py_ssize_t size)
    cpdef Py_ssize_t drop_buffer(self)
    cpdef void compact(self)

cdef class StreamMachine:
    cdef public HttpConfig config
    cdef public HttpStats stats  # typed: the parser adds to its counters in C
    cdef public list txs, _dirty
    cdef public bint failed
    cdef public long long _held
    cdef Py_ssize_t _field_limit
    cdef long long _memcap

    cdef void _touch(self, HttpTx tx)
    @cython.locals(limit=Py_ssize_t, buf=bytearray, lf=Py_ssize_t, line=bytes)
    cdef object _next_line(self, Side side)
    cdef long long _room(self)
    @cython.locals(line=bytes, content=bytes)
    cdef bint _read_block(self, Side side) except -1
    @cython.locals(buf=bytearray, start=Py_ssize_t, end=Py_ssize_t, block=bytes, shape=int)
    cdef bint _whole_block(self, Side side) except -1
    @cython.locals(raw=bytes, result=HeaderResult, config=HttpConfig)
    cdef bytes _take_block(self, Side side, list headers)

cpdef Py_ssize_t _find_lf(bytearray buf, Py_ssize_t start, Py_ssize_t stop) except -2
@cython.locals(end=Py_ssize_t, at=Py_ssize_t)
cpdef Py_ssize_t _block_end(bytearray buf, Py_ssize_t start, Py_ssize_t stop) except -2
@cython.locals(p="const unsigned char *", i=Py_ssize_t, size=Py_ssize_t)
cpdef Py_ssize_t _scan_block_end(bytearray buf, Py_ssize_t start, Py_ssize_t stop) except -2
@cython.locals(p="const unsigned char *", size=Py_ssize_t, lines=list, start=Py_ssize_t, lf=Py_ssize_t,
               end=Py_ssize_t)
cpdef list _block_lines(bytes block)
@cython.locals(p="const unsigned char *", size=Py_ssize_t, shape=int, start=Py_ssize_t, lf=Py_ssize_t,
               end=Py_ssize_t, lines=list, line=bytes)
cpdef int _block_shape(bytes block) except -1
cpdef bint stopped(int phase) noexcept
