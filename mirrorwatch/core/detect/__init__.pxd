from mirrorwatch.core.decode.packet cimport Packet
from mirrorwatch.core.detect.hsdb cimport BlockScanner
from mirrorwatch.core.detect.state cimport FlowDet

cdef int TCP, UDP, ADDED
