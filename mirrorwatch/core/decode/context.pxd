# What the layers read and report to, as a C struct; the tables' entries of compiled layers (see context.py).
cimport cython

from mirrorwatch.core.decode.checksum cimport transport_ok
from mirrorwatch.core.decode.packet cimport Packet

cdef int CHECK_OFF, CHECK_ON, CHECK_SAMPLE, AUTO_INVALID_RATIO
cdef Py_ssize_t PACKET_EVENT_MAX
cdef Py_ssize_t ETHERTYPES

cdef class DecodeContext:
    cdef public int check
    cdef public long long sample
    cdef public int max_layers
    cdef public dict linktypes, ethertypes, udp_dports, udp_sports, notes, errs, events
    cdef public list ip_protos, ethertype_entry
    cdef public bytes ethertype_slot
    cdef public object defrag, auto_sample
    cdef public long long pkts, errors, n_invalid, n_ipv4, n_ipv6, n_tcp, n_udp, n_icmpv4, n_icmpv6, n_vlan, n_eth
    cdef public long long csum_checked, csum_bad
    cdef public int auto_disabled

    cpdef void set_ethertypes(self, dict table)
    cpdef object error(self, str reason)
    cpdef Packet fail(self, Packet p, str event, str reason)
    cpdef Packet invalid(self, Packet p, str reason, str event)
    cpdef void event(self, Packet p, str event)
    cdef Packet _flag(self, Packet p, str reason, str event)
    cpdef void note(self, str what)
    cpdef void verify_transport(self, Packet p, bytes f, Py_ssize_t l4, Py_ssize_t end, int proto)
    cpdef void _decide(self)

# a layer function: decode_x(d, p, f, off, end, depth)
ctypedef object (*layer_fn)(DecodeContext d, Packet p, bytes f, Py_ssize_t off, Py_ssize_t end, int depth)

@cython.final
cdef class Layer:
    cdef layer_fn fn

    @staticmethod
    @cython.locals(entry=Layer)
    cdef object of(layer_fn fn)

cpdef object call(object fn, DecodeContext d, Packet p, bytes f, Py_ssize_t off, Py_ssize_t end, int depth)
