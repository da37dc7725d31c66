from mirrorwatch.core.decode.context cimport DecodeContext, call
from mirrorwatch.core.decode.packet cimport Packet, new_packet

cdef class Decoder(DecodeContext):
    cdef public str mode

    cpdef object decode(self, double ts, int linktype, object frame, long long pcap_cnt)
    cpdef void expire(self, double now)
