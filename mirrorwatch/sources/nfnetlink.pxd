cimport cython

from mirrorwatch.core.decode.wire cimport take, u16, u32

cdef bint HOST_LITTLE
cdef unsigned int NLA_TYPE_MASK, MSG_PACKET, NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE
cdef unsigned int NFQA_PACKET_HDR, NFQA_MARK, NFQA_IFINDEX_INDEV, NFQA_IFINDEX_OUTDEV, NFQA_PAYLOAD
cdef unsigned int NFQA_CAP_LEN, NFQA_SKB_INFO, NFQA_TABLE
cdef Py_ssize_t NLMSG_HDRLEN, NLMSG_TYPE_OFF, NLMSG_SEQ_OFF, NFGENMSG_LEN, NLA_HDRLEN, PKT_HDR_LEN
cdef Py_ssize_t PKT_HW_OFF, PKT_HOOK_OFF, U32_LEN, ERRNO_LEN, HDR_LEN
cdef long long SIGN_BIT

cdef unsigned int h16(bytes f, Py_ssize_t i)
cdef long long h32(bytes f, Py_ssize_t i)

@cython.locals(packet_id="long long", hw="unsigned int", hook="unsigned int", values=list, pos=Py_ssize_t,
               alen=Py_ssize_t, after=Py_ssize_t, at=Py_ssize_t, atype="unsigned int", info="unsigned long long")
cpdef object parse_packet(bytes f, Py_ssize_t start, Py_ssize_t end)

@cython.locals(n=Py_ssize_t)
cpdef object parse_datagram(bytes f)

@cython.locals(end=Py_ssize_t, pos=Py_ssize_t, mlen=Py_ssize_t, mtype="unsigned int", body=Py_ssize_t,
               err="long long", malformed=Py_ssize_t, packets=list, answers=list)
cpdef tuple parse_messages(bytes f)
