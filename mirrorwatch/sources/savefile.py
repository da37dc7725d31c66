"""Classic pcap savefiles read in place: replay's reader, frame by frame into a ``FrameSink`` as C calls.

libpcap (pcapy's ``loop``) hands each frame to Python as a header object and
a bytes copy through a Python call; a worker of ``replay --workers`` reads
every frame of the capture that way, though it analyses only its share.  This
reader takes a savefile in 1 MiB blocks, reads each record header where it
is, and calls the sink's ``frame_in`` with the frame where it lies in the
block (compiled: a C call with a pointer; the sink copies the frame out only
when it keeps it), so a frame another worker analyses costs its header and
its flow hash.

It reads exactly what libpcap reads and says what libpcap says (a test
compares the two on every capture of the corpus and on damaged copies):

- the file header: magic ``a1b2c3d4`` (microseconds) or ``a1b23c4d``
  (nanoseconds, scaled down to microseconds as libpcap's default precision
  does), written in either byte order; version 2.4;
- the snapshot length as ``pcap_adjust_snapshot`` makes it (0 or above
  ``MAX_SNAPLEN``: ``MAX_SNAPLEN``); a record longer than that is cut to it
  and the rest skipped; one longer than ``MAX_SNAPLEN`` is damage;
- the times as libpcap 1.10 reads them (32-bit seconds and fraction, signed
  in the host's byte order and unsigned when swapped), so ``sec + usec *
  1e-6`` is the very double replay computed from pcapy's header;
- damage (a record header or its data cut short, an impossible length): every
  frame before it is delivered, then ``SavefileError`` with libpcap's words.

Anything else (pcapng, versions 2.0-2.3 with their swapped lengths, link
types libpcap maps or byte-swaps pseudo-headers for, a pipe) is not taken
(``open_savefile`` returns None) and goes to libpcap as before.
"""

from __future__ import annotations

import os
import stat
import sys


from mirrorwatch.core.decode.ownframes import FrameSink

FILE_HLEN = 24  # magic, version (2 x 16 bits), thiszone, sigfigs, snaplen, linktype
REC_HLEN = 16  # seconds, fraction, captured length, wire length
MAGIC_USEC = b"\xa1\xb2\xc3\xd4"  # as written big-endian; either order is read
MAGIC_NSEC = b"\xa1\xb2\x3c\x4d"
VERSION_MAJOR = 2
VERSION_MINOR = 4
SNAPLEN_AT = 16
LINKTYPE_AT = 20
LINKTYPE_MASK = 0x03FFFFFF  # LT_LINKTYPE: the FCS bits above are not the link type
MAX_SNAPLEN = 262144  # libpcap's max_snaplen_for_dlt for every link type below
NSEC_PER_USEC = 1000
BLOCK = 1 << 20  # the reading buffer: more than the longest record (REC_HLEN + MAX_SNAPLEN)
# link types read in place: the file's LINKTYPE_ value -> libpcap's DLT_ value on Linux
LINKTYPE_DLT = {0: 0, 1: 1, 101: 12, 113: 113, 276: 276}
_SIGN = 1 << 31
_WRAP = 1 << 32


class SavefileError(Exception):
    """Damage in a savefile, in libpcap's words (replay's one-line warning: what, after which packet)."""


