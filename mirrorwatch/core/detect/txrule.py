"""Application-layer rules: a rule's sticky-buffer keywords compiled into per-buffer matchers.

A rule's keywords are grouped by the buffer they inspect (buffer name plus its
transforms: Suricata's buffer list id), as Suricata keeps one keyword list per
buffer.  ``TxSpec`` holds, per group, the getter from ``buffers.BUFFERS``, the
side of the transaction it reads, the progress that side must reach, the
transform functions and the keyword list; ``match(tx)`` is true when every group
matches its buffer (a multi-buffer matches when one of its items does).

The rule's direction decides the side of buffers that exist on both sides
(``http.header``...): ``flow:to_client`` or a response-only buffer in the rule
makes it the response; a rule with neither inspects requests.
"""

from __future__ import annotations

from mirrorwatch.core.applayer.common import DIRECTIONS, PROGRESS_NONE, TO_CLIENT, TO_SERVER
from mirrorwatch.core.applayer.tls_messages import TLS13_DRAFT_MAJOR, TLS_VERSION_13
from mirrorwatch.core.detect import compile as _c
from mirrorwatch.core.detect.buffers import BOTH, MESSAGE, VALUE_KEYWORDS, lookup
from mirrorwatch.core.detect.payload import compile_matches
from mirrorwatch.core.detect.transforms import apply, compile_transforms
from mirrorwatch.rules.matches import Content

MISSING = object()  # a buffer not got yet (None: the transaction has no such buffer)
# buffers Suricata inspects as one keyword list (relative keywords chain across them)
SAME_LIST = {"http.response_body": "file.data"}


# group key -> the small number that names its buffer among a transaction's buffers got for one
# packet (``TxSpec.match``'s ``bufs``, a list indexed by slot: ``new_bufs``)
_SLOTS: dict = {}


def new_bufs() -> list:
    """The buffers of a transaction got for one packet, by group slot: none got yet (``MISSING``)."""
    return [MISSING] * len(_SLOTS)


class Group:
    """The keywords of one rule on one buffer; ``slot``: its key's number (``_SLOTS``)."""

    __slots__ = ("name", "key", "slot", "side", "ready", "get", "transforms", "matches", "match")

    def __init__(self, name, key, side, ready, get, transforms, matches):
        self.name, self.key, self.side, self.ready, self.get = name, key, side, ready, get
        self.slot = _SLOTS.setdefault(key, len(_SLOTS))
        self.transforms, self.matches = transforms, matches
        self.match = None  # compiled on first use (payload.compile_matches)

    def data(self, tx):
        """The buffer's bytes for ``tx`` (a tuple for a multi-buffer), transformed; None if absent."""
        return transformed(self.transforms, self.get.fetch(tx))


def transformed(transforms: tuple, v):
    """A buffer's bytes ``v`` (a tuple for a multi-buffer, None if absent) through ``transforms``."""
    if v is None or not transforms:
        return v
    if isinstance(v, tuple):  # a list, not a generator: no closure made on every call
        return tuple([apply(transforms, x) for x in v])
    return apply(transforms, v)


class TxSpec:
    """What detect needs to judge one application-layer rule on a transaction.

    ``sides`` are the packet directions the rule is inspected on: one, or both for a rule
    whose buffers all exist on both sides and that names no direction (``file.data;
    content:...``), as Suricata registers such a rule for both; per side, the groups with
    that side's getters, the value tests (``tls.version``...: ``test(tx) -> bool``) and the
    fast pattern (group key, (literal, nocase)) or None.
    """

    __slots__ = ("proto", "sides", "groups", "tests", "fps", "needs")

    def __init__(self, proto: str, sides: tuple, groups: dict, tests: dict, fps: dict):
        self.proto = proto
        self.sides = sides
        self.groups = groups
        self.tests = tests
        self.fps = fps
        # per packet direction: the progress (to server, to client) the transaction needs for every
        # group, or None on a side the rule is not inspected on
        self.needs = tuple(None if d not in groups else
                           (max([g.ready for g in groups[d] if g.side == TO_SERVER], default=PROGRESS_NONE),
                            max([g.ready for g in groups[d] if g.side != TO_SERVER], default=PROGRESS_NONE))
                           for d in DIRECTIONS)

    def ready(self, tx, d: int) -> bool:
        """The rule is inspected on packet direction ``d`` and each side of ``tx`` has progressed
        far enough for all the buffers the rule reads there."""
        need = self.needs[d]
        if need is None:
            return False
        ts, tc = need
        progress = tx.progress_ts
        if progress < ts:
            return False
        progress = tx.progress_tc
        return progress >= tc

    def match(self, tx, d: int, recursion_limit: int, bufs: list) -> bool:
        """Every group matches its buffer of ``tx``; ``bufs``: the buffers of ``tx`` got so far
        while inspecting this packet, by group slot (``new_bufs``; as Suricata's per-transaction
        inspection buffers: each made once, whichever rule or prefilter asks first)."""
        for g in self.groups[d]:
            slot = g.slot
            if slot >= len(bufs):  # a rule compiled after ``bufs`` was made (lazily: a cached rule set)
                bufs.extend([MISSING] * (len(_SLOTS) - len(bufs)))
            data = bufs[slot]
            if data is MISSING:
                data = bufs[slot] = g.data(tx)
            if data is None:
                return False
            m = g.match
            if m is None:
                m = g.match = compile_matches(g.matches, recursion_limit)
            if isinstance(data, tuple):
                for x in data:  # a loop, not any(generator): no closure made on every call
                    if m.match(x, None):
                        break
                else:
                    return False
            elif not m.match(data, None):
                return False
        for test in self.tests[d]:
            if not test(tx):
                return False
        return True


