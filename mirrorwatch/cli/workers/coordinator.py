"""The coordinator: starts the workers, writes what they send, says what they say, ends the run.

One loop serves replay and listen.  It waits on the workers' pipes and:

- writes their output items: in capture order through ``merge.OrderedMerge``
  in replay (``ordered``), as they come in live mode, where a batch is whole
  lines of one worker and is written whole;
- says their log lines once for all (``merge.LogLines``);
- keeps their latest table views and periodic counters (live);
- forwards signals: SIGINT/SIGTERM -> SIGTERM to every worker (each flushes
  its sessions and sends its ``done``), SIGHUP -> the coordinator reopens its
  outputs and every worker gets SIGHUP (it reloads its rules);
- notices a worker that ends without its ``done`` (it died): one error line,
  the other workers are stopped and flushed, the exit status is 1.

When every worker has sent its ``done`` (or ended without it), the stats
they sent are summed into one EVE ``stats`` record and one summary, written
through the coordinator's own pipeline (which never analysed a frame); then
the coordinator waits for their pipes to close (what they still say is
said), so a worker's exit does not hold up the last record.
"""

from __future__ import annotations

import signal
import time
from functools import partial

import click

from mirrorwatch.cli.common import fail
from mirrorwatch.cli.workers import process
from mirrorwatch.cli.workers.merge import (
    LogLines,
    OrderedMerge,
    merge_summaries,
    sum_counters,
    summary_state,
)
from mirrorwatch.cli.workers.outbox import WorkerError, writers
from mirrorwatch.core.events import Stats

POLL_INTERVAL = 0.25  # seconds the loop waits for the workers before its periodic duties
# flow ids (``FlowTable``: a 32-bit session counter above FLOW_ID_HASH_BITS bits of hash): worker k counts its
# sessions from k << FLOW_COUNTER_WORKER_SHIFT, so ids of different workers never meet below 2**26 sessions per
# worker, and flow_id >> (FLOW_ID_HASH_BITS + FLOW_COUNTER_WORKER_SHIFT) is the worker's number
FLOW_ID_HASH_BITS = 21
FLOW_COUNTER_WORKER_SHIFT = 26
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def individualise(pipe, k: int) -> None:
    """A forked worker ``k``'s own numbers: flow ids that no other worker gives (and that a replay with the
    same number of workers gives again), and forged IP IDs drawn from its own sequence, not its parent's."""
    pipe.engine.flows.count_sessions_from(k << FLOW_COUNTER_WORKER_SHIFT)
    forge = getattr(pipe.engine.killer, "forge", None)
    if forge is not None:
        forge.reseed(k)


def _individual(body, pipe, k: int, outbox, ctl) -> int:
    individualise(pipe, k)
    return body(k, outbox, ctl)


def result(pipe, counters: dict, packets: int, cpu: float, code: int, fragments: dict | None = None) -> dict:
    """A worker's ``done`` message: what the coordinator merges and reports."""
    return {"counters": counters, "summary": summary_state(pipe.summary), "packets": packets, "cpu": cpu,
            "code": code, "last_ts": pipe.engine.last_ts, "fragments": fragments or {}}


class _Signals:
    """The coordinator's one handler notes which signals came; the loop acts on them (``take``)."""

    WATCHED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.pending: set[int] = set()
        self._old: dict = {}

    def install(self) -> None:
        self._old = {sig: signal.signal(sig, self._note) for sig in self.WATCHED}

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)

    def _note(self, signum, frame) -> None:
        self.pending.add(signum)

    def take(self, *sigs: int) -> bool:
        """Whether one of ``sigs`` came since the last take (and forget it)."""
        came = self.pending.intersection(sigs)
        self.pending.difference_update(came)
        return bool(came)


