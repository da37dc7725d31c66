"""nfnetlink_queue messages: building requests, reading the kernel's (pure functions, no socket).

Layouts follow include/uapi/linux/netfilter/nfnetlink_queue.h and
net/netfilter/nfnetlink_queue.c; ``sources.nfqueue`` is the socket around
them.  The netlink and attribute headers are in host byte order, the
attributes' values in network order.

Compiled (nfnetlink.pxd), the reading side runs once per queued packet with
C integers: ``read_datagram`` fills a ``PacketMessage`` (C fields, one record
reused message after message: no Python object per packet but its payload)
from the kernel's usual datagram (one packet message), ``parse_datagram``
gives it as a ``QueuedPacket``, ``parse_messages`` reads any buffer (packets,
the kernel's answers).  Every length is checked before it is used; a
malformed message is counted and skipped, never an exception.  Interpreted,
the same reads go through ``struct`` (one call per header instead of a Python
call per field).
"""

from __future__ import annotations

import socket
import struct
import sys
from typing import NamedTuple

import cython

from mirrorwatch.core.decode.wire import take, u16, u32

# -- netlink / nfnetlink constants -------------------------------------------------
NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFNETLINK_V0 = 0
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLA_TYPE_MASK = 0x3FFF           # without NLA_F_NESTED / NLA_F_NET_BYTEORDER

NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG, NFQNL_MSG_VERDICT_BATCH = 0, 1, 2, 3
MSG_PACKET = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET

NFQA_PACKET_HDR, NFQA_VERDICT_HDR, NFQA_MARK = 1, 2, 3
NFQA_IFINDEX_INDEV, NFQA_IFINDEX_OUTDEV = 5, 6
NFQA_PAYLOAD, NFQA_CAP_LEN, NFQA_SKB_INFO = 10, 13, 14

NFQNL_CFG_CMD_BIND, NFQNL_CFG_CMD_UNBIND = 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN, NFQA_CFG_MASK, NFQA_CFG_FLAGS = 1, 2, 3, 4, 5
NFQNL_COPY_PACKET = 2
NFQA_CFG_F_FAIL_OPEN, NFQA_CFG_F_CONNTRACK, NFQA_CFG_F_GSO = 1 << 0, 1 << 1, 1 << 2
NFQA_SKB_CSUMNOTREADY, NFQA_SKB_GSO = 1 << 0, 1 << 1

NF_DROP, NF_ACCEPT, NF_REPEAT = 0, 1, 4
ID_MODULUS = 1 << 32
SIGN_BIT = 1 << 31

# -- layouts --------------------------------------------------------------------------
NLMSG_HDRLEN = 16                # nlmsghdr: len u32, type u16, flags u16, seq u32, pid u32 (host order)
NLMSG_TYPE_OFF, NLMSG_SEQ_OFF = 4, 8
NFGENMSG_LEN = 4                 # nfgenmsg: family u8, version u8, res_id be16
NLA_HDRLEN = 4                   # nlattr: len u16, type u16 (host order)
PKT_HDR_LEN = 7                  # nfqnl_msg_packet_hdr: packet_id be32, hw_protocol be16, hook u8
PKT_HW_OFF, PKT_HOOK_OFF = 4, 6
U32_LEN = 4
ERRNO_LEN = 4                    # nlmsgerr.error, a negative errno (host order)
HDR_LEN = NLMSG_HDRLEN + NFGENMSG_LEN
HOST_LITTLE = sys.byteorder == "little"

_NLMSGHDR = struct.Struct("=IHHII")
_NFGENMSG = struct.Struct("!BBH")
_NLATTR = struct.Struct("=HH")
_BE32 = struct.Struct("!I")
_PKT_HDR = struct.Struct("!IHB")
_VERDICT_HDR = struct.Struct("!II")
_CFG_CMD = struct.Struct("!BxH")
_CFG_PARAMS = struct.Struct("!IB")
_new_tuple = tuple.__new__


