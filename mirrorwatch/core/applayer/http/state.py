"""HttpState: one TCP connection's HTTP/1.x parser (sans-I/O).

Theory of operation
-------------------
Each direction (request bytes to the server, response bytes to the client)
is a small state machine over its own byte buffer; the table below is the
whole of it (``ResponseMachine._step`` acts on it: a C switch on the phase).
Line-oriented states act only on complete lines (LF-terminated; a CR before
it is dropped; at close the unterminated rest counts as a line), so any
segmentation of the same bytes gives the same transactions. Body
states consume bytes as they come. Every state tolerates what real traffic
sends rather than giving up: lines that cannot start a message are skipped
and counted, malformed framing falls back to "no body" and the next start
line, and a gap inside a body is stepped over. Only a gap in the middle of a
header block (the message's framing is unknown) or the max-tx limit gives up
a direction; a CONNECT answered 2xx or a 101 without body stops parsing the
connection, which is still tracked and counted.

Request i pairs with response i. A response with no request (requests lost
to a gap, or parsed nowhere) gets a transaction of its own.

Request side (to server)
  state          on                               next
  IDLE           blank / non-request line         IDLE (skipped, counted)
                 request line with protocol       HEADERS (new tx, progress LINE)
                 request line without protocol    PROTOCOL
  PROTOCOL       a non-blank byte follows         HEADERS (protocol missing)
                 a response byte, or close        DISCARD (HTTP/0.9, tx complete)
  HEADERS        empty line                       by framing: CONNECT -> CONNECT_WAIT,
                                                  chunked -> CHUNK_SIZE, length -> BODY_LENGTH,
                                                  else IDLE (tx request complete)
  BODY_LENGTH    Content-Length bytes consumed    IDLE
  CHUNK_SIZE     size > 0 / size 0 / bad size     CHUNK_DATA / TRAILERS / IDLE (counted)
  CHUNK_DATA     chunk consumed                   CHUNK_END
  CHUNK_END      LF                               CHUNK_SIZE
  TRAILERS       empty line                       IDLE
  CONNECT_WAIT   answer is not 2xx                IDLE (waiting bytes parsed)
                 answer is 2xx                    TUNNEL
  DISCARD, TUNNEL, FAILED: bytes are counted and dropped.

Response side (to client)
  IDLE           pending request is HTTP/0.9      BODY_CLOSE (no status line, no headers)
                 blank / non-status line          IDLE (skipped, counted)
                 status line                      HEADERS (paired tx, progress LINE)
  STATUS         status line (after a 1xx)        HEADERS (same tx)
  HEADERS        empty line                       1xx but 101 -> STATUS; CONNECT 2xx or
                                                  101 -> TUNNEL; HEAD, 1xx, 204, 304 -> IDLE;
                                                  chunked -> CHUNK_SIZE; length -> BODY_LENGTH;
                                                  neither -> BODY_CLOSE
  BODY_CLOSE     close                            IDLE
  BODY_LENGTH, CHUNK_*, TRAILERS as on the request side.

Gaps: in IDLE the partial line is dropped and parsing resumes at the next
start line; inside a delimited body the missing bytes are counted against it
(if the gap runs past the body, the message ends and parsing resumes at the
next start line); in a header block the direction gives up (FAILED).
"""

from __future__ import annotations

from mirrorwatch.core.applayer.common import PROGRESS_COMPLETE, TO_CLIENT, TO_SERVER
from mirrorwatch.core.applayer.http.config import DEFAULT_CONFIG, HttpConfig, HttpStats
from mirrorwatch.core.applayer.http.response_side import ResponseMachine
from mirrorwatch.core.applayer.http.stream import Phase, Side, stopped
from mirrorwatch.core.applayer.http.transaction import HttpTx

_COMPLETE = PROGRESS_COMPLETE  # compiled: a C constant (read for every transaction after every packet)
_BODY_LENGTH = Phase.BODY_LENGTH  # compiled: a C constant (read for every segment)
_BODY_GAP_PHASES = frozenset((Phase.BODY_LENGTH, Phase.CHUNK_DATA, Phase.BODY_CLOSE))
_RESYNC_GAP_PHASES = frozenset((Phase.IDLE, Phase.CHUNK_SIZE, Phase.CHUNK_END, Phase.TRAILERS,
                                Phase.CONNECT_WAIT))


