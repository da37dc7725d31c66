"""``mirrorwatch replay PCAP...``: the engine over capture files, as fast as they read or at recorded pace."""

from __future__ import annotations

import contextlib
import signal
import sys

import click

from mirrorwatch.cli.common import (
    CONTEXT,
    build_killer,
    build_run,
    eve_specs,
    fail,
    human_console,
    kill_options,
    on_terminal,
    output_options,
    report_ruleset,
    sensor_name,
    settings_epilog,
    warn,
)
from mirrorwatch.cli.workers import share_caps, workers_option


@click.command(epilog=settings_epilog(), context_settings=CONTEXT)
@click.argument("pcaps", nargs=-1, required=True, metavar="PCAP...")
@click.option("-r", "--rules", "rules", multiple=True, metavar="PATH",
              help="rule file or directory of *.rules (repeatable) [default: rule-files of -c, else the bundled "
                   "signatures/]")
@click.option("--classification", metavar="FILE", default=None,
              help="classification.config for classtypes [default: classification-file of -c, else the bundled one]")
@output_options(live=False)
@click.option("-k", "--checksum-checks", "checksum", type=click.Choice(["auto", "all", "none"]), default="auto",
              show_default=True, help="checksum validation: all, none, or auto (off when offloading is detected)")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="override a setting (repeatable; list below; Suricata keys mirrorwatch lacks are noted and ignored)")
@click.option("-q", "--quiet", is_flag=True, help="no alert lines, no progress bar and no summary on the console")
@click.option("--no-alerts", is_flag=True, help="no alert lines on the console (the summary still counts them)")
@click.option("--no-table", is_flag=True, help="summary without the session table")
@click.option("--top", default=20, show_default=True, type=click.IntRange(1, 10_000),
              help="sessions shown in the summary table")
@click.option("--dump-streams", metavar="DIR", default=None, help="write each TCP session's reassembled streams to DIR")
@click.option("--realtime", is_flag=True, help="replay at the recorded pace")
@click.option("--speed", default=1.0, show_default=True, type=click.FloatRange(min=0.001),
              help="with --realtime: pace multiplier (2 = twice as fast)")
@click.option("--table", "live_table", is_flag=True, help="show the live session table while replaying")
@workers_option
@kill_options(live=False)
def replay(pcaps, rules, classification, config, eve, eve_types, eve_payload, fast, sensor_name_opt, checksum, sets,
           quiet, no_alerts, no_table, top, dump_streams, realtime, speed, live_table, workers, **kill):
    """Analyse pcap/pcapng files (in order, as one capture) and report alerts and sessions.

    On a terminal a progress bar shows the bytes read, packets/s, alerts so far and the time left.
    """
    from mirrorwatch.cli.collector import tune_gc
    from mirrorwatch.cli.pipeline import Pipeline, PipelineError
    from mirrorwatch.sources.pcapfile import CaptureError, check_files

    settings, run = build_run(sets, config=config)
    if workers > 1:
        share_caps(settings, workers)
    specs = eve_specs(run, eve, eve_types, eve_payload)
    try:
        check_files(pcaps)  # every file readable and of a known link type, before any work
    except CaptureError as e:
        fail(str(e))
    human_err = any(spec.target == "-" for spec in specs)
    killer, kill_sinks = build_killer(settings, kill, log=None if quiet or live_table else
                                      (sys.stderr if human_err else sys.stdout))
    rule_paths = list(rules) or run.rule_paths
    progress = on_terminal() and not (quiet or live_table) and workers == 1
    try:
        with _rules_progress() if progress else contextlib.nullcontext() as rules_progress:
            pipe = Pipeline.build(settings, rule_paths=rule_paths, eve=specs, fast=fast or run.fast,
                                  checksum_mode=checksum, console_alerts=not (quiet or no_alerts or live_table),
                                  classification=classification or run.classification,
                                  dump_streams=dump_streams, killer=killer, kill_sinks=kill_sinks,
                                  host=sensor_name(run, sensor_name_opt), rules_progress=rules_progress)
    except PipelineError as e:
        fail(str(e))
    report_ruleset(pipe.ruleset, quiet, rule_paths)
    pipe.summary.top = top
    tune_gc()
    if workers == 1:
        code = _run_replay(pipe, pcaps, realtime, speed, live_table, progress)
    else:
        from mirrorwatch.cli.workers.replay import run_cli

        code = run_cli(pipe, pcaps, workers, realtime=realtime, speed=speed, live_table=live_table)
    for line in pipe.output_warnings():
        warn(line)
    if pipe.records_lost() and not code:
        code = 1  # an output that lost records failed, as one that cannot be written
    if not quiet:
        pipe.print_summary(human_console(stderr=human_err), show_table=not no_table)
    sys.exit(code)


def _rules_progress():
    from mirrorwatch.cli.progress import RulesProgress  # rich's progress bars: imported on a terminal only

    return RulesProgress()


def _run_replay(pipe, pcaps, realtime: bool, speed: float, live_table: bool, progress: bool) -> int:
    """Run and finish the pipeline; returns the exit code (130 when interrupted)."""
    from mirrorwatch.cli.pipeline import replay as run
    from mirrorwatch.sources.pcapfile import CaptureError

    code = 0
    display = None
    on_refresh = None
    if live_table:
        display, on_refresh = _replay_table(pipe, pcaps)
    elif progress:
        from mirrorwatch.cli.progress import ReplayProgress  # rich's progress bars: on a terminal only

        display = ReplayProgress(pcaps, pipe)
        display.start()
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
            if on_refresh is not None:  # the last frame shows the end of the capture, however fast it ran
                on_refresh(None)
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
