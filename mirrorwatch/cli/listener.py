"""The live loop of ``listen`` (and of ``inline``, which subclasses it): capture -> engine -> sinks.

The capture thread (``sources.live.LiveCapture``) hands frames over in
batches; ``Listener.run``, in the main thread, feeds them to the same engine
and sinks as replay, advances time with wall-clock ticks so idle sessions end,
redraws the live table a few times per second (drawn by ``painter.Painter``),
and turns signals into clean actions:

- SIGINT / SIGTERM: stop capturing, flush every session as a flow event, write
  the final stats and close the outputs (the command prints the summary).
- SIGHUP: reload the rule files (kept only if they load without errors and
  not empty where rules were loaded before; else one error line and the old
  rules stay) and reopen the EVE / fast.log files (logrotate).
- the interface going down: flush as above, one error line, exit status 1.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback

import click

from mirrorwatch.cli.painter import Painter
from mirrorwatch.core.settings import Settings
from mirrorwatch.sinks.table import SORT_KEYS
from mirrorwatch.sources.live import META, LiveCapture

SORT_BY_KEY = {"b": "bytes", "r": "rate", "a": "age", "g": "alerts"}
UI_INTERVAL = 0.25  # seconds between table redraws (stretched when a redraw is costly)
SINK_FLUSH_INTERVAL = 1.0  # seconds between flushes of buffered outputs, so `tail -f` follows


def internal_error(e: BaseException) -> str:
    """One line for a bug (where it happened); the traceback with MIRRORWATCH_DEBUG=1."""
    tb = traceback.extract_tb(e.__traceback__)
    where = f" at {os.path.basename(tb[-1].filename)}:{tb[-1].lineno}" if tb else ""
    if os.environ.get("MIRRORWATCH_DEBUG") == "1":
        traceback.print_exception(e)
    return f"internal error: {type(e).__name__}: {e}{where} (MIRRORWATCH_DEBUG=1 shows the traceback)"


class _Signals:
    """Signal handlers only set flags; the loop acts on them between batches."""

    def __init__(self):
        self.stop = False
        self.reload = False
        self._old = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._on_stop)
        self._old[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hup)

    def restore(self) -> None:
        for sig, h in self._old.items():
            signal.signal(sig, h)

    def _on_stop(self, signum, frame) -> None:
        self.stop = True

    def _on_hup(self, signum, frame) -> None:
        self.reload = True


class Listener:
    """One live run: capture -> pipeline (engine + sinks) -> display, until stopped."""

    def __init__(self, capture: LiveCapture, pipeline, *, table, display: bool, console=None, stats_out=None,
                 rule_paths=(), settings: Settings):
        self.capture = capture
        self.pipe = pipeline
        self.engine = pipeline.engine
        self.table = table  # LiveTable: a sink that also renders the display / stats line
        self.display = display
        self.console = console
        self.stats_out = stats_out
        self.rule_paths = list(rule_paths)
        self.settings = settings
        self.signals = _Signals()
        self.error: str | None = None
        self._loader: threading.Thread | None = None  # SIGHUP rule parsing in progress
        self._loader_result: dict = {}
        self._reload_again = False
        self.keys = None  # ui.keys.Keys while the table is shown on a terminal
        # lines said while the full-screen table owns the terminal: shown in the table, printed after it
        self._held_lines: list[str] = []

    # -- SIGHUP ---------------------------------------------------------------------
    # Parsing and compiling a large rule set takes seconds; both run in a thread so the
    # engine keeps draining the capture queue meanwhile.  The swap itself happens here, in
    # the main thread, between two batches: no packet ever sees half a rule set.
    def reload(self) -> None:
        """Start a reload (reopen the outputs at once); ``_reload_done`` finishes it."""
        self.pipe.reopen_outputs()
        if self._loader is not None:  # one already running: run another when it ends
            self._reload_again = True
            return
        from mirrorwatch.cli.pipeline import PipelineError, load_ruleset

        result: dict = {}

        def load():
            try:
                rs = load_ruleset(self.rule_paths, self.settings, self.pipe.classification)
                result["detector"] = self.engine.build_detector(rs)
                result["rs"] = rs
            except PipelineError as e:
                result["error"] = f"rules not reloaded: {e}"
            except Exception as e:  # noqa: BLE001 - the old rules stay, with one line saying why
                result["error"] = f"rules not reloaded: {internal_error(e)}"

        self._loader = threading.Thread(target=load, name="rule-reload", daemon=True)
        self._loader_result = result
        self._loader.start()

    def _reload_done(self) -> None:
        self._loader.join()
        result, self._loader = self._loader_result, None
        msg = result.get("error")
        if msg is None:
            try:
                msg = self.pipe.swap_rules(result["rs"], self.rule_paths, result["detector"])
            except Exception as e:  # noqa: BLE001 - e.g. a pattern the matcher cannot compile
                msg = f"rules not reloaded: {internal_error(e)}"
        if msg:
            line = f"mirrorwatch: error: {msg}"
        else:
            skipped = len(self.pipe.ruleset.skipped)
            line = (f"mirrorwatch: reloaded {self.pipe.rule_count} rules from {', '.join(self.rule_paths)}"
                    + (f" ({skipped} skipped: mirrorwatch rules check)" if skipped else ""))
        self._say(line, error=bool(msg))
        if self._reload_again:
            self._reload_again = False
            self.reload()

    def _say(self, line: str, error: bool = False) -> None:
        """One console line; while the full-screen table is shown, in the table and after it."""
        if self.display:
            # writing to the terminal under the alternate screen would scroll the table off it
            self.table.notice(f"{time.strftime('%H:%M:%S')} {line}", error=error)
        if self.display and sys.stderr.isatty():
            self._held_lines.append(line)
        else:
            click.echo(line, err=True)

    def _checksums_pending(self, say) -> bool:
        """``-k auto``: True until the decoder has decided; then one line if it turned checks off."""
        dec = self.engine.decoder
        if dec.auto_sample is None:
            return True
        if dec.auto_disabled:
            bad, checked = dec.auto_sample
            say(f"mirrorwatch: checksum checks off: {bad} of the first {checked} TCP/UDP checksums on "
                f"{self.capture.iface} were wrong (offloaded by the capturing host); -k all keeps them on")
        return False

    # -- the main loop -------------------------------------------------------------------
    def run(self) -> int:
        cap, eng, pipe = self.capture, self.engine, self.pipe
        tick_iv = max(0.01, float(self.settings["capture.tick-interval"]))
        stats_iv = float(self.settings["capture.stats-interval"])
        linktype = cap.linktype
        process, dispatch = eng.process, self._dispatcher()
        mono, wall = time.monotonic, time.time
        self.signals.install()
        cap.start()
        if cap.sched_note:
            self._say(f"mirrorwatch: warning: capture.sched-slice not applied: {cap.sched_note}")
        live = self.start_display()
        painter = Painter(live) if live is not None else None
        ui_iv = UI_INTERVAL
        t0 = mono()
        next_tick, next_ui, next_flush = t0 + tick_iv, t0, t0 + SINK_FLUSH_INTERVAL
        next_stats = t0 + stats_iv if stats_iv > 0 else float("inf")
        checksums_pending = eng.decoder.mode == "auto"
        try:
            while not self.signals.stop:
                batch = cap.get(min(tick_iv, ui_iv))
                if batch is not None:
                    self._feed(batch, process, dispatch, linktype)
                elif not cap.alive():
                    self.error = cap.error or f"capture on {cap.iface!r} ended"
                    break
                now = mono()
                if now >= next_tick:
                    next_tick = now + tick_iv
                    ev = eng.tick(wall())
                    if ev:
                        dispatch(ev)
                    if checksums_pending:
                        checksums_pending = self._checksums_pending(self._say)
                if self.signals.reload:
                    self.signals.reload = False
                    self.reload()
                if self._loader is not None and not self._loader.is_alive():
                    self._reload_done()
                if now >= next_stats:
                    next_stats = now + stats_iv
                    self._periodic_stats(now)
                if now >= next_flush:
                    next_flush = now + SINK_FLUSH_INTERVAL
                    pipe.flush()
                if live is not None and now >= next_ui:
                    cost = self.redraw(painter, now)
                    # keep the display under ~10% of the loop, whatever the table size
                    ui_iv = max(UI_INTERVAL, cost * 10)
                    next_ui = now + ui_iv
        except Exception as e:  # noqa: BLE001 - a bug must still leave complete outputs behind
            self.error = internal_error(e)
        finally:
            self.signals.restore()
            cap.stop()
            if live is not None:
                painter.close()
                live.stop()
                for line in self._held_lines:
                    click.echo(line, err=True)
            if self.keys is not None:
                self.keys.close()
            try:
                # frames captured before the stop are analysed, not lost
                for batch in cap.drain():
                    self._feed(batch, process, dispatch, linktype)
                if checksums_pending:  # decided in the last frames: the table is gone, a plain line
                    self._checksums_pending(lambda line: click.echo(line, err=True))
                pipe.finish(cap.counters())
            except Exception as e:  # noqa: BLE001
                self.error = self.error or internal_error(e)
            finally:
                pipe.close()
                cap.close()
        if self.error:
            click.echo(f"mirrorwatch: error: {self.error}; sessions were flushed to the outputs", err=True)
            return 1
        return 0

    def _dispatcher(self):
        """``dispatch(events)`` with the urgent sinks (the injector) served first over every event.

        The core returns a kill after the alert that caused it; sink by sink
        the order stays, but the forged frames leave before the EVE writer,
        fast.log or the console spend time formatting that alert.
        """
        sinks = self.pipe.sinks
        first = tuple(s.handle for s in sinks if getattr(s, "urgent", False))
        rest = tuple(s.handle for s in sinks if not getattr(s, "urgent", False))
        if not first:
            return self.pipe.dispatch

        def dispatch(events) -> None:
            for h in first:
                for e in events:
                    h(e)
            for e in events:
                for h in rest:
                    h(e)

        return dispatch

    @staticmethod
    def _feed(batch, process, dispatch, linktype: int) -> None:
        """Every frame of one hand-over batch through the engine (the per-packet path)."""
        blob, meta, n = batch
        if n << 4 != len(meta):
            meta = meta[: n << 4]
        for sec, usec, off, caplen in META.iter_unpack(meta):
            ev = process(sec + usec * 1e-6, linktype, blob[off:off + caplen])
            if ev:
                dispatch(ev)

    # -- display ------------------------------------------------------------------------
    def start_display(self):
        """The full-screen table (a started rich ``Live``, the keys read), or None when it is not shown."""
        if not self.display:
            return None
        from rich.live import Live

        from mirrorwatch.cli.keys import Keys

        self.keys = Keys()
        if self.keys.fd is not None:
            self.table.hint = "s: sort  q: quit"
        live = Live(console=self.console, auto_refresh=False, screen=True, transient=False,
                    redirect_stdout=False, redirect_stderr=False)
        live.start()
        return live

    def _on_keys(self, typed: str) -> None:
        """q quits (as Ctrl-C); s cycles the sort order; b r a g pick bytes/rate/age/alerts."""
        for ch in typed.lower():
            if ch == "q":
                self.signals.stop = True
            elif ch == "s":
                self.table.sort = SORT_KEYS[(SORT_KEYS.index(self.table.sort) + 1) % len(SORT_KEYS)]
            elif ch in SORT_BY_KEY:
                self.table.sort = SORT_BY_KEY[ch]

    def redraw(self, painter: Painter, now: float) -> float:
        """Build the next frame here (it reads the engine); the painter thread draws it."""
        t = time.monotonic()
        if self.keys is not None:
            typed = self.keys.read()
            if typed:
                self._on_keys(typed)
        w, h = self.console.size
        painter.show(self.table.render(time.time(), width=w, height=h))
        return time.monotonic() - t + painter.cost

    def _periodic_stats(self, now: float) -> None:
        from mirrorwatch.core.events import Stats

        self.pipe.dispatch([Stats(time.time(), self.counters())])
        if self.stats_out is not None:
            self.stats_out.write(self.table.stats_line(time.time()) + "\n")
            self.stats_out.flush()

    def counters(self) -> dict:
        c = self.engine.counters()
        c.setdefault("capture", {}).update(self.capture.counters())
        c.update(self.pipe.output_counters())
        return c
