"""``mirrorwatch listen IFACE``: the engine on a live mirror port.

The capture thread (``live.LiveCapture``) hands frames over in batches; this
module's loop, in the main thread, feeds them to the same engine and sinks as
replay, advances time with wall-clock ticks so idle sessions end, redraws the
live table a few times per second, and turns signals into clean actions:

- SIGINT / SIGTERM: stop capturing, flush every session as a flow event, write
  the final stats, close the outputs, print the summary, exit 0.
- SIGHUP: reload the rule files (kept only if they load without errors and
  not empty where rules were loaded before; else one error line and the old
  rules stay) and reopen the EVE / fast.log files (logrotate).
- the interface going down: flush as above, one error line, exit 1.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback

import click

from mirrorwatch.cli.common import (
    build_killer,
    build_run,
    eve_specs,
    fail,
    human_console,
    kill_options,
    output_options,
    report_ruleset,
    sensor_name,
    warn,
)
from mirrorwatch.cli.workers import fanout_immediate, share_caps, workers_option
from mirrorwatch.core.settings import SettingError, Settings, help_text, parse_size
from mirrorwatch.sinks.summary import plural
from mirrorwatch.sinks.table import SORT_KEYS
from mirrorwatch.sources.live import META, CaptureError, LiveCapture, privilege_problem

SORT_BY_KEY = {"b": "bytes", "r": "rate", "a": "age", "g": "alerts"}
UI_INTERVAL = 0.25  # seconds between table redraws (stretched when a redraw is costly)
SINK_FLUSH_INTERVAL = 1.0  # seconds between flushes of buffered outputs, so `tail -f` follows
GIL_SWITCH_INTERVAL = 0.0005  # seconds the table painter may hold the GIL before the engine gets it (Python: 5 ms)


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
        live = self._start_display()
        painter = _Painter(live) if live is not None else None
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
                    cost = self._redraw(painter, now)
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
    def _start_display(self):
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

    def _redraw(self, painter: "_Painter", now: float) -> float:
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



class _Painter:
    """Draws the live table's frames in its own thread.

    Laying a full-screen rich table out and writing it takes tens of
    milliseconds; done in the engine's thread, every frame (and every kill)
    arriving meanwhile waited for it: with the table on a terminal the kill
    p99 was ~30 ms instead of ~1 ms (bench/kill_latency.py on a pty).  The
    frame is built in the engine's thread (it reads sessions the engine
    changes) and only drawn here; a frame not yet drawn is replaced by the
    newer one.  ``listen`` lowers the interpreter's switch interval while the
    table is shown, so this thread yields the GIL to the engine within
    ``GIL_SWITCH_INTERVAL`` instead of Python's default 5 ms.
    """

    def __init__(self, live):
        self.live = live
        self.cost = 0.0  # seconds the last frame took to draw
        self._frame = None
        self._stop = False
        self._cv = threading.Condition()
        self._old_switch = sys.getswitchinterval()
        sys.setswitchinterval(min(self._old_switch, GIL_SWITCH_INTERVAL))
        self._thread = threading.Thread(target=self._run, name="table-painter", daemon=True)
        self._thread.start()

    def show(self, frame) -> None:
        with self._cv:
            self._frame = frame
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._frame is None and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                frame, self._frame = self._frame, None
            t = time.monotonic()
            try:
                self.live.update(frame, refresh=True)
            except Exception:  # noqa: BLE001 - a terminal gone away must not stop the capture
                pass
            self.cost = time.monotonic() - t

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(2.0)
        sys.setswitchinterval(self._old_switch)


def _why_not_immediate(cap: LiveCapture) -> str:
    """For capture.immediate=auto left off: why, so the operator knows how to get faster kills."""
    if cap.immediate_mode != "auto" or cap.immediate_active:
        return ""
    return f" (capture.immediate=auto: {cap.immediate_skipped or cap.immediate_problem})"


def _report_capture(c: dict, quiet: bool) -> None:
    """The capture's own accounting at exit: drops are a warning, with what to raise."""
    if c["drops"]:
        pct = 100.0 * c["drops"] / max(1, c["received"] + c["kernel_drops"])
        click.echo(f"mirrorwatch: warning: capture on {c['interface']} dropped {plural(c['drops'], 'frame')} "
                   f"({pct:.2f}%): queue {c['queue_drops']:,} (raise capture.queue-size), kernel {c['kernel_drops']:,} "
                   f"(raise --buffer-size); {c['received']:,} received", err=True)
    elif not quiet:
        click.echo(f"mirrorwatch: capture on {c['interface']}: {plural(c['received'], 'frame')} received, no drops"
                   + (f" (interface rx_dropped {c['ifdrops']:,})" if c["ifdrops"] else ""), err=True)


@click.command("listen", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
               epilog="\b\nSettings (--set KEY=VALUE; default shown):\n" + help_text())
@click.argument("iface")
@click.option("-r", "--rules", "rules", multiple=True, type=click.Path(),
              help="rule file or directory of *.rules (repeatable) [default: rule-files of -c, else the bundled "
                   "signatures/]; reloaded on SIGHUP")
@output_options(live=True)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="override a setting (repeatable; stream.midstream and stream.inline default to true here)")
@click.option("-k", "checksum", type=click.Choice(["auto", "all", "none"]), default="auto", show_default=True,
              help="checksum validation: all, none, or auto (off when the NIC offloads them)")
