"""Python's cycle collector, tuned for a process that runs one pipeline (replay, listen, inline)."""

from __future__ import annotations

import gc

YOUNG_OBJECTS = 2000  # new container objects that start a cycle collection (Python's default: 700)


def tune_gc() -> None:
    """Keep Python's cycle collector from pausing the engine (replay, listen).

    The collector's pause is proportional to the objects it looks at.  Left as
    it is, it examines every object again and again as it ages: on a busy
    mirror port, where thousands of sessions (a dozen objects each) start every
    second, a young-generation pass examined 50k new objects and paused the
    engine 17-24 ms, and the full passes walk every live session.  A frame
    arriving then waits, and so does a kill.

    So each object is examined once, while young: the collector runs every
    ``YOUNG_OBJECTS`` new objects (a pass of 0.3-1 ms) and right after each
    pass what survived is frozen (``gc.freeze``: out of the collector's sight;
    reference counting still frees it the moment it is unreferenced).  What
    exists after start-up (rules, databases) is frozen first, after a pass over
    the two young generations only: the rule set and the detector are built
    with the collector paused and land in the oldest generation at once
    (``rules.cache.collector_paused``), so a full pass would walk the ~760k
    objects of ET Open again for nothing (0.4-0.6 CPU s of every start).  This is sound
    because the engine makes no reference cycles among long-lived objects:
    sessions, streams and their detection state are freed by reference
    counting when they end (``tests/test_robustness.py`` replays captures with
    the collector off and finds no cyclic garbage); cycles made by short-lived
    objects are still collected while those objects are young.  Measured on a
    300k-packet replay (2026-12-02): longest pause 24 ms -> 1.2 ms, time in
    the collector 234 -> 180 ms.  Call once, after the pipeline is built, in
    a process that runs one pipeline (later calls do nothing).
    """
    global _gc_tuned
    if _gc_tuned:
        return
    _gc_tuned = True
    gc.collect(1)
    gc.freeze()
    gc.set_threshold(YOUNG_OBJECTS, 10, 10)
    gc.callbacks.append(_freeze_survivors)


def _freeze_survivors(phase: str, info: dict) -> None:
    if phase == "stop":
        gc.freeze()


_gc_tuned = False
