"""The live table's drawing thread (``listen``, ``inline``)."""

from __future__ import annotations

import sys
import threading
import time

GIL_SWITCH_INTERVAL = 0.0005  # seconds the table painter may hold the GIL before the engine gets it (Python: 5 ms)


class Painter:
    """Draws the live table's frames in its own thread.

    Laying a full-screen rich table out and writing it takes tens of
    milliseconds; done in the engine's thread, every frame (and every kill)
    arriving meanwhile waited for it: with the table on a terminal the kill
    p99 was ~30 ms instead of ~1 ms (bench/kill_latency.py on a pty).  The
    frame is built in the engine's thread (it reads sessions the engine
    changes) and only drawn here; a frame not yet drawn is replaced by the
    newer one.  ``listen`` lowers the interpreter's switch interval while the
    table is shown, so this thread yields the GIL to the engine within
    ``GIL_SWITCH_INTERVAL`` instead of Python's default 5 ms.
    """

    def __init__(self, live):
        self.live = live
        self.cost = 0.0  # seconds the last frame took to draw
        self._frame = None
        self._stop = False
        self._cv = threading.Condition()
        self._old_switch = sys.getswitchinterval()
        sys.setswitchinterval(min(self._old_switch, GIL_SWITCH_INTERVAL))
        self._thread = threading.Thread(target=self._run, name="table-painter", daemon=True)
        self._thread.start()

    def show(self, frame) -> None:
        with self._cv:
            self._frame = frame
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._frame is None and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                frame, self._frame = self._frame, None
            t = time.monotonic()
            try:
                self.live.update(frame, refresh=True)
            except Exception:  # noqa: BLE001 - a terminal gone away must not stop the capture
                pass
            self.cost = time.monotonic() - t

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(2.0)
        sys.setswitchinterval(self._old_switch)
