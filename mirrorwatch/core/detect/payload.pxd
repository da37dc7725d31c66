# The compiled keyword list as a C struct (see payload.py: ``Matcher``): matching it and its first
# step are C calls.
from mirrorwatch.core.detect.payload_search cimport Run, Step


cdef class Matcher:
    cdef public Step entry
    cdef public Py_ssize_t limit

    cpdef bint match(self, object buf, dict ctx) except -1
