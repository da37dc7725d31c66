"""flowint: integers kept in the flow (``core.detect.flowint`` evaluates them).

What Suricata 7 accepts (detect-flowint.c, its PARSE_REGEX):

- ``flowint:<name>,<op>[,<value>]``: ``name`` a letter then at least one more of letters,
  digits, ``_ . /``; blanks around the commas; the comma before the value may be left out;
- ``op``: the modifiers ``=``, ``+``, ``-`` and the conditions ``==``, ``!=``, ``<``,
  ``<=``, ``>``, ``>=``, ``isset``, ``notset`` / ``isnotset``;
- ``value``: needed by every op but isset / isnotset (which ignore one): a number of at most
  10 digits up to 4294967295 (a uint32), or another flowint's name (a letter then at least
  one letter, digit or ``_``; no dots).
"""

from __future__ import annotations

import re

from .model import FlowInt
from .options import RuleError, Value
from .values import U32_MAX

MODIFIERS = ("=", "+", "-")
CONDITIONS = ("==", "!=", "<", "<=", ">", ">=", "isset", "isnotset")
# detect-flowint.c's PARSE_REGEX (PCRE2 without UCP: \w is ASCII)
_RE = re.compile(r"^\s*([a-zA-Z][\w\d_./]+)\s*,\s*([+=-]{1}|==|!=|<|<=|>|>=|isset|notset|isnotset)"
                 r"\s*,?\s*([a-zA-Z][\w\d]+|[\d]{1,10})?\s*$", re.ASCII)


def parse_flowint(text: str | None) -> FlowInt:
    m = _RE.match(text or "")
    if m is None:
        raise RuleError(f"flowint: {text!r} is not <name>,<op>[,<value>] (name: a letter and at least one more "
                        f"character; op: {', '.join(MODIFIERS + CONDITIONS)} or notset)")
    name, op, value = m.group(1), m.group(2), m.group(3)
    if op == "notset":
        op = "isnotset"
    if op in ("isset", "isnotset"):
        return FlowInt(name, op)  # Suricata ignores a value here
    if value is None:
        raise RuleError(f"flowint:{name},{op} needs a value (a number or another flowint's name)")
    if value[0].isdigit():
        if int(value) > U32_MAX:
            raise RuleError(f"flowint: value {value} is above {U32_MAX} (flowints are 32-bit unsigned)")
        return FlowInt(name, op, int(value))
    return FlowInt(name, op, value)


def kw_flowint(st, v: Value) -> None:
    st.rule.flowints.append(parse_flowint(v.text))


KEYWORDS = {
    "flowint": (kw_flowint, 0),
}
