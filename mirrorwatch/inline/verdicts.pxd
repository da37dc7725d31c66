# The verdict writer as a C record: feed's per-packet loop reads the queue's messages into C numbers and
# calls the engine as C.
cimport cython

from mirrorwatch.core.engine cimport Engine
from mirrorwatch.sources.nfnetlink cimport PacketMessage, message_of, read_datagram

cdef class VerdictWriter:
    cdef public object queue
    cdef public Py_ssize_t batch
    cdef public bint final
    cdef public dict counts
    cdef dict _bits
    cdef long long _run_end
    cdef Py_ssize_t _run
    cdef PacketMessage _msg

    @cython.locals(m=PacketMessage, received=Py_ssize_t)
    cpdef void feed(self, list datagrams, Engine engine, object now, list out, dict notes)
    @cython.locals(info="unsigned int", truncated=bint, verdict=object, events=list)
    cdef void _one(self, PacketMessage m, Engine engine, object now, list out, dict notes, object pending)
    cpdef void give(self, long long packet_id, unsigned int mark, object verdict)
    cpdef void flush(self)
