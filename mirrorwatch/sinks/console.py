"""Console alert lines: the fast.log line, coloured by priority on a terminal."""

from __future__ import annotations

import sys

from mirrorwatch.core.events import Alert
from mirrorwatch.sinks.base import Sink
from mirrorwatch.sinks.fastlog import format_alert

_COLOURS = {1: "\x1b[1;31m", 2: "\x1b[33m", 3: "\x1b[36m"}
_RESET = "\x1b[0m"


class ConsoleAlerts(Sink):
    """Prints each alert as its fast.log line on ``stream`` (stdout by default)."""

    takes = (Alert,)

    def __init__(self, stream=None, colour: bool | None = None):
        self.stream = stream if stream is not None else sys.stdout
        if colour is None:
            colour = bool(getattr(self.stream, "isatty", lambda: False)())
        self.colour = colour

    def handle(self, event) -> None:
        if type(event) is not Alert:
            return
        line = format_alert(event)
        if self.colour:
            c = _COLOURS.get(event.rule.priority, "")
            line = f"{c}{line[:-1]}{_RESET}\n" if c else line
        self.stream.write(line)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        self.flush()
