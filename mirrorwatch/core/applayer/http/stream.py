"""One direction of an HTTP connection: its byte buffer, line reading, header
blocks and body states. Shared by the request and the response side; see
state.py for the state table."""

from __future__ import annotations

import hashlib
from enum import IntEnum

from mirrorwatch.core.applayer.common import PROGRESS_BODY, PROGRESS_COMPLETE, TO_SERVER
from mirrorwatch.core.applayer.http.body import BodyCollector, content_layers
from mirrorwatch.core.applayer.http.config import HttpConfig, HttpStats
from mirrorwatch.core.applayer.http.files import open_file
from mirrorwatch.core.applayer.http.framing import Framing
from mirrorwatch.core.applayer.http.headers import HeaderResult, add_fields, header_value, unfold
from mirrorwatch.core.applayer.http.transaction import HttpTx

CRLF = b"\r\n"
# libhtp is_chunked_ctl_char: bytes skipped around a chunk size.
CHUNK_CTL = b"\r\n \t\x0b\x0c"
HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
MAX_CHUNK_SIZE = 0x7FFFFFFF     # libhtp rejects chunk sizes above INT32_MAX
COMPACT_AT = 64 * 1024          # consumed bytes kept before the buffer is compacted
CONTENT_ENCODING = b"content-encoding"


class Phase(IntEnum):
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


STOPPED = frozenset((Phase.DISCARD, Phase.TUNNEL, Phase.FAILED))


def chomp(line: bytes) -> bytes:
    """A line without its trailing CR/LF bytes (libhtp htp_chomp)."""
    return line.rstrip(CRLF)


class Side:
    """Parse state of one direction."""

    __slots__ = ("direction", "buf", "pos", "phase", "tx", "closed", "remaining", "wire",
                 "collector", "file_checked", "lines", "raw", "skip_to_lf")

    def __init__(self, direction: int) -> None:
        self.direction = direction
        self.buf = bytearray()
        self.pos = 0
        self.phase = Phase.IDLE
        self.tx: HttpTx | None = None
        self.closed = False
        self.remaining = 0
        self.wire = 0
        self.collector: BodyCollector | None = None
        self.file_checked = False  # the body's first byte asked whether it is a file
        self.lines: list[bytes] = []
        self.raw = bytearray()
        self.skip_to_lf = False

    @property
    def available(self) -> int:
        return len(self.buf) - self.pos

    def take(self, size: int) -> bytes:
        data = bytes(self.buf[self.pos:self.pos + size])
        self.pos += len(data)
        return data

    def drop_buffer(self) -> int:
        """Forget unparsed bytes; returns how many."""
        dropped = self.available
        self.buf.clear()
        self.pos = 0
        return dropped

    def compact(self) -> None:
        if self.pos and (self.pos >= len(self.buf) or self.pos > COMPACT_AT):
            del self.buf[:self.pos]
            self.pos = 0


