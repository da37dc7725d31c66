# Compiled with its .py (mirrorwatch.COMPILED): a DNS flood parses a message per packet. The name
# walker (every question and record starts with a name) is a typed loop over a C struct; the
# other functions stay Python functions, every name importable.
cimport cython

cdef class _Message:
    cdef public bytes data
    cdef public Py_ssize_t steps

    @cython.locals(msg=bytes, name=bytearray, flags=int, after_pointer=Py_ssize_t, limit=Py_ssize_t,
                   count=Py_ssize_t, length=int, offset=Py_ssize_t)
    cpdef tuple name(self, Py_ssize_t pos, Py_ssize_t end)
