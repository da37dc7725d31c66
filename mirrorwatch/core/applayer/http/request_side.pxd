# The request direction's states (request_side.py): typed methods of the parser's cdef class
# chain (see stream.pxd); the states are C methods, called by the state-table switch (response_side.py).
cimport cython

from mirrorwatch.core.applayer.http.message cimport MessageMachine
from mirrorwatch.core.applayer.http.request cimport (
    apply_host_header, apply_request_line, looks_like_request_line, request_framing,
)
from mirrorwatch.core.applayer.http.stream cimport Side, stopped
from mirrorwatch.core.applayer.http.transaction cimport HttpTx

cdef class RequestMachine(MessageMachine):
    cdef public Side _ts, _tc
    cdef public long long _next_id
    cdef public object _connect_tx

    @cython.locals(line=bytes, content=bytes, tx=HttpTx)
    cdef bint _ts_idle(self, Side side) except -1
    @cython.locals(tx=HttpTx)
    cdef HttpTx _new_tx(self)
    cdef bint _ts_protocol(self, Side side) except -1
    cdef void _settle_http09(self, Side side)
    @cython.locals(tx=HttpTx)
    cdef bint _ts_headers(self, Side side) except -1
    @cython.locals(excess=Py_ssize_t)
    cdef bint _ts_connect_wait(self, Side side) except -1
