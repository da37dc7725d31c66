# Capacity is the base of the FlowTable cdef class: its fields are C struct fields (a packet's
# accesses cost no dict lookup); the methods stay Python methods (rare paths: eviction, emergency mode).
# What every packet or state change needs is typed (C calls): the activity order, and the refiling of
# a flow whose timeout changed.
cimport cython

from mirrorwatch.core.flows.flow cimport Flow
from mirrorwatch.core.flows.wheel cimport TimingWheel

cdef class ActivityOrder:
    cdef public Flow oldest, newest
    @cython.locals(last=Flow)
    cpdef void append(self, Flow f)
    @cython.locals(older=Flow, newer=Flow)
    cpdef void remove(self, Flow f)
    cpdef void touch(self, Flow f)

cdef class Capacity:
    cdef public long long max_sessions, memcap, memuse, _recover_sessions, _recover_memuse, evict_scan
    cdef public bint emergency
    cdef public tuple _normal, _emergency, _default_timeouts
    cdef public dict _timeouts
    cdef public object holds_state, _unanswered
    cdef public list _notices

@cython.locals(by_proto=dict, timeouts=tuple)
cpdef double idle_timeout(Capacity ft, Flow f) except? -1
@cython.locals(deadline=double, wheel=TimingWheel)
cpdef void refile(object ft, Flow f)
cpdef void set_tclass(object ft, Flow f, int tclass)
