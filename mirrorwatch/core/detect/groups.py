"""Cheap pre-selection of rules that have no payload literal.

- ``AddrIndex``: IP-only rules (ET's botcc/compromised/ciarmy lists are
  thousands of addresses over ~1,000 rules) indexed by their more specific
  address side, like Suricata's IP-only radix tree: one bisect per address
  gives the few rules that can match, instead of judging every rule.
- ``value_table``: rules testing a one-byte header field (TCP flags, ICMP
  type) bucketed by every possible value of that byte, the way Suricata's
  flags/itype prefilter engines work; the exact test still runs later.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right

_V4_ALL = 1 << 32
_V6_ALL = 1 << 128
_V4_KEYS = 1 << 64  # interval starts that fit ``_Segments._keys``: every IPv4 one (at most 2**32)


def _size(ranges) -> int:
    return sum(hi - lo + 1 for lo, hi in ranges)


def side_size(aset) -> int:
    """Addresses an AddrSet covers (v4 + v6); 'any' counts as everything."""
    if aset is None or aset.any:
        return _V4_ALL + _V6_ALL
    return _size(aset.v4) + _size(aset.v6)


class _Segments:
    """Elementary intervals over one address family -> tuple of rule numbers.

    ``lookup(n)``: the rules of the interval holding address ``n``.  IPv4's
    interval starts fit 64-bit integers (``_keys``), so its search is a C loop
    over them (``lookup4``, on the packed address itself); IPv6's bisect the
    Python integers."""

    __slots__ = ("starts", "sets", "_keys")

    def __init__(self, entries: list[tuple[int, int, int]]):
        events: dict[int, list] = {}
        for lo, hi, num in entries:
            events.setdefault(lo, []).append((num, 1))
            events.setdefault(hi + 1, []).append((num, -1))
        active: dict[int, int] = {}
        self.starts: list[int] = []
        self.sets: list[tuple] = []
        interned: dict[tuple, tuple] = {}
        for pos in sorted(events):
            for num, delta in events[pos]:
                c = active.get(num, 0) + delta
                if c:
                    active[num] = c
                else:
                    active.pop(num, None)
            t = tuple(sorted(active))
            t = interned.setdefault(t, t)
            if self.sets and self.sets[-1] is t:
                continue
            self.starts.append(pos)
            self.sets.append(t)
        self._index()

    def _index(self) -> None:
        self._keys = array("Q", self.starts) if all(p < _V4_KEYS for p in self.starts) else array("Q")

    def lookup(self, n: int) -> tuple:
        i = bisect_right(self.starts, n) - 1
        return self.sets[i] if i >= 0 else ()

    def lookup4(self, packed: bytes) -> tuple:
        """``lookup`` of the IPv4 address ``packed`` (4 bytes), by a binary search of ``_keys``."""
        b = packed  # compiled: the bytes through an unsigned char pointer
        n = b[0]
        n = n << 24 | b[1] << 16 | b[2] << 8 | b[3]  # compiled: shifted as 64 bits
        keys = self._keys
        lo, hi = 0, len(keys)
        while lo < hi:  # the first start above n
            mid = (lo + hi) >> 1
            if keys[mid] <= n:
                lo = mid + 1
            else:
                hi = mid
        return self.sets[lo - 1] if lo > 0 else ()

    @classmethod
    def restore(cls, state) -> "_Segments | None":
        """The segments ``state`` (``AddrIndex.segments``) describes, or None."""
        if state is None:
            return None
        seg = cls([])
        seg.starts, seg.sets = list(state[0]), list(state[1])
        seg._index()
        return seg


class AddrIndex:
    """Rules keyed by the address ranges of one side (src or dst)."""

    __slots__ = ("_v4", "_v6", "seg4", "seg6")

    def __init__(self) -> None:
        self._v4: list = []
        self._v6: list = []
        self.seg4: _Segments | None = None
        self.seg6: _Segments | None = None

    def add(self, aset, num: int) -> None:
        self._v4.extend((lo, hi, num) for lo, hi in aset.v4)
        self._v6.extend((lo, hi, num) for lo, hi in aset.v6)

    def build(self) -> "AddrIndex":
        self.seg4 = _Segments(self._v4) if self._v4 else None
        self.seg6 = _Segments(self._v6) if self._v6 else None
        self._v4 = self._v6 = []
        return self

    def __bool__(self) -> bool:
        return self.seg4 is not None or self.seg6 is not None

    def segments(self) -> tuple:
        """The built index as plain data (``restore`` makes it again)."""
        return tuple(None if seg is None else (tuple(seg.starts), tuple(seg.sets)) for seg in (self.seg4, self.seg6))

    @classmethod
    def restore(cls, state) -> "AddrIndex | None":
        """The index ``segments()`` described, or None when it holds no rule."""
        index = cls()
        index.seg4, index.seg6 = _Segments.restore(state[0]), _Segments.restore(state[1])
        return index or None

    def lookup(self, packed: bytes) -> tuple:
        if len(packed) == 4:
            return self.seg4.lookup4(packed) if self.seg4 is not None else ()
        if self.seg6 is None:
            return ()
        return self.seg6.lookup(int.from_bytes(packed, "big"))


def choose_side(cr) -> str | None:
    """'src' or 'dst': the narrower side to index an IP-only rule on; None when both are 'any'."""
    src, dst = cr.rule.src, cr.rule.dst
    if (src is None or src.any) and (dst is None or dst.any):
        return None
    return "src" if side_size(src) <= side_size(dst) else "dst"


def value_table(tests: list[tuple[int, object]]) -> tuple | None:
    """256 tuples: for each byte value, the rule numbers whose test accepts it (None if no rules)."""
    if not tests:
        return None
    table = []
    interned: dict[tuple, tuple] = {}
    for v in range(256):
        t = tuple(num for num, test in tests if test(v))
        table.append(interned.setdefault(t, t))
    return tuple(table)


def port_split(rule_lists, port_keys: dict) -> tuple:
    """Per literal: (rules for any port, {dst port: rules} or None, {src port: rules} or None).

    ``port_keys[num]`` is ('d', ports) / ('s', ports) for a rule bound to a few
    destination / source ports, absent otherwise.  A one-byte literal shared by
    rules for ports 135, 3306 and 3389 then only wakes the rules of the port
    the packet uses, like Suricata's per-port signature groups.
    """
    out = []
    for nums in rule_lists:
        anys: list = []
        dmap: dict = {}
        smap: dict = {}
        for n in nums:
            key = port_keys.get(n)
            if key is None:
                anys.append(n)
                continue
            target = dmap if key[0] == "d" else smap
            for p in key[1]:
                target.setdefault(p, []).append(n)
        out.append((tuple(anys),
                    {p: tuple(v) for p, v in dmap.items()} or None,
                    {p: tuple(v) for p, v in smap.items()} or None))
    return tuple(out)


def port_gate(split: tuple):
    """(dst ports, src ports) outside which no literal of ``split`` wakes any rule, or None.

    When every rule behind a literal database is bound to a few ports (the
    FTP rules of port 21, say), a packet between other ports cannot get a
    candidate from it: the scan is skipped, as Suricata's per-port signature
    groups never run that group's matcher.  None: some rule applies to any port.
    """
    dports: set = set()
    sports: set = set()
    for anys, dmap, smap in split:
        if anys:
            return None
        if dmap is not None:
            dports.update(dmap)
        if smap is not None:
            sports.update(smap)
    return frozenset(dports), frozenset(sports)