class QueuedPacket(NamedTuple):
    packet_id: int
    hw_protocol: int       # ETH_P_IP / ETH_P_IPV6
    hook: int              # NF_INET_* hook number
    payload: bytes         # L3: starts at the IP header
    mark: int
    indev: int             # ifindex, 0 when none
    outdev: int
    csum_not_ready: bool   # CHECKSUM_PARTIAL: the L4 checksum is not filled in yet
    gso: bool              # a GSO super-packet (larger than the device MTU)
    cap_len: int           # the packet's real length (> len(payload) when truncated)


# -- building requests ----------------------------------------------------------------
def _attr(atype: int, data: bytes) -> bytes:
    length = NLA_HDRLEN + len(data)
    return _NLATTR.pack(length, atype) + data + b"\0" * (-length & 3)


def _message(msg: int, queue_num: int, attrs: bytes, *, flags: int = NLM_F_REQUEST, seq: int = 0) -> bytes:
    mtype = (NFNL_SUBSYS_QUEUE << 8) | msg
    return (_NLMSGHDR.pack(HDR_LEN + len(attrs), mtype, flags, seq, 0)
            + _NFGENMSG.pack(socket.AF_UNSPEC, NFNETLINK_V0, queue_num) + attrs)


def build_bind(queue_num: int, *, maxlen: int, copy_range: int, flags: int, seq: int = 0) -> bytes:
    """Bind ``queue_num``, copy whole packets (up to ``copy_range``), set maxlen and flags; asks an ACK."""
    attrs = (_attr(NFQA_CFG_CMD, _CFG_CMD.pack(NFQNL_CFG_CMD_BIND, socket.AF_UNSPEC))
             + _attr(NFQA_CFG_PARAMS, _CFG_PARAMS.pack(copy_range, NFQNL_COPY_PACKET))
             + _attr(NFQA_CFG_QUEUE_MAXLEN, _BE32.pack(maxlen))
             + _attr(NFQA_CFG_MASK, _BE32.pack(NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO | NFQA_CFG_F_CONNTRACK))
             + _attr(NFQA_CFG_FLAGS, _BE32.pack(flags)))
    return _message(NFQNL_MSG_CONFIG, queue_num, attrs, flags=NLM_F_REQUEST | NLM_F_ACK, seq=seq)


def build_unbind(queue_num: int, *, seq: int = 0) -> bytes:
    attrs = _attr(NFQA_CFG_CMD, _CFG_CMD.pack(NFQNL_CFG_CMD_UNBIND, socket.AF_UNSPEC))
    return _message(NFQNL_MSG_CONFIG, queue_num, attrs, seq=seq)


def verdict_code(accept: bool, repeat: bool = False) -> int:
    """NF_ACCEPT / NF_DROP, or NF_REPEAT: the packet runs through the hook again (the firewall reads its mark)."""
    if repeat and not accept:
        raise ValueError("a repeat verdict lets the packet pass the hook again: accept must be True")
    return NF_REPEAT if repeat else NF_ACCEPT if accept else NF_DROP


def build_verdict(queue_num: int, packet_id: int, verdict: int, *, mark: int | None = None,
                  payload: bytes | None = None, seq: int = 0) -> bytes:
    """Verdict for one packet; ``mark`` sets skb->mark, ``payload`` replaces the packet (from the IP header)."""
    attrs = _attr(NFQA_VERDICT_HDR, _VERDICT_HDR.pack(verdict, packet_id))
    if mark is not None:
        attrs += _attr(NFQA_MARK, _BE32.pack(mark))
    if payload is not None:
        attrs += _attr(NFQA_PAYLOAD, payload)
    return _message(NFQNL_MSG_VERDICT, queue_num, attrs, seq=seq)


