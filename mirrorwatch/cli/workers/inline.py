"""``inline --queues A:B``: one worker process per queue, one sensor.

The firewall sends the hooked chain's packets to the queues with
``--queue-balance A:B``: the kernel picks the queue by a hash of the packet's
addresses (``nfqueue_hash`` in include/net/netfilter/nf_queue.h: the two
addresses, smaller first, and for IPv4 the protocol; no ports), the same for
both directions, so each session is one worker's from its first packet on
(``tests/test_inline_queues.py`` checks it).  All sessions between two hosts
go to one queue: the workers share host pairs out, not sessions.
``--queue-bypass`` passes the packets of a queue nobody has bound.

The coordinator (the command's own process) binds every queue and installs
the firewall before anything starts (errors are one line), makes the
watchdog with one heartbeat counter per worker, and forks the workers
(``coordinator.Coordinator``); worker k keeps queue k
(``InlineSensor.as_worker``) and runs the very loop of a single ``inline``
(verdicts, SIGHUP reloading its rules, its blocked sessions reset at a clean
stop).  Then the coordinator starts the watchdog over the workers' pids and
closes its own queue sockets (``InlineSensor.watch``).  It writes what the
workers send, one merged stats record every ``capture.stats-interval`` and
one table, says every bypass switch (console line, EVE ``engine`` record,
table header), and:

- SIGINT/SIGTERM: stops the watchdog (workers ending cleanly are not dead
  ones), then every worker stops cleanly; once all ended it reads the
  firewall's counters and removes its rules (``InlineSensor.finish_workers``);
- a worker that stalls or dies: the watchdog switches the whole sensor to
  bypass (see ``inline.watchdog``); a dead worker also stops the others (the
  coordinator's rule; they reset their blocked sessions), the firewall rules
  stay (the flows the dead one dropped stay dropped, as after the death of a
  single engine) and the exit status is 1.
"""

from __future__ import annotations

import time
from functools import partial

from mirrorwatch.cli.workers import coordinator, process
from mirrorwatch.cli.workers.live import CoordinatorDuties, worker_listener
from mirrorwatch.cli.workers.outbox import detach
from mirrorwatch.cli.workers.view import VIEW_INTERVAL, MergedTable, Views
from mirrorwatch.core.events import INLINE
from mirrorwatch.inline.sensor import InlineError


class InlineCoordinator(coordinator.Coordinator):
    """The workers' coordinator with the sensor's duties: the watchdog goes first at a clean stop."""

    def __init__(self, sensor, *args, **kw):
        super().__init__(*args, **kw)
        self.sensor = sensor

    def stop_all(self) -> None:
        if not process.died(self.workers):  # a death is the watchdog's to handle: it switches and exits
            self.sensor.stop_watchdog()
        super().stop_all()


class InlineWorkers:
    """Runs one worker per queue of ``runner``'s sensor (a ``cli.inline.InlineRunner``, built, not started)."""

    def __init__(self, runner, say):
        self.runner = runner
        self.sensor = runner.capture
        self.say = say  # say(line, error): one console line
        self.capture: dict = {}  # the merged ``capture`` counters, once the run ended
        self.error = ""
        self.coord: InlineCoordinator | None = None
        self._duties: CoordinatorDuties | None = None
        self._table: MergedTable | None = None

    def run(self) -> int:
        """The whole run; returns the exit status (``capture`` and ``error`` tell the rest)."""
        runner, sensor = self.runner, self.sensor
        settings, count = runner.settings, len(range(sensor.fw.queue[0], sensor.fw.queue[1] + 1))
        worker_table = runner.table  # the LiveTable sink each worker's pipeline has
        self._table = MergedTable(source=sensor.iface, sort=worker_table.sort, live=True)
        self._table.mode = INLINE
        runner.table = self._table  # what the coordinator's display shows
        stats_iv = float(settings["capture.stats-interval"])
        self._duties = CoordinatorDuties(runner, self._table, [], stats_iv)
        sensor.prepare_workers(count)
        body = partial(_worker, runner=runner, table=worker_table,
                       view_interval=VIEW_INTERVAL if runner.display else stats_iv)
        self.coord = InlineCoordinator(sensor, runner.pipe, count, ordered=False, table=self._table,
                                       periodic=self._periodic, on_start=self._started, on_end=self._ended,
                                       stopped_code=0)
        self._duties.coordinator = self.coord
        try:
            code = self.coord.run(body)
        finally:
            self._duties.close()
            sensor.close()
        return 1 if self.error and not code else code

    def _started(self, workers) -> None:
        try:
            self.sensor.watch([w.pid for w in workers])
        except InlineError as e:
            self.error = str(e)
            self.say(f"mirrorwatch: error: {e}; stopping", True)
            self.coord.stop_all()
        self._duties.start(workers)

    def _periodic(self, now: float) -> None:
        events = self.sensor.events()
        for e in events:
            self.runner.say_switch(e)
            self._table.mode = e.state
        if events:
            self.runner.pipe.dispatch(events)
        self._duties.run(now)

    def _ended(self, counters: dict) -> None:
        died = process.died(self.coord.workers)
        self.sensor.finish_workers(keep_rules=bool(died))
        if died:
            self.say("mirrorwatch: firewall rules left in place, as after the death of a single engine: the flows "
                     "the dead worker dropped stay dropped, the bypass switch passes the rest", True)
        self.capture = counters["capture"] = self.sensor.merged(counters.get("capture", {}))


def _worker(k: int, outbox, ctl, *, runner, table, view_interval: float) -> int:
    """Worker ``k``: queue k through its own engine until SIGTERM; sends its counters at the end."""
    sensor, pipe = runner.capture, runner.pipe
    sensor.as_worker(k)
    detach(pipe.sinks, outbox)
    stats: list = []
    pipe.detach_outputs(stats.append)
    worker = _worker_loop(type(runner))(sensor, pipe, table=table, display=False, stats_out=None,
                                        rule_paths=runner.rule_paths, settings=runner.settings)
    worker.attach(outbox, ctl, 0.0, Views(table, outbox, worker.counters, rows=runner.display), view_interval)
    cpu0 = time.process_time()
    code = worker.run()
    counters = stats[-1].counters if stats else worker.counters()
    outbox.send("done", coordinator.result(pipe, counters, pipe.engine.pcap_cnt, time.process_time() - cpu0, code))
    return code


def _worker_loop(runner_type: type) -> type:
    """``listen``'s worker loop over ``runner_type`` (its views, its sort orders), feeding as ``runner_type``
    does: no start-up filter, for a queue is one worker's from its bind on and no packet reaches two."""

    class InlineWorkerLoop(worker_listener(runner_type)):
        def _feed(self, batch, process, dispatch, linktype: int) -> None:
            runner_type._feed(self, batch, process, dispatch, linktype)

    return InlineWorkerLoop
