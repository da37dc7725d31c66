# Capacity is a mixin of FlowTable, itself a Python class: it stays untyped, so every name stays
# importable from Python.  What every packet or state change needs is typed (C calls): the activity
# order, and the refiling of a flow whose timeout changed.
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

@cython.locals(by_proto=dict, timeouts=tuple)
cpdef double idle_timeout(object ft, Flow f) except? -1
@cython.locals(deadline=double, wheel=TimingWheel)
cpdef void refile(object ft, Flow f)
cpdef void set_tclass(object ft, Flow f, int tclass)
