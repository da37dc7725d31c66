# The per-packet tables as a C struct (see tables.py).
cimport cython


cdef class PacketTables:
    cdef public dict c, iponly, static
    cdef public object blk_tcp, blk_added, blk_udp, blk_other, ipo_src, ipo_dst
    cdef public bint added_differs, has_stream, has_tx, inline
    cdef public tuple chunk, stream_scan, stream_gate, stream_rules, stream_nompm
    cdef public long long lookback
    cdef public frozenset dports, sports


@cython.locals(key=tuple)
cpdef object header_table(PacketTables t, int proto, int dport, int sport)
