"""The ``mirrorwatch`` command: argument parsing, wiring the pipeline, exit codes.

Commands: ``replay`` (pcap files), ``listen`` (live interface, in
``cli_listen``), ``rules check``, ``settings``.  Every error a person can act
on is one line on stderr (``mirrorwatch: error: ...``), never a traceback:
exit 1 for unusable input (capture files, rule paths, output files), 2 for a
bad command line (unknown setting, bad value), 130 when interrupted.
"""

from __future__ import annotations

import signal
import sys

import click

from . import __version__
from .settings import SettingError, Settings, help_text

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 120}


def fail(msg: str, code: int = 1) -> "NoReturn":  # noqa: F821
    """Print one error line and exit."""
    click.echo(f"mirrorwatch: error: {msg}", err=True)
    sys.exit(code)


def warn(msg: str) -> None:
    click.echo(f"mirrorwatch: warning: {msg}", err=True)


def settings_epilog() -> str:
    """``--help`` epilog: every setting with its default (kept verbatim by click's \\b)."""
    return "\b\nSettings (--set KEY=VALUE; default shown):\n" + help_text()


def build_settings(sets, base: dict | None = None) -> Settings:
    """Defaults (plus ``base``), then each --set line; exit 2 with one line on a bad one."""
    try:
        s = Settings(base)
        for line in sets:
            s.apply(line)
    except SettingError as e:
        fail(f"--set: {e}", 2)
    return s


def report_ruleset(ruleset, quiet: bool, paths=()) -> None:
    """One line about the rules loaded; one warning line when some were skipped."""
    if ruleset.skipped:
        first = ruleset.skip_lines()[0]
        where = " ".join(map(str, paths)) or "PATH"
        warn(f"{len(ruleset.skipped)} rule(s) skipped, first: {first} (details: mirrorwatch rules check -v {where})")
    if not ruleset.rules:
        warn("no rule loaded: nothing will alert")
    if not quiet:
        click.echo(f"mirrorwatch: {len(ruleset.rules)} rules loaded from {len(ruleset.files)} file(s) "
                   f"in {ruleset.seconds:.2f}s", err=True)


def kill_options(live: bool):
    """The kill options shared by replay and listen (they arrive as ``**kill`` keyword arguments)."""
    opts = [
        click.option("--kill-with", type=click.Choice(["rst", "fin", "both"]), default="rst", show_default=True,
                     help="how rules with action reject/rejectsrc/rejectdst/rejectboth/drop end a TCP session: "
                          "RST+ACK, FIN+ACK, or FIN then RST (reject and drop reset both sides: nothing can be "
                          "dropped on a mirror port)"),
        click.option("--dry-run", is_flag=True, help="decide and log kills (EVE 'kill' events) but send nothing"),
        click.option("--never-kill", multiple=True, metavar="CIDR",
                     help="never kill a session with an endpoint in CIDR (repeatable)"),
        click.option("--kill-max-responses", type=click.IntRange(0), default=None, metavar="N",
                     help="responses (re-fire bursts) per killed session that keeps talking [inject.max-responses: 5]"),
        click.option("--kill-min-interval", type=click.FloatRange(0), default=None, metavar="SECONDS",
                     help="seconds between re-fire bursts of one session [inject.min-interval: 0]"),
    ]
    if live:
        opts.append(click.option("--inject-iface", metavar="IFACE", default=None,
                                 help="send the RST/FIN frames on IFACE [default: the capture interface]"))
    opts.append(click.option("--kill-pcap", metavar="PATH", default=None,
                             help="also write every forged frame to PATH (pcap)" if live else
                             "write the frames the kills would send to PATH (pcap)"))

    def deco(f):
        for o in reversed(opts):
            f = o(f)
        return f

    return deco


def build_killer(settings: Settings, kill: dict, *, inject_iface: str | None = None, log=None):
    """The kill decision (core) and its sinks (injector / kill pcap / console log); one error line on failure.

    Rules with action drop, reject, rejectsrc, rejectdst or rejectboth kill;
    ``drop`` is treated as ``rejectboth`` (nothing can be dropped on a mirror).
    """
    from .inject import InjectError, KillLog, PcapKillWriter, RawInjector
    from .kill import KillConfig, KillConfigError, Killer

    if kill.get("kill_max_responses") is not None:
        settings.set("inject.max-responses", kill["kill_max_responses"])
    if kill.get("kill_min_interval") is not None:
        settings.set("inject.min-interval", kill["kill_min_interval"])
    try:
        killer = Killer(KillConfig(mode=kill.get("kill_with") or "rst", dry_run=bool(kill.get("dry_run")),
                                   never_kill=list(kill.get("never_kill") or ())), settings)
    except KillConfigError as e:
        fail(str(e), 2)
    sinks: list = []
    try:
        if inject_iface and not killer.dry_run:
            sinks.append(RawInjector(inject_iface))
        if kill.get("kill_pcap"):
            sinks.append(PcapKillWriter(kill["kill_pcap"]))
    except InjectError as e:
        for s in sinks:
            s.close()
        fail(str(e))
    killer.sink = list(sinks)
    if log is not None:
        sinks.append(KillLog(log))
    return killer, sinks


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="mirrorwatch")
def main():
    """mirrorwatch: a passive network IDS for a switch's mirror (SPAN) port, with TCP-reset blocking.

    The same engine runs on pcap files (replay) and on a live interface (listen).
    """


