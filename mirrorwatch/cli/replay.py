"""``mirrorwatch replay PCAP...``: the engine over capture files, as fast as they read or at recorded pace."""

from __future__ import annotations

import signal
import sys

import click

from mirrorwatch.cli.common import (
    CONTEXT,
    build_killer,
    build_settings,
    fail,
    human_console,
    kill_options,
    report_ruleset,
    settings_epilog,
    warn,
)
from mirrorwatch.sinks.eve import DEFAULT_TYPES


@click.command(epilog=settings_epilog(), context_settings=CONTEXT)
@click.argument("pcaps", nargs=-1, required=True, metavar="PCAP...")
@click.option("-r", "--rules", "rules", multiple=True, metavar="PATH",
              help="rule file or directory of *.rules (repeatable) [default: the bundled signatures/]")
@click.option("--classification", metavar="FILE", default=None,
              help="classification.config for classtypes [default: the bundled one]")
@click.option("--eve", metavar="PATH", default=None, help="write EVE JSON lines to PATH ('-' = stdout)")
@click.option("--eve-types", default=",".join(DEFAULT_TYPES), show_default=True, metavar="LIST",
              help="EVE event types to write (comma-separated: " + ", ".join(DEFAULT_TYPES) + ")")
@click.option("--eve-payload", is_flag=True, help="add the matching payload (base64 and printable) to EVE alerts")
@click.option("--fast", metavar="PATH", default=None, help="write Suricata fast.log lines to PATH")
@click.option("-k", "--checksum-checks", "checksum", type=click.Choice(["auto", "all", "none"]), default="auto",
              show_default=True, help="checksum validation: all, none, or auto (off when offloading is detected)")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="override a setting (repeatable; list below)")
@click.option("-q", "--quiet", is_flag=True, help="no alert lines and no summary on the console")
@click.option("--no-alerts", is_flag=True, help="no alert lines on the console (the summary still counts them)")
@click.option("--no-table", is_flag=True, help="summary without the session table")
@click.option("--top", default=20, show_default=True, type=click.IntRange(1, 10_000),
              help="sessions shown in the summary table")
@click.option("--dump-streams", metavar="DIR", default=None, help="write each TCP session's reassembled streams to DIR")
@click.option("--realtime", is_flag=True, help="replay at the recorded pace")
@click.option("--speed", default=1.0, show_default=True, type=click.FloatRange(min=0.001),
              help="with --realtime: pace multiplier (2 = twice as fast)")
@click.option("--table", "live_table", is_flag=True, help="show the live session table while replaying")
@kill_options(live=False)
def replay(pcaps, rules, classification, eve, eve_types, eve_payload, fast, checksum, sets, quiet, no_alerts, no_table, top,
           dump_streams, realtime, speed, live_table, **kill):
    """Analyse pcap/pcapng files (in order, as one capture) and report alerts and sessions."""
    from mirrorwatch.cli.pipeline import Pipeline, PipelineError, tune_gc
    from mirrorwatch.sources.pcapfile import CaptureError, check_files

    settings = build_settings(sets)
    types = tuple(t.strip() for t in eve_types.split(",") if t.strip())
    bad = [t for t in types if t not in DEFAULT_TYPES]
    if bad:
        fail(f"--eve-types: unknown event type {bad[0]!r} (use {', '.join(DEFAULT_TYPES)})", 2)
    try:
        check_files(pcaps)  # every file readable and of a known link type, before any work
    except CaptureError as e:
        fail(str(e))
    human_err = eve == "-"
    killer, kill_sinks = build_killer(settings, kill, log=None if quiet or live_table else
                                      (sys.stderr if human_err else sys.stdout))
    try:
        pipe = Pipeline.build(settings, rule_paths=rules, eve=eve, fast=fast, checksum_mode=checksum,
                              console_alerts=not (quiet or no_alerts or live_table), eve_types=types,
                              eve_payload=eve_payload, classification=classification, dump_streams=dump_streams,
                              killer=killer, kill_sinks=kill_sinks)
    except PipelineError as e:
        fail(str(e))
    report_ruleset(pipe.ruleset, quiet, rules)
    pipe.summary.top = top
    tune_gc()
    code = _run_replay(pipe, pcaps, realtime, speed, live_table)
    if not quiet:
        pipe.print_summary(human_console(stderr=human_err), show_table=not no_table)
    sys.exit(code)


def _run_replay(pipe, pcaps, realtime: bool, speed: float, live_table: bool) -> int:
    """Run and finish the pipeline; returns the exit code (130 when interrupted)."""
    from mirrorwatch.cli.pipeline import replay as run
    from mirrorwatch.sources.pcapfile import CaptureError

    code = 0
    display = None
    on_refresh = None
    if live_table:
        display, on_refresh = _replay_table(pipe, pcaps)
    old_handlers = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        st = run(pipe, pcaps, realtime=realtime, speed=speed, on_refresh=on_refresh)
        for w in st.warnings:
            warn(w)
    except CaptureError as e:  # a file changed between the check and the read
        warn(str(e))
        code = 1
    except KeyboardInterrupt:
        warn("interrupted: the sessions seen so far were flushed to the outputs")
        code = 130
    except BrokenPipeError:
        code = 1
    finally:
        for sig, h in old_handlers.items():
            signal.signal(sig, h)
        if display is not None:
            display.stop()
        try:
            pipe.finish()
        finally:
            pipe.close()
    return code


def _interrupt(signum, frame):
    """SIGINT and SIGTERM stop a replay the same way: flush what was seen, exit 130."""
    raise KeyboardInterrupt


def _replay_table(pipe, pcaps):
    """The live session table over a replay (``--table``): a rich Live display and its refresh hook."""
    import time

    from rich.console import Console
    from rich.live import Live

    from mirrorwatch.sinks.table import LiveTable

    table = LiveTable(pipe.engine, source=", ".join(pcaps))
    pipe.add_sink(table)
    console = Console()
    live = Live(console=console, auto_refresh=False, transient=False)
    live.start()

    def refresh(_now):
        w, h = console.size
        # the table's clock is packet time in replay, so rates and ages follow the capture
        live.update(table.render(pipe.engine.last_ts or time.time(), width=w, height=h), refresh=True)

    return live, refresh
