from mirrorwatch.core.decode.packet cimport Packet
from mirrorwatch.core.detect.hsdb cimport BlockScanner
from mirrorwatch.core.detect.judge cimport judge_all
from mirrorwatch.core.detect.state cimport FlowDet
from mirrorwatch.core.detect.stream cimport data_added, expand, release, stream_chunk
from mirrorwatch.core.detect.tables cimport PacketTables, header_table
from mirrorwatch.core.flows.flow cimport Flow
from mirrorwatch.core.reassembly.stream cimport Stream

cdef int TCP, UDP, ADDED
