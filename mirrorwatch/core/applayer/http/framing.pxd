# Compiled with its .py (mirrorwatch.COMPILED): its classes stay Python classes (HttpState is
# assembled from mixins, and the records are built and read by interpreted code), so what is
# typed here is only the module-level helpers; the gain is the compiled function bodies.
cimport cython

@cython.locals(start=Py_ssize_t, end=Py_ssize_t)
cpdef object parse_content_length(object value)