class StreamMachine:
    """Line, header-block and body handling common to both directions.

    A mixin of HttpState, which supplies the config, stats, the held-bytes
    count and ``_touch`` / ``_message_done``.
    """

    config: HttpConfig
    stats: HttpStats
    _held: int

    # -- lines -------------------------------------------------------------
    def _next_line(self, side: Side) -> bytes | None:
        """The next line with its LF; at close, the unterminated rest.

        A line longer than the field limit is cut to the limit (counted) and
        the rest of it, up to its LF, is dropped."""
        limit = self.config.field_limit
        buf = side.buf
        if side.skip_to_lf:
            lf = buf.find(b"\n", side.pos)
            if lf < 0:
                side.pos = len(buf)
                return None
            side.pos = lf + 1
            side.skip_to_lf = False
        lf = buf.find(b"\n", side.pos, side.pos + limit + 1)
        if lf >= 0:
            return side.take(lf + 1 - side.pos)
        if side.available > limit:
            self.stats.truncated_lines += 1
            line = side.take(limit)
            side.skip_to_lf = True
            return line
        if side.closed and side.available:
            return side.take(side.available)
        return None

    def _room(self) -> int:
        return max(self.config.flow_memcap - self._held, 0)

    def _read_block(self, side: Side) -> bool:
        """Collect header (or trailer) lines up to the empty line; True when
        the block is complete (or the direction closed in the middle of it)."""
        if not side.lines and not side.skip_to_lf and self._whole_block(side):
            return True
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
        end = _block_end(buf, start, start + self.config.field_limit + 1)
        if end < 0 or end - start > self._room():
            return False
        lines = [line.rstrip(CRLF) for line in bytes(buf[start:end]).split(b"\n")]  # chomp()
        lines.pop()  # after the last LF
        if lines.pop() or not all(lines):
            return False  # an earlier line is empty too (CRs only): the line loop decides
        side.raw += buf[start:end]
        self._held += end - start
        side.lines = lines
        side.pos = end
        return True

    def _take_block(self, side: Side, headers: list[tuple[bytes, bytes]]) -> bytes:
        """Parse the collected block into ``headers``; returns its raw bytes."""
        result = HeaderResult()
        add_fields(headers, unfold(side.lines, result), max_headers=self.config.max_headers,
                   max_repetitions=self.config.header_repetitions, result=result)
        self.stats.header_errors += result.invalid + result.dropped
        raw = bytes(side.raw)
        side.lines = []
        side.raw = bytearray()
        return raw

    # -- bodies ------------------------------------------------------------
    def _start_body(self, side: Side, framing: Framing, length: int) -> None:
        tx = side.tx
        request = side.direction == TO_SERVER
        headers = tx.request_headers if request else tx.response_headers
        stages, usable = content_layers(header_value(headers, CONTENT_ENCODING),
                                        self.config.decompress_layer_limit)
        if not usable:
            self.stats.decompress_errors += 1
        limit = self.config.request_body_limit if request else self.config.response_body_limit
        side.collector = BodyCollector(limit, self.config.compression_bomb_limit, stages,
                                       tuple(hashlib.new(name) for name in self.config.file_hashes))
        side.file_checked = False
        side.wire = 0
        side.remaining = length
        if framing == Framing.NONE:
            self._message_done(side)
            return
        side.phase = _BODY_PHASES[framing]
        if request:
            tx.progress_ts = PROGRESS_BODY
        else:
            tx.progress_tc = PROGRESS_BODY
        self._touch(tx)

    def _body_bytes(self, side: Side, size: int) -> None:
        data = side.take(size)
        side.wire += len(data)
        self._keep(side, data)

    def _keep(self, side: Side, data: bytes) -> None:
        collector = side.collector
        added = collector.add(data, self._room())
        self._held += added
        tx = side.tx
        if collector.decoded:
            self._track_file(side, tx, collector.decoded)
        if side.direction == TO_SERVER:
            tx.request_body_len = side.wire
            if added:
                tx.request_body = bytes(side.collector.kept)
        else:
            tx.response_body_len = side.wire
            if added:
                tx.response_body = bytes(side.collector.kept)
        if added:
            self._touch(tx)

    @staticmethod
    def _track_file(side: Side, tx: HttpTx, size: int) -> None:
        """The body's file (opened on its first decoded byte, as Suricata's) has ``size`` bytes."""
        request = side.direction == TO_SERVER
        file = tx.request_file if request else tx.response_file
        if file is None:
            if side.file_checked:
                return
            side.file_checked = True
            file = open_file(tx, request, side.collector.hashers)
            if file is None:
                return
            if request:
                tx.request_file = file
            else:
                tx.response_file = file
        file.size = size

    def _body_length(self, side: Side) -> bool:
        size = min(side.remaining, side.available)
        if size:
            self._body_bytes(side, size)
            side.remaining -= size
        if side.remaining == 0 or (side.closed and not side.available):
            self._message_done(side)
            return True
        return False

    def _body_close(self, side: Side) -> bool:
        if side.available:
            self._body_bytes(side, side.available)
        if side.closed:
            self._message_done(side)
            return True
        return False

    def _chunk_size(self, side: Side) -> bool:
        if not self._chunk_size_plausible(side):
            self.stats.chunk_errors += 1
            self._message_done(side)
            return True
        line = self._next_line(side)
        if line is None:
            if side.closed:
                self._message_done(side)
                return True
            return False
        side.wire += len(line)
        text = line.strip(CHUNK_CTL)
        if not text:
            return True
        size = _chunk_length(text)
        if size is None:
            self.stats.chunk_errors += 1
            self._message_done(side)
        elif size:
            side.remaining = size
            side.phase = Phase.CHUNK_DATA
        else:
            side.phase = Phase.TRAILERS
        return True

    @staticmethod
    def _chunk_size_plausible(side: Side) -> bool:
        """libhtp's probe: the first byte that is not blank must be a hex digit."""
        for pos in range(side.pos, len(side.buf)):
            byte = side.buf[pos]
            if byte not in CHUNK_CTL:
                return byte in HEX_DIGITS
        return True

    def _chunk_data(self, side: Side) -> bool:
        size = min(side.remaining, side.available)
        if size:
            self._body_bytes(side, size)
            side.remaining -= size
        if side.remaining == 0:
            side.phase = Phase.CHUNK_END
            return True
        if side.closed:
            self._message_done(side)
            return True
        return False

    def _chunk_end(self, side: Side) -> bool:
        """Skip whatever ends the chunk's data, up to its LF (as libhtp)."""
        lf = side.buf.find(b"\n", side.pos)
        if lf < 0:
            side.wire += side.available
            side.pos = len(side.buf)
            if side.closed:
                self._message_done(side)
                return True
            return False
        side.wire += lf + 1 - side.pos
        side.pos = lf + 1
        side.phase = Phase.CHUNK_SIZE
        return True

    def _trailers(self, side: Side) -> bool:
        if not self._read_block(side):
            return False
        tx = side.tx
        if side.direction == TO_SERVER:
            tx.request_headers_raw += self._take_block(side, tx.request_headers)
        else:
            tx.response_headers_raw += self._take_block(side, tx.response_headers)
        self._message_done(side)
        return True

    # -- gaps inside bodies --------------------------------------------------
    def _gap_in_body(self, side: Side, size: int) -> bool:
        """Account a gap inside a delimited body; False if it ran past the
        message (the caller then resynchronises)."""
        side.collector.stop()
        side.wire += size
        file = side.tx.request_file if side.direction == TO_SERVER else side.tx.response_file
        if file is not None:
            file.gaps = True
        if side.phase == Phase.BODY_CLOSE:
            return True
        if side.phase in (Phase.BODY_LENGTH, Phase.CHUNK_DATA) and size <= side.remaining:
            side.remaining -= size
            if side.remaining == 0:
                if side.phase == Phase.BODY_LENGTH:
                    self._message_done(side)
                else:
                    side.phase = Phase.CHUNK_END
            return True
        return False

    def _finish_body(self, side: Side) -> None:
        """Count what the body collector saw; called when a message ends."""
        collector = side.collector
        if collector is None:
            return
        self.stats.body_truncated += collector.truncated
        self.stats.memcap_hits += collector.memcapped
        self.stats.decompression_bombs += collector.bombed
        self.stats.decompress_errors += collector.decode_failed
        tx = side.tx
        if side.direction == TO_SERVER:
            tx.request_body_truncated = collector.truncated
            tx.request_body_len = side.wire
            file = tx.request_file
        else:
            tx.response_body_truncated = collector.truncated
            tx.response_body_len = side.wire
            file = tx.response_file
        if file is not None:
            file.close(_body_complete(side))
        side.collector = None


