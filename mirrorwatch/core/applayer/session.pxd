# Compiled with its .py (mirrorwatch.COMPILED): the per-flow record, the stream observer and the
# layer are C structs, and the steps of every segment (observer -> layer -> parser call, the
# memory caps) are C calls. The parsers stay Python-callable objects (one call each).
cimport cython

from mirrorwatch.core.applayer.common cimport MemAccount
from mirrorwatch.core.applayer.detect_proto cimport ProtoDetect
from mirrorwatch.core.applayer.http.state cimport HttpState

cdef class AppFlow:
    cdef public object proto, parser
    cdef public ProtoDetect probe
    cdef public int given_up
    cdef public long long mem
    cdef public MemAccount acct

cdef class AppObserver:
    cdef public AppLayer layer
    cdef public AppFlow app
    cdef public int d
    cdef public object inner
    cdef public bint wants_data, inner_wants_data

cdef class AppLayer:
    # An instance dict: the bench's per-room timer (bench/replay_throughput.py) wraps the entry
    # points on the instance, and a cpdef call honours such an override.
    cdef dict __dict__
    cdef public object settings
    cdef public dict factories, c, by_proto, accounts
    cdef public MemAccount mem

    cpdef void on_new_stream(self, object flow, int d, object stream)
    cpdef void stream_data(self, AppFlow app, int d, object data)
    cpdef void stream_gap(self, AppFlow app, int d, long long length)
    cpdef void stream_end(self, AppFlow app, int d)
    @cython.locals(d=int, probe=ProtoDetect)
    cdef void _detected(self, AppFlow app, str proto)
    cdef void _call(self, AppFlow app, int d, int op, object data, long long n, object parsed)
    @cython.locals(app=AppFlow)
    cpdef void udp(self, object flow, object payload, int d, int sport, int dport)
    @cython.locals(app=AppFlow, http=HttpState)
    cpdef list logged(self, object flow)
    @cython.locals(app=AppFlow)
    cpdef list flow_end(self, object flow)

cdef int _FEED, _PARSE, _GAP, _CLOSE

@cython.locals(http=HttpState)
cdef void _invoke(object parser, int op, int d, object data, long long n, object parsed) except *
@cython.locals(http=HttpState)
cpdef void uninspected(AppFlow app) except *
@cython.locals(now=cython.longlong, http=HttpState)
cdef void _charge(AppFlow app)
cdef void _release(AppFlow app)
