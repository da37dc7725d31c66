"""``replay --workers N``: N engines, each reading the capture itself, one merged output.

Every worker opens the capture files itself and reads every frame; the
compiled ``OwnFrames`` computes each frame's owner with ``FlowPartitioner``
(a symmetric flow hash read in place) and puts the worker's own frames
through its engine itself, calling back into Python only for what comes out
(``_Share.emit``), so no process touches every frame on the others' behalf
and a frame of another worker costs its record header and the hash (a
classic pcap file is read in place: the hash reads the frame through a
pointer into the reader's block; the frame is not copied).  Fragments go
through the worker's own ``FragmentRouter``: every worker routes every
fragment alike, so each one knows where each fragment goes and analyses the
ones that are its own, held ones included.

Time: a single engine sweeps its sessions for timeout on the first frame at
or after its next sweep time, whoever's the frame is.  A worker reads every
frame, so its engine sweeps on the same frames (``Engine.advance`` for a frame
it does not analyse), and at the end every worker's clock is set to the
capture's last time: every engine ends its sessions as one engine would.

Order: a frame keeps its number in the whole capture; what a worker writes is
clocked with it; every ``WATERMARK_INTERVAL`` (looked at every ``BATCH_FRAMES``
frames), or once ``SEND_ITEMS`` items wait, the worker sends them with how far
it has read (its watermark); the coordinator writes in capture order
(``merge.OrderedMerge``), then one merged stats record and one summary.  No
worker reads more than ``MAX_LEAD_FRAMES`` ahead of the slowest
(``Progress``), which bounds what the coordinator holds back.
``--realtime`` paces each worker's own frames by the capture's clock.

Timer: as one engine's (``cli.pipeline.replay``), the replay's own timer runs
from the first frame read (the first worker to open the capture, after the
fork and the workers' start-up: each waits until all are ready, so they
begin together: ``Progress.begin``) to the last record
written (the merged stats, once every worker sent its ``done``; their exits
come after).

Ctrl-C or SIGTERM: the coordinator sends every worker SIGTERM, and each stops
reading at its next batch (or pacing wait), flushes its sessions and ends; the
exit status is 130.  A worker that dies is reported in one line; the others
are stopped and flushed the same way, and the exit status is 1.
"""

from __future__ import annotations

import signal
import time
from functools import partial
from multiprocessing.sharedctypes import RawArray

from mirrorwatch.cli.common import warn
from mirrorwatch.cli.workers import coordinator
from mirrorwatch.cli.workers.fragments import FragmentRouter
from mirrorwatch.cli.workers.outbox import END, detach
from mirrorwatch.cli.workers.view import VIEW_INTERVAL, MergedTable, Views
from mirrorwatch.core.decode.checksum import CHECK_SAMPLE
from mirrorwatch.core.decode.decoder import Decoder
from mirrorwatch.core.decode.flowshare import FlowPartitioner
from mirrorwatch.core.decode.ownframes import OwnFrames
from mirrorwatch.sinks.table import LiveTable

BATCH_FRAMES = 1024  # frames read between two looks at the outside (watermark, stop, views; a power of two)
WATERMARK_INTERVAL = 0.1  # seconds a worker may keep what it wrote and its progress to itself
SEND_ITEMS = 2048  # items (EVE lines...) that make a worker send before WATERMARK_INTERVAL is up
MAX_LEAD_FRAMES = 1 << 18  # frames a worker may read ahead of the slowest (what the coordinator holds back)
LEAD_WAIT = 0.002  # seconds a worker that is that far ahead waits before it looks again
START_WAIT = 0.0005  # seconds a worker ready to read waits before it looks again whether the others are
PACE_SLICE = 0.1  # --realtime: longest sleep between two looks at the stop flag
EXIT_INTERRUPTED = 130
EXIT_READ_FAILED = 1


def run_cli(pipe, paths, workers: int, *, realtime: bool = False, speed: float = 1.0,
            live_table: bool = False) -> int:
    """Replay ``paths`` with ``workers`` worker processes (``--table``: the merged live table); exit status."""
    table = MergedTable(source=", ".join(map(str, paths))) if live_table else None
    display = _Display(table) if table is not None else None
    progress = Progress(workers)
    body = partial(_worker, pipe=pipe, paths=[str(p) for p in paths], count=workers, progress=progress,
                   pace=speed if realtime else None, views=table is not None)
    coord = coordinator.Coordinator(pipe, workers, ordered=True, table=table,
                                    periodic=display.refresh if display is not None else None)
    try:
        code = coord.run(body)
    finally:
        if display is not None:
            display.stop()
    first = progress.first_read()
    if first is not None:
        pipe.started = first
    if code == EXIT_INTERRUPTED:
        warn("interrupted: the sessions seen so far were flushed to the outputs")
    return code


