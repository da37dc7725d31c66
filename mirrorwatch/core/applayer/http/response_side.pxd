# The response direction's states (response_side.py): typed methods of the parser's cdef class
# chain (see stream.pxd); the states are C methods, called by the state-table switch (response_side.py).
cimport cython

from mirrorwatch.core.applayer.http.request_side cimport RequestMachine
from mirrorwatch.core.applayer.http.response cimport (
    apply_status_line, looks_like_status_line, response_framing,
)
from mirrorwatch.core.applayer.http.stream cimport Side, stopped
from mirrorwatch.core.applayer.http.transaction cimport HttpTx

cdef int _TO_SERVER, _IDLE, _PROTOCOL, _STATUS, _HEADERS, _BODY_LENGTH, _BODY_CLOSE, _CONNECT_WAIT
cdef int _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS

cdef class ResponseMachine(RequestMachine):
    cdef public bint tunnel
    cdef public long long _tc_next_id

    cdef void _run(self, Side side)
    @cython.locals(phase=int)
    cdef bint _step(self, Side side) except -1
    cdef void _resume_requests(self, Side side)

    @cython.locals(pending=HttpTx)
    cdef bint _tc_idle(self, Side side) except -1
    cdef bint _tc_status(self, Side side) except -1
    @cython.locals(line=bytes, content=bytes)
    cdef tuple _status_line(self, Side side)
    @cython.locals(tx=HttpTx)
    cdef bint _begin_response(self, Side side, bytes line) except -1
    @cython.locals(tx=HttpTx)
    cdef bint _tc_headers(self, Side side) except -1
    cdef void _interim(self, Side side, HttpTx tx)
    cdef void _drop_expected_body(self, HttpTx tx)
    @cython.locals(tx=HttpTx)
    cdef HttpTx _peek_response_tx(self)
    @cython.locals(tx=HttpTx)
    cdef HttpTx _response_tx(self)
    @cython.locals(tx=HttpTx, side=Side)
    cdef void _enter_tunnel(self)
