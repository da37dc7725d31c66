# Compiled with its .py (mirrorwatch.COMPILED): Framing stays a Python class; the helpers the
# request and response sides call once per message are typed (C calls from there).
cimport cython

cdef long long MAX_CONTENT_LENGTH
cdef int _ZERO, _NINE

@cython.locals(p="const unsigned char *", size=Py_ssize_t, start=Py_ssize_t, end=Py_ssize_t,
               length="long long", digit=int)
cpdef object parse_content_length(bytes value)
cpdef tuple body_framing(object headers_te, object headers_cl, bint chunked_substring)
