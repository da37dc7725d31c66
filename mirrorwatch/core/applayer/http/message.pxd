# Bodies and message ends (message.py): typed methods of the parser's cdef class chain
# (see stream.pxd); the body states are C methods, called by the state-table switch (response_side.py).
cimport cython

from mirrorwatch.core.applayer.http.body cimport BodyCollector, content_layers
from mirrorwatch.core.applayer.http.headers cimport header_value
from mirrorwatch.core.applayer.http.stream cimport Side, StreamMachine
from mirrorwatch.core.applayer.http.transaction cimport HttpTx

cdef long long MAX_CHUNK_SIZE

cdef class MessageMachine(StreamMachine):
    @cython.locals(tx=HttpTx)
    cdef void _message_done(self, Side side)
    cdef void _fail(self, Side side)
    @cython.locals(tx=HttpTx)
    cdef void _complete_responses(self)
    @cython.locals(request=bint, tx=HttpTx)
    cdef void _start_body(self, Side side, object framing, long long length)
    cdef void _body_bytes(self, Side side, bytes data)
    @cython.locals(size=Py_ssize_t)
    cdef Py_ssize_t _length_body_segment(self, Side side, object data) except -1
    @cython.locals(added=Py_ssize_t, collector=BodyCollector, tx=HttpTx)
    cdef void _keep(self, Side side, bytes data)
    @cython.locals(size=Py_ssize_t)
    cdef bint _body_length(self, Side side) except -1
    cdef bint _body_close(self, Side side) except -1
    @cython.locals(line=bytes, text=bytes)
    cdef bint _chunk_size(self, Side side) except -1
    @cython.locals(size=Py_ssize_t)
    cdef bint _chunk_data(self, Side side) except -1
    @cython.locals(lf=Py_ssize_t)
    cdef bint _chunk_end(self, Side side) except -1
    @cython.locals(tx=HttpTx)
    cdef bint _trailers(self, Side side) except -1
    cdef bint _gap_in_body(self, Side side, long long size) except -1
    @cython.locals(collector=BodyCollector, tx=HttpTx)
    cdef void _finish_body(self, Side side)

cdef bint _body_complete(Side side) except -1
@cython.locals(end=Py_ssize_t)
cdef object _chunk_length(bytes text)
cdef void complete_progress(HttpTx tx, int direction)
@cython.locals(request=bint)
cdef void _track_file(Side side, HttpTx tx, object size)
@cython.locals(pos=Py_ssize_t)
cdef bint _chunk_size_plausible(Side side) except -1
