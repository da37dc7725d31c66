"""The ``mirrorwatch`` command: argument parsing, wiring the pipeline, exit codes.

Commands: ``replay`` (pcap files), ``listen`` (live interface), ``inline`` (NFQUEUE, in the traffic's path),
``bypass`` (its fail-open switch), ``rules check``, ``settings``.  Every error a person can act
on is one line on stderr (``mirrorwatch: error: ...``), never a traceback:
exit 1 for unusable input (capture files, rule paths, output files), 2 for a
bad command line (unknown setting, bad value), 130 when interrupted.
"""

from __future__ import annotations

import click

from mirrorwatch import __version__, build_summary
from mirrorwatch.cli.bypass import bypass
from mirrorwatch.cli.common import CONTEXT
from mirrorwatch.cli.inline import inline
from mirrorwatch.cli.listen import listen
from mirrorwatch.cli.replay import replay
from mirrorwatch.cli.rules import rules
from mirrorwatch.cli.settings import settings_cmd


def _version(ctx, _param, value) -> None:
    """--version: the version and which build runs (compiled or interpreted, and why)."""
    if value and not ctx.resilient_parsing:
        click.echo(f"mirrorwatch, version {__version__}\n{build_summary()}")
        ctx.exit()


@click.group(context_settings=CONTEXT)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_version,
              help="Show the version and the build (compiled or interpreted), then exit.")
def main():
    """mirrorwatch: a passive network IDS for a switch's mirror (SPAN) port, with TCP-reset blocking.

    The same engine runs on pcap files (replay) and on a live interface (listen).
    """


for _command in (replay, listen, inline, bypass, rules, settings_cmd):
    main.add_command(_command)
