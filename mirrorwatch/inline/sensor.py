"""The NFQUEUE side of ``mirrorwatch inline``: queues, verdict writers, firewall, watchdog, accounting.

``InlineSensor`` has the shape of ``sources.live.LiveCapture`` so that
``cli.listen.Listener``'s loop drives it unchanged (``cli.inline``): ``open``,
``start``, ``get(timeout)`` -> a batch or None, ``alive``, ``stop``,
``drain``, ``counters``, ``close``; each batch goes through ``feed``, which
runs every packet through ``Engine.process_inline`` and applies its verdict
(``verdicts.VerdictWriter.feed``, compiled).

- ``open``: binds the queues (fail-open or fail-closed, GSO packets whole),
  then installs the firewall (``firewall.Firewall``), or only records its
  configuration for ``mirrorwatch bypass`` when the operator installs the
  rules (``--no-firewall``).  Every failure is one line (``InlineError``).
- ``start``: with fail-open, the watchdog process (``watchdog.Watchdog``);
  ``get`` beats its heartbeat at least every ``timeout / 4`` and turns its
  reports into ``BypassSwitch`` events.  Without a watchdog (fail-closed) an
  operator's ``mirrorwatch bypass on|off`` is noticed here instead.
- ``drain``: a clean stop, in order: the packets the kernel still holds are
  inspected; the blocked sessions are reset at both ends (``resets``, the
  judge's ``stop_resets``) while the rules still drop them; the watchdog
  stops (before the queues close: it holds their sockets); the counters are
  read and the rules removed; what was queued meanwhile gets final verdicts.

Several queues run as workers (``cli.workers.inline``): the coordinator
binds every queue and installs the firewall (``open``), makes the watchdog
(``prepare_workers``) and forks one worker per queue; worker k keeps queue k
(``as_worker``), beats its own heartbeat counter and inspects; the
coordinator starts the watchdog over the workers' pids and lets go of its own
queue sockets (``watch``), reports the switches (``events``), stops the
watchdog before the workers stop, and once they ended reads the counters and
removes the rules (``finish_workers``, ``merged``).  A worker's clean stop
inspects what its queue holds, resets its blocked sessions and unbinds its
queue: until the last worker ended and the rules are gone, that queue's
packets pass by --queue-bypass (counted uninspected) or, fail-closed, are
dropped.

Accounting (``counters``, the ``capture`` section of the stats): the
firewall's rule counters tell how many packets reached the queue rule and how
many the bypass switch accepted; with the engine's own count that gives the
packets that passed uninspected: accepted by fail-open (queue or socket full,
no listener), released by the watchdog for a stalled engine, or passed by the
bypass switch.  Flows passed by mark (pass rules, stream depth) are counted
apart: uninspected by design.
"""

from __future__ import annotations

import os
import select
import time
from pathlib import Path
from typing import NamedTuple

from mirrorwatch.core.decode.numbers import LINKTYPE_RAW
from mirrorwatch.core.events import BypassSwitch
from mirrorwatch.inline import watchdog as wdm
from mirrorwatch.inline.accounts import (
    FINAL_COUNTER_ATTEMPTS,
    CounterReader,
    accounting,
)
from mirrorwatch.inline.firewall import DEFAULT_RUN_DIR, Firewall, FirewallError
from mirrorwatch.inline.verdicts import VerdictWriter
from mirrorwatch.sources.nfqueue import (
    CAP_NET_ADMIN,
    CAP_NET_RAW,
    NfQueue,
    NfQueueError,
    effective_capabilities,
)
from mirrorwatch.sources.sched import request_slice

OPERATOR_CHECK_INTERVAL = 0.25  # s between two looks for an operator's forced bypass (no watchdog)
BEATS_PER_TIMEOUT = 4  # heartbeats within one inline.watchdog-timeout, at least
_KERNEL_COUNTERS = ("received", "accepted", "dropped", "repeated", "batch_verdicts", "enobufs", "kernel_errors",
                    "malformed", "queue_total", "queue_dropped", "queue_user_dropped")  # NfQueue.stats(), summed


class InlineError(RuntimeError):
    """The inline sensor cannot start (one line for the user)."""


