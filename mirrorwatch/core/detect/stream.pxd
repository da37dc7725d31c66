cimport cython

from mirrorwatch.core.decode.packet cimport Packet
from mirrorwatch.core.detect.hsdb cimport LiteralStream, StreamScanner
from mirrorwatch.core.detect.state cimport FlowDet, GapKeeper
from mirrorwatch.core.detect.tables cimport PacketTables
from mirrorwatch.core.flows.flow cimport Flow
from mirrorwatch.core.reassembly.stream cimport Stream

cdef int SYN

@cython.locals(st=Stream)
cpdef bint data_added(Flow flow, int d, Packet pkt)
@cython.locals(st=Stream)
cpdef void release(Flow flow)
@cython.locals(anys=object, dmap=object, smap=object)
cpdef void expand(object ids, object split, int dport, int sport, object add)

@cython.locals(start="long long", base="long long", end="long long", n="long long", lo="long long",
               first="long long", back="long long", w="long long", keep="long long", off="long long",
               inline=bint, dport=int, sport=int, c=dict, held=list, gate=tuple, lits=list, ls=LiteralStream,
               scanner=StreamScanner, pieces=list, offs=list, gaps=list, recent=dict, hit=list)
cpdef object stream_chunk(PacketTables t, FlowDet fd, Stream st, int d, Flow flow, set cands, bint at_end)
