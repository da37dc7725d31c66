from mirrorwatch.core.decode.packet cimport Packet
from mirrorwatch.core.flows.flow cimport Flow, really_killed
from mirrorwatch.core.flows.tcp cimport in_window
from mirrorwatch.core.reassembly.stream cimport Stream

cdef int ACK, FIN, RST, SYN, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, _SYN_ACK_RST, _SYN_FIN_RST
cdef int T_CLOSED, T_ESTABLISHED, T_NEW
cdef long long HALF, M32
