# The response direction's states (response_side.py): typed methods of the parser's cdef class
# chain (see stream.pxd); the states are cpdef, being entries of the state table in state.py.
cimport cython

from mirrorwatch.core.applayer.http.request_side cimport RequestMachine
from mirrorwatch.core.applayer.http.response cimport (
    apply_status_line, looks_like_status_line, response_framing,
)
from mirrorwatch.core.applayer.http.stream cimport Side
from mirrorwatch.core.applayer.http.transaction cimport HttpTx

cdef class ResponseMachine(RequestMachine):
    cdef public bint tunnel
    cdef public long long _tc_next_id

    @cython.locals(pending=HttpTx)
    cpdef bint _tc_idle(self, Side side)
    cpdef bint _tc_status(self, Side side)
    @cython.locals(line=bytes, content=bytes)
    cdef tuple _status_line(self, Side side)
    @cython.locals(tx=HttpTx)
    cdef bint _begin_response(self, Side side, bytes line) except -1
    @cython.locals(tx=HttpTx)
    cpdef bint _tc_headers(self, Side side)
    cdef void _interim(self, Side side, HttpTx tx)
    cdef void _drop_expected_body(self, HttpTx tx)
    @cython.locals(tx=HttpTx)
    cdef HttpTx _peek_response_tx(self)
    @cython.locals(tx=HttpTx)
    cdef HttpTx _response_tx(self)
    @cython.locals(tx=HttpTx, side=Side)
    cdef void _enter_tunnel(self)
