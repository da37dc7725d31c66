"""The sink protocol every consumer of engine events follows.

The runner hands each event to ``handle`` and calls ``flush``/``close`` at the
end and ``reopen`` on SIGHUP (logrotate).  Sinks that hold no file inherit the
no-op versions here.
"""

from __future__ import annotations


class Sink:
    def handle(self, event) -> None:  # pragma: no cover - every sink overrides it
        raise NotImplementedError

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def reopen(self) -> None:
        pass
