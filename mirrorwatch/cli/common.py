"""What every command shares: one-line errors, settings (-c, --set), outputs, the rule-load report, kill options."""

from __future__ import annotations

import socket
import sys
import time
from dataclasses import replace

import click

from mirrorwatch.cli.config import (
    ConfigError,
    EveSpec,
    RunConfig,
    apply_key,
    describe_unused,
    read_config,
)
from mirrorwatch.cli.suricata_keys import note_for
from mirrorwatch.core.flows.exceptions import midstream_policy
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


def on_terminal() -> bool:
    """Progress bars are drawn only on a terminal (stderr, where the human output is not)."""
    return sys.stderr.isatty()


def note(msg: str) -> None:
    click.echo(f"mirrorwatch: note: {msg}", err=True)


# the setting an EVE output of -c may also give for itself (``EveSpec.ipv6_compress``)
IPV6_COMPRESS_KEY = "eve-log.ipv6-compress"
# --set keys that are no setting but a part of the run (Suricata's names)
_RUN_KEYS = {"sensor-name": "sensor_name", "classification-file": "classification"}


def build_run(sets, base: dict | None = None, config: str | None = None,
              ips: bool = False) -> tuple[Settings, RunConfig]:
    """Defaults (plus the command's ``base``), then the Suricata configuration ``config`` (-c), then each
    --set line: the command line wins.  The file's unused keys are named in one warning line; a --set
    of a Suricata key mirrorwatch does not implement gets a one-line note; exit 2 on a bad --set line
    or a combination of settings Suricata refuses (an exception policy for the mode: ``ips`` for
    inline), 1 on an unusable configuration file."""
    settings = Settings(base)
    run = RunConfig()
    if config:
        try:
            run = read_config(config, settings)
        except ConfigError as e:
            fail(str(e))
        if run.unused:
            warn(f"{config}: {len(run.unused)} setting(s) not used by mirrorwatch: {describe_unused(run.unused)}")
    for line in sets:
        key, sep, value = line.partition("=")
        key = key.strip()
        try:
            if not sep:
                raise SettingError(f"expects KEY=VALUE, got {line!r}")
            if key in _RUN_KEYS:
                setattr(run, _RUN_KEYS[key], value.strip())
            elif not apply_key(settings, key, value):
                note(note_for(key))
            elif key == IPV6_COMPRESS_KEY:  # the command line wins over every output's own value
                run.eve = [replace(spec, ipv6_compress=None) for spec in run.eve]
        except SettingError as e:
            fail(f"--set: {e}", 2)
    try:
        midstream_policy(settings, ips)
    except SettingError as e:
        fail(f"{e} ({'--set or -c' if config else '--set'})", 2)
    return settings, run


def output_options(live: bool):
    """-c, --eve (repeatable), --eve-types, --eve-payload, --fast, --sensor-name: shared by replay and listen."""
    reopened = "; reopened on SIGHUP" if live else ""
    opts = [
        click.option("-c", "--config", "config", metavar="FILE", default=None,
                     help="read a Suricata configuration (suricata.yaml): rule variables, rule files, "
                          "classification, EVE/fast.log outputs, sensor-name and the settings mirrorwatch has; "
                          "the command line wins"),
        click.option("--eve", "eve", multiple=True, metavar="TARGET",
                     help="write EVE JSON to TARGET: a file ('-' = stdout) or "
                          "redis://HOST:PORT/KEY?mode=list|rpush|channel|stream (repeatable)" + reopened),
        click.option("--eve-types", "eve_types", multiple=True, metavar="LIST",
                     help="EVE event types, comma-separated (default: all of " + ", ".join(_eve_types()) +
                          "); given once it applies to every --eve, or once per --eve in the same order"),
        click.option("--eve-payload", is_flag=True,
                     help="add the matching payload (base64 and printable) and packet to EVE alerts"),
        click.option("--fast", "fast", metavar="PATH", default=None, help="write Suricata fast.log lines to PATH"
                     + reopened),
        click.option("--sensor-name", "sensor_name_opt", metavar="NAME", default=None,
                     help="the EVE 'host' field of every record [default: sensor-name of -c, else the host name]"),
    ]

    def deco(f):
        for o in reversed(opts):
            f = o(f)
        return f

    return deco


