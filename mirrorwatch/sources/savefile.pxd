# A classic pcap savefile read in place (see savefile.py): record headers in C, each frame a C call.
cimport cython

from mirrorwatch.core.decode.ownframes cimport FrameSink

cdef Py_ssize_t FILE_HLEN, REC_HLEN, SNAPLEN_AT, LINKTYPE_AT, BLOCK
cdef long long MAX_SNAPLEN, NSEC_PER_USEC, _SIGN, _WRAP

cdef class Savefile:
    cdef public object fh, view
    cdef public bint big, swapped, nsec, eof
    cdef public long long snaplen
    cdef public int linktype
    cdef public bytearray buf
    cdef public Py_ssize_t fill

    @cython.locals(lo="unsigned long long", hi="unsigned long long")
    cdef unsigned long long _u32(self, const unsigned char *f, Py_ssize_t i) noexcept
    @cython.locals(v="long long")
    cdef long long _time(self, const unsigned char *f, Py_ssize_t i) noexcept
    @cython.locals(f="const unsigned char *", pos=Py_ssize_t, snap="long long", sec="long long", usec="long long",
                   caplen="long long", wirelen="long long", need=Py_ssize_t, start=Py_ssize_t)
    cpdef loop(self, FrameSink sink)
    @cython.locals(left=Py_ssize_t, got=object)
    cdef Py_ssize_t _more(self, Py_ssize_t pos, Py_ssize_t need) except -1
