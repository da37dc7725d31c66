"""``listen --workers N``: N capture handles in one PACKET_FANOUT group, N engines, one sensor.

The coordinator opens the N libpcap handles itself (errors are one line
before anything starts) and joins each to one fanout group (hash mode with
defragmentation, ``sources.fanout``), then forks the workers; worker k keeps
handle k and closes the others.  A worker runs the very loop of a single
``listen`` (``cli.listener.Listener``): its capture thread, its engine, its
wall-clock ticks, SIGHUP reloading its rules, SIGINT/SIGTERM flushing its
sessions.  What it changes (``worker_listener``):

- frames captured before every handle had joined the group may have reached
  several handles; each worker drops the frames stamped before that moment
  (counted as ``capture.startup_dropped``), as Suricata's AF_PACKET threads
  synchronise their start;
- instead of a stats record and a stats line, it sends its counters and, when
  the table is shown, its view to the coordinator, which writes one merged
  stats record every ``capture.stats-interval`` and draws one table.

Kills are sent by the worker that decided them, on the injection socket opened
before the workers started.
"""

from __future__ import annotations

import contextlib
import time
from functools import partial

from mirrorwatch.cli.workers import coordinator
from mirrorwatch.cli.workers.merge import sum_counters
from mirrorwatch.cli.workers.outbox import detach
from mirrorwatch.cli.workers.view import VIEW_INTERVAL, MergedTable, Views
from mirrorwatch.core.events import Stats
from mirrorwatch.sources.live import META, CaptureError, LiveCapture

FLUSH_INTERVAL = 1.0  # seconds between flushes of the coordinator's outputs, so `tail -f` follows
UI_INTERVAL = 0.25  # seconds between redraws of the table (stretched to ten times what one costs)


def open_captures(first: LiveCapture, count: int, settings) -> list[LiveCapture]:
    """``first`` (open) and count-1 more handles like it, all in one new fanout group; CaptureError if not."""
    caps = [first]
    try:
        group = first.join_fanout()
        for _ in range(count - 1):
            cap = LiveCapture(first.iface, settings, bpf=first.bpf, snaplen=first.snaplen,
                              promisc=first.promisc, buffer_size=first.buffer_size, timeout_ms=first.timeout_ms,
                              immediate=first.immediate_active, fanout=group)
            caps.append(cap)
            cap.open()
    except CaptureError:
        for cap in caps:
            cap.close()
        raise
    return caps


def run_cli(listener, caps: list[LiveCapture]) -> tuple[int, dict]:
    """Run the workers over ``caps``; returns (exit status, the capture counters of all of them).

    ``listener`` is the ``cli.listener.Listener`` a single listen would run (built, not started): its
    pipeline, settings and display are the coordinator's; each worker runs a copy of its loop.
    """
    pipe, settings = listener.pipe, listener.settings
    worker_table = listener.table  # the LiveTable sink each worker's pipeline has
    table = MergedTable(source=listener.capture.iface, sort=worker_table.sort, live=True)
    listener.table = table  # what the coordinator's display shows
    stats_iv = float(settings["capture.stats-interval"])
    view_iv = VIEW_INTERVAL if listener.display else stats_iv
    duties = CoordinatorDuties(listener, table, caps, stats_iv)
    started = max(c.fanout_joined for c in caps)  # every handle is in the group from then on
    body = partial(_worker, listener=listener, caps=caps, table=worker_table, started=started, view_interval=view_iv)
    coord = coordinator.Coordinator(pipe, len(caps), ordered=False, table=table, periodic=duties.run,
                                    on_start=duties.start, stopped_code=0)
    duties.coordinator = coord
    try:
        code = coord.run(body)
    finally:
        duties.close()
    done = [w.done for w in coord.workers if w.done is not None]
    return code, sum_counters([d["counters"].get("capture", {}) for d in done])