def _eve_types() -> tuple[str, ...]:
    from mirrorwatch.sinks.eve import DEFAULT_TYPES

    return DEFAULT_TYPES


def eve_specs(run: RunConfig, eve, eve_types, eve_payload: bool) -> list[EveSpec]:
    """The EVE outputs: the command line's --eve if any, else the configuration's; --eve-types (once for
    all, or once per output in order) and --eve-payload apply to whichever they are."""
    from mirrorwatch.sinks.redis import RedisURLError, is_redis_url, parse_redis_url

    outputs = [EveSpec(t, _eve_types()) for t in eve] or run.eve
    if eve_types and len(eve_types) not in (1, len(outputs)):
        fail(f"--eve-types given {len(eve_types)} times for {len(outputs)} EVE output(s): "
             "give it once, or once per output", 2)
    lists = [_parse_types(t) for t in eve_types]
    specs = [EveSpec(s.target, lists[min(i, len(lists) - 1)] if lists else s.types, s.payload or eve_payload,
                     s.ipv6_compress) for i, s in enumerate(outputs)]
    for spec in specs:
        if is_redis_url(spec.target):
            try:
                parse_redis_url(spec.target)
            except RedisURLError as e:
                fail(f"--eve: {e}", 2)
    if sum(s.target == "-" for s in specs) > 1:
        fail("--eve: stdout ('-') given more than once", 2)
    return specs


def _parse_types(text: str) -> tuple[str, ...]:
    known = _eve_types()
    types = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in types if t not in known]
    if bad or not types:
        fail(f"--eve-types: unknown event type {bad[0] if bad else text!r} (use {', '.join(known)})", 2)
    return types


def sensor_name(run: RunConfig, option: str | None) -> str:
    """--sensor-name, else the configuration's sensor-name, else the host name (Suricata's default for redis)."""
    return option or run.sensor_name or socket.gethostname()


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
    from mirrorwatch.sinks.injector import RawInjector

    if kill.get("kill_max_responses") is not None:
        settings.set("inject.max-responses", kill["kill_max_responses"])
    if kill.get("kill_min_interval") is not None:
        settings.set("inject.min-interval", kill["kill_min_interval"])
    try:
        killer = Killer(KillConfig(mode=kill.get("kill_with") or "rst", dry_run=bool(kill.get("dry_run")),
                                   never_kill=list(kill.get("never_kill") or ())), settings)
    except KillConfigError as e:
        fail(str(e), 2)
    if inject_iface:  # live: captured packets carry the wall clock's time, so a burst can allow for the lag
        killer.clock = time.time
    injector = (lambda: RawInjector(inject_iface)) if inject_iface and not killer.dry_run else None
    return killer, open_kill_sinks(killer, injector, kill.get("kill_pcap"), log)


def open_kill_sinks(killer, injector, kill_pcap: str | None, log) -> list:
    """The sinks of a killer's ``Kill`` events: ``injector()`` (None: no injector), a pcap of the forged
    frames, a console line per kill on ``log``; one error line when one cannot be opened.  The killer
    reports the first two's counters."""
    from mirrorwatch.sinks.injector import InjectError, KillLog, PcapKillWriter

    sinks: list = []
    try:
        if injector is not None:
            sinks.append(injector())
        if kill_pcap:
            sinks.append(PcapKillWriter(kill_pcap))
    except InjectError as e:
        for s in sinks:
            s.close()
        fail(str(e))
    killer.sink = list(sinks)
    if log is not None:
        sinks.append(KillLog(log))
    return sinks


def human_console(stderr: bool = False):
    """A rich Console for reports: the terminal's width, or 130 columns when writing to a file or pipe."""
    from rich.console import Console

    c = Console(stderr=stderr, highlight=False)
    if not c.is_terminal:
        c = Console(stderr=stderr, highlight=False, width=130)
    return c
