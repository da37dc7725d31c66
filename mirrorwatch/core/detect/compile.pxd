# The compiled rule as a C struct (see compile.py: ``CRule``); everything else here stays plain
# Python.  Its attributes are read by the per-packet judging (judge.py, tx.py) without a lookup.

cdef class CRule:
    cdef public object rule, key, num, order, kind, action, protos, ipv
    cdef public object src, dst, sport, dport, bidir
    cdef public object established, not_established, to_server, to_client, flowspec, needs_flow
    cdef public object dsize, dsize_needs_payload, flags, hdr, fb_read, fb_write, noalert
    cdef public object matches, fp, req_stream, req_packet, stream_only
    cdef public object threshold, dfilter, app_proto, tx, app_checks
