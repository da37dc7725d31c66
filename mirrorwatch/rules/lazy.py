"""A cached rule set's compact form: one pickle per rule, unpickled when the rule is first used.

Unpickled whole, ET Open's ~25k rules are ~400k objects: half a second of every start,
spent mostly on rules no packet ever wakes.  The rule-set cache (``rules.ruleset_cache``)
therefore keeps each rule as its own small pickle (``pack``), and ``LazyRules``, a
read-only sequence in the rules' order, unpickles a rule the first time it is asked
for.  (The detector does not need the rules to build its tables: it keeps its own
plan beside the rule set, ``core.detect.plan``, and compiles a rule when the rule
first becomes a candidate.)

What a rule's pickle may name is closed: the rule model's classes (``model``,
``matches``), ``ipaddress`` networks, ``rules.pcre.restore_pcre`` (``GLOBALS``)
and ``_Store.shared``; the unpickler resolves nothing else.  A rule model record is written as its class
called with its field values, without the field names.  The address and port sets
the parser shares between rules (``AddrSet``/``PortSet``, read-only) are each
pickled once and referred to as ``_Store.shared(index)``, which the unpickler binds
to its own store: each is unpickled once, and rules decoded one by one share them
as the parsed rules did.
"""

from __future__ import annotations

import dataclasses
import io
import ipaddress
import pickle
import types
from collections.abc import Sequence
from operator import itemgetter

from . import matches, model
from .pcre import restore_pcre

SHARED_TYPES = (model.AddrSet, model.PortSet)  # shared between rules by the parser, read-only
_NAMED = (type, types.FunctionType, types.BuiltinFunctionType)  # what a pickle writes by name


class _Store:
    """The pickles of one rule set and what was unpickled of them (shared by its views)."""

    __slots__ = ("blobs", "shared_blobs", "rules", "sets")

    def __init__(self, blobs: tuple, shared_blobs: tuple):
        self.blobs = blobs
        self.shared_blobs = shared_blobs
        self.rules: list = [None] * len(blobs)
        self.sets: list = [None] * len(shared_blobs)

    def rule(self, pos: int):
        r = self.rules[pos]
        if r is None:
            r = self.rules[pos] = _Unpacker(self.blobs[pos], self).load()
        return r

    def shared(self, i: int):
        """Shared set ``i`` (how a rule's pickle refers to it)."""
        if type(i) is not int or not 0 <= i < len(self.sets):
            raise pickle.UnpicklingError(f"shared set {i!r} is not part of this rule set")
        s = self.sets[i]
        if s is None:
            s = self.sets[i] = _Unpacker(self.shared_blobs[i], self).load()
        return s


# every class or function a rule's pickle may name: the rule model's classes, the address
# types it holds, the pcre restorer, and the reference to a shared set
GLOBALS: tuple = tuple(v for m in (model, matches) for v in vars(m).values()
                       if isinstance(v, type) and v.__module__ == m.__name__) + (
    ipaddress.IPv4Network, ipaddress.IPv6Network, restore_pcre, _Store.shared)
_BY_NAME = {(g.__module__, g.__qualname__): g for g in GLOBALS}
_SHARED_REF = (_Store.shared.__module__, _Store.shared.__qualname__)
_FIELDS = {g: tuple(f.name for f in dataclasses.fields(g)) for g in GLOBALS if dataclasses.is_dataclass(g)}
# a record's field values in order (every record class of the model has more than one field)
_VALUES = {g: itemgetter(*names) for g, names in _FIELDS.items()}


class _Packer(pickle.Pickler):
    """Pickles one rule (or one shared set): records as their class and field values, shared sets
    as references, and nothing named that ``GLOBALS`` does not hold (PicklingError)."""

    def __init__(self, file, shared: list):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.shared = shared
        self.shared_ids: dict = {}
        self.top = None  # the shared set being pickled itself: written out, not referred to

    def reducer_override(self, obj):
        cls = type(obj)
        if cls in SHARED_TYPES and obj is not self.top:
            i = self.shared_ids.get(id(obj))
            if i is None:
                i = self.shared_ids[id(obj)] = len(self.shared)
                self.shared.append(obj)
            return _Store.shared, (i,)
        values = _VALUES.get(cls)
        if values is not None and len(obj.__dict__) == len(_FIELDS[cls]):
            try:
                return cls, values(obj.__dict__)
            except KeyError:  # another attribute in place of a field: the usual way
                return NotImplemented
        if isinstance(obj, _NAMED) and _BY_NAME.get((obj.__module__, obj.__qualname__)) is not obj:
            raise pickle.PicklingError(f"{obj!r} is not part of a rule set")
        return NotImplemented  # pickled the usual way (an allowed name, a record with other attributes...)


def pack(rules) -> tuple[tuple, tuple]:
    """(one pickle per rule, one per shared address/port set); PicklingError when a rule holds
    something ``GLOBALS`` does not name."""
    shared: list = []
    buf = io.BytesIO()
    packer = _Packer(buf, shared)

    def dump(obj) -> bytes:
        buf.seek(0)
        buf.truncate()
        packer.clear_memo()
        packer.dump(obj)
        return buf.getvalue()

    blobs = tuple(dump(r) for r in rules)
    out = []
    for obj in shared:  # grows no further: a shared set holds no other shared set
        packer.top = obj
        out.append(dump(obj))
    return blobs, tuple(out)


class _Unpacker(pickle.Unpickler):
    def __init__(self, data: bytes, store: _Store):
        super().__init__(io.BytesIO(data))
        self.store = store

    def find_class(self, module: str, name: str):
        if (module, name) == _SHARED_REF:
            return self.store.shared
        obj = _BY_NAME.get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a rule set")
        return obj


class LazyRules(Sequence):
    """The rules of a cached rule set, in order, each unpickled on first access (then kept).

    ``without(ids)``: a view without the rules handed out whose ``id`` is in ``ids`` (the
    detector's skipped rules); views share what was unpickled."""

    __slots__ = ("_store", "_index")

    def __init__(self, blobs: tuple, shared_blobs: tuple, *, _store: _Store | None = None, _index=None):
        self._store = _store if _store is not None else _Store(blobs, shared_blobs)
        self._index = _index  # positions in the store, or None: all of them

    def __len__(self) -> int:
        return len(self._store.blobs) if self._index is None else len(self._index)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("rule index out of range")
        return self._store.rule(i if self._index is None else self._index[i])

    def __iter__(self):
        rule = self._store.rule
        for pos in range(len(self._store.blobs)) if self._index is None else self._index:
            yield rule(pos)

    def __eq__(self, other) -> bool:
        if isinstance(other, (list, tuple, LazyRules)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        return f"<LazyRules {len(self)} rules, {self.decoded()} unpickled>"

    def decoded(self) -> int:
        """How many of the store's rules were unpickled so far."""
        return sum(r is not None for r in self._store.rules)

    def without(self, ids) -> "LazyRules":
        rules = self._store.rules
        positions = range(len(rules)) if self._index is None else self._index
        keep = tuple(p for p in positions if rules[p] is None or id(rules[p]) not in ids)
        return LazyRules((), (), _store=self._store, _index=keep)


def without(rules, ids):
    """``rules`` less the ones whose ``id`` is in ``ids`` (a list, or a LazyRules view)."""
    if isinstance(rules, LazyRules):
        return rules.without(ids)
    return [r for r in rules if id(r) not in ids]