class Savefile:
    """One classic pcap file, open: ``linktype`` (libpcap's DLT), ``loop(sink)`` reads it to its end."""

    def __init__(self, fh, big: bool, nsec: bool, snaplen: int, linktype: int):
        self.fh = fh
        self.big = big
        self.swapped = big != (sys.byteorder == "big")
        self.nsec = nsec
        self.snaplen = snaplen
        self.linktype = linktype
        self.buf = bytearray(BLOCK)  # read into again and again: no fresh memory per block
        self.view = memoryview(self.buf)
        self.fill = 0  # bytes of ``buf`` read from the file and not yet consumed past ``pos``
        self.eof = False

    def close(self) -> None:
        self.view.release()
        self.fh.close()

    def _u32(self, f: bytearray, i: int) -> int:
        """The 32-bit field at ``f[i:i + 4]`` in the file's byte order (``f``: the block, read in place)."""
        if self.big:
            hi = f[i] << 8 | f[i + 1]
            lo = f[i + 2] << 8 | f[i + 3]
        else:
            lo = f[i] | f[i + 1] << 8
            hi = f[i + 2] | f[i + 3] << 8
        return hi << 16 | lo

    def _time(self, f: bytearray, i: int) -> int:
        """A time field as libpcap 1.10 gives it: signed in the host's byte order, unsigned when swapped."""
        v = self._u32(f, i)
        return v - _WRAP if v >= _SIGN and not self.swapped else v

    def loop(self, sink: FrameSink) -> None:
        """Every record to ``sink.frame_in(ts, wirelen, block, start, stop)`` (the frame where it is in the
        block, which the sink copies out when it needs it); SavefileError at damage (what came before
        it delivered); what ``sink`` raises stops the loop and goes on up."""
        pos = 0
        snap = self.snaplen
        while True:
            if self.fill - pos < REC_HLEN:
                pos = self._more(pos, REC_HLEN)
                if self.fill - pos < REC_HLEN:
                    if self.fill > pos:
                        raise SavefileError(f"truncated dump file; tried to read {REC_HLEN} header bytes, "
                                            f"only got {self.fill - pos}")
                    return
            f = self.buf
            sec = self._time(f, pos)
            usec = self._time(f, pos + 4)
            caplen = self._u32(f, pos + 8)
            wirelen = self._u32(f, pos + 12)
            if self.nsec:
                usec = usec // NSEC_PER_USEC if usec >= 0 else -(-usec // NSEC_PER_USEC)  # C's: towards 0
            if caplen > MAX_SNAPLEN:
                raise SavefileError(f"invalid packet capture length {caplen}, bigger than snaplen of {snap}")
            need = REC_HLEN + caplen
            if self.fill - pos < need:
                pos = self._more(pos, need)
                if self.fill - pos < need:
                    raise SavefileError(self._short(caplen, self.fill - pos - REC_HLEN))
            start = pos + REC_HLEN
            pos += need
            sink.frame_in(sec + usec * 1e-6, wirelen, f, start, start + (caplen if caplen <= snap else snap))

    def _short(self, caplen: int, got: int) -> str:
        """libpcap's words for a record whose data the file cuts short."""
        if caplen > self.snaplen and got < self.snaplen:
            return f"truncated dump file; tried to read {self.snaplen} captured bytes, only got {got}"
        return f"truncated dump file; tried to read {caplen} captured bytes, only got {got}"

    def _more(self, pos: int, need: int) -> int:
        """What is left from ``pos`` moves to the block's start and the file fills the rest (``need``
        bytes at least, when the file has them); returns the new position (0)."""
        left = self.fill - pos
        if pos:
            self.buf[:left] = self.view[pos:self.fill]
        self.fill = left
        try:
            while not self.eof and self.fill < need:
                got = self.fh.readinto(self.view[self.fill:])
                if not got:
                    self.eof = True
                self.fill += got or 0
        except OSError as e:
            raise SavefileError(f"error reading dump file: {e.strerror or e}") from None
        return 0


def open_savefile(path, supported) -> Savefile | None:
    """``path`` as a ``Savefile`` when it is a regular classic pcap file (version 2.4) of a link type in
    ``supported`` read in place; None for anything else (libpcap reads it then).  Never raises for the
    file's content; an unreadable file is None too (libpcap says why)."""
    try:
        fh = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by Savefile.close
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise ValueError("not a regular file")
        head = fh.read(FILE_HLEN)
        sf = _header(fh, head, frozenset(supported))
    except (OSError, ValueError):
        sf = None
    if sf is None:
        fh.close()
    return sf


def _header(fh, head: bytes, supported: frozenset) -> Savefile | None:
    if len(head) < FILE_HLEN:
        return None
    magic = head[:4]
    big = magic in (MAGIC_USEC, MAGIC_NSEC)
    if not big and magic[::-1] not in (MAGIC_USEC, MAGIC_NSEC):
        return None
    nsec = (magic if big else magic[::-1]) == MAGIC_NSEC
    order = "big" if big else "little"
    major, minor = int.from_bytes(head[4:6], order), int.from_bytes(head[6:8], order)
    if (major, minor) != (VERSION_MAJOR, VERSION_MINOR):
        return None
    dlt = LINKTYPE_DLT.get(int.from_bytes(head[LINKTYPE_AT:LINKTYPE_AT + 4], order) & LINKTYPE_MASK)
    if dlt is None or dlt not in supported:
        return None
    snaplen = int.from_bytes(head[SNAPLEN_AT:SNAPLEN_AT + 4], order, signed=True)
    if snaplen <= 0 or snaplen > MAX_SNAPLEN:  # pcap_adjust_snapshot
        snaplen = MAX_SNAPLEN
    return Savefile(fh, big, nsec, snaplen, dlt)
