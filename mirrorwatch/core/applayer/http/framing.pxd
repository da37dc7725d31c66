# Compiled with its .py (mirrorwatch.COMPILED): Framing stays a Python class; the helpers the
# request and response sides call once per message are typed (C calls from there).
cimport cython

@cython.locals(start=Py_ssize_t, end=Py_ssize_t)
cpdef object parse_content_length(object value)
cpdef tuple body_framing(object headers_te, object headers_cl, bint chunked_substring)
