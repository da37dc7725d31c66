"""Loading a rule set through the cache (``rules.cache``): the parsed rules and the hyperscan databases.

``load_rules_cached(paths, settings, classification, progress, notify)`` returns
the ``RuleSet`` ``load_rules`` would, from the cache when an entry for exactly
these inputs exists (``rule_set_key``), else parsed and stored.  A rule set from
the cache holds its rules as a ``lazy.LazyRules`` (each rule unpickled when first
used).  The rule set carries ``cache`` (a ``CacheReport``), ``mpm_cache`` (an
``MpmCache`` or None), which the Detector's build passes to ``hsdb.database``:
each hyperscan database is looked up by a hash of its mode, expressions and
flags and the hyperscan version, and compiled and stored on a miss, as
Suricata's ``sgh-mpm-caching``; and ``plan_cache`` (a
``PlanCache`` or None): where the Detector keeps the plan of its tables for this
rule set (``core.detect.plan``), so that a start from the cache needs no rule
unpickled.  Trust and file handling: see ``rules.cache``.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import sys
import time
from pathlib import Path

import hyperscan as hs

import mirrorwatch

from .cache import (
    FORMAT,
    HS_PREFIX,
    PLAN_PREFIX,
    RULES_PREFIX,
    SUFFIX,
    CacheReport,
    Rejected,
    collector_paused,
    open_cache,
)
from .classification import BUNDLED
from .lazy import LazyRules, pack
from .loader import RuleSet, _expand, load_rules
from .pcre import library_version

_RULES_ROOM = Path(__file__).resolve().parent
RULE_SETTING_PREFIXES = ("pcre.",)  # settings the parser reads, beside the rule variables
# a rule-set entry: these fields (plain data), then the rules' pickles and the shared sets' (``lazy.pack``)
_FIELDS = ("skipped", "warnings", "files", "disabled", "classification", "warned")
_UNREADABLE = (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError, IndexError)


class _PlainUnpickler(pickle.Unpickler):
    """Plain data only (tuples, lists, dicts, sets, numbers, text, bytes): resolves no name at all
    (the payload is authenticated first; this is the second wall)."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a rule set")


def _plain_load(payload: bytes):
    with collector_paused():
        return _PlainUnpickler(io.BytesIO(payload)).load()


def _build_tag() -> str:
    return "interpreted" if mirrorwatch.PURE_REASON else "compiled"


def _code_fingerprint() -> bytes:
    """The rules room's source: a parser edit must not meet results of the old parser."""
    h = hashlib.sha256()
    for p in sorted(_RULES_ROOM.glob("*.py")):
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.digest()


def _file_digest(path) -> bytes:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").digest()  # in chunks: no copy of a whole rule file
    except OSError:
        return b"unreadable"


def rule_set_key(paths, settings, classification) -> str:
    """SHA-256 (hex) of everything a loaded rule set depends on (see ``rules.cache``)."""
    h = hashlib.sha256()

    def put(*items) -> None:
        for item in items:
            h.update(repr(item).encode("utf-8", "surrogateescape") + b"\0")

    put(FORMAT, mirrorwatch.__version__, _build_tag(), sys.version, library_version(), hs.__version__)
    h.update(_code_fingerprint())
    files, errors = _expand(paths)
    put(errors)
    for f in files:
        put(str(f), _file_digest(f))
    if isinstance(classification, dict):
        put("table", sorted(classification.items()))
    else:
        put("file", str(classification), _file_digest(classification if classification is not None else BUNDLED))
    put(sorted(settings.address_groups.items()), sorted(settings.port_groups.items()))
    put(sorted((k, v) for k, v in settings.as_dict().items() if k.startswith(RULE_SETTING_PREFIXES)))
    return h.hexdigest()


def load_rules_cached(paths, settings, classification=None, progress=None, notify=None) -> RuleSet:
    """``load_rules`` through the cache (``detect.rule-set-caching``, ``detect.sgh-mpm-caching``)."""
    t0 = time.perf_counter()
    report = CacheReport(notify=notify)
    store = None
    if settings["detect.sgh-mpm-caching"] or settings["detect.rule-set-caching"]:
        store = open_cache(settings, report)
    rs = None
    key = None
    if store is not None and settings["detect.rule-set-caching"]:
        key = rule_set_key(paths, settings, classification)
        rs = _read_rule_set(store, f"{RULES_PREFIX}{key}{SUFFIX}", report)
    if rs is None:
        with collector_paused():
            rs = load_rules(paths, settings, classification=classification, progress=progress)
        if key is not None and (rs.errors or not _write_rule_set(store, f"{RULES_PREFIX}{key}{SUFFIX}", rs, report)):
            key = None  # not stored: no plan beside it either
    elif progress is not None:
        progress(1, 1)
    if store is not None:
        store.prune()
    report.load_seconds = rs.seconds = time.perf_counter() - t0
    rs.cache = report
    rs.mpm_cache = MpmCache(store, report) if store is not None and settings["detect.sgh-mpm-caching"] else None
    rs.plan_cache = PlanCache(store, key, report) if key is not None else None
    return rs


