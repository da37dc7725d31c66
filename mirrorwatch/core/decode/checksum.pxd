cimport cython

cdef unsigned long long ONES
cdef int PROTO_ICMP
cdef Py_ssize_t IPV4_ADDRS, IPV4_ADDRS_END, IPV6_ADDRS, IPV6_ADDRS_END

# the sum reduced below ONES: callers add and compare C integers
cpdef unsigned long long partial(object buf, Py_ssize_t start, Py_ssize_t end)

# a frame's bytes, summed in C; p reads them without bounds checks, end clamped to len(buf) first
@cython.locals(p="const unsigned char *", s="unsigned long long", i=Py_ssize_t, hi="unsigned int", shift=int)
cdef unsigned long long _sum32(bytes buf, Py_ssize_t start, Py_ssize_t end)

@cython.locals(a=Py_ssize_t, a_end=Py_ssize_t, v="unsigned long long")
cpdef bint transport_ok(object f, int ipv, Py_ssize_t ip_off, Py_ssize_t l4, Py_ssize_t end, int proto)