class Progress:
    """How far each worker has read, in memory the forked workers share: none runs too far ahead; when each
    is ready to read (they start together); and when each began reading (the replay's timer starts at the
    first)."""

    def __init__(self, count: int):
        self.read = RawArray("q", count)  # frames read by each worker (END: done, or gone)
        self.ready = RawArray("b", count)  # 1 once each worker is set up to read
        self.began = RawArray("d", count)  # time.perf_counter() when each worker opened the capture (0: not yet)

    def begin(self, me: int, stop: _StopMark) -> None:
        """Worker ``me`` is set up: it waits for the others (or a stop), then begins.  The workers are forked
        one after the other, so without the wait the first would read alone while the coordinator forks the
        next, and the run would last as long as the last worker's start-up plus its share."""
        self.ready[me] = 1
        while not all(self.ready) and not stop.asked:
            time.sleep(START_WAIT)
        self.began[me] = time.perf_counter()

    def first_read(self) -> float | None:
        """When the first worker began reading (a system-wide clock: the same in every process), or None."""
        return min((t for t in self.began if t), default=None)

    def ahead(self, me: int, n: int) -> bool:
        """Worker ``me`` has read ``n`` frames: more than MAX_LEAD_FRAMES ahead of the slowest? (then it waits)"""
        self.read[me] = n
        return n - min(self.read) > MAX_LEAD_FRAMES

    def gone(self, k: int) -> None:
        """Worker ``k`` reads no more (it finished, or died): nobody waits for it."""
        self.read[k] = END


class _Stopped(Exception):
    """Raised through the reader's loop (in place or libpcap's) to stop reading."""


class _StopMark:
    """SIGTERM's handler: the worker stops reading at its next batch or pacing wait (never inside the engine)."""

    def __init__(self):
        self.asked = False

    def __call__(self, signum, frame) -> None:
        self.asked = True


# -- the worker ----------------------------------------------------------------------------------------
def _worker(k: int, outbox, ctl, *, pipe, paths: list, count: int, progress: Progress, pace: float | None,
            views: bool) -> int:
    """One worker's replay: its share of the capture through its engine; returns its exit status."""
    stop = _StopMark()
    signal.signal(signal.SIGTERM, stop)
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # the coordinator decides, and says so with SIGTERM
    share = _Share(k, count, pipe, outbox, ctl, progress, stop, _views(pipe, outbox) if views else None)
    detach(pipe.sinks, outbox)
    stats: list = []
    pipe.detach_outputs(stats.append)
    cpu0 = time.process_time()
    code = share.read(paths, pace)
    progress.gone(k)
    outbox.clock = END
    share.advance(share.frames.last_ts)  # the capture's last time, which one engine would have ended its sessions at
    pipe.finish()
    counters = stats[-1].counters if stats else {}
    own = share.frames.own
    counters.setdefault("capture", {})["packets"] = own
    outbox.send("done", coordinator.result(pipe, counters, own, time.process_time() - cpu0, code,
                                           share.router.counters))
    pipe.close()
    return 0


def _views(pipe, outbox) -> Views:
    """The worker's own table (a sink of its pipeline), whose views the coordinator shows; packet time."""
    table = LiveTable(pipe.engine)
    pipe.add_sink(table)
    eng = pipe.engine
    return Views(table, outbox, eng.counters, clock=lambda: eng.last_ts or time.time())


