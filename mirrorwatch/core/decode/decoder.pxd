from mirrorwatch.core.decode.context cimport DecodeContext
from mirrorwatch.core.decode.packet cimport Packet

cdef class Decoder(DecodeContext):
    cdef public str mode

    cpdef object decode(self, double ts, int linktype, object frame, long long pcap_cnt)
