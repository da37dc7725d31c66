"""One direction of an HTTP connection: its byte buffer, line reading and
header blocks. Shared by the request and the response side; see state.py for
the state table (run by response_side.py), and message.py for bodies."""

from __future__ import annotations

import cython

from mirrorwatch.core.applayer.http.headers import (
    FOLDING_BYTES, HeaderResult, add_block, add_fields, find_byte, unfold,
)
from mirrorwatch.core.applayer.http.transaction import HttpTx

CRLF = b"\r\n"
_CR, _LF, _NUL, _TAB, _SPACE = 0x0D, 0x0A, 0x00, 0x09, 0x20  # the bytes the compiled block scans look at
COMPACT_AT = 64 * 1024          # consumed bytes kept before the buffer is compacted


class Phase:
    """The states of a direction (the table in state.py): plain int constants rather than an
    IntEnum, being read on every segment (an enum member is looked up through
    ``EnumType.__getattr__``, several times the cost of a class attribute)."""

    IDLE = 0            # between messages: skip blank lines and garbage
    PROTOCOL = 1        # request line without protocol: HTTP/0.9 or headers?
    STATUS = 2          # response: the final status line after a 1xx
    HEADERS = 3
    BODY_LENGTH = 4
    CHUNK_SIZE = 5
    CHUNK_DATA = 6
    CHUNK_END = 7
    TRAILERS = 8
    BODY_CLOSE = 9
    CONNECT_WAIT = 10   # request: bytes after CONNECT wait for its answer
    DISCARD = 11        # request: bytes after an HTTP/0.9 request
    TUNNEL = 12         # no longer HTTP (CONNECT 2xx, 101)
    FAILED = 13         # given up (gap in headers, max-tx)


_STOPPED_FROM = Phase.DISCARD  # DISCARD, TUNNEL, FAILED: the last phases (compiled: a C constant)


def stopped(phase: int) -> bool:
    """Whether a direction in ``phase`` is no longer parsed (its bytes are counted and dropped)."""
    return phase >= _STOPPED_FROM


def chomp(line: bytes) -> bytes:
    """A line without its trailing CR/LF bytes (libhtp htp_chomp)."""
    return line.rstrip(CRLF)


class Side:
    """Parse state of one direction (its state is ``phase``, in the table of state.py)."""

    __slots__ = ("direction", "buf", "pos", "phase", "tx", "closed", "remaining",
                 "wire", "collector", "file_checked", "lines", "raw", "block", "skip_to_lf")

    def __init__(self, direction: int) -> None:
        self.direction = direction
        self.buf = bytearray()
        self.pos = 0
        self.phase = Phase.IDLE
        self.tx: HttpTx | None = None
        self.closed = False
        self.remaining = 0
        self.wire = 0
        self.collector = None       # the body's BodyCollector, while in a body
        self.file_checked = False   # the body's first byte asked whether it is a file
        self.lines: list[bytes] | None = None  # a header block's lines, while one is read
        self.raw = bytearray()
        self.block: bytes | None = None  # a header block taken whole (no line of it folded)
        self.skip_to_lf = False

    def available(self) -> int:
        return len(self.buf) - self.pos

    def take(self, size: int) -> bytes:
        start = self.pos
        stop = max(min(start + size, len(self.buf)), start)
        p = self.buf
        data = p[start:stop] if cython.compiled else bytes(p[start:stop])  # compiled: one C copy
        self.pos = stop
        return data

    def drop_buffer(self) -> int:
        """Forget unparsed bytes; returns how many."""
        dropped = self.available()
        self.buf.clear()
        self.pos = 0
        return dropped

    def compact(self) -> None:
        if self.pos and (self.pos >= len(self.buf) or self.pos > COMPACT_AT):
            del self.buf[:self.pos]
            self.pos = 0


class StreamMachine:
    """What both directions share: the connection's limits, counters and held
    bytes; line and header-block reading; marking transactions changed.

    The base of the chain MessageMachine (bodies, message ends) ->
    RequestMachine -> ResponseMachine -> HttpState, whose constructor sets
    every level's attributes (one C call, no chain of ``__init__``).
    """

    __slots__ = ("config", "stats", "txs", "failed", "_held", "_dirty", "_field_limit",
                 "_memcap")

    def _touch(self, tx: HttpTx) -> None:
        if not tx.dirty:
            tx.dirty = True
            self._dirty.append(tx)

    # -- lines -------------------------------------------------------------
    def _next_line(self, side: Side) -> bytes | None:
        """The next line with its LF; at close, the unterminated rest.

        A line longer than the field limit is cut to the limit (counted) and
        the rest of it, up to its LF, is dropped."""
        limit = self._field_limit
        buf = side.buf
        if side.skip_to_lf:
            lf = _find_lf(buf, side.pos, len(buf))
            if lf < 0:
                side.pos = len(buf)
                return None
            side.pos = lf + 1
            side.skip_to_lf = False
        lf = _find_lf(buf, side.pos, side.pos + limit + 1)
        if lf >= 0:
            return side.take(lf + 1 - side.pos)
        if side.available() > limit:
            self.stats.truncated_lines += 1
            line = side.take(limit)
            side.skip_to_lf = True
            return line
        if side.closed and side.available():
            return side.take(side.available())
        return None

    def _room(self) -> int:
        return max(self._memcap - self._held, 0)

    def _read_block(self, side: Side) -> bool:
        """Collect header (or trailer) lines up to the empty line; True when
        the block is complete (or the direction closed in the middle of it)."""
        if not side.lines and not side.skip_to_lf and self._whole_block(side):
            return True
        if side.lines is None:
            side.lines = []
        while True:
            line = self._next_line(side)
            if line is None:
                return side.closed
            content = chomp(line)
            if not content:
                side.raw += line
                self._held += len(line)
                return True
            if len(line) > self._room():
                self.stats.memcap_hits += 1
                continue
            side.raw += line
            self._held += len(line)
            side.lines.append(content)

    def _whole_block(self, side: Side) -> bool:
        """The common case of ``_read_block`` in one pass: a whole block buffered
        (ended by an empty line), shorter than the field limit and within the
        memcap, so no line of it is cut or refused. Takes the very lines the
        line loop would; False (nothing taken) otherwise."""
        buf = side.buf
        start = side.pos
        end = _block_end(buf, start, start + self._field_limit + 1)
        if end < 0 or end - start > self._room():
            return False
        block = side.take(end - start)
        shape = _block_shape(block)
        if shape == _REFUSED:
            side.pos = start
            return False  # an earlier line is empty too (CRs only): the line loop decides
        self._held += end - start
        if shape == _PLAIN:
            side.block = block
        else:
            side.raw += block
            side.lines = _block_lines(block)
        return True

    def _take_block(self, side: Side, headers: list[tuple[bytes, bytes]]) -> bytes:
        """Parse the collected block into ``headers``; returns its raw bytes."""
        result = HeaderResult()
        config = self.config
        raw = side.block
        if raw is not None:
            add_block(headers, raw, config.max_headers, config.header_repetitions, result)
            side.block = None
        else:
            add_fields(headers, unfold(side.lines or [], result), config.max_headers,
                       config.header_repetitions, result)
            raw = bytes(side.raw)
            side.raw.clear()
        self.stats.header_errors += result.invalid + result.dropped
        side.lines = None
        return raw


