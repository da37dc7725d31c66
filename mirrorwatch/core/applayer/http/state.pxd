# The parser object (state.py): the last of the cdef class chain (see stream.pxd); the
# interface every application-layer parser has stays callable from Python.
cimport cython

from mirrorwatch.core.applayer.http.response_side cimport ResponseMachine
from mirrorwatch.core.applayer.http.stream cimport Side, stopped
from mirrorwatch.core.applayer.http.transaction cimport HttpTx

cdef int _COMPLETE, _BODY_LENGTH

cdef class HttpState(ResponseMachine):
    @cython.locals(side=Side, taken=Py_ssize_t)
    cpdef void feed(self, int direction, object data)
    @cython.locals(side=Side)
    cpdef void gap(self, int direction, long long size)
    @cython.locals(side=Side)
    cpdef void close(self, int direction)
    @cython.locals(tx=HttpTx)
    cpdef list updated(self)
    @cython.locals(tx=HttpTx)
    cpdef list pop_done(self)
    cpdef long long held_bytes(self)
    cdef Side _side(self, int direction)
    cdef void _count_dropped(self, Side side, long long size)
    cdef void _resync(self, Side side)

cdef bint _poppable(HttpTx tx)
