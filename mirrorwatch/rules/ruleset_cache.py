"""Loading a rule set through the cache (``rules.cache``): the parsed rules and the hyperscan databases.

``load_rules_cached(paths, settings, classification, progress, notify)`` returns
the ``RuleSet`` ``load_rules`` would, from the cache when an entry for exactly
these inputs exists (``rule_set_key``), else parsed and stored.  The rule set
carries ``cache`` (a ``CacheReport``) and ``mpm_cache`` (an ``MpmCache`` or
None), which the Detector's build passes to ``hsdb.LiteralSet.compile``: each
hyperscan database is looked up by a hash of its mode, expressions and flags and
the hyperscan version, and compiled and stored on a miss, as Suricata's
``sgh-mpm-caching``.  Trust and file handling: see ``rules.cache``.
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

from . import model
from .cache import FORMAT, HS_PREFIX, RULES_PREFIX, SUFFIX, CacheReport, Rejected, collector_paused, open_cache
from .classification import BUNDLED
from .loader import RuleSet, _expand, load_rules
from .pcre import library_version

_RULES_ROOM = Path(__file__).resolve().parent
RULE_SETTING_PREFIXES = ("pcre.",)  # settings the parser reads, beside the rule variables
# what a cached rule set may name: the rule model's classes and the address types it holds
_ALLOWED = {("ipaddress", "IPv4Network"), ("ipaddress", "IPv6Network"),
            ("mirrorwatch.rules.pcre", "restore_pcre")} | {
    ("mirrorwatch.rules.model", n) for n, v in vars(model).items()
    if isinstance(v, type) and v.__module__ == model.__name__}
_FIELDS = ("rules", "skipped", "warnings", "files", "disabled", "classification", "warned")


class _RuleUnpickler(pickle.Unpickler):
    """Resolves only ``_ALLOWED`` names (the payload is authenticated first; this is the second wall)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a rule set")
        return super().find_class(module, name)


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
        return hashlib.sha256(Path(path).read_bytes()).digest()
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
    name = None
    if store is not None and settings["detect.rule-set-caching"]:
        name = f"{RULES_PREFIX}{rule_set_key(paths, settings, classification)}{SUFFIX}"
        rs = _read_rule_set(store, name, report)
    if rs is None:
        with collector_paused():
            rs = load_rules(paths, settings, classification=classification, progress=progress)
        if name is not None and not rs.errors:
            store.write(name, pickle.dumps(tuple(getattr(rs, f) for f in _FIELDS), protocol=pickle.HIGHEST_PROTOCOL))
    elif progress is not None:
        progress(1, 1)
    if store is not None:
        store.prune()
    report.load_seconds = rs.seconds = time.perf_counter() - t0
    rs.cache = report
    rs.mpm_cache = MpmCache(store, report) if store is not None and settings["detect.sgh-mpm-caching"] else None
    return rs


def _read_rule_set(store, name: str, report: CacheReport) -> RuleSet | None:
    """The cached rule set ``name`` (status hit), or None (status miss or rebuilt)."""
    try:
        payload = store.read(name)
        if payload is None:
            report.status = "miss"
            return None
        with collector_paused():
            values = _RuleUnpickler(io.BytesIO(payload)).load()
        if not isinstance(values, tuple) or len(values) != len(_FIELDS):
            raise pickle.UnpicklingError("not a rule set")
    except Rejected:
        report.status = "rebuilt"
        return None
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError, IndexError) as e:
        # authentic but unreadable here (an entry of another build that hashed alike): rebuilt
        store.rejected(name, f"unreadable ({type(e).__name__}: {e})")
        report.status = "rebuilt"
        return None
    report.status = "hit"
    rs = RuleSet()
    for f, v in zip(_FIELDS, values):
        setattr(rs, f, v)
    return rs


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
