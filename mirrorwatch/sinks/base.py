"""The sink protocol every consumer of engine events follows.

The runner hands each event to ``handle`` and calls ``flush``/``close`` at the
end and ``reopen`` on SIGHUP (logrotate).  Sinks that hold no file inherit the
no-op versions here.

``route(cls)`` says what takes the events of type ``cls``: a callable, or None
when the sink ignores them.  The pipeline asks once per type and then hands
each event only to the sinks that take it (a flood ends a session a packet:
the sinks that ignore flow ends must not be called for them).  A sink lists
the types it takes in ``takes`` (None: all of them), or overrides ``route``
to send each type to its own method.
"""

from __future__ import annotations


class Sink:
    takes: tuple | None = None  # the event types handle() acts on; None: every type

    def handle(self, event) -> None:  # pragma: no cover - every sink overrides it
        raise NotImplementedError

    def route(self, cls):
        """What takes events of type ``cls`` (``handle``), or None when this sink ignores them."""
        return self.handle if self.takes is None or cls in self.takes else None

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def reopen(self) -> None:
        pass
