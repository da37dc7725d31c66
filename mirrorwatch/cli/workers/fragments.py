"""Fragments go where their datagram's flow goes (replay), as live capture's kernel defragmentation does.

The first fragment (offset 0) carries the transport header, so its owner is
its flow's owner; ``FragmentRouter`` remembers it by (addresses, protocol, IP
ID) for ``defrag.timeout`` seconds of packet time, and the later fragments of
that datagram follow it.  A fragment that comes before its first fragment is
held and released to the owner, in capture order, when the first fragment
arrives; a datagram whose first fragment has not come after the timeout, or
that the bounds push out, goes to the owner of its address pair (it will not
reassemble anyway).  A held fragment is analysed with its own packet number
and timestamp, so its datagram reassembles exactly as in a single engine.
"""

from __future__ import annotations

from collections import OrderedDict

HOLD = -2  # route(): nobody analyses the fragment yet
DEFRAG_TIMEOUT = 60.0  # seconds of packet time a datagram's owner is remembered and its fragments held (defrag.timeout)
MAX_DATAGRAMS = 65_535  # datagrams whose owner is remembered at once
MAX_HELD_FRAGMENTS = 4_096  # fragments held before their first fragment, across all datagrams
MAX_HELD_BYTES = 16 * 1024 * 1024  # bytes of such fragments


class FragmentRouter:
    """``route(fragment, ts, size, item)``: the owner (or HOLD) of a fragment, and the held items it releases.

    ``fragment`` is ``FlowPartitioner.last_fragment``: (datagram key, is first,
    owner if first, owner of its address pair); ``ts`` its timestamp, ``size``
    its bytes, ``item`` whatever the caller needs back when a held fragment is
    released: released ones come back as ``(owner, item)`` pairs, oldest first.
    """

    def __init__(self, *, timeout: float = DEFRAG_TIMEOUT, max_datagrams: int = MAX_DATAGRAMS,
                 max_held: int = MAX_HELD_FRAGMENTS, max_held_bytes: int = MAX_HELD_BYTES):
        self.timeout = float(timeout)
        self.max_datagrams = max(1, max_datagrams)
        self.max_held = max(1, max_held)
        self.max_held_bytes = max(1, max_held_bytes)
        self._known: OrderedDict = OrderedDict()  # datagram key -> (owner, expiry)
        self._held: OrderedDict = OrderedDict()  # datagram key -> [expiry, pair owner, [frames]]
        self._held_count = 0
        self._held_bytes = 0
        self.counters = {"fragments_held": 0, "released_first": 0, "released_timeout": 0, "released_bounds": 0}

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def route(self, fragment: tuple, ts: float, size: int, item) -> tuple[int, list]:
        key, first, own, pair = fragment
        released = self.expire(ts)
        known = self._known
        if first:
            known[key] = (own, ts + self.timeout)
            known.move_to_end(key)
            if len(known) > self.max_datagrams:
                known.popitem(last=False)
            held = self._held.pop(key, None)
            if held is not None:
                self._release(held, own, released, "released_first")
            return own, released
        entry = known.get(key)
        if entry is not None:
            return entry[0], released
        self._hold(key, pair, ts, size, item, released)
        return HOLD, released

    def _hold(self, key, pair: int, ts: float, size: int, item, released: list) -> None:
        held = self._held.get(key)
        if held is None:
            held = self._held[key] = [ts + self.timeout, pair, []]
        held[2].append((size, item))
        self._held_count += 1
        self._held_bytes += size
        self.counters["fragments_held"] += 1
        while self._held and (self._held_count > self.max_held or self._held_bytes > self.max_held_bytes):
            _, old = self._held.popitem(last=False)
            self._release(old, old[1], released, "released_bounds")

    def _release(self, held: list, owner: int, out: list, why: str) -> None:
        items = held[2]
        self._held_count -= len(items)
        self._held_bytes -= sum(size for size, _ in items)
        self.counters[why] += len(items)
        out.extend((owner, item) for _, item in items)

    def expire(self, ts: float) -> list:
        """Forget datagrams past the timeout; held fragments of those go to their address pair's owner."""
        released: list = []
        known, held = self._known, self._held
        while known:
            key, (_, expiry) = next(iter(known.items()))
            if expiry > ts:
                break
            del known[key]
        while held:
            key, entry = next(iter(held.items()))
            if entry[0] > ts:
                break
            del held[key]
            self._release(entry, entry[1], released, "released_timeout")
        return released

    def drain(self) -> list:
        """End of the capture: every fragment still held, to its address pair's owner."""
        released: list = []
        while self._held:
            _, entry = self._held.popitem(last=False)
            self._release(entry, entry[1], released, "released_timeout")
        self._known.clear()
        return released
