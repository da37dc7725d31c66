"""The ``mirrorwatch`` command: argument parsing, wiring the pipeline, exit codes.

Commands: ``replay`` (pcap files), ``listen`` (live interface), ``inline`` (NFQUEUE, in the traffic's path),
``bypass`` (its fail-open switch), ``rules check``, ``settings``.  Every error a person can act
on is one line on stderr (``mirrorwatch: error: ...``), never a traceback:
exit 1 for unusable input (capture files, rule paths, output files), 2 for a
bad command line (unknown setting, bad value), 130 when interrupted.
"""

from __future__ import annotations

import importlib

import click

from mirrorwatch import __version__, build_summary
from mirrorwatch.cli.common import CONTEXT

# command -> (module, attribute): a command's module is imported only when that command runs (or the
# help lists it), so a replay's start-up does not import listen's live table or inline's netfilter code
COMMANDS = {
    "bypass": ("mirrorwatch.cli.bypass", "bypass"),
    "inline": ("mirrorwatch.cli.inline", "inline"),
    "listen": ("mirrorwatch.cli.listen", "listen"),
    "replay": ("mirrorwatch.cli.replay", "replay"),
    "rules": ("mirrorwatch.cli.rules", "rules"),
    "settings": ("mirrorwatch.cli.settings", "settings_cmd"),
}


class _Commands(click.Group):
    """The ``mirrorwatch`` group, loading each command from ``COMMANDS`` on first use."""

    def list_commands(self, ctx) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx, cmd_name: str):
        where = COMMANDS.get(cmd_name)
        if where is None:
            return None
        module, attr = where
        return getattr(importlib.import_module(module), attr)


def _version(ctx, _param, value) -> None:
    """--version: the version and which build runs (compiled or interpreted, and why)."""
    if value and not ctx.resilient_parsing:
        click.echo(f"mirrorwatch, version {__version__}\n{build_summary()}")
        ctx.exit()


@click.group(cls=_Commands, context_settings=CONTEXT)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_version,
              help="Show the version and the build (compiled or interpreted), then exit.")
def main():
    """mirrorwatch: a passive network IDS for a switch's mirror (SPAN) port, with TCP-reset blocking.

    The same engine runs on pcap files (replay) and on a live interface (listen).
    """
