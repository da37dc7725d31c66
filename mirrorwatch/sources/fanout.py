"""Linux ``PACKET_FANOUT``: several capture sockets on one interface share its traffic by flow.

``listen --workers N`` opens one libpcap handle per worker and joins each
handle's socket (``getfd()``: the AF_PACKET socket libpcap reads its ring
from) to one fanout group, after activation (libpcap creates the socket
there).  The kernel then hands each frame to exactly one member:

- ``PACKET_FANOUT_HASH``: the member is chosen by the frame's symmetric flow
  hash (``__skb_get_hash_symmetric``: addresses and ports sorted, protocol),
  so both directions of a session reach the same worker.  VLAN tags are not
  part of it.
- ``PACKET_FANOUT_FLAG_DEFRAG``: IPv4 fragments are reassembled by the kernel
  before the hash, so a fragmented datagram arrives whole, at the worker of
  its flow.  IPv6 fragments are not reassembled: they are hashed by their
  addresses alone and may reach another worker than the rest of their flow
  (tests/test_workers_fanout.py shows what this kernel does).

The first member creates the group with ``PACKET_FANOUT_FLAG_UNIQUEID`` (the
kernel picks an id no other group on the host uses), the others join that id.
A socket leaves its group when it is closed.
"""

from __future__ import annotations

import os
import socket
import struct

SOL_PACKET = 263  # <linux/socket.h>; Python's socket module does not always define it
PACKET_FANOUT = 18  # <linux/if_packet.h>
PACKET_FANOUT_HASH = 0
PACKET_FANOUT_FLAG_UNIQUEID = 0x2000
PACKET_FANOUT_FLAG_DEFRAG = 0x8000
FANOUT_MODE = PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG
GROUP_ID_MASK = 0xFFFF
NEW_GROUP = -1  # join(): create a group with a kernel-chosen id
_ARG = struct.Struct("=I")  # the option's value: group id | (mode and flags) << 16, an unsigned int


class FanoutError(OSError):
    """The socket cannot join a fanout group (one line)."""


def join(fd: int, group: int = NEW_GROUP) -> int:
    """Join the AF_PACKET socket ``fd`` to fanout ``group`` (or a new one); returns the group id."""
    dup = os.dup(fd)  # a second descriptor of the same socket, closed below
    try:
        sock = socket.socket(fileno=dup)
    except OSError as e:
        os.close(dup)
        raise FanoutError(f"capture descriptor {fd} is not a socket: {e.strerror or e}") from None
    try:
        if sock.family != socket.AF_PACKET:
            raise FanoutError(f"capture descriptor {fd} is not an AF_PACKET socket (family {sock.family})")
        return _join(sock, group)
    finally:
        sock.close()


def _join(sock: socket.socket, group: int) -> int:
    try:
        if group == NEW_GROUP:
            sock.setsockopt(SOL_PACKET, PACKET_FANOUT, _ARG.pack((FANOUT_MODE | PACKET_FANOUT_FLAG_UNIQUEID) << 16))
            return sock.getsockopt(SOL_PACKET, PACKET_FANOUT) & GROUP_ID_MASK
        sock.setsockopt(SOL_PACKET, PACKET_FANOUT, _ARG.pack((group & GROUP_ID_MASK) | FANOUT_MODE << 16))
        return group
    except OSError as e:
        which = "a new PACKET_FANOUT group" if group == NEW_GROUP else f"PACKET_FANOUT group {group}"
        raise FanoutError(f"cannot join {which}: {e.strerror or e} (needs Linux >= 4.3)") from None
