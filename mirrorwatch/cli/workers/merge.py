"""The coordinator's merging: output items in capture order, counters, summaries, repeated log lines.

``OrderedMerge`` (replay): each worker's items arrive in the order it wrote
them, clocked with the packet number being analysed; a worker's watermark
says every frame up to that number is done.  Everything clocked at or below
the smallest watermark of the running workers can no longer be preceded by
anything, so it is written then, in clock order (ties: by worker), which is
the order one engine would have written it in.  The backlog this holds is
bounded by the workers' reading: none reads more than ``replay.MAX_LEAD_FRAMES``
frames ahead of the slowest.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from functools import partial
from operator import itemgetter

from mirrorwatch.cli.workers.outbox import END

_CLOCK = itemgetter(0)


class OrderedMerge:
    """Items of ``workers`` streams, released in clock order up to the common watermark."""

    def __init__(self, workers: int, write):
        self.write = write  # write(channel, data)
        self.queues = [deque() for _ in range(workers)]
        self.marks = [0] * workers

    def add(self, worker: int, watermark: int | None, items: list) -> None:
        if items:
            self.queues[worker].extend(items)
        if watermark is not None:
            self.marks[worker] = watermark

    def close(self, worker: int) -> None:
        """The worker wrote its last item (it finished, or died: nothing more will come)."""
        self.marks[worker] = END

    def release(self) -> None:
        """Write what no worker can precede any more: each worker's run up to the common watermark, already
        in clock order, merged (``heapq.merge`` keeps worker order on ties, as one engine's order)."""
        limit = min(self.marks)
        runs = [run for run in map(partial(_run_upto, limit), self.queues) if run]
        if not runs:
            return
        write = self.write
        for _, channel, data in runs[0] if len(runs) == 1 else heapq.merge(*runs, key=_CLOCK):
            write(channel, data)


def _run_upto(limit: int, q: deque) -> list:
    """The items of ``q`` clocked at or below ``limit``, taken off it (most often the whole queue)."""
    if not q or q[0][0] > limit:
        return []
    if q[-1][0] <= limit:
        run = list(q)
        q.clear()
        return run
    run = []
    while q[0][0] <= limit:
        run.append(q.popleft())
    return run


# counters every worker has alike (the rules it loaded; whether -k auto turned checksums off, which replay's
# workers decide on the same frames): reported once (the largest: listen's workers may decide apart), not summed
SAME_IN_EVERY_WORKER = frozenset({("detect", "rules"), ("detect", "rules_skipped"), ("detect", "patterns"),
                                  ("decoder", "checksum", "auto_disabled")})


def sum_counters(parts: list[dict], path: tuple = ()) -> dict:
    """Counters of several engines as one: numbers summed (``SAME_IN_EVERY_WORKER``: the largest), flags
    or-ed, nested sections merged, text kept from the first."""
    out: dict = {}
    for part in parts:
        for key, value in part.items():
            have = out.get(key)
            if isinstance(value, dict):
                out[key] = sum_counters([have, value] if isinstance(have, dict) else [value], (*path, key))
            elif isinstance(value, bool):
                out[key] = bool(have) or value
            elif isinstance(value, (int, float)) and isinstance(have, (int, float)) and not isinstance(have, bool):
                out[key] = max(have, value) if (*path, key) in SAME_IN_EVERY_WORKER else have + value
            elif key not in out:
                out[key] = value
    return out


# -- the end-of-run summary ----------------------------------------------------------------
# Summary (sinks/summary.py) keeps its top sessions in a heap of ((killed, alerts, bytes, tie), row)
# and its killed flows as a set of flow ids; these two functions are the only code that knows it.
def summary_state(s) -> dict:
    """What a worker's Summary holds, as plain values for the pipe."""
    return {"alerts_by_sig": s.alerts_by_sig, "alerts": s.alerts, "kills": s.kills, "sessions": s.sessions,
            "killed_flows": list(s._killed_flows), "top": [(key[:3], row) for key, row in s._heap],
            "decode_reasons": s.decode_reasons or {}}


def merge_summaries(into, states: list[dict]) -> None:
    """The workers' summaries into the coordinator's ``Summary`` (sums, and the top sessions of all)."""
    tie = itertools.count()
    rows = []
    reasons: dict = {}
    killed: set = set()
    for worker, st in enumerate(states):
        for sig, (msg, count) in st["alerts_by_sig"].items():
            entry = into.alerts_by_sig.setdefault(sig, [msg, 0])
            entry[1] += count
        into.alerts += st["alerts"]
        into.kills += st["kills"]
        into.sessions += st["sessions"]
        killed.update((worker, fid) for fid in st["killed_flows"])  # flow ids are unique per engine
        rows.extend(((*key, next(tie)), row) for key, row in st["top"])
        for reason, n in st["decode_reasons"].items():
            reasons[reason] = reasons.get(reason, 0) + n
    into._heap = heapq.nlargest(into.top, rows, key=_CLOCK)
    heapq.heapify(into._heap)
    into._killed_flows = killed
    into.decode_reasons = reasons


class LogLines:
    """Lines the workers say (reloads, errors): the same line from several workers is said once."""

    def __init__(self, say):
        self.say = say
        self._said: dict[str, set[int]] = {}

    def line(self, worker: int, text: str) -> None:
        seen = self._said.get(text)
        if seen is not None and worker not in seen:
            seen.add(worker)  # another worker saying the same thing about the same event
            return
        self._said[text] = {worker}
        self.say(text)
