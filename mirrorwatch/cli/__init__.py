"""The ``mirrorwatch`` command: argument parsing, wiring the pipeline, exit codes.

Commands: ``replay`` (pcap files), ``listen`` (live interface), ``rules check``, ``settings``.  Every error a person can act
on is one line on stderr (``mirrorwatch: error: ...``), never a traceback:
exit 1 for unusable input (capture files, rule paths, output files), 2 for a
bad command line (unknown setting, bad value), 130 when interrupted.
"""

from __future__ import annotations

import click

from mirrorwatch import __version__
from mirrorwatch.cli.common import CONTEXT
from mirrorwatch.cli.listen import listen
from mirrorwatch.cli.replay import replay
from mirrorwatch.cli.rules import rules
from mirrorwatch.cli.settings import settings_cmd


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="mirrorwatch")
def main():
    """mirrorwatch: a passive network IDS for a switch's mirror (SPAN) port, with TCP-reset blocking.

    The same engine runs on pcap files (replay) and on a live interface (listen).
    """


for _command in (replay, listen, rules, settings_cmd):
    main.add_command(_command)