class HttpState(ResponseMachine):
    """Per-flow HTTP/1.x parser: feed/gap/close in, transactions out."""

    __slots__ = ()

    def __init__(self, config: HttpConfig = DEFAULT_CONFIG) -> None:
        self.config = config
        self.stats = HttpStats()
        self.txs: list[HttpTx] = []
        self.failed = False
        self._held = 0
        self._dirty: list[HttpTx] = []
        self._field_limit = config.field_limit
        self._memcap = config.flow_memcap
        self.tunnel = False
        self._ts = Side(TO_SERVER)
        self._tc = Side(TO_CLIENT)
        self._next_id = 0
        self._tc_next_id = 0
        self._connect_tx: HttpTx | None = None

    # -- the interface every application-layer parser has -------------------
    def feed(self, direction: int, data: bytes | memoryview) -> None:
        """In-order bytes of one direction."""
        side = self._side(direction)
        if side is None or not data:
            return
        if side.closed or stopped(side.phase):
            self._count_dropped(side, len(data))
            return
        if side.phase == _BODY_LENGTH and side.pos == len(side.buf):
            taken = self._length_body_segment(side, data)  # body bytes: not through the buffer
            if taken == len(data):
                return
            data = data[taken:]
        side.buf += data
        self._run(side)

    def gap(self, direction: int, size: int) -> None:
        """``size`` bytes of ``direction`` are missing."""
        side = self._side(direction)
        if side is None or size <= 0:
            return
        self.stats.gaps += 1
        if side.closed or stopped(side.phase):
            self._count_dropped(side, size)
            return
        if side.phase in _BODY_GAP_PHASES and self._gap_in_body(side, size):
            self._run(side)
            return
        if side.phase in _BODY_GAP_PHASES or side.phase in _RESYNC_GAP_PHASES:
            self._resync(side)
            return
        self._fail(side)

    def close(self, direction: int) -> None:
        """The direction ended: close-delimited bodies complete here."""
        side = self._side(direction)
        if side is None or side.closed:
            return
        side.closed = True
        if not stopped(side.phase):
            self._run(side)
        if direction == TO_CLIENT:
            self._complete_responses()

    def updated(self) -> list[HttpTx]:
        """Transactions whose progress or buffers changed since the last call."""
        changed, self._dirty = self._dirty, []
        for tx in changed:
            tx.dirty = False
            tx.reported = True
        if len(changed) > 1:
            changed.sort(key=_tx_id)
        return changed

    def pop_done(self) -> list[HttpTx]:
        """Remove and return the transactions complete both ways and handed out (asked after
        every packet: nothing is made until one is)."""
        for tx in self.txs:
            if _poppable(tx):
                break
        else:
            return []
        done = [tx for tx in self.txs if _poppable(tx)]
        self.txs = [tx for tx in self.txs if not _poppable(tx)]
        for tx in done:
            self._held -= tx.held()
        self._held = max(self._held, 0)
        return done

    @property
    def memuse(self) -> int:
        """Bytes held: kept header blocks and bodies (``_held``) and unparsed input."""
        return self.held_bytes()

    def held_bytes(self) -> int:
        """``memuse`` as a C call (the app layer charges it after every call into the parser)."""
        return self._held + len(self._ts.buf) + len(self._tc.buf)

    # -- machinery ------------------------------------------------------------
    def _side(self, direction: int) -> Side | None:
        if direction == TO_SERVER:
            return self._ts
        if direction == TO_CLIENT:
            return self._tc
        return None

    def _count_dropped(self, side: Side, size: int) -> None:
        if side.phase == Phase.TUNNEL:
            self.stats.tunnel_bytes += size
        else:
            self.stats.ignored_bytes += size

    def _resync(self, side: Side) -> None:
        """Lost sync between messages: end the current one, skip to the next
        start line."""
        self.stats.gap_resyncs += 1
        if side.tx is not None:
            if side.collector is not None:
                side.collector.stop()
            self._message_done(side)
        side.lines = None
        side.raw = bytearray()
        side.skip_to_lf = False
        if side.phase != Phase.CONNECT_WAIT:
            side.phase = Phase.IDLE
        self.stats.ignored_bytes += side.drop_buffer()


def _tx_id(tx: HttpTx) -> int:
    return tx.tx_id


def _poppable(tx: HttpTx) -> bool:
    """Complete both ways, handed out and unchanged since: its record is due."""
    return tx.progress_ts == _COMPLETE and tx.progress_tc == _COMPLETE and tx.reported and not tx.dirty

