# Compiled with its .py (mirrorwatch.COMPILED): Framing stays a Python class; the helpers the
# request and response sides call once per message are typed (C calls from there).
cimport cython

cdef long long MAX_CONTENT_LENGTH
cdef int _ZERO, _NINE, _SP, _HT

@cython.locals(p="const unsigned char *", size=Py_ssize_t, start=Py_ssize_t, end=Py_ssize_t,
               length="long long", digit=int)
cpdef object parse_content_length(bytes value)
cpdef tuple body_framing(object headers_te, object headers_cl, bint chunked_substring)
@cython.locals(p="const unsigned char *", start=Py_ssize_t, end=Py_ssize_t, pos=Py_ssize_t, number=long,
               digit=int)
cpdef object parse_decimal(bytes text, long low, long high)
