"""Hyperscan literal sets: one database for many rules' fast patterns.

Each distinct (literal, nocase) pair becomes one hyperscan expression whose id
indexes a tuple of rule numbers.  Literals are escaped byte by byte (the
binding's literal mode stops at NUL bytes), so any byte string is safe.

Packets are scanned in block mode (one scan, ``HS_FLAG_SINGLEMATCH``: detect
only needs *which* literals occur, then verifies the rules on the same bytes).

TCP stream data is scanned in stream mode, one hyperscan stream per direction
(``LiteralStream``): each byte is scanned once, when it becomes inspectable,
and a literal split across segments or inspections is still found.  Every
occurrence is reported with its end offset; what detect keeps is, per literal,
where its last occurrence ended, so an inspection window that reaches back
(Suricata's inline window) knows the literals that lie in it without scanning
its old bytes again.  The verification itself stays on the bytes of each
inspection, as Suricata inspects raw stream data.

hyperscan 0.9.1's binding crashes when a stream is built with ``hs.Stream(...)``
and entered, or outlives its callback: streams are made by ``db.stream(
match_event_handler=cb)`` then ``__enter__()``, the callback is kept by the
``StreamScanner`` that owns the database, and every stream is closed
(``LiteralStream.close``, called when the flow ends).
"""

from __future__ import annotations

import hyperscan as hs

_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
# each byte value as it appears in an expression (every start-up escapes every literal: the
# databases are looked up in the rule cache by their expressions)
_ESCAPED = tuple(bytes((b,)) if b in _SAFE else b"\\x%02x" % b for b in range(256))


def escape(lit: bytes) -> bytes:
    """Regex-escape every byte that is not a letter, digit or underscore."""
    return b"".join(map(_ESCAPED.__getitem__, lit))


def literal_length(expr: bytes) -> int:
    """The length of the literal ``escape`` made ``expr`` of (each escaped byte is 4 characters)."""
    return len(expr) - 3 * expr.count(b"\\x")


class LiteralSet:
    """Collects (literal, nocase) -> rule numbers, then compiles block and/or stream DBs."""

    def __init__(self) -> None:
        self.ids: dict[tuple[bytes, bool], int] = {}
        self.rules: list[list[int]] = []

    def add(self, lit: bytes, nocase: bool, num: int) -> None:
        if nocase:
            lit = lit.lower()
        key = (lit, nocase)
        i = self.ids.get(key)
        if i is None:
            i = self.ids[key] = len(self.rules)
            self.rules.append([])
        if not self.rules[i] or self.rules[i][-1] != num:
            self.rules[i].append(num)

    def __len__(self) -> int:
        return len(self.rules)

    def patterns(self, mode: int) -> tuple[list, list]:
        """(expressions, flags) of the database in ``mode``, in literal id order."""
        exprs, flags = [], []
        single = hs.HS_FLAG_SINGLEMATCH if mode == hs.HS_MODE_BLOCK else 0
        for (lit, nocase), _ in sorted(self.ids.items(), key=lambda kv: kv[1]):
            exprs.append(escape(lit))
            flags.append(single | (hs.HS_FLAG_CASELESS if nocase else 0))
        return exprs, flags

    def compile(self, mode: int, cache=None):
        """A hyperscan Database in ``mode`` (HS_MODE_BLOCK / HS_MODE_STREAM), or None if empty."""
        return database(mode, *self.patterns(mode), cache) if self.rules else None

    def rule_tuples(self) -> tuple:
        return tuple(tuple(r) for r in self.rules)


def database(mode: int, exprs: list, flags: list, cache=None):
    """The hyperscan Database of ``exprs``/``flags`` in ``mode`` (``LiteralSet.patterns``).

    ``cache``: where compiled databases are kept (``rules.ruleset_cache.MpmCache``), or None."""
    if cache is not None:
        return cache.database(mode, exprs, flags, compile_database)
    return compile_database(mode, exprs, flags)


def compile_database(mode: int, exprs: list, flags: list):
    """hyperscan Database of ``exprs`` (ids 0..n-1) in ``mode``."""
    db = hs.Database(mode=mode)
    db.compile(expressions=exprs, ids=list(range(len(exprs))), elements=len(exprs), flags=flags)
    return db


class BlockScanner:
    """Scans whole buffers; returns the ids of the literals present."""

    __slots__ = ("db", "hits", "_cb")

    def __init__(self, db) -> None:
        self.db = db
        self.hits: list[int] = []
        hits = self.hits

        def cb(i, frm, to, flags, ctx):
            hits.append(i)

        self._cb = cb

    def scan(self, data) -> list[int]:
        hits = self.hits
        hits.clear()
        self.db.scan(data, self._cb)  # positional: the binding parses no keyword then
        return hits


class StreamScanner:
    """A stream-mode database and the one callback all its streams report to.

    Scans run one at a time (the engine is single-threaded), so the callback can
    write into one shared dict: literal id -> end of its last occurrence, in the
    scanned stream's own offsets."""

    __slots__ = ("db", "last", "_cb")

    def __init__(self, db) -> None:
        self.db = db
        self.last: dict[int, int] = {}
        last = self.last

        def cb(i, frm, to, flags, ctx):
            last[i] = to

        self._cb = cb

    def open(self):
        s = self.db.stream(match_event_handler=self._cb)
        s.__enter__()
        return s


class LiteralStream:
    """One TCP direction's hyperscan stream, positioned in that direction's stream offsets.

    ``feed(off, data)`` scans bytes that start at stream offset ``off``; if they
    do not follow what was fed before (a gap, bytes dropped under memory pressure,
    a rule reload), the hyperscan stream starts over at ``off``.  ``recent`` maps
    each literal seen to the stream offset where its last occurrence ended."""

    __slots__ = ("scanner", "hs", "base", "pos", "recent")

    def __init__(self) -> None:
        self.scanner: StreamScanner | None = None
        self.hs = None
        self.base = 0  # stream offset of the hyperscan stream's offset 0
        self.pos = -1  # stream offset of the next byte the hyperscan stream expects
        self.recent: dict[int, int] = {}

    def feed(self, scanner: StreamScanner, off: int, data) -> dict[int, int]:
        """Scan ``data`` (stream offset ``off``); returns ``recent``, updated."""
        if off != self.pos or scanner is not self.scanner:
            if self.hs is not None:
                self.hs.close()
            if scanner is not self.scanner:
                self.recent = {}  # another database (a rule reload): other literal ids
            self.hs = scanner.open()
            self.scanner = scanner
            self.base = off
        last = scanner.last
        last.clear()
        self.hs.scan(data)
        self.pos = off + len(data)
        if last:
            base = self.base
            recent = self.recent
            for i, to in last.items():
                recent[i] = base + to
        return self.recent

    def close(self) -> None:
        if self.hs is not None:
            self.hs.close()
            self.hs = None
        self.scanner = None
