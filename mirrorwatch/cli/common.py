"""What every command shares: one-line errors, settings from --set, the rule-load report, kill options."""

from __future__ import annotations

import sys

import click

from mirrorwatch.core.settings import SettingError, Settings, help_text

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
    from mirrorwatch.core.kill import KillConfig, KillConfigError, Killer
    from mirrorwatch.sinks.injector import (
        InjectError,
        KillLog,
        PcapKillWriter,
        RawInjector,
    )

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


def human_console(stderr: bool = False):
    """A rich Console for reports: the terminal's width, or 130 columns when writing to a file or pipe."""
    from rich.console import Console

    c = Console(stderr=stderr, highlight=False)
    if not c.is_terminal:
        c = Console(stderr=stderr, highlight=False, width=130)
    return c
