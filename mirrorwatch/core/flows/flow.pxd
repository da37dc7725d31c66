# The session record as a C struct (see flow.py): C numbers for the scalars; the per-direction
# pairs stay Python lists (the other rooms read them as such).

cdef class Flow:
    cdef object __weakref__
    cdef public long long flow_id
    cdef public object key, client, server, vlan_id, state, tcp_state, streams
    cdef public int proto, ipv, cport, sport, tcp_flags_ts, tcp_flags_tc, tclass, rst_talk, icmp_type, icmp_code
    cdef public double start, last_ts
    cdef public list pkts, bytes, l2, ttl
    cdef public bint alerted, kill_dry_run, no_inspection, lo_client, ended, reasm, split, rst_exact, midstream
    cdef public bint bypassed
    cdef public object action, eps
    cdef public object _killed, end_reason, det, app, kill
    cdef public object next_seq, last_ack, win, wscale, seg_len, isn, fin_seq, sseq
    cdef public object bucket, synack_pending, rst_prev, rst_by, table
    cdef public Flow lru_older, lru_newer  # the table's ActivityOrder, in caps.py

cpdef bint really_killed(object f)  # also given the live table's merged views of sessions
