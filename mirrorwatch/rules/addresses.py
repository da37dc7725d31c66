"""Address and port expressions of the rule header, evaluated exactly.

``[10.0.0.0/8,!10.1.0.0/16]``, ``!$HOME_NET``, ``[80,8000:8100,!8080]``...
Expressions are evaluated as sets of disjoint integer intervals (IPv4 and IPv6
separately, ports 0-65535), so nested lists and negation need no special
cases: a list is the union of its positive items minus the union of its
negated items (with "any" when only negated items are given), and ``!X`` is the
complement of X.  This is Suricata's meaning.  Variables come from
``settings.address_groups`` / ``settings.port_groups`` and are expanded
recursively; a cycle is an error.
"""

from __future__ import annotations

import ipaddress
import re

from .model import AddrSet, PortSet

V4_MAX = (1 << 32) - 1
V6_MAX = (1 << 128) - 1
PORT_MAX = 65535


class ExprError(ValueError):
    """A header expression that cannot be evaluated (message is one line)."""


# -- interval sets: sorted lists of disjoint inclusive (lo, hi) ---------------
def _norm(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _complement(ranges: list[tuple[int, int]], top: int) -> list[tuple[int, int]]:
    out = []
    nxt = 0
    for lo, hi in ranges:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= top:
        out.append((nxt, top))
    return out


def _subtract(a: list[tuple[int, int]], b: list[tuple[int, int]], top: int) -> list[tuple[int, int]]:
    return _intersect(a, _complement(b, top))


def _intersect(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


# -- splitting lists ----------------------------------------------------------
def _split_list(text: str) -> list[str]:
    """Split the inside of ``[...]`` at top-level commas."""
    items, depth, cur = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ExprError(f"unbalanced ']' in {text!r}")
        if ch == "," and depth == 0:
            items.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise ExprError(f"unbalanced '[' in {text!r}")
    items.append("".join(cur).strip())
    return items


class _Evaluator:
    """Shared machinery: negation, lists, variables; subclasses parse atoms."""

    kind = ""

    def __init__(self, groups: dict[str, str]):
        self.groups = groups
        self.var_cache: dict[str, object] = {}

    def full(self):
        raise NotImplementedError

    def union(self, a, b):
        raise NotImplementedError

    def minus(self, a, b):
        raise NotImplementedError

    def empty(self):
        raise NotImplementedError

    def atom(self, text: str):
        raise NotImplementedError

    def eval(self, text: str, stack: tuple[str, ...] = ()):
        text = text.strip()
        if not text:
            raise ExprError(f"empty {self.kind} expression")
        if text.startswith("!"):
            return self.minus(self.full(), self.eval(text[1:], stack))
        if text.startswith("["):
            if not text.endswith("]"):
                raise ExprError(f"unbalanced '[' in {self.kind} {text!r}")
            pos, neg = self.empty(), self.empty()
            have_pos = False
            for item in _split_list(text[1:-1]):
                if not item:
                    raise ExprError(f"empty item in {self.kind} list {text!r}")
                if item.startswith("!"):
                    neg = self.union(neg, self.eval(item[1:], stack))
                else:
                    have_pos = True
                    pos = self.union(pos, self.eval(item, stack))
            if not have_pos:
                pos = self.full()
            return self.minus(pos, neg)
        if text.startswith("$"):
            name = text[1:]
            if name in stack:
                raise ExprError(f"variable ${name} refers to itself ({' -> '.join('$' + s for s in stack + (name,))})")
            if name in self.var_cache:
                return self.var_cache[name]
            value = self.groups.get(name)
            if value is None:
                raise ExprError(f"unknown {self.kind} variable ${name} (set it with --set vars.{self.kind}-groups.{name}=...)")
            try:
                result = self.eval(value, stack + (name,))
            except ExprError as e:
                if str(e).startswith("variable $") or str(e).startswith(f"${name}"):
                    raise
                raise ExprError(f"${name}: {e}") from None
            self.var_cache[name] = result
            return result
        if text.lower() == "any":
            return self.full()
        return self.atom(text)


def _v4_atom(text: str):
    """Fast path for dotted-quad IPv4 and IPv4 CIDR (the bulk of IP-list rules)."""
    addr, _, plen = text.partition("/")
    parts = addr.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts):
        return None
    if plen and not (plen.isdigit() and int(plen) <= 32):
        return None
    value = (int(parts[0]) << 24) | (int(parts[1]) << 16) | (int(parts[2]) << 8) | int(parts[3])
    bits = 32 - int(plen) if plen else 0
    lo = value >> bits << bits
    return [(lo, lo | ((1 << bits) - 1))]


class AddressEvaluator(_Evaluator):
    """Evaluates address expressions to (v4 ranges, v6 ranges)."""

    kind = "address"

    def full(self):
        return ([(0, V4_MAX)], [(0, V6_MAX)])

    def empty(self):
        return ([], [])

    def union(self, a, b):
        return (_norm(a[0] + b[0]), _norm(a[1] + b[1]))

    def minus(self, a, b):
        return (_subtract(a[0], b[0], V4_MAX), _subtract(a[1], b[1], V6_MAX))

    def atom(self, text: str):
        fast = _v4_atom(text)
        if fast is not None:
            return (fast, [])
        try:
            if "/" in text:
                net = ipaddress.ip_network(text, strict=False)
            else:
                net = ipaddress.ip_network(ipaddress.ip_address(text))
        except ValueError:
            # Suricata also accepts a-b ranges of addresses
            if "-" in text:
                a, _, b = text.partition("-")
                try:
                    lo, hi = ipaddress.ip_address(a.strip()), ipaddress.ip_address(b.strip())
                except ValueError:
                    lo = hi = None
                if lo is not None and lo.version == hi.version and int(lo) <= int(hi):
                    r = [(int(lo), int(hi))]
                    return (r, []) if lo.version == 4 else ([], r)
            raise ExprError(f"bad address {text!r}") from None
        r = [(int(net.network_address), int(net.broadcast_address))]
        # ipaddress makes a /31 (/127) network refer to itself (``hosts = self.__iter__``): drop
        # it, so the network is freed by reference counting (cli.collector.tune_gc freezes survivors)
        vars(net).pop("hosts", None)
        return (r, []) if net.version == 4 else ([], r)


class PortEvaluator(_Evaluator):
    """Evaluates port expressions to a list of ranges."""

    kind = "port"

    def full(self):
        return [(0, PORT_MAX)]

    def empty(self):
        return []

    def union(self, a, b):
        return _norm(a + b)

    def minus(self, a, b):
        return _subtract(a, b, PORT_MAX)

    def atom(self, text: str):
        if ":" in text:
            a, _, b = text.partition(":")
            lo = self._port(a) if a.strip() else 0
            hi = self._port(b) if b.strip() else PORT_MAX
            if lo > hi:
                raise ExprError(f"bad port range {text!r} (start above end)")
            return [(lo, hi)]
        p = self._port(text)
        return [(p, p)]

    @staticmethod
    def _port(text: str) -> int:
        t = text.strip()
        if not t.isdigit() or int(t) > PORT_MAX:
            raise ExprError(f"bad port {text!r}")
        return int(t)


_VAR_RE = re.compile(r"\$([A-Za-z0-9_]+)")


def _uses_negation(text: str, groups: dict[str, str], seen: frozenset) -> bool:
    if "!" in text:
        return True
    return any(name not in seen and name in groups and _uses_negation(groups[name], groups, seen | {name})
               for name in _VAR_RE.findall(text))


def _networks(ranges: list[tuple[int, int]], version: int) -> list:
    cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    out = []
    for lo, hi in ranges:
        out.extend(ipaddress.summarize_address_range(cls(lo), cls(hi)))
    return out


class HeaderVars:
    """Evaluates and caches the address/port expressions of one rule set."""

    def __init__(self, address_groups: dict[str, str], port_groups: dict[str, str]):
        self.addr = AddressEvaluator(address_groups)
        self.port = PortEvaluator(port_groups)
        self._addr_cache: dict[str, AddrSet] = {}
        self._port_cache: dict[str, PortSet] = {}
        self._neg_cache: dict[str, bool] = {}

    def address(self, text: str) -> AddrSet:
        hit = self._addr_cache.get(text)
        if hit is not None:
            return hit
        v4, v6 = self.addr.eval(text)
        if not v4 and not v6:
            raise ExprError(f"address {text!r} matches no address")
        if v4 == [(0, V4_MAX)] and v6 == [(0, V6_MAX)]:
            res = AddrSet(any=True, v4=v4, v6=v6)
        else:
            res = AddrSet(include=_networks(v4, 4) + _networks(v6, 6), v4=v4, v6=v6)
        self._addr_cache[text] = res
        return res

    def address_negated(self, text: str) -> bool:
        """Does the expression use '!' itself or through a variable (at any depth)?"""
        hit = self._neg_cache.get(text)
        if hit is None:
            hit = self._neg_cache[text] = _uses_negation(text, self.addr.groups, frozenset())
        return hit

    def ports(self, text: str) -> PortSet:
        hit = self._port_cache.get(text)
        if hit is not None:
            return hit
        r = self.port.eval(text)
        if not r:
            raise ExprError(f"port {text!r} matches no port")
        res = PortSet(any=True, include=r) if r == [(0, PORT_MAX)] else PortSet(include=r)
        self._port_cache[text] = res
        return res
