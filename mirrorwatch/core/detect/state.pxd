# Detect's per-flow records as C structs (see state.py).

cdef class FlowDet:
    cdef public object hdr0, hdr1, bits, ints, held, gaps, thr, alerted_upto, piece_offs, lead, lits, txp, txa, txprog, guessed
    cdef public bint passed, est, est_after
    cdef public list prog


cdef class GapKeeper:
    cdef public FlowDet fd
    cdef public int d
    cdef public object inner
    cdef public bint wants_data
