# The compiled rule and its address/port matchers as C structs (see compile.py: ``CRule``); everything
# else here stays plain Python.  The per-packet judging (judge.py, tx.py) reads a rule's fields and
# tests its addresses and ports with C calls, no lookup.

cdef class AddrMatcher:
    cdef public list starts4, ends4, starts6, ends6
    cdef public dict cache

    cpdef bint test(self, object packed) except -1


cdef class PortMatcher:
    cdef public frozenset values
    cdef public tuple inc, exc

    cpdef bint test(self, int port) except -1


cdef class CRule:
    cdef public object rule, key, order, kind, action, protos
    cdef public Py_ssize_t num
    cdef public int ipv
    cdef public AddrMatcher src, dst
    cdef public PortMatcher sport, dport
    cdef public bint bidir, established, not_established, to_server, to_client, needs_flow
    cdef public object flowspec
    cdef public object dsize, flags, hdr, fb_read, fb_write, xb_read, xb_write, fi_read, fi_write
    cdef public bint dsize_needs_payload, noalert
    cdef public object matches, fp
    cdef public bint req_stream, req_packet, stream_only
    cdef public object threshold, dfilter, app_proto, tx, app_checks