class _Share:
    """One worker's frames of the capture through its engine: the callbacks of its ``OwnFrames``."""

    def __init__(self, k: int, count: int, pipe, outbox, ctl, progress: Progress, stop: _StopMark, views):
        self.me = k
        self.pipe = pipe
        self.engine = pipe.engine
        self.outbox = outbox
        self.ctl = ctl
        self.progress = progress
        self.views = views
        self.router = FragmentRouter(timeout=float(pipe.settings["defrag.timeout"]))
        self.stop = stop
        self.frames = OwnFrames(FlowPartitioner.from_settings(pipe.settings, count), k, pipe.engine,
                                emit=self.emit, fragment=self.fragment, every=self.every, batch=BATCH_FRAMES)
        self._next_watermark = 0.0
        self._sampler = None
        if self.engine.decoder.check == CHECK_SAMPLE:
            self._sampler = Decoder(pipe.settings, checksum_mode="auto")
            self.frames.sample = self._sample

    def _sample(self, n: int, ts: float, frame: bytes) -> None:
        """``-k auto``: one engine decides on the first checksummed packets of the whole capture, so the worker
        samples every frame (with a decoder of its own) until the decision, then its engine takes it there."""
        sampler = self._sampler
        sampler.decode(ts, self.frames.linktype, frame, n)
        if sampler.check != CHECK_SAMPLE:
            dec = self.engine.decoder
            dec.check, dec.auto_sample, dec.auto_disabled = sampler.check, sampler.auto_sample, sampler.auto_disabled
            self.frames.sample = self._sampler = None

    def read(self, paths: list, pace: float | None) -> int:
        """The whole capture (or up to a stop); returns the exit status (1: a file could not be read)."""
        from mirrorwatch.sources.pcapfile import CaptureError, run_headers

        self.progress.begin(self.me, self.stop)
        if pace is not None:
            self.frames.take = self._paced(pace)  # paced from now, when every worker begins
        code = 0
        try:
            st = run_headers(paths, self._bind, lambda: (self.frames.n, 0))
            for line in st.warnings:
                warn(line)  # every worker says it; the coordinator says it once
        except CaptureError as e:  # a file changed between the check and the read
            warn(str(e))
            code = EXIT_READ_FAILED
        except _Stopped:
            pass
        n = self.frames.n
        for owner, held in self.router.drain():  # after every frame read
            if owner == self.me:
                self.take(n + 1, *held)  # held: (ts, wirelen, frame, its number, its link type)
        self.outbox.flush(n + 1)
        return code

    def _bind(self, linktype: int) -> OwnFrames:
        self.frames.linktype = linktype
        return self.frames

    def take(self, clock: int, ts: float, wirelen: int, frame: bytes, cnt: int = 0, linktype: int = -1) -> None:
        """One of this worker's frames through the engine, numbered ``cnt`` (its own number ``clock`` when 0) as
        one engine numbers it; what it writes is clocked ``clock``.  A held fragment brings its ``linktype``;
        a paced frame (``--realtime``) comes here too (``OwnFrames`` analyses the others itself)."""
        frames = self.frames
        eng = self.engine
        eng.pcap_cnt = (cnt or clock) - 1
        events = eng.process(ts, frames.linktype if linktype < 0 else linktype, frame, wirelen)
        frames.own += 1
        if events:
            self.emit(clock, events)

    def emit(self, clock: int, events: list) -> None:
        """What the engine returned while at frame ``clock`` (its own frame, or a sweep another's frame made
        due), to the outputs, clocked ``clock``."""
        self.outbox.clock = clock
        self.pipe.dispatch(events)

    def advance(self, ts: float) -> None:
        events = self.engine.advance(ts)
        if events:
            self.pipe.dispatch(events)

    def fragment(self, clock: int, ts: float, wirelen: int, frame: bytes) -> int:
        """A fragment: what its routing releases for this worker is analysed now (clocked here, numbered as
        it was read); returns its owner (``fragments.HOLD``: nobody's yet)."""
        sched = self.frames.part.sched
        owner, released = self.router.route(self.frames.part.last_fragment, ts, len(frame),
                                            (ts, wirelen, frame, clock, self.frames.linktype))
        if owner >= 0:
            sched.give(owner, len(frame))  # every worker routes every fragment alike: the same work counted
        for w, held in released:
            sched.give(w, len(held[2]))
            if w == self.me:
                self.take(clock, *held)
        return owner

    def every(self, n: int) -> None:
        """Every BATCH_FRAMES frames: the watermark, the table's view, the lead on the others, a stop."""
        now = time.monotonic()
        # one message every WATERMARK_INTERVAL (sooner when much was written): the coordinator wakes a few
        # times a second per worker, and its writing does not take a core from the workers batch by batch
        if now >= self._next_watermark or len(self.outbox.items) >= SEND_ITEMS:
            self._next_watermark = now + WATERMARK_INTERVAL
            self.outbox.flush(n)
        if self.views is not None:
            while self.ctl.poll():
                msg = self.ctl.recv()
                if msg[0] == "sort":
                    self.views.table.sort = msg[1]
            self.views.maybe_send()
        if self.progress.ahead(self.me, n):
            self.outbox.flush(n)  # the others' records wait for this worker's watermark
            while self.progress.ahead(self.me, n) and not self.stop.asked:
                time.sleep(LEAD_WAIT)
        if self.stop.asked:
            raise _Stopped

    def _paced(self, speed: float):
        """``--realtime``: ``take`` that waits until the frame is due (at ``speed`` times the capture's pace,
        from its first frame); before waiting, what was analysed goes to the coordinator."""
        take, eng, wall0 = self.take, self.engine, time.monotonic()

        def paced(clock: int, ts: float, wirelen: int, frame: bytes) -> None:
            ts0 = eng.first_ts if eng.first_ts is not None else ts
            delay = wall0 + (ts - ts0) / speed - time.monotonic()
            if delay > 0:
                self.outbox.flush(clock - 1)  # this frame is not analysed yet
                while delay > 0:
                    if self.stop.asked:
                        raise _Stopped
                    time.sleep(min(delay, PACE_SLICE))
                    delay = wall0 + (ts - ts0) / speed - time.monotonic()
            take(clock, ts, wirelen, frame)

        return paced


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
