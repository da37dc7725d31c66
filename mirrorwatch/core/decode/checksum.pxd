cimport cython

cpdef object partial(object buf, Py_ssize_t start, Py_ssize_t end)

# a frame's bytes, summed in C; p reads them without bounds checks, end clamped to len(buf) first
@cython.locals(p="const unsigned char *", s="unsigned long long", i=Py_ssize_t, hi="unsigned int", shift=int)
cdef unsigned long long _sum32(bytes buf, Py_ssize_t start, Py_ssize_t end)

cpdef bint transport_ok(object f, int ipv, Py_ssize_t ip_off, Py_ssize_t l4, Py_ssize_t end, int proto)