def build_verdict_batch(queue_num: int, up_to_id: int, verdict: int, *, mark: int | None = None,
                        seq: int = 0) -> bytes:
    """One verdict for every held packet whose id is not after ``up_to_id`` (wrapping order)."""
    attrs = _attr(NFQA_VERDICT_HDR, _VERDICT_HDR.pack(verdict, up_to_id))
    if mark is not None:
        attrs += _attr(NFQA_MARK, _BE32.pack(mark))
    return _message(NFQNL_MSG_VERDICT_BATCH, queue_num, attrs, seq=seq)


def id_after(a: int, b: int) -> bool:
    """The kernel's nfq_id_after: is id ``a`` after id ``b`` in 32-bit wrapping order?"""
    return 0 < (a - b) % ID_MODULUS < ID_MODULUS // 2


# -- reading the kernel's messages ----------------------------------------------------------
def h16(f: bytes, i: int) -> int:
    """The host-order 16-bit number at ``f[i:i + 2]`` (the caller checked the length)."""
    return f[i] | f[i + 1] << 8 if HOST_LITTLE else f[i] << 8 | f[i + 1]


def h32(f: bytes, i: int) -> int:
    """The host-order 32-bit number at ``f[i:i + 4]`` (the caller checked the length)."""
    return h16(f, i) | h16(f, i + 2) << 16 if HOST_LITTLE else h16(f, i) << 16 | h16(f, i + 2)


class PacketMessage:
    """The fields of one packet message as ``read_packet`` leaves them (compiled: C numbers), for a
    reader that takes them directly; ``skb_info`` holds the NFQA_SKB_* bits, ``cap_len`` the
    packet's real length (``len(payload)`` when the kernel did not say)."""

    __slots__ = ("packet_id", "hw_protocol", "hook", "payload", "mark", "indev", "outdev", "skb_info", "cap_len")

    def __init__(self):
        self.packet_id = -1
        self.hw_protocol = self.hook = self.mark = self.indev = self.outdev = self.skb_info = self.cap_len = 0
        self.payload = b""

    def queued(self) -> QueuedPacket:
        """The fields as a ``QueuedPacket``."""
        info = self.skb_info
        return _new_tuple(QueuedPacket, (self.packet_id, self.hw_protocol, self.hook, self.payload, self.mark,
                                         self.indev, self.outdev, bool(info & NFQA_SKB_CSUMNOTREADY),
                                         bool(info & NFQA_SKB_GSO), self.cap_len))


def message_of(p: QueuedPacket) -> PacketMessage:
    """A ``QueuedPacket``'s fields as a ``PacketMessage`` (what ``queued`` undoes)."""
    m = PacketMessage()
    m.packet_id, m.hw_protocol, m.hook, m.payload = p.packet_id, p.hw_protocol, p.hook, p.payload
    m.mark, m.indev, m.outdev, m.cap_len = p.mark, p.indev, p.outdev, p.cap_len
    m.skb_info = (NFQA_SKB_CSUMNOTREADY if p.csum_not_ready else 0) | (NFQA_SKB_GSO if p.gso else 0)
    return m


