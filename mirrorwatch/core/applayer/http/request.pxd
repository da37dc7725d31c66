# Compiled with its .py (mirrorwatch.COMPILED): its classes stay Python classes (HttpState is
# assembled from mixins, and the records are built and read by interpreted code), so what is
# typed here is only the module-level helpers; the gain is the compiled function bodies.
cimport cython

@cython.locals(pos=Py_ssize_t)
cpdef Py_ssize_t _first_space(object data, Py_ssize_t start)
@cython.locals(pos=Py_ssize_t)
cpdef Py_ssize_t _last_space(object data)
