"""suricata-verify's ``filter`` semantics: how a check's ``match`` finds and compares EVE fields.

As suricata-verify's ``run.py`` does it: dotted paths with ``name[i]``
indexes (an absent field is None); the suffixes ``__len`` (length, -1 for a
number), ``__find``/``__contains``, ``__startswith``/``__endswith`` and the
numeric ``__gt``/``__gte``/``__lt``/``__lte``; ``has-key``/``not-has-key``
(one path or a list); any other value, a nested object included, compared
whole.
"""

from __future__ import annotations

OPERATORS = ("__gt", "__gte", "__lt", "__lte")
STRING_TESTS = ("__find", "__contains", "__startswith", "__endswith")
MISSING = None  # what suricata-verify's lookup returns for an absent field


def find_value(obj, path: str):
    """The value at ``path`` (dots, ``name[i]``), stopping at a suffix; None when absent."""
    for part in path.split("."):
        if part == "__len":
            return len(obj) if hasattr(obj, "__len__") else -1
        if part in STRING_TESTS or part in OPERATORS:
            break
        index = None
        if part.endswith("]") and "[" in part:
            part, _, idx = part[:-1].partition("[")
            index = int(idx) if idx.isdigit() else None
        if not isinstance(obj, dict) or part not in obj:
            return MISSING
        obj = obj[part]
        if index is not None:
            if not isinstance(obj, list) or index >= len(obj):
                return MISSING
            obj = obj[index]
    return obj


def compare(key: str, got, want) -> bool:
    """Does the looked-up value ``got`` satisfy ``want`` under the suffix ``key`` ends with?"""
    suffix = key.rsplit(".", 1)[-1]
    if suffix in STRING_TESTS:
        if not isinstance(got, (str, list, dict)):
            return False
        if suffix in ("__find", "__contains"):
            return want in got
        return isinstance(got, str) and (got.startswith(want) if suffix == "__startswith" else got.endswith(want))
    if suffix in OPERATORS:
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (got, want))
        return numeric and {"__gt": got > want, "__gte": got >= want, "__lt": got < want,
                            "__lte": got <= want}[suffix]
    return got == want


def record_matches(rec: dict, match: dict) -> bool:
    """Does the EVE record satisfy every key of a filter's ``match``?"""
    for key, want in match.items():
        if key in ("has-key", "not-has-key"):
            paths = want if isinstance(want, list) else [want]
            present = [find_value(rec, p) is not MISSING for p in paths]
            if not (all(present) if key == "has-key" else not any(present)):
                return False
        elif not compare(key, find_value(rec, key), want):
            return False
    return True


def field_path(key: str) -> str:
    """The field a match key looks at, without its suffixes."""
    parts = [p for p in key.split(".") if p not in STRING_TESTS and p not in OPERATORS and p != "__len"]
    return ".".join(parts)