class Coordinator:
    """Runs ``count`` workers over ``pipe`` (the coordinator's own copy of the pipeline) to the end."""

    def __init__(self, pipe, count: int, *, ordered: bool, table=None, periodic=None, on_start=None,
                 on_end=None, stopped_code: int = EXIT_INTERRUPTED):
        self.pipe = pipe
        self.count = count
        self.ordered = ordered
        self.table = table  # view.MergedTable, or None
        self.periodic = periodic  # periodic(now): the loop's own duties (stats, display), or None
        self.on_start = on_start  # on_start(workers): once they run (listen: the periodic duties start)
        self.on_end = on_end  # on_end(counters): every worker ended, their counters summed (inline adds its own)
        self.stopped_code = stopped_code  # the exit status after SIGINT/SIGTERM (replay: 130; listen: 0)
        self.logs = LogLines(lambda line: click.echo(line, err=True))
        self.signals = _Signals()
        self.workers: list[process.Worker] = []
        self.merge: OrderedMerge | None = None
        self.latest: dict[int, dict] = {}  # worker -> its latest periodic counters (live)
        self.interrupted = False
        self._writers: list = []
        self._dead: set[int] = set()
        self._stopping = False

    # -- the run -------------------------------------------------------------------------------
    def run(self, body) -> int:
        """Fork the workers (``body(k, outbox, ctl)`` is each one's life) and serve them to the end."""
        try:
            self._writers = writers(self.pipe.sinks)
        except WorkerError as e:
            fail(f"--workers: {e}", 2)
        self.pipe.flush()  # a worker inherits the buffers: they must be empty
        self.merge = OrderedMerge(self.count, self._write) if self.ordered else None
        self.pipe.started, self.pipe.started_cpu = time.perf_counter(), time.process_time()
        self.workers = process.start(self.count, partial(_individual, body, self.pipe))
        if self.table is not None:
            self.table.attach(self.workers)
        if self.on_start is not None:
            self.on_start(self.workers)
        self.signals.install()
        try:
            self._loop()
        finally:
            self.signals.restore()
        return self._finish()

    def _loop(self) -> None:
        workers, merge = self.workers, self.merge
        while not all(w.ended or w.done is not None for w in workers):
            self._serve()
            if merge is not None:
                merge.release()
            self._check_deaths()
            if self.signals.take(signal.SIGINT, signal.SIGTERM) and not self._stopping:
                self.interrupted = True
                self.stop_all()
            if self.signals.take(signal.SIGHUP):
                self.reload_all()
            if self.periodic is not None:
                self.periodic(time.monotonic())

    def _serve(self) -> None:
        for w in process.readable(self.workers, POLL_INTERVAL):
            self._receive(w)

    def _drain(self) -> None:
        """Every worker sent its ``done``: what it says until its pipe closes (it exits)."""
        while not all(w.ended for w in self.workers):
            self._serve()

    def stop_all(self) -> None:
        """Every worker flushes its sessions and ends (SIGTERM, once)."""
        self._stopping = True
        for w in self.workers:
            w.signal(signal.SIGTERM)

    def reload_all(self) -> None:
        """SIGHUP: the coordinator reopens its outputs, every worker reloads its rules."""
        self.pipe.reopen_outputs()
        self._writers = writers(self.pipe.sinks)
        for w in self.workers:
            w.signal(signal.SIGHUP)

    # -- messages ------------------------------------------------------------------------------
    def _write(self, channel: int, data) -> None:
        self._writers[channel](data)

    def _receive(self, w: process.Worker) -> None:
        msg = process.receive(w)
        if msg is None:
            if self.merge is not None:
                self.merge.close(w.index)
            return
        kind = msg[0]
        if kind == "out":
            if self.merge is not None:
                self.merge.add(w.index, msg[1], msg[2])
            else:
                for _, channel, data in msg[2]:
                    self._writers[channel](data)
        elif kind == "log":
            self.logs.line(w.index, msg[1])
        elif kind == "view":
            self.latest[w.index] = msg[1]["counters"]
            if self.table is not None:
                self.table.update(w.index, msg[1])
        elif kind == "done":
            w.done = msg[1]
            if self.merge is not None:
                self.merge.close(w.index)

    def _check_deaths(self) -> None:
        for w in process.died(self.workers):
            if w.index in self._dead:
                continue
            self._dead.add(w.index)
            self.logs.say(f"mirrorwatch: error: worker {w.index + 1} of {self.count} (pid {w.pid}) {w.describe()}: "
                          f"the sessions it held are lost; the other workers' sessions are flushed to the outputs")
            if not self._stopping:
                self.stop_all()

    # -- the end -----------------------------------------------------------------------------------
    def _finish(self) -> int:
        pipe = self.pipe
        if self.merge is not None:
            self.merge.release()
        done = [w.done for w in self.workers if w.done is not None]
        counters = sum_counters([d["counters"] for d in done])
        if self.on_end is not None:
            self.on_end(counters)
        counters.update(pipe.output_counters())
        counters["workers"] = self.counters(done)
        stats = Stats(max((d["last_ts"] for d in done), default=0.0), counters)
        pipe.stats = stats
        pipe.dispatch([stats])
        merge_summaries(pipe.summary, [d["summary"] for d in done])
        pipe.finished, pipe.finished_cpu = time.perf_counter(), time.process_time()
        pipe.workers_cpu = sum(d["cpu"] for d in done)
        pipe.notes.append(self.note(done))
        self._drain()
        pipe.flush()
        pipe.close()
        if self._dead:
            return EXIT_FAILED
        code = max((d["code"] for d in done), default=EXIT_FAILED)
        return self.stopped_code if self.interrupted and not code else code

    def counters(self, done: list[dict]) -> dict:
        """The ``workers`` section of the merged stats."""
        c = {"count": self.count, "died": len(self._dead), "packets": [d["packets"] for d in done]}
        if done and done[0]["fragments"]:
            c["fragments"] = done[0]["fragments"]  # replay: how fragments were routed (alike in every worker)
        return c

    def note(self, done: list[dict]) -> str:
        """The summary's line about the workers: frames and CPU of each (how evenly the work was shared)."""
        total = sum(d["packets"] for d in done) or 1
        shares = " / ".join(f"{d['packets']:,} ({100 * d['packets'] / total:.1f}%)" for d in done)
        cpus = " / ".join(f"{d['cpu']:.2f}s" for d in done)
        dead = f", {len(self._dead)} died" if self._dead else ""
        return f"{self.count} workers{dead}: frames {shares}; CPU {cpus}"