def read_packet(m: PacketMessage, f: bytes, start: int, end: int) -> bool:
    """``m`` := the packet message in ``f[start:end]`` (``start``: after its nlmsghdr); False when malformed.

    One pass over the attributes: the packet header and the payload are read
    where they are, the 32-bit ones wanted by type (compiled: a C switch);
    one too short counts as absent (0), others are ignored.
    """
    packet_id = -1
    hw = hook = mark = indev = outdev = info = cap_len = 0
    payload = b""
    pos = start + NFGENMSG_LEN
    while pos + NLA_HDRLEN <= end:
        if cython.compiled:
            alen, atype = h16(f, pos), h16(f, pos + 2)
        else:
            alen, atype = _NLATTR.unpack_from(f, pos)
        after = pos + alen
        if alen < NLA_HDRLEN or after > end:
            return False
        atype &= NLA_TYPE_MASK
        at = pos + NLA_HDRLEN
        pos = (after + 3) & ~3
        if atype == NFQA_PAYLOAD:
            payload = take(f, at, after)
            continue
        if atype == NFQA_PACKET_HDR:
            if alen - NLA_HDRLEN < PKT_HDR_LEN:
                return False
            if cython.compiled:
                packet_id, hw, hook = u32(f, at), u16(f, at + PKT_HW_OFF), f[at + PKT_HOOK_OFF]
            else:
                packet_id, hw, hook = _PKT_HDR.unpack_from(f, at)
            continue
        if alen - NLA_HDRLEN < U32_LEN:
            continue
        value = u32(f, at) if cython.compiled else _BE32.unpack_from(f, at)[0]
        if atype == NFQA_MARK:
            mark = value
        elif atype == NFQA_IFINDEX_INDEV:
            indev = value
        elif atype == NFQA_IFINDEX_OUTDEV:
            outdev = value
        elif atype == NFQA_SKB_INFO:
            info = value
        elif atype == NFQA_CAP_LEN:
            cap_len = value
    if packet_id < 0:
        return False
    m.packet_id, m.hw_protocol, m.hook, m.payload = packet_id, hw, hook, payload
    m.mark, m.indev, m.outdev, m.skb_info = mark, indev, outdev, info
    m.cap_len = cap_len or len(payload)
    return True


def read_datagram(m: PacketMessage, f: bytes) -> bool:
    """``m`` := the packet when ``f`` is exactly one packet message (the kernel's usual datagram); False
    otherwise: then ``parse_messages`` reads it (several messages, answers, damage)."""
    n = len(f)
    if n < HDR_LEN or h32(f, 0) != n or h16(f, NLMSG_TYPE_OFF) != MSG_PACKET:
        return False
    return read_packet(m, f, NLMSG_HDRLEN, n)


def parse_packet(f: bytes, start: int, end: int) -> QueuedPacket | None:
    """The packet message in ``f[start:end]`` (as ``read_packet``) as a ``QueuedPacket``; None when malformed."""
    m = PacketMessage()
    return m.queued() if read_packet(m, f, start, end) else None


def parse_datagram(f: bytes) -> QueuedPacket | None:
    """The packet when ``f`` is exactly one packet message (as ``read_datagram``), else None."""
    m = PacketMessage()
    return m.queued() if read_datagram(m, f) else None


def parse_messages(f: bytes) -> tuple[list[QueuedPacket], list[tuple[int, int]], int]:
    """Every netlink message in ``f``.

    Returns (packets, answers, malformed): ``answers`` are the kernel's
    NLMSG_ERROR replies as (errno, seq), errno 0 being an ACK; ``malformed``
    counts messages that could not be read (the rest of a broken buffer
    counts as one).
    """
    end = len(f)
    packets, answers, malformed = [], [], 0
    pos = 0
    while pos + NLMSG_HDRLEN <= end:
        mlen = h32(f, pos)
        if mlen < NLMSG_HDRLEN or pos + mlen > end:
            return packets, answers, malformed + 1
        mtype = h16(f, pos + NLMSG_TYPE_OFF)
        body = pos + NLMSG_HDRLEN
        if mtype == MSG_PACKET and mlen >= HDR_LEN:
            pkt = parse_packet(f, body, pos + mlen)
            if pkt is None:
                malformed += 1
            else:
                packets.append(pkt)
        elif mtype == NLMSG_ERROR and mlen >= NLMSG_HDRLEN + ERRNO_LEN:
            err = h32(f, body)  # nlmsgerr.error: minus the errno, as a signed 32-bit number
            answers.append((ID_MODULUS - err if err & SIGN_BIT else -err, h32(f, pos + NLMSG_SEQ_OFF)))
        elif mtype != NLMSG_NOOP and mtype != NLMSG_DONE:
            malformed += 1
        pos += (mlen + 3) & ~3
    return packets, answers, malformed
