# Compiled with its .py (mirrorwatch.COMPILED): a block's fields are parsed by typed functions
# (the parser's _take_block calls them once per header block); HeaderResult is a C struct.
cimport cython
from libc.string cimport memchr

cdef class HeaderResult:
    cdef public int invalid, dropped, repetitions
    cdef public dict index

cdef Py_ssize_t _SCAN_LIMIT
cdef int _NUL, _TAB, _LF, _CR, _SPACE, _COLON, _UPPER_A, _UPPER_Z, _CASE

@cython.locals(fields=list, line=bytes)
cpdef list unfold(list lines, HeaderResult result)
@cython.locals(p="const unsigned char *")
cdef bint _folds(bytes line) except -1
@cython.locals(end=Py_ssize_t, nul=Py_ssize_t, colon=Py_ssize_t)
cpdef tuple split_field(bytes field, HeaderResult result)
cpdef tuple field_pair(bytes field, HeaderResult result)
@cython.locals(colon=Py_ssize_t, p="const unsigned char *", first=Py_ssize_t)
cdef tuple _range_pair(bytes data, Py_ssize_t start, Py_ssize_t end, bint nul_free, HeaderResult result)
@cython.locals(p="const unsigned char *", colon=Py_ssize_t)
cdef Py_ssize_t _plain_colon(bytes data, Py_ssize_t start, Py_ssize_t end, bint nul_free) except -2
@cython.locals(p="const unsigned char *", hit="const void *", size=Py_ssize_t)
cpdef Py_ssize_t find_byte(object data, unsigned char byte, Py_ssize_t start, Py_ssize_t stop) except -2
@cython.locals(field=bytes)
cpdef void add_fields(list headers, list fields, Py_ssize_t max_headers,
                      Py_ssize_t max_repetitions, HeaderResult result)
@cython.locals(p="const unsigned char *", size=Py_ssize_t, start=Py_ssize_t, lf=Py_ssize_t,
               end=Py_ssize_t, nul_free=bint)
cpdef void add_block(list headers, bytes block, Py_ssize_t max_headers,
                     Py_ssize_t max_repetitions, HeaderResult result)
@cython.locals(lf=Py_ssize_t)
cdef Py_ssize_t _line_end(bytes data, Py_ssize_t start) except -2
@cython.locals(name=bytes, at=Py_ssize_t, content_length=bint, first_name=bytes, first_value=bytes)
cdef void add_pair(list headers, tuple pair, Py_ssize_t max_headers,
                   Py_ssize_t max_repetitions, HeaderResult result)
@cython.locals(i=Py_ssize_t, pair=tuple)
cdef Py_ssize_t _position(list headers, bytes name, HeaderResult result) except -2
@cython.locals(key=bytes, pair=tuple)
cpdef object header_value(list headers, object name)
@cython.locals(p="const unsigned char *", q="const unsigned char *", i=Py_ssize_t, c="unsigned char",
               d="unsigned char")
cpdef bint same_name(bytes field_name, bytes key) except -1
cdef int _lower(int c) noexcept
