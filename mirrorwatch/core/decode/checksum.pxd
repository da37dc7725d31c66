cimport cython
from libc.string cimport memcpy

cdef unsigned long long ONES
cdef int PROTO_ICMP, WORD_SHIFT
cdef Py_ssize_t IPV4_ADDRS, IPV4_ADDRS_END, IPV6_ADDRS, IPV6_ADDRS_END, WORD

# the sum reduced below ONES: callers add and compare C integers
cpdef unsigned long long partial(object buf, Py_ssize_t start, Py_ssize_t end)


# eight bytes in host order, one unaligned load (memcpy is how C says so)
cdef inline unsigned long long _load64(const unsigned char *p) noexcept nogil:
    cdef unsigned long long v
    memcpy(&v, p, 8)
    return v


# a frame's bytes, summed in C (reduced below ONES); p reads them without bounds checks, end clamped to len(buf) first
@cython.locals(p="const unsigned char *", s="unsigned long long", carries="unsigned long long", w="unsigned long long",
               i=Py_ssize_t, shift=int)
cdef unsigned long long _sum64(bytes buf, Py_ssize_t start, Py_ssize_t end)

@cython.locals(a=Py_ssize_t, a_end=Py_ssize_t, v="unsigned long long")
cpdef bint transport_ok(object f, int ipv, Py_ssize_t ip_off, Py_ssize_t l4, Py_ssize_t end, int proto)