def privilege_problem() -> str | None:
    """None when this process may bind queues, install rules and send resets, else what is missing."""
    caps = effective_capabilities()
    if caps is None:
        return None if os.geteuid() == 0 else "inline mode needs root: run mirrorwatch as root"
    missing = [name for bit, name in ((CAP_NET_ADMIN, "CAP_NET_ADMIN"), (CAP_NET_RAW, "CAP_NET_RAW"))
               if not caps >> bit & 1]
    if not missing:
        return None
    return (f"inline mode needs {' and '.join(missing)} (to bind NFQUEUE, install firewall rules and send resets): "
            f"run mirrorwatch as root")


class InlineBatch(NamedTuple):
    writer: VerdictWriter | None  # the queue's writer (None: events only)
    datagrams: list               # what the queue read (NfQueue.recv_datagrams): its packets, unread
    events: list                  # BypassSwitch changes, resets: dispatched with the packets' events


class InlineSensor:
    """See the module docstring.  ``settings``: the ``inline.*``/``nfq.*`` settings; ``queues``: N,
    "A:B" or (A, B); ``firewall``: install the rules (else print-only: the operator does)."""

    def __init__(self, settings, queues=0, *, hook: str = "forward", firewall: bool = True,
                 backend: str = "auto", run_dir=DEFAULT_RUN_DIR):
        self.settings = settings
        self.fail_open = bool(settings["nfq.fail-open"])
        self.fw = Firewall(queues, hook, backend=backend, drop_bit=settings["inline.drop-mark"],
                           bypass_bit=settings["nfq.bypass-mark"], injected_bit=settings["inline.injected-mark"],
                           queue_bypass=self.fail_open, run_dir=run_dir)
        first, last = self.fw.queue
        self.iface = f"NFQUEUE {first}" if first == last else f"NFQUEUE {first}:{last}"
        self.linktype = LINKTYPE_RAW  # what the queues hand over: IP packets, no link header
        self.manage_firewall = firewall
        self.run_dir = Path(run_dir)
        self.resets = None  # the runner sets it: resets(ts) -> the Kill events of a clean stop (the judge's)
        self.state = wdm.INLINE
        self._queues: list[NfQueue] = []
        self._writers: dict[int, VerdictWriter] = {}
        self._ready: list[int] = []
        self._poller = select.poll()
        self._watchdog: wdm.Watchdog | None = None
        self._beat_every = float(settings["inline.watchdog-timeout"]) / BEATS_PER_TIMEOUT
        self._counters = CounterReader(self.fw)
        self._final: dict | None = None  # the accounting frozen when the rules were removed
        self._fw_final: dict = {}  # with workers: the firewall's counters read last, before the rules went
        self._forced = False
        self._in_place = False  # rules installed (or recorded) and not withdrawn yet
        self.withdraw_error = ""  # why the rules could not be removed at the end, if they could not
        self._next_forced_check = 0.0
        self.worker: int | None = None  # a forked worker's index (its one queue)
        self.sched_note: str | None = None  # why capture.sched-slice could not be applied
        self.c = dict.fromkeys(("gso", "csum_not_ready", "truncated", "released", "switches"), 0)

    # -- starting ----------------------------------------------------------------------
    def open(self) -> None:
        """Bind the queues, then install the firewall (or record it); InlineError on failure."""
        s = self.settings
        first, last = self.fw.queue
        try:
            for num in range(first, last + 1):
                q = NfQueue(num, maxlen=s["inline.queue-maxlen"], fail_open=self.fail_open, gso=True,
                            rcvbuf=s["inline.rcvbuf"], batch_max=s["inline.recv-batch"])
                self._queues.append(q)
                self._writers[q.fileno()] = VerdictWriter(q, self.fw.drop_bit, self.fw.bypass_bit,
                                                          s["nfq.batchcount"])
                self._poller.register(q.fileno(), select.POLLIN)
            if self.manage_firewall:
                self.fw.install()
            else:
                self.fw.record()
            self._in_place = True
            self.sched_note = request_slice(s["capture.sched-slice"])  # workers and the watchdog inherit it
        except (NfQueueError, FirewallError, ValueError) as e:
            self.close()
            raise InlineError(str(e)) from None

    def start(self) -> None:
        """The watchdog (fail-open only) and the counter reader (a worker's are the coordinator's)."""
        if self.worker is not None:
            return
        if self.fail_open:
            self._watchdog = self._new_watchdog(1)
            try:
                self._watchdog.start()
            except (RuntimeError, ValueError) as e:
                self._watchdog = None
                raise InlineError(f"the inline watchdog did not start: {e}") from None
            self._poller.register(self._watchdog.fileno(), select.POLLIN)
        self._counters.start()

    # -- the loop's side -----------------------------------------------------------------
    def get(self, timeout: float) -> InlineBatch | None:
        """The next batch (one queue's packets, or state changes), or None after ``timeout`` s."""
        wd = self._watchdog
        if wd is not None:
            wd.beat()
        if not self._ready:
            self._ready = [fd for fd, _ in self._poller.poll(int(min(timeout, self._beat_every) * 1000))]
            if wd is not None:
                wd.beat()
        events = self._operator_switch() if wd is None and self.worker is None else []
        while self._ready:
            fd = self._ready.pop()
            writer = self._writers.get(fd)
            if writer is None:  # the watchdog's report pipe
                events += [self._switched(change) for change in wd.events()]
                continue
            datagrams = writer.queue.recv_datagrams(0)
            if datagrams or events:
                return InlineBatch(writer, datagrams, events)
        return InlineBatch(None, [], events) if events else None

    def feed(self, batch: InlineBatch, engine, dispatch) -> None:
        """Every packet of ``batch`` through ``engine.process_inline``, its verdict applied; then the
        events (the batch's own first) go to ``dispatch``."""
        out = list(batch.events)
        if batch.writer is not None and batch.datagrams:
            batch.writer.feed(batch.datagrams, engine, time.time(), out, self.c)
        if out:
            dispatch(out)

    def _switched(self, change: BypassSwitch) -> BypassSwitch:
        if change.state != self.state:
            self.c["switches"] += 1
        self.state = change.state
        self.c["released"] += change.released
        return change

    def _operator_switch(self) -> list:
        """Without a watchdog: an operator's ``mirrorwatch bypass on|off`` becomes a BypassSwitch."""
        now = time.monotonic()
        if now < self._next_forced_check:
            return []
        self._next_forced_check = now + OPERATOR_CHECK_INTERVAL
        forced = (self.run_dir / wdm.FORCED_FILE).exists()
        if forced == self._forced:
            return []
        self._forced = forced
        t0 = time.monotonic()
        reason = "forced by operator" if forced else "forced bypass ended by operator"
        try:
            self.fw.set_bypass(forced)
        except FirewallError as e:
            reason = f"{reason}; firewall switch failed: {e}"
        state = wdm.BYPASS if forced else wdm.INLINE
        return [self._switched(BypassSwitch(time.time(), state, reason, 0, round(time.monotonic() - t0, 4)))]

    def alive(self) -> bool:
        return bool(self._queues)

    def stop(self) -> None:
        """Stop reading the counters periodically (a clean stop reads them once more in ``drain``)."""
        self._counters.stop()

    # -- several queues: one worker each ---------------------------------------------------
    def _new_watchdog(self, engines: int) -> wdm.Watchdog:
        s = self.settings
        return wdm.Watchdog(self.fw, self._queues, timeout=s["inline.watchdog-timeout"],
                            recovery=s["inline.watchdog-recovery"], poll=s["inline.watchdog-poll"],
                            run_dir=self.run_dir, engines=engines)

    def prepare_workers(self, count: int) -> None:
        """Before the fork: the watchdog (fail-open) with one heartbeat counter per worker, not started."""
        if self.fail_open:
            self._watchdog = self._new_watchdog(count)

    def as_worker(self, k: int) -> None:
        """In forked worker ``k``: keep queue k alone (the others are other workers'), beat counter k;
        the firewall, its counters and the switches are the coordinator's."""
        mine = self._queues[k]
        for q in self._queues:
            if q is not mine:
                self._poller.unregister(q.fileno())
                del self._writers[q.fileno()]
                q.detach()
        self._queues = [mine]
        self.iface = f"NFQUEUE {mine.queue_num}"
        self.worker, self._in_place = k, False
        if self._watchdog is not None:
            self._watchdog.as_engine(k)

    def watch(self, pids: list[int]) -> None:
        """In the coordinator, once the workers run: the watchdog over them, the counter reader; then the
        coordinator lets go of its queue sockets (the workers and the watchdog hold them)."""
        try:
            if self._watchdog is not None:
                self._watchdog.start(pids)
                self._poller.register(self._watchdog.fileno(), select.POLLIN)
        except (RuntimeError, ValueError) as e:
            self._watchdog = None
            raise InlineError(f"the inline watchdog did not start: {e}") from None
        finally:
            for q in self._queues:
                q.detach()
            self._queues.clear()
            self._writers.clear()
        self._counters.start()

    def events(self) -> list[BypassSwitch]:
        """In the coordinator: the switches since the last call (the watchdog's, or the operator's)."""
        if self._watchdog is None:
            return self._operator_switch()
        return [self._switched(change) for change in self._watchdog.events()]

    def finish_workers(self, keep_rules: bool = False) -> None:
        """Once every worker ended: the final firewall counters, then the rules go -- or stay (``keep_rules``:
        a worker died, and the flows it dropped must stay dropped, as after the death of a single engine;
        the watchdog has switched to bypass)."""
        self._counters.stop()
        self.stop_watchdog()
        self._fw_final = self._counters.read(FINAL_COUNTER_ATTEMPTS)
        if keep_rules:
            self._in_place = False
        else:
            self._withdraw()

    def merged(self, capture: dict) -> dict:
        """The workers' ``capture`` counters (summed) completed with the coordinator's: the firewall's
        figures, what passed uninspected, the switches."""
        kernel = {k: capture.get(k, 0) for k in _KERNEL_COUNTERS}
        acc = accounting(kernel, self._fw_final, self.c["released"], capture.get("verdicts", {}))
        return {**capture, **acc, "interface": self.iface, "mode": self.state, "fail_open": self.fail_open,
                "watchdog": self.fail_open, "released": self.c["released"], "switches": self.c["switches"],
                "sched_slice_us": self._slice()}

    def _slice(self) -> int:
        return 0 if self.sched_note else self.settings["capture.sched-slice"]

    # -- a clean stop --------------------------------------------------------------------
    def drain(self):
        """The batches of a clean stop, in order (see the module docstring)."""
        yield from self._held()
        yield InlineBatch(None, [], self.resets(time.time()) if self.resets is not None else [])
        if self.worker is not None:  # the coordinator removes the rules once every worker ended
            self._final = self._accounting({})
            for q in self._queues:
                q.close()
            return
        self.stop_watchdog()
        self._final = self._accounting(self._counters.read(FINAL_COUNTER_ATTEMPTS))
        self._withdraw()
        for w in self._writers.values():
            w.final = True
        yield from self._held()

    def _held(self):
        for writer in self._writers.values():
            while True:
                if self._watchdog is not None:
                    self._watchdog.beat()
                datagrams = writer.queue.recv_datagrams(0)
                if not datagrams:
                    break
                yield InlineBatch(writer, datagrams, [])

    def stop_watchdog(self) -> None:
        """Stop the watchdog (with workers: before their clean stop, which must not read as their death)."""
        if self._watchdog is not None and self.worker is None:  # a worker's is the coordinator's to stop
            self._poller.unregister(self._watchdog.fileno())
            self._watchdog.stop()
            self._watchdog = None

    def _withdraw(self) -> None:
        """The rules go (or only their record, when the operator installed them), and the watchdog's state."""
        if not self._in_place:
            return
        self._in_place = False
        try:
            if self.manage_firewall:
                self.fw.remove()
            else:
                self.fw.forget()
        except FirewallError as e:
            self.withdraw_error = f"firewall rules not removed: {e}"
        (self.run_dir / wdm.STATE_FILE).unlink(missing_ok=True)

    def close(self) -> None:
        """Stop the watchdog, withdraw the rules if a clean stop did not, close the queues (what the kernel
        still holds is accepted, then each queue unbinds)."""
        self._counters.stop()
        self.stop_watchdog()
        self._withdraw()
        for q in self._queues:
            q.close()
        self._queues.clear()

    # -- accounting ------------------------------------------------------------------------
    def _kernel(self) -> dict:
        totals = dict.fromkeys(_KERNEL_COUNTERS, 0)
        for q in self._queues:
            for k, v in q.stats().items():
                if k in totals:
                    totals[k] += v
        return totals

    def _accounting(self, fw: dict) -> dict:
        verdicts: dict[str, int] = {}
        for w in self._writers.values():
            for action, n in w.counts.items():
                verdicts[action] = verdicts.get(action, 0) + n
        return accounting(self._kernel(), fw, self.c["released"], verdicts)

    def counters(self) -> dict:
        """The ``capture`` section of the stats."""
        acc = self._final if self._final is not None else self._accounting(self._counters.latest)
        out = {"interface": self.iface, "mode": self.state, "fail_open": self.fail_open,
               "watchdog": self._watchdog is not None, **acc, **self.c, "sched_slice_us": self._slice()}
        if self._counters.error:
            out["firewall_counter_error"] = self._counters.error
        return out

