"""The fail-open bypass (FOD): a watchdog process that keeps traffic flowing when the engine cannot.

The engine starts ``Watchdog`` after binding its queues and calls
``Watchdog.beat()`` on every loop iteration (an increment of a counter in
shared memory: a memfd both processes map).  The watchdog is a separate
process (``python -m mirrorwatch.inline.watchdog``) that inherits, besides
the heartbeat, a duplicate of each queue's netlink socket.  Every ``poll``
seconds it looks at the counter and at the engine's pidfd.

With several engines (``inline --queues A:B``: one worker process per
queue) the memfd holds one counter per engine, each worker beats its own
(``as_engine``), and the watchdog watches every worker's counter and pidfd:
one silent or dead engine is a stalled or dead sensor.  The switch is one
for all queues because it can be: the firewall cannot tell which queue the
kernel's --queue-balance hash will pick for a packet, so there is no rule
that bypasses one queue's flows only; and a stalled worker's flows must not
wait while the others' are inspected.

- no heartbeat for ``timeout`` (the engine is stopped, stuck, or swapping):
  it accepts every packet the kernel holds for the engine (a batch verdict up
  to the queue's ``id_sequence`` from /proc, sent on the inherited socket),
  turns the firewall's bypass switch on, and releases again what was queued
  meanwhile; while the engine stays silent it keeps releasing;
- the heartbeat is back and steady for ``recovery``: bypass off, inline again
  (a stall restarts the count, so the state cannot flap faster than that);
- the engine is gone (pidfd readable): release, bypass on, close the sockets
  (the kernel unbinds the queues; NFQUEUE --queue-bypass passes new packets)
  and exit.  The firewall stays: flows the engine dropped stay dropped.

State changes go to the engine as JSON lines on a pipe (``Watchdog.events()``
gives ``BypassSwitch`` tuples) and into ``<run_dir>/watchdog.json``;
``force_bypass()`` and ``status()`` serve ``mirrorwatch bypass on|off|status``.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

from mirrorwatch.core.events import BYPASS, INLINE, BypassSwitch
from mirrorwatch.inline.firewall import DEFAULT_RUN_DIR, Firewall, FirewallError
from mirrorwatch.sources.nfqueue import kernel_queue_stats, release_held

# -- settings (defaults) -----------------------------------------------------------
DEFAULT_TIMEOUT = 0.2      # inline.watchdog-timeout: s without a heartbeat before bypass
DEFAULT_RECOVERY = 1.0     # inline.watchdog-recovery: s of steady heartbeat before inline again
DEFAULT_POLL = 0.01        # inline.watchdog-poll: s between two looks at the heartbeat
START_TIMEOUT = 10.0       # s for the watchdog process to report that it watches
STOP_TIMEOUT = 5.0         # s for it to exit on stop()

STATE_FILE = "watchdog.json"
FORCED_FILE = "bypass-forced"
_COUNTER = ctypes.c_uint64


# -- the decision (pure) ------------------------------------------------------------
class BypassPolicy:
    """When to leave and when to come back to inline, from heartbeat observations."""

    def __init__(self, timeout: float, recovery: float, now: float):
        self.timeout, self.recovery = timeout, recovery
        self.state = INLINE
        self._counters: tuple = (None,)
        self._beats = [now]   # per engine: when its counter last moved
        self._last_beat = now   # the oldest of them
        self._healthy_since: float | None = now

    def stalled(self, now: float) -> bool:
        return now - self._last_beat > self.timeout

    def observe(self, now: float, counter: int | tuple[int, ...], alive: bool,
                forced: bool) -> tuple[str, str] | None:
        """Take one look at the heartbeat counter (a tuple: one per engine, the most silent one counts)
        and at ``alive`` (every engine still runs); returns (new state, reason) when the state changes."""
        counters = (counter,) if isinstance(counter, int) else tuple(counter)
        if len(self._beats) != len(counters):
            self._counters, self._beats = (None,) * len(counters), [self._last_beat] * len(counters)
        for i, (value, seen) in enumerate(zip(counters, self._counters)):
            if value != seen:
                self._beats[i] = now
        self._counters, self._last_beat = counters, min(self._beats)
        silent = now - self._last_beat
        if silent > self.timeout:
            self._healthy_since = None
        elif self._healthy_since is None:
            self._healthy_since = now
        if not alive:
            return self._switch(BYPASS, "engine exited")
        if self.state == INLINE and (forced or silent > self.timeout):
            why = "forced by operator" if forced else f"engine stalled: no heartbeat for {silent:.3f} s"
            return self._switch(BYPASS, why)
        healthy_for = now - self._healthy_since if self._healthy_since is not None else 0.0
        if self.state == BYPASS and not forced and healthy_for >= self.recovery:
            return self._switch(INLINE, f"engine healthy for {healthy_for:.3f} s")
        return None

    def _switch(self, state: str, reason: str) -> tuple[str, str] | None:
        if state == self.state:
            return None
        self.state = state
        return state, reason


# -- the watchdog process ---------------------------------------------------------------
class _Watch:
    """What run_watchdog acts on: the firewall, the inherited sockets, the report pipe, the state file."""

    def __init__(self, firewall: Firewall, queue_fds: dict[int, int], report_fd: int, run_dir: Path,
                 engine_pids: list[int]):
        self.firewall, self.queue_fds, self.report_fd = firewall, queue_fds, report_fd
        self.run_dir, self.engine_pids, self.switches = run_dir, engine_pids, 0

    def release(self) -> int:
        released = 0
        for num, fd in self.queue_fds.items():
            try:
                released += release_held(fd, num)
            except OSError:
                pass   # socket already gone: nothing of ours is held there
        return released

    def apply(self, state: str, reason: str, release: bool) -> BypassSwitch:
        """Turn the switch; ``release``: the engine cannot answer, accept what it holds (before and after)."""
        t0 = time.monotonic()
        released = self.release() if release else 0
        try:
            self.firewall.set_bypass(state == BYPASS)
        except FirewallError as e:
            reason = f"{reason}; firewall switch failed: {e}"
        if release:
            released += self.release()
        self.switches += 1
        change = BypassSwitch(time.time(), state, reason, released, round(time.monotonic() - t0, 4))
        self.report(change)
        return change

    def report(self, change: BypassSwitch) -> None:
        line = json.dumps(change._asdict()) + "\n"
        try:
            os.write(self.report_fd, line.encode())
        except OSError:
            pass   # the engine is gone or its pipe is full: the state file still tells
        state = {"pid": os.getpid(), "engine_pid": self.engine_pids[0], "engine_pids": self.engine_pids,
                 "state": change.state,
                 "since": change.ts, "reason": change.reason, "switches": self.switches,
                 "queues": sorted(self.queue_fds)}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.run_dir / f".{STATE_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps(state) + "\n")
        tmp.replace(self.run_dir / STATE_FILE)


def run_watchdog(engine_pids: list[int], heartbeat_fd: int, queue_fds: dict[int, int], firewall: Firewall,
                 report_fd: int, *, run_dir: str | os.PathLike = DEFAULT_RUN_DIR, timeout: float = DEFAULT_TIMEOUT,
                 recovery: float = DEFAULT_RECOVERY, poll: float = DEFAULT_POLL) -> int:
    """Watch the engines until SIGTERM (returns 0) or the death of one (bypass, release, unbind, returns 0)."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # a Ctrl-C of the engine's terminal is the engine's to handle
    beats = _COUNTER * len(engine_pids)
    heartbeat = mmap.mmap(heartbeat_fd, ctypes.sizeof(beats), prot=mmap.PROT_READ)
    os.set_blocking(report_fd, False)   # an engine that does not read its events never blocks the watchdog
    watch = _Watch(firewall, queue_fds, report_fd, Path(run_dir), engine_pids)
    forced_path = watch.run_dir / FORCED_FILE
    poller = select.poll()
    for pid in engine_pids:
        poller.register(os.pidfd_open(pid), select.POLLIN)
    policy = BypassPolicy(timeout, recovery, time.monotonic())
    watch.report(BypassSwitch(time.time(), INLINE, "watchdog started", 0, 0.0))
    alive = True
    while alive and not stop:
        alive = not poller.poll(int(poll * 1000))
        now = time.monotonic()
        change = policy.observe(now, tuple(beats.from_buffer_copy(heartbeat)), alive, forced_path.exists())
        if change:
            watch.apply(*change, release=change[0] == BYPASS and (policy.stalled(now) or not alive))
        elif policy.state == BYPASS and policy.stalled(now):
            watch.release()   # queued between the release and the switch, or the switch failed
    if not alive:
        watch.release()
        for fd in queue_fds.values():
            os.close(fd)   # the last reference: the kernel unbinds the queues
    return 0


