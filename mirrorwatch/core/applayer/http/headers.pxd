# Compiled with its .py (mirrorwatch.COMPILED): a block's fields are parsed by typed functions
# (the parser's _take_block calls them once per header block); HeaderResult is a C struct.
cimport cython

cdef class HeaderResult:
    cdef public int invalid, dropped

cdef int _NUL, _TAB, _SPACE, _COLON, _UPPER_A, _UPPER_Z, _CASE

@cython.locals(fields=list, line=bytes)
cpdef list unfold(list lines, HeaderResult result)
@cython.locals(p="const unsigned char *")
cdef bint _folds(bytes line) except -1
@cython.locals(end=Py_ssize_t, nul=Py_ssize_t, colon=Py_ssize_t)
cpdef tuple split_field(bytes field, HeaderResult result)
@cython.locals(colon=Py_ssize_t, p="const unsigned char *", start=Py_ssize_t, end=Py_ssize_t)
cpdef tuple field_pair(bytes field, HeaderResult result)
@cython.locals(p="const unsigned char *", colon=Py_ssize_t, i=Py_ssize_t, c="unsigned char")
cpdef Py_ssize_t _plain_colon(bytes field)
@cython.locals(index=dict, repetitions=Py_ssize_t, field=bytes, pair=tuple, key=bytes)
cpdef void add_fields(list headers, list fields, Py_ssize_t max_headers,
                      Py_ssize_t max_repetitions, HeaderResult result)
@cython.locals(key=bytes, size=Py_ssize_t, field_name=bytes, pair=tuple)
cpdef object header_value(list headers, object name)
@cython.locals(p="const unsigned char *", q="const unsigned char *", i=Py_ssize_t, c="unsigned char")
cdef bint _is_name(bytes field_name, bytes key) except -1
