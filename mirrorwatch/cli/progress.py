"""Progress bars for long work on a terminal: rules being parsed, capture files being replayed.

Shown on stderr only when stderr is a terminal (and erased when done): a
replay piped or redirected prints exactly what it printed before.  The bar is
drawn by rich's refresh thread, which pulls the counts it shows (``poll``)
just before each redraw; the engine's loop is not touched.

How far a replay has read its files comes from the kernel: libpcap reads each
file through one descriptor, whose offset (``lseek(fd, 0, SEEK_CUR)``, found
by matching ``/proc/self/fd`` links against the capture paths) is how many of
its bytes have been read (ahead by libpcap's read buffer, a few KiB).
"""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

REFRESH_PER_SECOND = 4  # redraws of the bar per second (each takes the GIL for well under a millisecond)
FD_DIR = "/proc/self/fd"


class _Pulling(Progress):
    """A rich Progress that asks ``poll()`` for fresh numbers before each redraw."""

    def __init__(self, *columns, poll, **kwargs):
        self._poll = poll
        super().__init__(*columns, **kwargs)

    def get_renderables(self):
        if self.tasks:  # not while rich builds the display, before the task exists
            self._poll()
        yield from super().get_renderables()


def _console() -> Console:
    return Console(stderr=True, highlight=False)


class RulesProgress:
    """``progress(done, total)`` for ``load_ruleset``: bytes of rule text parsed, then 'preparing'."""

    def __init__(self, what: str = "parsing rules"):
        self.what = what
        self.done = self.total = 0
        self.bar = _Pulling(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                            TextColumn("{task.percentage:>3.0f}%"), DownloadColumn(), TimeElapsedColumn(),
                            poll=self._poll, console=_console(), transient=True,
                            refresh_per_second=REFRESH_PER_SECOND,
                            # sinks made meanwhile must get the real streams, not a proxy that dies with the bar
                            redirect_stdout=False, redirect_stderr=False)
        self.task = self.bar.add_task(what, total=None)

    def __call__(self, done: int, total: int) -> None:  # the loader's thread: plain stores only
        self.done, self.total = done, total

    def _poll(self) -> None:
        finished = self.total and self.done >= self.total
        self.bar.update(self.task, completed=self.done, total=self.total or None,
                        description="preparing the rules" if finished else self.what)

    def __enter__(self):
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()


class FilesRead:
    """How many bytes of the capture files libpcap has read so far (None when it cannot be told)."""

    def __init__(self, paths):
        self.paths = [os.path.realpath(p) for p in paths]
        self.sizes = [_size(p) for p in self.paths]
        self.total = sum(self.sizes)
        self._index = 0  # the file being read: files are read in order, so this only moves forward
        self._pos = 0

    def done(self) -> int | None:
        try:
            fds = os.listdir(FD_DIR)
        except OSError:
            return None
        open_paths = {}
        for fd in fds:
            try:
                open_paths[os.readlink(f"{FD_DIR}/{fd}")] = int(fd)
            except (OSError, ValueError):
                continue  # closed meanwhile
        for i in range(self._index, len(self.paths)):
            fd = open_paths.get(self.paths[i])
            if fd is None:
                continue
            try:
                pos = os.lseek(fd, 0, os.SEEK_CUR)
            except OSError:
                break
            self._index, self._pos = i, pos
            break
        return sum(self.sizes[: self._index]) + min(self._pos, self.sizes[self._index])


class ReplayProgress:
    """The replay's bar: bytes of the files read, packets/s, alerts so far, time left."""

    def __init__(self, paths, pipe):
        self.pipe = pipe
        self.files = FilesRead(paths)
        self.bar = _Pulling(TextColumn("replaying"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                            DownloadColumn(), TextColumn("{task.fields[pps]:>10,.0f} packets/s"),
                            TextColumn("{task.fields[alerts]:,} alerts"), TimeRemainingColumn(),
                            poll=self._poll, console=_console(), transient=True,
                            refresh_per_second=REFRESH_PER_SECOND,
                            redirect_stdout=sys.stdout.isatty(), redirect_stderr=True)
        self.task = self.bar.add_task("replay", total=self.files.total or None, pps=0.0, alerts=0)

    def _poll(self) -> None:
        task = self.bar.tasks[0]
        elapsed = task.elapsed or 0.0
        packets = self.pipe.engine.pcap_cnt
        self.bar.update(self.task, completed=self.files.done() or 0, alerts=self.pipe.summary.alerts,
                        pps=packets / elapsed if elapsed > 0 else 0.0)

    def start(self) -> None:
        """Start drawing; console lines written meanwhile (alerts, kills) are printed above the bar."""
        before = (sys.stdout, sys.stderr)
        self.bar.start()
        proxies = dict(zip(before, (sys.stdout, sys.stderr)))
        for sink in self.pipe.sinks:
            stream = getattr(sink, "stream", None)
            if stream in proxies:
                sink.stream = proxies[stream]
        self._restore = {id(proxy): real for real, proxy in proxies.items()}

    def stop(self) -> None:
        self.bar.stop()
        for sink in self.pipe.sinks:
            real = self._restore.get(id(getattr(sink, "stream", None)))
            if real is not None:
                sink.stream = real


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