# -- the engine's side ---------------------------------------------------------------------
class Watchdog:
    """Starts and stops the watchdog process; the engine calls ``beat()`` every loop iteration.

    ``queues`` are bound ``NfQueue`` objects (anything with ``queue_num`` and
    ``fileno()``).  Stop the watchdog before closing the queues: it holds
    duplicates of their sockets.  ``engines``: how many engine processes beat
    (workers forked after this object was made; each calls ``as_engine(k)``
    and the parent ``start(pids)``).
    """

    def __init__(self, firewall: Firewall, queues, *, timeout: float = DEFAULT_TIMEOUT,
                 recovery: float = DEFAULT_RECOVERY, poll: float = DEFAULT_POLL,
                 run_dir: str | os.PathLike | None = None, engines: int = 1):
        if not 0 < poll < timeout:
            raise ValueError(f"watchdog poll ({poll}) must be positive and shorter than its timeout ({timeout})")
        self.firewall = firewall
        self.queue_fds = {q.queue_num: q.fileno() for q in queues}
        self.timeout, self.recovery, self.poll = timeout, recovery, poll
        self.run_dir = Path(run_dir) if run_dir is not None else firewall.run_dir
        self._proc: subprocess.Popen | None = None
        self._partial = b""
        beats = _COUNTER * engines
        self._memfd = os.memfd_create("mirrorwatch-heartbeat", 0)
        os.ftruncate(self._memfd, ctypes.sizeof(beats))
        self._map = mmap.mmap(self._memfd, ctypes.sizeof(beats))
        self._counters = beats.from_buffer(self._map)
        self._slot = 0
        self._report_r, self._report_w = os.pipe()

    def beat(self) -> None:
        """The engine is alive (one shared-memory increment)."""
        self._counters[self._slot] += 1

    def as_engine(self, k: int) -> None:
        """In the forked engine ``k``: beat counter ``k``; the report pipe is the parent's."""
        self._slot = k
        for fd in (self._report_r, self._report_w):
            os.close(fd)
        self._report_r = self._report_w = -1

    def start(self, engine_pids: list[int] | None = None) -> BypassSwitch:
        """Start the watchdog process over ``engine_pids`` (default: this process, the one engine);
        returns its first report once it watches."""
        config = {"engine_pids": engine_pids or [os.getpid()], "heartbeat_fd": self._memfd,
                  "report_fd": self._report_w,
                  "queue_fds": self.queue_fds, "firewall": self.firewall.config(), "run_dir": str(self.run_dir),
                  "timeout": self.timeout, "recovery": self.recovery, "poll": self.poll}
        fds = (self._memfd, self._report_w, *self.queue_fds.values())
        self._proc = subprocess.Popen([sys.executable, "-m", "mirrorwatch.inline.watchdog", json.dumps(config)],
                                      pass_fds=fds, stdin=subprocess.DEVNULL)
        os.close(self._report_w)
        if not select.select([self._report_r], [], [], START_TIMEOUT)[0]:
            self.stop()
            raise RuntimeError(f"the inline watchdog did not start within {START_TIMEOUT:g}s")
        first = self.events()
        if not first:
            raise RuntimeError(f"the inline watchdog exited at start (exit code {self._proc.wait()})")
        return first[0]

    def fileno(self) -> int:
        """Readable when the watchdog reported a state change."""
        return self._report_r

    def events(self) -> list[BypassSwitch]:
        """The state changes reported since the last call (never blocks)."""
        data = b""
        while select.select([self._report_r], [], [], 0)[0]:
            chunk = os.read(self._report_r, 65536)
            if not chunk:
                break
            data += chunk
        *lines, self._partial = (self._partial + data).split(b"\n")
        return [BypassSwitch(**json.loads(line)) for line in lines if line.strip()]

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Stop the watchdog (the firewall and its bypass switch are left as they are)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for fd in (self._report_r, self._memfd):
            try:
                os.close(fd)
            except OSError:
                pass
        self._report_r = self._memfd = -1

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# -- mirrorwatch bypass on|off|status ----------------------------------------------------------
def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError):
        return False
    return True