class CoordinatorDuties:
    """The coordinator's periodic work in live mode: outputs flushed, merged stats, the table drawn."""

    def __init__(self, listener, table: MergedTable, caps: list[LiveCapture], stats_iv: float):
        self.listener = listener
        self.table = table
        self.caps = caps
        self.stats_iv = stats_iv
        self.coordinator: coordinator.Coordinator | None = None
        now = time.monotonic()
        self.next_flush = now + FLUSH_INTERVAL
        self.next_stats = now + stats_iv if stats_iv > 0 else float("inf")
        self.next_ui = now
        self.live = self.painter = None

    def start(self, workers) -> None:
        """The workers run: the capture handles are theirs alone, the display starts (no thread before the fork)."""
        for cap in self.caps:
            cap.close()
        self.live = self.listener.start_display()
        self.painter = _Paint(self.live) if self.live is not None else None

    def run(self, now: float) -> None:
        listener, coord = self.listener, self.coordinator
        if listener.signals.stop and not coord.interrupted:  # 'q' in the table: as Ctrl-C
            coord.interrupted = True
            coord.stop_all()
        if now >= self.next_flush:
            self.next_flush = now + FLUSH_INTERVAL
            listener.pipe.flush()
        if now >= self.next_stats and coord.latest:
            self.next_stats = now + self.stats_iv
            counters = sum_counters(list(coord.latest.values()))
            counters.update(listener.pipe.output_counters())
            listener.pipe.dispatch([Stats(time.time(), counters)])
            if listener.stats_out is not None:
                listener.stats_out.write(self.table.stats_line(time.time()) + "\n")
                listener.stats_out.flush()
        if self.painter is not None and now >= self.next_ui:
            self.next_ui = now + max(UI_INTERVAL, listener.redraw(self.painter, now) * 10)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
        if self.listener.keys is not None:
            self.listener.keys.close()


class _Paint:
    """Draws the table's frames in the coordinator's own loop: no engine waits for it here."""

    def __init__(self, live):
        self.live = live
        self.cost = 0.0  # seconds the last frame took to draw

    def show(self, frame) -> None:
        t = time.monotonic()
        with contextlib.suppress(Exception):  # a terminal gone away must not stop the sensor
            self.live.update(frame, refresh=True)
        self.cost = time.monotonic() - t


# -- the worker ---------------------------------------------------------------------------------
def _worker(k: int, outbox, ctl, *, listener, caps: list[LiveCapture], table, started: float,
            view_interval: float) -> int:
    cap = caps[k]
    for other in caps:
        if other is not cap:
            other.close()
    pipe = listener.pipe
    detach(pipe.sinks, outbox)
    stats: list = []
    pipe.detach_outputs(stats.append)
    worker = worker_listener(type(listener))(cap, pipe, table=table, display=False, stats_out=None,
                                             rule_paths=listener.rule_paths, settings=listener.settings)
    worker.attach(outbox, ctl, started, Views(table, outbox, worker.counters, rows=listener.display),
                  view_interval)
    cpu0 = time.process_time()
    code = worker.run()
    counters = stats[-1].counters if stats else worker.counters()
    counters.setdefault("capture", {})["startup_dropped"] = worker.startup_dropped
    outbox.send("done", coordinator.result(pipe, counters, pipe.engine.pcap_cnt, time.process_time() - cpu0, code))
    return code


def worker_listener(listen_loop: type) -> type:
    """The listen loop of one worker, a subclass of ``cli.listener.Listener`` (given by the caller, which
    imports this module): see the module docstring for what differs."""

    class WorkerListener(listen_loop):
        def attach(self, outbox, ctl, started: float, views: Views, view_interval: float) -> None:
            self.ctl = ctl
            self.started = started
            self.views = views
            self.startup_dropped = 0
            self._syncing = True
            # the loop's stats timer paces the views (the coordinator writes the stats)
            self.settings.set("capture.stats-interval", view_interval)

        def counters(self) -> dict:
            """As one listener's, with the frames dropped before the group was whole (received = packets
            + queue_drops + startup_dropped in every merged stats record, not only the last)."""
            c = super().counters()
            c.setdefault("capture", {})["startup_dropped"] = self.startup_dropped
            return c

        def _periodic_stats(self, now: float) -> None:
            try:
                while self.ctl.poll():
                    kind, value = self.ctl.recv()
                    if kind == "sort":
                        self.table.sort = value
            except (EOFError, OSError):
                pass
            self.views.maybe_send()

        def _feed(self, batch, process, dispatch, linktype: int) -> None:
            if self._syncing:
                batch = self._after_start(batch)
                if batch is None:
                    return
            listen_loop._feed(batch, process, dispatch, linktype)

        def _after_start(self, batch):
            """The batch without the frames stamped before every handle joined the group (None: none left)."""
            blob, meta, n = batch
            started = self.started
            for i, (sec, usec, _, _) in enumerate(META.iter_unpack(meta[: n << 4])):
                if sec + usec * 1e-6 >= started:
                    self._syncing = False
                    self.startup_dropped += i
                    return blob, meta[i << 4: n << 4], n - i
            self.startup_dropped += n
            return None

    return WorkerListener
