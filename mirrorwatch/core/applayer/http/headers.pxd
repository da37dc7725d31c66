# Compiled with its .py (mirrorwatch.COMPILED): a block's fields are parsed by typed functions
# (the parser's _take_block calls them once per header block); HeaderResult is a C struct.
cimport cython

cdef class HeaderResult:
    cdef public int invalid, dropped

@cython.locals(fields=list, line=bytes)
cpdef list unfold(list lines, HeaderResult result)
@cython.locals(end=Py_ssize_t, nul=Py_ssize_t, colon=Py_ssize_t)
cpdef tuple split_field(bytes field, HeaderResult result)
@cython.locals(index=dict, repetitions=Py_ssize_t, field=bytes, colon=bytes, name=bytes,
               value=bytes, key=bytes)
cpdef void add_fields(list headers, list fields, Py_ssize_t max_headers,
                      Py_ssize_t max_repetitions, HeaderResult result)
@cython.locals(key=bytes, size=Py_ssize_t, field_name=bytes)
cpdef object header_value(list headers, object name)
