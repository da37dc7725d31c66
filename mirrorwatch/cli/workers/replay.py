"""``replay --workers N``: one reader, N engines, one merged output.

The coordinator reads the capture once, in a dispatcher thread
(``Dispatcher``): for each frame it asks ``FlowPartitioner`` (and, for
fragments, ``FragmentRouter``) which worker keeps its session, and appends the
frame, with its packet number in the whole capture, to that worker's next
batch.  Reading and choosing cost ~1 us per frame, once, where the engine
costs 10-30 us; a worker never touches the frames of the others.

Time: a single engine sweeps its sessions for timeouts on the first frame at
or after its next sweep time, whoever's the frame is.  The coordinator's own
engine (which analyses nothing) keeps that schedule (``Engine.advance``); at
each sweep it puts a clock entry in the other workers' batches, so every
engine ends its sessions on the same frames as one engine would, and at the
end every worker's clock is set to the capture's last time.

Each batch says how far the capture was read (its watermark); the
coordinator writes what the workers' sinks wrote in capture order
(``merge.OrderedMerge``), then one merged stats record and one summary.
Ctrl-C or SIGTERM: reading stops, every worker analyses what it was sent,
flushes its sessions and ends; the exit status is 130.  A worker that dies is
reported in one line; the others are stopped and flushed the same way, and
the exit status is 1.
"""

from __future__ import annotations

import fcntl
import signal
import threading
import time
from functools import partial

from mirrorwatch.cli.common import warn
from mirrorwatch.cli.workers import coordinator
from mirrorwatch.cli.workers.fragments import HOLD, FragmentRouter
from mirrorwatch.cli.workers.outbox import END, detach
from mirrorwatch.cli.workers.partition import FRAGMENT, FlowPartitioner
from mirrorwatch.cli.workers.view import VIEW_INTERVAL, MergedTable, Views
from mirrorwatch.sinks.table import LiveTable

BATCH_FRAMES = 1024  # frames of the capture per dispatch round (a power of two: tested with a mask)
WATERMARK_INTERVAL = 0.1  # seconds a worker with nothing to write may keep its progress to itself
_BATCH_MASK = BATCH_FRAMES - 1
PIPE_BYTES = 1 << 20  # each worker's input pipe: frames in flight, so a busy worker does not stall the others
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux), absent from older Pythons' fcntl
# a batch: per entry 4 values, (clock, time, wire length, packet number: 0 when it is the clock), and the frames
# in a list; an entry with wire length CLOCK has no frame: the time moved there (a sweep)
CLOCK = -1
EXIT_INTERRUPTED = 130


def run_cli(pipe, paths, workers: int, *, realtime: bool = False, speed: float = 1.0,
            live_table: bool = False) -> int:
    """Replay ``paths`` with ``workers`` worker processes (``--table``: the merged live table); exit status."""
    table = MergedTable(source=", ".join(map(str, paths))) if live_table else None
    display = _Display(table) if table is not None else None
    dispatcher = Dispatcher(pipe, list(paths), workers, realtime=realtime, speed=speed)
    body = partial(_worker, pipe=pipe, views=table is not None)
    coord = coordinator.Coordinator(pipe, workers, ordered=True, table=table,
                                    periodic=display.refresh if display is not None else None,
                                    on_start=dispatcher.start, on_stop=dispatcher.stop)
    try:
        code = coord.run(body)
    finally:
        dispatcher.join()
        if display is not None:
            display.stop()
    if dispatcher.error:
        warn(dispatcher.error)
        code = max(code, 1)
    for line in dispatcher.warnings:
        warn(line)
    if code == EXIT_INTERRUPTED:
        warn("interrupted: the sessions seen so far were flushed to the outputs")
    return code


