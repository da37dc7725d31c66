# The flow record's template, typed: it reads the session record (a cdef class) as C fields
# (a flood writes a record per packet). The rest is plain Python compiled, every name importable.
cimport cython
from mirrorwatch.core.flows.flow cimport Flow
from mirrorwatch.sinks.fmt cimport iso_time, log_addr

cpdef int ip_version(object address)

cpdef str _tcp_part(Flow f)

@cython.locals(t=int, answer=int, out=str)
cpdef str _icmp_types(Flow f)

@cython.locals(killed=object, out=str)
cpdef str _flow_tail(Flow f, bint log_eps)

@cython.locals(t0=double, t1=double, proto=int, pkts=list, octets=list, age="long long", src=str,
               dest=str, state=object, endpoints_state=str)
cpdef str flow_record(Flow f, str reason, str tail, bint ipv6_compress=*, bint log_eps=*)