# -- replay ---------------------------------------------------------------------------
@main.command(epilog=settings_epilog(), context_settings=CONTEXT)
@click.argument("pcaps", nargs=-1, required=True, metavar="PCAP...")
@click.option("-r", "--rules", "rules", multiple=True, metavar="PATH",
              help="rule file or directory of *.rules (repeatable) [default: the bundled signatures/]")
@click.option("--classification", metavar="FILE", default=None,
              help="classification.config for classtypes [default: the bundled one]")
@click.option("--eve", metavar="PATH", default=None, help="write EVE JSON lines to PATH ('-' = stdout)")
@click.option("--eve-types", default="alert,flow,stats,kill", show_default=True, metavar="LIST",
              help="EVE event types to write (comma-separated: alert, flow, stats, kill)")
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
    from .capture import CaptureError, check_files
    from .runner import Pipeline, PipelineError, tune_gc

    settings = build_settings(sets)
    types = tuple(t.strip() for t in eve_types.split(",") if t.strip())
    bad = [t for t in types if t not in ("alert", "flow", "stats", "kill")]
    if bad:
        fail(f"--eve-types: unknown event type {bad[0]!r} (use alert, flow, stats, kill)", 2)
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


def human_console(stderr: bool = False):
    """A rich Console for reports: the terminal's width, or 130 columns when writing to a file or pipe."""
    from rich.console import Console

    c = Console(stderr=stderr, highlight=False)
    if not c.is_terminal:
        c = Console(stderr=stderr, highlight=False, width=130)
    return c


def _run_replay(pipe, pcaps, realtime: bool, speed: float, live_table: bool) -> int:
    """Run and finish the pipeline; returns the exit code (130 when interrupted)."""
    from .capture import CaptureError
    from .runner import replay as run

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

    from .ui.table import LiveTable

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


# -- rules check ------------------------------------------------------------------------
@main.group(context_settings=CONTEXT)
def rules():
    """Work with rule files."""


@rules.command("check", context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--classification", metavar="FILE", default=None, help="classification.config [default: bundled]")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="override a setting (e.g. rule variables)")
@click.option("-v", "--verbose", is_flag=True, help="list every skipped rule as file:line: sid: reason")
@click.option("--strict", is_flag=True, help="exit 1 when any rule is skipped")
def rules_check(paths, classification, sets, verbose, strict):
    """Parse rule files and report what loads, what is skipped and why.

    Exit 0 when rules load, 1 when a path is unusable, nothing loads, or
    (with --strict) anything is skipped.
    """
    from .rules import check_report
    from .runner import PipelineError, load_ruleset

    settings = build_settings(sets)
    try:
        rs = load_ruleset(paths, settings, classification)
    except PipelineError as e:
        fail(str(e))
    click.echo(check_report(rs))
    if verbose:
        for line in rs.skip_lines():
            click.echo(f"skipped: {line}")
        for w in rs.warnings:
            click.echo(f"warning: {w}")
    if not rs.rules or (strict and rs.skipped):
        sys.exit(1)


# -- settings -------------------------------------------------------------------------------
@main.command("settings", context_settings=CONTEXT)
@click.option("--markdown", is_flag=True, help="as a markdown table (the README's settings section)")
def settings_cmd(markdown):
    """List every setting with its default (change one with --set KEY=VALUE)."""
    if not markdown:
        click.echo(help_text())
        return
    from .settings import SETTINGS

    click.echo("| setting | default | what it bounds |\n| --- | ---: | --- |")
    for s in SETTINGS:
        click.echo(f"| `{s.key}` | {s.default} | {s.help} |")


def _register_listen() -> None:
    """``listen`` lives in its own module (live capture); registered here when present."""
    try:
        from .cli_listen import listen
    except ImportError as e:
        if e.name == "mirrorwatch.cli_listen":
            return
        raise
    main.add_command(listen)


_register_listen()