@click.option("--bpf", "bpf", default=None, metavar="EXPR", help="capture filter (tcpdump syntax; on an 802.1Q-tagged mirror write 'vlan and tcp', as with tcpdump)")
@click.option("--snaplen", type=click.IntRange(64, 262144), default=262144, show_default=True,
              help="bytes kept per frame (GRO/TSO can hand libpcap frames larger than 64 KiB)")
@click.option("--no-promisc", is_flag=True, help="do not put the interface in promiscuous mode")
@click.option("--buffer-size", default="64mb", show_default=True, help="kernel capture ring size (e.g. 256mb)")
@click.option("--sort", type=click.Choice(SORT_KEYS), default="bytes", show_default=True, help="live table order")
@click.option("--no-table", is_flag=True, help="no live table; a stats line every capture.stats-interval seconds")
@click.option("-q", "--quiet", is_flag=True, help="no summary at the end")
@workers_option
@kill_options(live=True)
def listen(iface, rules, config, eve, eve_types, eve_payload, fast, sensor_name_opt, sets, checksum, bpf, snaplen, no_promisc, buffer_size, sort, no_table, quiet,
           workers, **kill):
    """Watch a live interface (a switch mirror/SPAN port) until Ctrl-C or SIGTERM.

    SIGHUP reloads the rule files (the old rules stay when the new ones fail
    to load) and reopens the output files (logrotate).
    """
    from rich.console import Console

    from mirrorwatch.cli.pipeline import (
        Pipeline,
        PipelineError,
        bundled_signatures,
        tune_gc,
    )
    from mirrorwatch.sinks.table import LiveTable

    # stream.inline: each packet's new bytes are inspected on arrival, so a reject rule kills on the
    # trigger packet; IDS chunking would hold a short request until 2560 bytes or the session's end
    settings, run = build_run(sets, base={"stream.midstream": True, "stream.inline": True}, config=config)
    if workers > 1:
        share_caps(settings, workers)
    specs = eve_specs(run, eve, eve_types, eve_payload)
    eve_stdout = any(spec.target == "-" for spec in specs)
    try:
        ring = parse_size(buffer_size)
    except SettingError as e:
        fail(f"--buffer-size: {e}", 2)
    why = privilege_problem()
    if why:
        fail(why)
    if iface == "any" and not kill.get("inject_iface") and not kill.get("dry_run"):
        fail("capturing on 'any' leaves no interface to send resets on: give --inject-iface IFACE "
             "(or --dry-run to decide kills without sending)", 2)
    cap = LiveCapture(iface, settings, bpf=bpf, snaplen=snaplen, promisc=not no_promisc, buffer_size=ring,
                      immediate=fanout_immediate(settings) if workers > 1 else None)
    try:
        cap.open()
        caps = None
        if workers > 1:  # one handle per worker, in one fanout group
            from mirrorwatch.cli.workers.live import open_captures

            caps = open_captures(cap, workers, settings)
    except CaptureError as e:
        fail(str(e))
    if cap.immediate_problem and cap.immediate_mode == "true":
        click.echo(f"mirrorwatch: warning: capture.immediate not enabled, frames wait up to capture.read-timeout "
                   f"({cap.timeout_ms} ms): {cap.immediate_problem}", err=True)
    # the table needs the terminal to itself: not when EVE goes to stdout
    want_table = not no_table and not eve_stdout and sys.stdout.isatty()
    # the injection socket opens now, so a missing privilege or interface stops us before capture
    killer, kill_sinks = build_killer(settings, kill, inject_iface=kill.get("inject_iface") or iface,
                                      log=None if want_table else (sys.stderr if eve_stdout else sys.stdout))
    try:
        rule_paths = list(rules) or run.rule_paths or [str(bundled_signatures())]
        pipe = Pipeline.build(settings, rule_paths=rule_paths, eve=specs, fast=fast or run.fast,
                              checksum_mode=checksum, console_alerts=not want_table, killer=killer,
                              kill_sinks=kill_sinks, classification=run.classification,
                              host=sensor_name(run, sensor_name_opt), in_iface=iface)
    except PipelineError as e:
        cap.close()
        fail(str(e))
    report_ruleset(pipe.ruleset, quiet)
    tune_gc()
    table = LiveTable(pipe.engine, source=iface, sort=sort, capture_counters=cap.counters)
    pipe.add_sink(table)
    console = Console(highlight=False)
    stats_out = None if want_table else (sys.stderr if eve_stdout else sys.stdout)
    listener = Listener(cap, pipe, table=table, display=want_table, console=console,
                        stats_out=stats_out, rule_paths=rule_paths, settings=settings)
    click.echo(f"mirrorwatch: listening on {iface} (link type {cap.linktype}, snaplen {snaplen}, "
               f"{'promiscuous' if not no_promisc else 'not promiscuous'}, "
               f"{'immediate mode' if cap.immediate_active else f'read-timeout {cap.timeout_ms} ms'}"
               f"{_why_not_immediate(cap)}"
               f"{', filter ' + repr(bpf) if bpf else ''}"
               f"{f', {workers} workers in PACKET_FANOUT group {cap.fanout}' if caps else ''}"
               "); Ctrl-C to stop, SIGHUP to reload rules", err=True)
    if caps is None:
        code = listener.run()
        capture = cap.counters(refresh=False)
    else:
        from mirrorwatch.cli.workers.live import run_cli

        code, capture = run_cli(listener, caps)
    for line in pipe.output_warnings():
        warn(line)
    if pipe.records_lost() and not code:
        code = 1  # an output that lost records failed, as one that cannot be written
    _report_capture(capture, quiet)
    if not quiet:
        pipe.print_summary(human_console(stderr=eve_stdout), show_table=True)
    sys.exit(code)
