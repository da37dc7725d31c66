# The reassembly settings and global accounting as a C struct (see context.py).

cdef class ReassemblyContext:
    cdef public int policy
    cdef public long long depth, depth_limit, max_ooo_bytes, max_ooo_segs, gap_wait_bytes, gap_wait_segs
    cdef public long long memcap, unacked_max, unacked_segs, ooo_bytes, buf_bytes, buf_room
    cdef public object ooo_streams, reclaim, _orphans
    cdef public dict stats
