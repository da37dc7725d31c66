"""The NFQUEUE side of ``mirrorwatch inline``: queues, verdict writers, firewall, watchdog, accounting.

``InlineSensor`` has the shape of ``sources.live.LiveCapture`` so that
``cli.listen.Listener``'s loop drives it unchanged (``cli.inline``): ``open``,
``start``, ``get(timeout)`` -> a batch or None, ``alive``, ``stop``,
``drain``, ``counters``, ``close``; each batch goes through ``feed``, which
runs every packet through ``Engine.process_inline`` and applies its verdict
(``verdicts.VerdictWriter``).

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
import threading
import time
from pathlib import Path
from typing import NamedTuple

from mirrorwatch.core.decode.numbers import (
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_RAW,
)
from mirrorwatch.core.events import BypassSwitch
from mirrorwatch.inline import watchdog as wdm
from mirrorwatch.inline.firewall import DEFAULT_RUN_DIR, Firewall, FirewallError
from mirrorwatch.inline.verdicts import VerdictWriter
from mirrorwatch.sources.nfqueue import (
    CAP_NET_ADMIN,
    CAP_NET_RAW,
    NfQueue,
    NfQueueError,
    effective_capabilities,
)

LINKTYPES = {ETHERTYPE_IPV4: LINKTYPE_IPV4, ETHERTYPE_IPV6: LINKTYPE_IPV6}  # queued packets start at the IP header
COUNTER_INTERVAL = 1.0  # s between two reads of the firewall's rule counters (in a thread)
OPERATOR_CHECK_INTERVAL = 0.25  # s between two looks for an operator's forced bypass (no watchdog)
BEATS_PER_TIMEOUT = 4  # heartbeats within one inline.watchdog-timeout, at least
FINAL_COUNTER_ATTEMPTS = 3  # reads of the counters at a clean stop (iptables-nft refuses a listing mid-change)
_QUEUE_COUNTERS = ("received", "accepted", "dropped", "repeated", "batch_verdicts", "enobufs", "kernel_errors",
                   "malformed")


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
    packets: list                 # QueuedPacket values
    events: list                  # BypassSwitch changes, resets: dispatched with the packets' events


class _CounterReader(threading.Thread):
    """Reads the firewall's rule counters every ``interval`` s (iptables takes tens of ms)."""

    def __init__(self, firewall: Firewall, interval: float = COUNTER_INTERVAL):
        super().__init__(name="firewall-counters", daemon=True)
        self.firewall, self.interval = firewall, interval
        self.latest: dict[str, int] = {}
        self.error = ""
        self._stop_event = threading.Event()

    def read(self, attempts: int = 1) -> dict[str, int]:
        for _ in range(attempts):
            try:
                self.latest = self.firewall.counters()
            except FirewallError as e:
                self.error = str(e)
            else:
                self.error = ""
                break
        return self.latest

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.read()

    def stop(self) -> None:
        self._stop_event.set()


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
        self._counters = _CounterReader(self.fw)
        self._final: dict | None = None  # the accounting frozen when the rules were removed
        self._forced = False
        self._in_place = False  # rules installed (or recorded) and not withdrawn yet
        self.withdraw_error = ""  # why the rules could not be removed at the end, if they could not
        self._next_forced_check = 0.0
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
        except (NfQueueError, FirewallError, ValueError) as e:
            self.close()
            raise InlineError(str(e)) from None

    def start(self) -> None:
        """The watchdog (fail-open only) and the counter reader."""
        if self.fail_open:
            s = self.settings
            self._watchdog = wdm.Watchdog(self.fw, self._queues, timeout=s["inline.watchdog-timeout"],
                                          recovery=s["inline.watchdog-recovery"], poll=s["inline.watchdog-poll"],
                                          run_dir=self.run_dir)
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
        events = self._operator_switch() if wd is None else []
        while self._ready:
            fd = self._ready.pop()
            writer = self._writers.get(fd)
            if writer is None:  # the watchdog's report pipe
                events += [self._switched(change) for change in wd.events()]
                continue
            packets = writer.queue.recv_batch(0)
            if packets or events:
                return InlineBatch(writer, packets, events)
        return InlineBatch(None, [], events) if events else None

    def feed(self, batch: InlineBatch, process, dispatch) -> None:
        """Every packet of ``batch`` through ``process`` (``Engine.process_inline``), its verdict
        applied; then the events (the batch's own first) go to ``dispatch``."""
        out = list(batch.events)
        writer = batch.writer
        if writer is not None and batch.packets:
            now = time.time()
            apply, linktypes = writer.apply, LINKTYPES
            for p in batch.packets:
                if p.gso or p.csum_not_ready or p.cap_len > len(p.payload):
                    self._note(p)
                verdict, events = process(now, linktypes.get(p.hw_protocol, LINKTYPE_RAW), p.payload,
                                          not p.csum_not_ready)
                apply(p, verdict)
                if events:
                    out += events
            writer.flush()
        if out:
            dispatch(out)

    def _note(self, p) -> None:
        c = self.c
        c["gso"] += p.gso
        c["csum_not_ready"] += p.csum_not_ready
        c["truncated"] += p.cap_len > len(p.payload)

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

    # -- a clean stop --------------------------------------------------------------------
    def drain(self):
        """The batches of a clean stop, in order (see the module docstring)."""
        yield from self._held()
        yield InlineBatch(None, [], self.resets(time.time()) if self.resets is not None else [])
        self._stop_watchdog()
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
                packets = writer.queue.recv_batch(0)
                if not packets:
                    break
                yield InlineBatch(writer, packets, [])

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
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
        self._stop_watchdog()
        self._withdraw()
        for q in self._queues:
            q.close()
        self._queues.clear()

    # -- accounting ------------------------------------------------------------------------
    def _kernel(self) -> dict:
        totals = dict.fromkeys(_QUEUE_COUNTERS, 0)
        totals.update(queue_total=0, queue_dropped=0, queue_user_dropped=0)
        for q in self._queues:
            for k, v in q.stats().items():
                if k in totals:
                    totals[k] += v
        return totals

    def _accounting(self, fw: dict) -> dict:
        """The queue and firewall figures, and what passed uninspected."""
        k = self._kernel()
        drops = k["queue_dropped"] + k["queue_user_dropped"]
        queued = fw.get("queued", 0)
        unqueued = max(0, queued - k["received"] - k["queue_total"] - drops) if fw else 0
        bypass = fw.get("bypass_switch", 0)
        out = dict(k, drops=drops, queue_drops=k["queue_dropped"], kernel_drops=k["queue_user_dropped"],
                   fw_queued=queued, uninspected_fail_open=unqueued, uninspected_released=self.c["released"],
                   uninspected_bypass_switch=bypass, uninspected=unqueued + self.c["released"] + bypass,
                   flow_bypassed_packets=fw.get("flow_bypassed", 0), flow_dropped_packets=fw.get("flow_dropped", 0),
                   injected_packets=fw.get("injected", 0))
        verdicts: dict[str, int] = {}
        for w in self._writers.values():
            for action, n in w.counts.items():
                verdicts[action] = verdicts.get(action, 0) + n
        out["verdicts"] = verdicts
        return out

    def counters(self) -> dict:
        """The ``capture`` section of the stats."""
        acc = self._final if self._final is not None else self._accounting(self._counters.latest)
        out = {"interface": self.iface, "mode": self.state, "fail_open": self.fail_open,
               "watchdog": self._watchdog is not None, **acc, **self.c}
        if self._counters.error:
            out["firewall_counter_error"] = self._counters.error
        return out