def _watchdog_state(run_dir: Path) -> dict | None:
    try:
        state = json.loads((run_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def status(run_dir: str | os.PathLike = DEFAULT_RUN_DIR) -> dict:
    """The inline state: firewall config and bypass switch, forced flag, watchdog, kernel queue counters."""
    run_dir = Path(run_dir)
    out: dict = {"firewall": None, "bypass": None, "forced": (run_dir / FORCED_FILE).exists(),
                 "watchdog": _watchdog_state(run_dir), "queues": {}}
    if out["watchdog"] is not None:
        out["watchdog"]["alive"] = _pid_alive(out["watchdog"].get("pid"))
    try:
        fw = Firewall.from_state(run_dir)
    except FirewallError as e:
        out["error"] = str(e)
        return out
    out["firewall"] = fw.config()
    out["bypass"] = fw.bypass_on()
    first, last = fw.queue
    for num in range(first, last + 1):
        stats = kernel_queue_stats(num)
        if stats is not None:
            out["queues"][num] = stats._asdict()
    return out


def force_bypass(on: bool, run_dir: str | os.PathLike = DEFAULT_RUN_DIR) -> dict:
    """Operator's switch: on holds bypass until turned off; off hands control back to the watchdog
    (which restores inline when the engine is healthy), or turns bypass off itself when no watchdog runs."""
    run_dir = Path(run_dir)
    fw = Firewall.from_state(run_dir)
    forced = run_dir / FORCED_FILE
    if on:
        forced.touch()
        fw.set_bypass(True)
    else:
        forced.unlink(missing_ok=True)
        watchdog = _watchdog_state(run_dir)
        if watchdog is None or not _pid_alive(watchdog.get("pid")):
            fw.set_bypass(False)
    return status(run_dir)


def main(argv: list[str]) -> int:
    """The watchdog process: ``python -m mirrorwatch.inline.watchdog CONFIG_JSON`` (started by Watchdog)."""
    cfg = json.loads(argv[0])
    firewall = Firewall.from_config(cfg["firewall"], cfg["run_dir"])
    return run_watchdog(cfg["engine_pids"], cfg["heartbeat_fd"], {int(k): v for k, v in cfg["queue_fds"].items()},
                        firewall, cfg["report_fd"], run_dir=cfg["run_dir"], timeout=cfg["timeout"],
                        recovery=cfg["recovery"], poll=cfg["poll"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
