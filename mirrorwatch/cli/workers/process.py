"""Worker processes: forked from the coordinator once the pipeline is built, watched until they end.

Forking after the build means a worker starts at once with the rules already
parsed and compiled (copy-on-write), and its sinks are the coordinator's,
which ``outbox.detach`` points at the pipe.  A worker never returns into the
caller's code: it ends with ``os._exit`` (no atexit handlers, no flushing of
the file buffers it inherited, which belong to the coordinator).

Each worker has two pipes: ``conn`` (worker -> coordinator: output batches,
views, log lines, and its ``done`` message with what it counted) and ``ctl``
(coordinator -> worker: the live table's sort order).  A worker that ends
without its ``done`` message died; ``describe`` says how, from its exit
status.  When the coordinator dies, the kernel sends each worker SIGTERM
(``PR_SET_PDEATHSIG``), so none is left capturing on its own.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import traceback
from multiprocessing import Pipe
from multiprocessing.connection import wait

from mirrorwatch.cli.workers.outbox import LogStream, Outbox

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
EXIT_INTERNAL = 70  # a worker's exit status when its own code failed (sysexits' EX_SOFTWARE)


class Worker:
    """The coordinator's handle on one worker process."""

    def __init__(self, index: int, pid: int, conn, ctl):
        self.index = index
        self.pid = pid
        self.conn = conn
        self.ctl = ctl
        self.done: dict | None = None  # its final message
        self.ended = False  # its pipe closed
        self.status: int | None = None  # its wait status, once reaped

    def reap(self, block: bool = True) -> None:
        if self.status is None:
            try:
                pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return
            if pid:
                self.status = status

    def describe(self) -> str:
        """How the worker ended, for the one line that reports its death."""
        st = self.status
        if st is None:
            return "closed its pipe"
        if os.WIFSIGNALED(st):
            sig = os.WTERMSIG(st)
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = f"signal {sig}"
            return f"was killed by {name}"
        return f"exited with status {os.WEXITSTATUS(st)}"

    def tell(self, msg) -> bool:
        """A message on the worker's ``ctl`` pipe; False when the worker is gone (nobody needs it then)."""
        try:
            self.ctl.send(msg)
        except OSError:  # BrokenPipeError: it died
            return False
        return True

    def signal(self, sig: int) -> None:
        if not self.ended:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass


def start(count: int, run) -> list[Worker]:
    """Fork ``count`` workers; worker k runs ``run(k, outbox, ctl)`` and exits with what it returns."""
    workers: list[Worker] = []
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    for k in range(count):
        r, w = Pipe(duplex=False)
        cr, cw = Pipe(duplex=False)
        pid = os.fork()
        if pid == 0:
            for other in workers:  # the coordinator's ends of the earlier workers' pipes
                other.conn.close()
                other.ctl.close()
            r.close()
            cw.close()
            _child(k, parent, w, cr, run)
        w.close()
        cr.close()
        workers.append(Worker(k, pid, r, cw))
    return workers


def _child(k: int, parent: int, conn, ctl, run) -> None:
    """The worker's whole life; never returns."""
    code = EXIT_INTERNAL
    outbox = Outbox(conn)
    try:
        _die_with(parent)
        sys.stderr = LogStream(outbox)
        code = run(k, outbox, ctl)
        sys.stderr.flush()
    except BrokenPipeError:
        code = EXIT_INTERNAL  # the coordinator is gone: nobody to report to
    except BaseException as e:  # noqa: BLE001 - a worker reports its failure and exits, always
        with contextlib.suppress(BaseException):  # the pipe may be what failed: then nobody hears it
            outbox.send("log", f"mirrorwatch: error: worker {k + 1} failed: {_where(e)}")
    finally:
        os._exit(code)


def _where(e: BaseException) -> str:
    """The exception and the line that raised it; the traceback too with MIRRORWATCH_DEBUG=1."""
    frames = traceback.extract_tb(e.__traceback__)
    at = f" ({os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    if os.environ.get("MIRRORWATCH_DEBUG") == "1":
        return "".join(traceback.format_exception(e)).rstrip()
    return f"{type(e).__name__}: {e}{at}"


def _die_with(parent: int) -> None:
    """Ask the kernel for SIGTERM when the coordinator dies (and check it did not already)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(EXIT_INTERNAL)


def readable(workers: list[Worker], timeout: float) -> list[Worker]:
    """The running workers with something to read."""
    live = {w.conn: w for w in workers if not w.ended}
    return [live[c] for c in wait(list(live), timeout)] if live else []


def receive(w: Worker):
    """The worker's next message, or None when its pipe closed (it ended)."""
    try:
        return w.conn.recv()
    except (EOFError, OSError):
        w.ended = True
        w.conn.close()
        w.reap()
        return None


def died(workers: list[Worker]) -> list[Worker]:
    return [w for w in workers if w.ended and w.done is None]