def _tls_version(check, get):
    """detect-tls-version.c: the version equals the rule's; a TLS 1.3 draft (0x7fxx) counts as
    TLS 1.3 unless the rule gave a raw 0xNNNN value."""
    want, raw = check.value, check.mode == "raw"

    def test(tx) -> bool:
        version = get(tx)
        if not raw and version >> 8 == TLS13_DRAFT_MAJOR:
            version = TLS_VERSION_13
        return version == want

    return test


VALUE_TESTS = {"tls.version": _tls_version}  # keyword -> test builder (check, side's getter)


def compile_cr(cr) -> None:
    """A compiled rule with buffer keywords (``cr.tx``) gets its TxSpec, protocol and transports."""
    cr.tx = compile_tx(cr.rule, cr.tx, "to_client" if cr.to_client else "to_server" if cr.to_server else None)
    cr.app_proto = cr.tx.proto
    cr.protos = _c.APP_PROTOS[cr.app_proto]


def compile_tx(rule, matches: list, direction: str | None) -> TxSpec:
    """The rule's buffer and value keywords as a TxSpec; Unsupported names what detect cannot judge."""
    by_key: dict = {}
    rows = {}
    response = False  # a response-only buffer names the rule's side
    for m in matches:
        name = m.buffer
        if name == "payload":
            if _c.rule_proto(rule) != "http":
                raise _c.Unsupported("payload keywords beside application-layer buffers")
            name = MESSAGE
        row = lookup(name)
        if row is None:
            raise _c.Unsupported(f"sticky buffer {name}")
        response = response or row.side == TO_CLIENT
        row = lookup(SAME_LIST.get(row.name, row.name))
        tf = tuple(getattr(m, "transforms", ()) or ())
        key = (row.name, tf)
        rows[key] = row
        by_key.setdefault(key, []).append(m)
    checks = [a for a in rule.app_checks if a.keyword in VALUE_KEYWORDS]
    protos = {row.proto for row in rows.values()} | {VALUE_KEYWORDS[a.keyword].proto for a in checks}
    proto = _c.rule_proto(rule)
    if proto is not None:
        protos.add(proto)
    if len(protos) != 1:
        raise _c.Unsupported("buffers of different application protocols: " + ", ".join(sorted(protos)))
    proto = protos.pop()
    if direction in ("to_client", "from_server") or response:
        sides: tuple = (TO_CLIENT,)
    elif direction in ("to_server", "from_client") or any(r.side == TO_SERVER for r in rows.values()):
        sides = (TO_SERVER,)
    else:
        sides = (TO_SERVER, TO_CLIENT)
    groups, tests, fps = {}, {}, {}
    for side in sides:
        groups[side] = _groups(by_key, rows, side)
        tests[side] = [VALUE_TESTS[a.keyword](a, VALUE_KEYWORDS[a.keyword].get[side]) for a in checks]
        fps[side] = _fast_pattern(groups[side])
    return TxSpec(proto, sides, groups, tests, fps)


def _groups(by_key: dict, rows: dict, side: int) -> list[Group]:
    groups = []
    for key, ms in by_key.items():
        row = rows[key]
        gside = side if row.side == BOTH else row.side
        get = row.getter(gside)
        if get is None:
            raise _c.Unsupported(f"sticky buffer {row.name} on the {'response' if gside else 'request'} side")
        try:
            tfs = compile_transforms(key[1])
        except ValueError as e:
            raise _c.Unsupported(str(e)) from None
        groups.append(Group(row.name, (row.name, gside, key[1]), gside, row.ready, get, tfs, ms))
    return groups


def prefilter_group(key: tuple) -> Group:
    """The buffer of a fast-pattern group key (buffer name, side, transforms: ``Group.key``) as the
    transaction prefilter reads it: its bytes, side and readiness (no keywords)."""
    name, side, transforms = key
    row = lookup(name)
    return Group(name, key, side, row.ready, row.getter(side), compile_transforms(transforms), ())


def _fast_pattern(groups: list[Group]):
    """(group key, (literal, nocase)) of the rule's fast pattern, or None (no positive content)."""
    contents = [(g, m) for g in groups for m in g.matches if isinstance(m, Content)]
    chosen = _c.fast_pattern_content([m for _, m in contents])
    if chosen is None:
        return None
    g = next(g for g, m in contents if m is chosen)
    return g.key, _c.fast_literal(chosen)  # scanned in the transformed buffer, as Suricata's MPM
