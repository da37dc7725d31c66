cimport cython

from mirrorwatch.core.decode.wire cimport take, u16, u32

cdef bint HOST_LITTLE
cdef unsigned int NLA_TYPE_MASK, MSG_PACKET, NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE
cdef unsigned int NFQA_PACKET_HDR, NFQA_MARK, NFQA_IFINDEX_INDEV, NFQA_IFINDEX_OUTDEV, NFQA_PAYLOAD
cdef unsigned int NFQA_CAP_LEN, NFQA_SKB_INFO
cdef Py_ssize_t NLMSG_HDRLEN, NLMSG_TYPE_OFF, NLMSG_SEQ_OFF, NFGENMSG_LEN, NLA_HDRLEN, PKT_HDR_LEN
cdef Py_ssize_t PKT_HW_OFF, PKT_HOOK_OFF, U32_LEN, ERRNO_LEN, HDR_LEN
cdef long long SIGN_BIT

cdef class PacketMessage:
    cdef public long long packet_id
    cdef public unsigned int hw_protocol, hook, mark, indev, outdev, skb_info
    cdef public Py_ssize_t cap_len
    cdef public bytes payload

@cython.locals(m=PacketMessage)
cpdef PacketMessage message_of(object p)

cdef unsigned int h16(bytes f, Py_ssize_t i)
cdef long long h32(bytes f, Py_ssize_t i)

@cython.locals(packet_id="long long", hw="unsigned int", hook="unsigned int", mark="unsigned int",
               indev="unsigned int", outdev="unsigned int", info="unsigned int", cap_len=Py_ssize_t, value="unsigned int",
               payload=bytes, pos=Py_ssize_t, alen=Py_ssize_t, after=Py_ssize_t, at=Py_ssize_t, atype="unsigned int")
cpdef bint read_packet(PacketMessage m, bytes f, Py_ssize_t start, Py_ssize_t end)

@cython.locals(n=Py_ssize_t)
cpdef bint read_datagram(PacketMessage m, bytes f)

@cython.locals(m=PacketMessage)
cpdef object parse_packet(bytes f, Py_ssize_t start, Py_ssize_t end)

@cython.locals(m=PacketMessage)
cpdef object parse_datagram(bytes f)

@cython.locals(end=Py_ssize_t, pos=Py_ssize_t, mlen=Py_ssize_t, mtype="unsigned int", body=Py_ssize_t,
               err="long long", malformed=Py_ssize_t, packets=list, answers=list)
cpdef tuple parse_messages(bytes f)
