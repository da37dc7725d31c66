# Message bodies (body.py): the collector of one body is a C struct with typed steps (it takes
# every body segment); the decoding layers stay Python objects (zlib's).
cimport cython

cdef class BodyCollector:
    cdef public long long limit, bomb_limit, decoded
    cdef public bytearray raw
    cdef public list kept
    cdef public Py_ssize_t kept_len
    cdef public bint truncated, memcapped, bombed, decode_failed, stopped
    cdef public tuple hashers
    cdef public tuple _stages

    cpdef Py_ssize_t add(self, object data, long long room) except -1
    cdef object _decode(self, object data)
    @cython.locals(raw=bytes)
    cdef Py_ssize_t _fail(self, long long room) except -1
    cdef long long _space(self, long long room)
    @cython.locals(space=Py_ssize_t)
    cdef Py_ssize_t _keep(self, object data, long long room) except -1
    cpdef void stop(self)

@cython.locals(stages=list)
cpdef tuple content_layers(object content_encoding, Py_ssize_t layer_limit)
