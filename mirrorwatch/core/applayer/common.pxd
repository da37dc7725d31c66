# Compiled with its .py (mirrorwatch.COMPILED). MemAccount is a C struct: the application layer
# checks and charges it on every parser call (see session.py); ParserStats is one too, its
# counters C numbers (every flow's parser makes one); the other names stay Python.
cimport cython

cdef class MemAccount:
    cdef public long long cap, memcap, memuse, peak
    cdef public MemAccount parent

    @cython.locals(acct=MemAccount)
    cpdef bint fits(self, long long size)
    cpdef bint reserve(self, long long size)
    @cython.locals(acct=MemAccount)
    cpdef void add(self, long long size)

cdef class ParserStats:
    cdef public long long gaps, memcap_hits, parse_errors, txs
