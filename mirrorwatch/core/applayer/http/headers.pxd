# Compiled with its .py (mirrorwatch.COMPILED): its classes stay Python classes (HttpState is
# assembled from mixins, and the records are built and read by interpreted code), so what is
# typed here is only the module-level helpers; the gain is the compiled function bodies.
cimport cython

@cython.locals(end=Py_ssize_t, nul=Py_ssize_t, colon=Py_ssize_t)
cpdef tuple split_field(object field, object result)
@cython.locals(size=Py_ssize_t)
cpdef object header_value(object headers, object name)