def _write_rule_set(store, name: str, rs: RuleSet, report: CacheReport) -> bool:
    """Store ``rs`` (its fields, then the rules' compact form); False when it cannot be."""
    try:
        blobs, shared = pack(rs.rules)
    except (pickle.PicklingError, TypeError, AttributeError) as e:
        report.note(f"rule cache: this rule set cannot be stored ({e}); running without it")
        return False
    fields = tuple(getattr(rs, f) for f in _FIELDS)
    store.write(name, pickle.dumps(fields + (blobs, shared), protocol=pickle.HIGHEST_PROTOCOL))
    return True


def _read_rule_set(store, name: str, report: CacheReport) -> RuleSet | None:
    """The cached rule set ``name`` (status hit), or None (status miss or rebuilt)."""
    try:
        payload = store.read(name)
        if payload is None:
            report.status = "miss"
            return None
        values = _plain_load(payload)
        if not isinstance(values, tuple) or len(values) != len(_FIELDS) + 2:
            raise pickle.UnpicklingError("not a rule set of this format")
        blobs, shared = values[-2:]
        if not isinstance(blobs, tuple) or not isinstance(shared, tuple) or not all(
                type(b) is bytes for b in blobs + shared):
            raise pickle.UnpicklingError("not a rule set of this format")
    except Rejected:
        report.status = "rebuilt"
        return None
    except _UNREADABLE as e:
        # authentic but unreadable here (an entry of another format or build that hashed alike): rebuilt
        store.rejected(name, f"unreadable ({type(e).__name__}: {e})")
        report.status = "rebuilt"
        return None
    report.status = "hit"
    rs = RuleSet(rules=LazyRules(blobs, shared))
    for f, v in zip(_FIELDS, values):
        setattr(rs, f, v)
    return rs


class PlanCache:
    """Plain data derived from one stored rule set, kept beside it: the Detector's plan of its
    tables (``core.detect.plan``).  An entry is named by the rule set's key and a fingerprint of
    the code that derives it; ``load(fingerprint)`` gives it or None, ``save(fingerprint, plan)``
    stores it, ``reject(fingerprint, why)`` removes an entry its reader cannot use (one line)."""

    def __init__(self, store, key: str, report: CacheReport):
        self.store = store
        self.key = key
        self.report = report

    def _name(self, fingerprint: bytes) -> str:
        digest = hashlib.sha256(self.key.encode() + b"\0" + fingerprint).hexdigest()
        return f"{PLAN_PREFIX}{digest}{SUFFIX}"

    def load(self, fingerprint: bytes):
        name = self._name(fingerprint)
        try:
            payload = self.store.read(name)
        except Rejected:
            self.report.plan = "rebuilt"
            return None
        if payload is None:
            self.report.plan = "miss"
            return None
        try:
            plan = _plain_load(payload)
        except _UNREADABLE as e:
            self.reject(fingerprint, f"unreadable ({type(e).__name__}: {e})")
            return None
        self.report.plan = "hit"
        return plan

    def reject(self, fingerprint: bytes, why: str) -> None:
        self.store.rejected(self._name(fingerprint), why)
        self.report.plan = "rebuilt"

    def save(self, fingerprint: bytes, plan) -> None:
        self.store.write(self._name(fingerprint), pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL))


class MpmCache:
    """Hyperscan databases by content: ``database(mode, exprs, flags, compile)`` loads one, or
    makes it with ``compile(mode, exprs, flags)`` (``hsdb.compile_database``) and stores it."""

    def __init__(self, store, report: CacheReport):
        self.store = store
        self.report = report

    def database(self, mode: int, exprs: list, flags: list, compile):
        t0 = time.perf_counter()
        h = hashlib.sha256(repr((FORMAT, hs.__version__, mode, flags)).encode())
        for e in exprs:
            h.update(len(e).to_bytes(4, "big") + e)
        name = f"{HS_PREFIX}{h.hexdigest()}{SUFFIX}"
        db = self._load(name, mode)
        if db is None:
            db = compile(mode, exprs, flags)
            self.report.hs_compiled += 1
            self.store.write(name, hs.dumpb(db))
        else:
            self.report.hs_loaded += 1
        self.report.compile_seconds += time.perf_counter() - t0
        return db

    def _load(self, name: str, mode: int):
        try:
            payload = self.store.read(name)
        except Rejected:
            self.report.hs_rebuilt += 1
            return None
        if payload is None:
            return None
        try:
            db = hs.loadb(payload, mode)
            db.scratch = hs.Scratch(db)  # loadb leaves the database without scratch space
        except hs.HyperscanError as e:
            self.store.rejected(name, f"not loadable by this hyperscan ({type(e).__name__})")
            self.report.hs_rebuilt += 1
            return None
        return db
