"""Single keystrokes from the terminal while the live table is shown.

The terminal goes into cbreak mode (keys arrive at once, unechoed; Ctrl-C still
sends SIGINT) only when stdin is a terminal and this process is in its
foreground; ``close()`` restores the saved mode, also after an error.
"""

from __future__ import annotations

import os
import select
import sys


class Keys:
    def __init__(self, stream=None):
        self.fd: int | None = None
        self._saved = None
        stream = stream if stream is not None else sys.stdin
        try:
            fd = stream.fileno()
            if not os.isatty(fd) or os.tcgetpgrp(fd) != os.getpgrp():
                return  # not a terminal, or running in the background: no key input
            import termios
            import tty

            self._saved = termios.tcgetattr(fd)
            tty.setcbreak(fd)
            self.fd = fd
        except (OSError, ValueError, AttributeError):
            self.fd = None

    def read(self) -> str:
        """The keys typed since the last call ('' when none); never blocks."""
        if self.fd is None:
            return ""
        try:
            ready, _, _ = select.select((self.fd,), (), (), 0)
            return os.read(self.fd, 64).decode(errors="ignore") if ready else ""
        except OSError:
            return ""

    def close(self) -> None:
        if self.fd is not None and self._saved is not None:
            import termios

            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            except (OSError, termios.error):
                pass
        self.fd = None