_BODY_PHASES = {
    Framing.LENGTH: Phase.BODY_LENGTH,
    Framing.CHUNKED: Phase.CHUNK_SIZE,
    Framing.CLOSE: Phase.BODY_CLOSE,
}


def _body_complete(side: Side) -> bool:
    """Did the body end as framed (not cut by the end of its direction)?"""
    if side.phase == Phase.BODY_LENGTH:
        return side.remaining == 0
    return side.phase in _COMPLETE_PHASES


_COMPLETE_PHASES = frozenset((Phase.TRAILERS, Phase.BODY_CLOSE))


def _block_end(buf: bytearray, start: int, stop: int) -> int:
    """Where the header block at ``start`` ends, before ``stop``: just past the LF of
    its first line that is empty but for CRs, found as LF LF or LF CR LF; -1 when the
    block's first line is empty or none is found (an empty line of several CRs is
    not: the caller checks the lines)."""
    if buf.startswith(_EMPTY_LINES, start):
        return -1
    end = -1
    for sep in _BLOCK_SEPARATORS:
        at = buf.find(sep, start, stop)
        if at >= 0 and (end < 0 or at + len(sep) < end):
            end = at + len(sep)
    return end


_BLOCK_SEPARATORS = (b"\n\n", b"\n\r\n")
_EMPTY_LINES = (b"\n", b"\r\n")


def _chunk_length(text: bytes) -> int | None:
    """libhtp's chunk-size reading: the leading hex digits (an extension or
    junk after them is ignored); None if there are none or too many."""
    end = 0
    while end < len(text) and text[end] in HEX_DIGITS:
        end += 1
    if end == 0:
        return None
    size = int(text[:end], 16)
    return size if size <= MAX_CHUNK_SIZE else None


def complete_progress(tx: HttpTx, direction: int) -> None:
    if direction == TO_SERVER:
        tx.progress_ts = PROGRESS_COMPLETE
    else:
        tx.progress_tc = PROGRESS_COMPLETE