def _find_lf(buf: bytearray, start: int, stop: int) -> int:
    """``buf.find(b"\\n", start, stop)``; the compiled build looks at the bytes in C."""
    return find_byte(buf, _LF, start, stop)


def _block_end(buf: bytearray, start: int, stop: int) -> int:
    """Where the header block at ``start`` ends, before ``stop``: just past the LF of
    its first line that is empty but for CRs, found as LF LF or LF CR LF; -1 when the
    block's first line is empty or none is found (an empty line of several CRs is
    not: the caller checks the lines)."""
    if not cython.compiled:
        if buf.startswith(_EMPTY_LINES, start):
            return -1
        end = -1
        for sep in _BLOCK_SEPARATORS:
            at = buf.find(sep, start, stop)
            if at >= 0:
                end = at + len(sep)
                stop = end - 1  # a later separator ends first only if it lies before this one's end
        return end
    return _scan_block_end(buf, start, stop)


def _scan_block_end(buf: bytearray, start: int, stop: int) -> int:
    """``_block_end`` in one pass over the bytes (the compiled build's): the first LF followed
    by LF or CR LF, the separator within ``stop``, ends the earliest."""
    size = len(buf)
    p = buf
    if start < size and (p[start] == _LF or (p[start] == _CR and start + 1 < size and p[start + 1] == _LF)):
        return -1  # the first line is empty
    if stop > size:
        stop = size
    i = find_byte(buf, _LF, start, stop - 1)
    while i >= 0:
        if p[i + 1] == _LF:
            return i + 2
        if p[i + 1] == _CR and i + 2 < stop and p[i + 2] == _LF:
            return i + 3
        i = find_byte(buf, _LF, i + 1, stop - 1)
    return -1


def _block_lines(block: bytes) -> list[bytes] | None:
    """The lines of a whole header block (as ``_block_end`` found it) chomped, without the empty
    one that ends it; None when an earlier line is empty too (CRs only)."""
    if not cython.compiled:
        lines = [line.rstrip(CRLF) for line in block.split(b"\n")]  # chomp()
        lines.pop()  # after the last LF
        return None if lines.pop() or not all(lines) else lines
    p = block
    size = len(block)
    lines = []
    start = 0
    while start < size:
        lf = start
        while lf < size and p[lf] != _LF:
            lf += 1
        end = lf
        while end > start and p[end - 1] == _CR:  # chomp(): no LF before the line's own
            end -= 1
        if end == start:  # an empty line: the block's last one, or the line loop decides
            return lines if lf + 1 == size else None
        lines.append(p[start:end])  # a C slice: new bytes, no slice object
        start = lf + 1
    return None


def _block_shape(block: bytes) -> int:
    """How a whole header block (as ``_block_end`` found it) is taken: ``_PLAIN`` (its fields
    are read straight from it), ``_FOLDED`` (a line continues the previous one: its lines are
    unfolded first) or ``_REFUSED`` (an earlier line is empty too, CRs only: see
    ``_block_lines``)."""
    if not cython.compiled:
        lines = _block_lines(block)
        if lines is None:
            return _REFUSED
        for line in lines:
            if line[0] in FOLDING_BYTES:
                return _FOLDED
        return _PLAIN
    p = block
    size = len(block)
    shape = _PLAIN
    start = 0
    while start < size:
        lf = find_byte(block, _LF, start, size)
        if lf < 0:
            return _REFUSED
        end = lf
        while end > start and p[end - 1] == _CR:
            end -= 1
        if end == start:
            return shape if lf + 1 == size else _REFUSED
        if p[start] == _SPACE or p[start] == _TAB or p[start] == _NUL:
            shape = _FOLDED
        start = lf + 1
    return _REFUSED


_PLAIN, _FOLDED, _REFUSED = 0, 1, 2
_BLOCK_SEPARATORS = (b"\n\r\n", b"\n\n")
_EMPTY_LINES = (b"\n", b"\r\n")
