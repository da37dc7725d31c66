"""Hyperscan literal sets: one database for many rules' fast patterns.

Each distinct (literal, nocase) pair becomes one hyperscan expression whose id
indexes a tuple of rule numbers.  Literals are escaped byte by byte (the
binding's literal mode stops at NUL bytes), so any byte string is safe.

Block mode serves packet payloads and stream pieces alike (one scan,
``HS_FLAG_SINGLEMATCH``: detect only needs *which* literals occur, then
verifies the rules on the same bytes).  Stream data is verified piece by
piece (IDS chunks, inline windows), exactly as Suricata inspects raw stream
data, so a hyperscan stream per direction would add per-session state without
finding anything more.
"""

from __future__ import annotations

import hyperscan as hs

_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def escape(lit: bytes) -> bytes:
    """Regex-escape every byte that is not a letter, digit or underscore."""
    return b"".join(bytes((b,)) if b in _SAFE else b"\\x%02x" % b for b in lit)


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

    def compile(self, mode: int):
        """A hyperscan Database in ``mode`` (HS_MODE_BLOCK / HS_MODE_STREAM), or None if empty."""
        if not self.rules:
            return None
        exprs, flags = [], []
        single = hs.HS_FLAG_SINGLEMATCH if mode == hs.HS_MODE_BLOCK else 0
        for (lit, nocase), _ in sorted(self.ids.items(), key=lambda kv: kv[1]):
            exprs.append(escape(lit))
            flags.append(single | (hs.HS_FLAG_CASELESS if nocase else 0))
        db = hs.Database(mode=mode)
        db.compile(expressions=exprs, ids=list(range(len(exprs))), elements=len(exprs), flags=flags)
        return db

    def rule_tuples(self) -> tuple:
        return tuple(tuple(r) for r in self.rules)


class BlockScanner:
    """Scans whole buffers; returns the ids of the literals present."""

    __slots__ = ("db", "scratch", "hits", "_cb")

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
        self.db.scan(data, match_event_handler=self._cb)
        return hits
