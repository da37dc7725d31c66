cimport cython

cpdef unsigned int u16(bytes f, Py_ssize_t i)
cpdef unsigned long long u32(bytes f, Py_ssize_t i)

@cython.locals(n=Py_ssize_t, p="const char *")
cpdef bytes take(bytes f, Py_ssize_t start, Py_ssize_t stop)