# -- the coordinator's reader ---------------------------------------------------------------------
class Dispatcher:
    """Reads the capture in a thread and hands each worker its frames, in batches, in capture order."""

    def __init__(self, pipe, paths: list, count: int, *, realtime: bool, speed: float):
        self.pipe = pipe
        self.paths = paths
        self.count = count
        self.realtime = realtime
        self.speed = speed
        self.part = FlowPartitioner.from_settings(pipe.settings, count)
        self.router = FragmentRouter(timeout=float(pipe.settings["defrag.timeout"]))
        self.index = 0
        self.last_ts = 0.0  # the latest time in the capture: where one engine ends its sessions
        self.warnings: list[str] = []
        self.error: str | None = None
        # the workers other than w (HOLD: all of them), who get a clock entry where w's frame sweeps
        self._others = {w: tuple(k for k in range(count) if k != w) for w in (*range(count), HOLD)}
        self._meta = [[] for _ in range(count)]
        self._data = [[] for _ in range(count)]
        self._workers: list = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._linktype = 0
        self._pace: tuple | None = None  # realtime: (wall clock, capture time) of the first frame
        self._sync = _nothing  # the reading loop's counters into index and last_ts

    def start(self, workers) -> None:
        self._workers = list(workers)
        for w in self._workers:
            _widen(w.ctl)
        self._thread = threading.Thread(target=self._run, name="replay-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reading (the workers still get their end)."""
        self._stop.set()

    def join(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()

    def _run(self) -> None:
        from mirrorwatch.sources.pcapfile import CaptureError, run_headers

        try:
            st = run_headers(self.paths, self._callback, self._delivered)
            self.warnings = st.warnings
        except CaptureError as e:  # a file changed between the check and the read
            self.error = str(e)
        except _Stopped:
            pass
        finally:
            self._sync()
            for owner, (cnt, ts, wirelen, frame) in self.router.drain():
                self._queue(owner, self.index + 1, cnt, ts, wirelen, frame)  # after every frame read
            self._flush(self.index + 1)
            for w in self._workers:
                w.tell(("end", self.last_ts, self.router.counters))

    def _callback(self, linktype: int):
        if self.index:
            self._flush()  # a batch holds frames of one link type
        self._linktype = linktype
        owner, meta, data = self.part.owner, self._meta, self._data
        # the coordinator's own engine analyses nothing: it keeps the sweep schedule of one engine
        engine, others, stop, pace = self.pipe.engine, self._others, self._stop.is_set, self.realtime
        i, last, due = self.index, self.last_ts, engine.sweep_due

        def cb(hdr, frame):
            # the hot loop of the coordinator: every frame of the capture, once
            nonlocal i, last, due
            i += 1
            s, us = hdr.getts()
            ts = s + us * 1e-6
            if ts > last:  # noqa: PLR1730 - not max(): a call less per frame
                last = ts
            if pace:
                self._wait(i, ts)
            w = owner(linktype, frame)
            if w == FRAGMENT:
                w = self._fragment(i, ts, hdr.getlen(), frame)
            else:
                meta[w] += (i, ts, hdr.getlen(), 0)
                data[w].append(frame)
            if ts >= due:  # a sweep is due (the schedule of one engine): every other engine sweeps here too
                engine.advance(ts)
                due = engine.sweep_due
                for k in others[w]:
                    meta[k] += (i, ts, CLOCK, 0)
            if not i & _BATCH_MASK or pace:
                sync()
                if stop():
                    raise _Stopped
                if not i & _BATCH_MASK:
                    self._flush()

        def sync():
            self.index, self.last_ts = i, last

        self._sync = sync
        return cb

    def _delivered(self) -> tuple[int, int]:
        """For ``run_headers``: frames read so far (the damaged file's message), bytes (not counted here)."""
        self._sync()
        return self.index, 0

    def _queue(self, w: int, clock: int, cnt: int, ts: float, wirelen: int, frame: bytes) -> None:
        self._meta[w] += (clock, ts, wirelen, cnt)
        self._data[w].append(frame)

    def _fragment(self, i: int, ts: float, wirelen: int, frame: bytes) -> int:
        """A fragment: queued for its owner, or held; what it releases is queued first. Returns the owner."""
        owner, released = self.router.route(self.part.last_fragment, ts, len(frame), (i, ts, wirelen, frame))
        for w, held in released:
            self._queue(w, i, *held)  # analysed now: clocked here, numbered as it was read
        if owner != HOLD:
            self._queue(owner, i, i, ts, wirelen, frame)
        return owner

    def _flush(self, upto: int | None = None) -> None:
        """Each worker's batch, with how far the capture is read (every frame up to ``upto`` is in it)."""
        upto = self.index if upto is None else upto
        for w in self._workers:
            k = w.index
            w.tell(("frames", upto, self._linktype, self._meta[k], self._data[k]))
            self._meta[k] = []
            self._data[k] = []

    def _wait(self, i: int, ts: float) -> None:
        """``--realtime``: frame ``i`` waits until it is due (at ``speed`` times the pace); what was read
        before it is with the workers meanwhile."""
        if self._pace is None:
            self._pace = (time.monotonic(), ts)
        delay = self._pace[0] + (ts - self._pace[1]) / self.speed - time.monotonic()
        if delay > 0:
            self._flush(i - 1)  # this frame is not queued yet
            if self._stop.wait(delay):
                raise _Stopped


def _nothing() -> None:
    pass


class _Stopped(Exception):
    """Raised through libpcap's loop to stop reading."""


def _widen(conn) -> None:
    """A larger pipe to a worker, so the dispatcher does not wait on a worker busy with a costly frame."""
    try:
        fcntl.fcntl(conn.fileno(), _F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:
        pass  # the system's limit (fs.pipe-max-size) is lower: the default size works, less smoothly


# -- the worker ----------------------------------------------------------------------------------------
def _worker(k: int, outbox, inbox, *, pipe, views: bool) -> int:
    """One worker's replay: the frames the dispatcher sends it, through its engine; returns its exit status."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # the coordinator stops the reading; the worker finishes what it has
    detach(pipe.sinks, outbox)
    stats: list = []
    pipe.detach_outputs(stats.append)
    share = _Share(pipe, outbox, _views(pipe, outbox) if views else None)
    cpu0 = time.process_time()
    last_ts, fragments = share.run(inbox)
    outbox.clock = END
    share.advance(last_ts)  # the capture's last time, which one engine would have ended its sessions at
    pipe.finish()
    counters = stats[-1].counters if stats else {}
    counters.setdefault("capture", {})["packets"] = share.own
    outbox.send("done", coordinator.result(pipe, counters, share.own, time.process_time() - cpu0, 0, fragments))
    pipe.close()
    return 0


def _views(pipe, outbox) -> Views:
    """The worker's own table (a sink of its pipeline), whose views the coordinator shows; packet time."""
    table = LiveTable(pipe.engine)
    pipe.add_sink(table)
    eng = pipe.engine
    return Views(table, outbox, eng.counters, clock=lambda: eng.last_ts or time.time())


class _Share:
    """One worker's frames through its engine."""

    def __init__(self, pipe, outbox, views):
        self.pipe = pipe
        self.engine = pipe.engine
        self.outbox = outbox
        self.views = views
        self.own = 0  # frames this worker analysed
        self._next_watermark = 0.0

    def run(self, inbox) -> tuple[float, dict]:
        """Batches until the end; returns (the capture's last time, the dispatcher's fragment counters)."""
        while True:
            msg = inbox.recv()
            kind = msg[0]
            if kind == "frames":
                _, upto, linktype, meta, frames = msg
                self.feed(linktype, meta, frames)
                self.progress(upto)
                if self.views is not None:
                    self.views.maybe_send()
            elif kind == "sort" and self.views is not None:
                self.views.table.sort = msg[1]
            elif kind == "end":
                return msg[1], msg[2]

    def progress(self, upto: int) -> None:
        """Every frame up to ``upto`` is done: what it wrote goes out with that watermark (a watermark alone
        only every WATERMARK_INTERVAL seconds: the coordinator needs it only to order others' records)."""
        now = time.monotonic()
        if self.outbox.items or now >= self._next_watermark:
            self._next_watermark = now + WATERMARK_INTERVAL
            self.outbox.flush(upto)

    def feed(self, linktype: int, meta: list, frames: list) -> None:
        """One batch: entries (clock, time, wire length or CLOCK, packet number or 0: the clock) and their frames."""
        eng, outbox, dispatch = self.engine, self.outbox, self.pipe.dispatch
        process, advance = eng.process, eng.advance
        it, data = iter(meta), iter(frames)
        for clock, ts, wirelen, cnt in zip(it, it, it, it):
            if wirelen == CLOCK:
                events = advance(ts)
            else:
                eng.pcap_cnt = (cnt or clock) - 1  # the engine numbers it as a single engine would
                events = process(ts, linktype, next(data), wirelen)
                self.own += 1
            if events:
                outbox.clock = clock
                dispatch(events)

    def advance(self, ts: float) -> None:
        events = self.engine.advance(ts)
        if events:
            self.pipe.dispatch(events)


class _Display:
    """``--table``: the merged table in a rich Live display, redrawn by the coordinator's loop."""

    def __init__(self, table: MergedTable):
        from rich.console import Console
        from rich.live import Live

        self.table = table
        self.console = Console()
        self.live = Live(console=self.console, auto_refresh=False, transient=False)
        self.live.start()
        self._next = 0.0

    def refresh(self, mono: float) -> None:
        if mono >= self._next:
            self._next = mono + VIEW_INTERVAL
            w, h = self.console.size
            # the table's clock is packet time in replay, so rates and ages follow the capture
            self.live.update(self.table.render(self.table.clock or time.time(), width=w, height=h), refresh=True)

    def stop(self) -> None:
        self.live.stop()
