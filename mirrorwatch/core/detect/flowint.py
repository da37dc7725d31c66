"""flowint: unsigned 32-bit integers kept in the flow, as Suricata 7's detect-flowint.c and
flow-var.c.

A rule's conditions (``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``isset``, ``isnotset``:
Suricata's match list) run after its flowbits checks (``judge.pre``: ``holds`` on the flow's
detect state, the scratch one of a flow judged without one too); they have no side effect.
Its modifiers (``=``, ``+``, ``-``: the post-match list) run once the whole rule matched, in
keyword order (``FlowInts.write``), so a later rule on the same packet sees them (as
flowbits).  A rule without flowint pays one pointer test per candidate and per match.  Both need the packet's flow; a condition makes the rule need one (Suricata's
SIG_MASK_REQUIRE_FLOW), a rule with only modifiers matches without a flow and changes nothing.

Semantics (DetectFlowintMatch, FlowVarAddIntNoLock):

- the operand is the rule's number or the current value of the flowint it names, 0 when that
  one is not set (``isset`` tells the two apart);
- a comparison of a flowint that is not set is false (``!=`` too);
- ``=`` sets; ``+`` adds, and sets a flowint not set yet to the operand; ``-`` subtracts, and
  leaves a flowint not set as it is (not set);
- arithmetic wraps around modulo 2**32, as Suricata's uint32_t (0 - 1 is 4294967295).

Rule order (detect-engine-sigorder.c): after action and flowbits, "set only" rules before
"set and read" before "read only" before rules without flowint.

Bound: a flow holds at most ``detect.flowint.max-per-flow`` flowints; a modifier that would
create one more does nothing, counted (``flowint.refused``).  Suricata allocates them without
a bound; a flow can only hold the names its rules write, so real rule sets never reach it.
"""

from __future__ import annotations

from mirrorwatch.rules.kw_flowint import MODIFIERS
from mirrorwatch.rules.matches import compare
from mirrorwatch.rules.values import U32_MAX

# Suricata's sigorder values: DETECT_FLOWINT_NOT_USED, _TYPE_READ, _TYPE_SET_READ, _TYPE_SET
NOT_USED, TYPE_READ, TYPE_SET_READ, TYPE_SET = 1, 2, 3, 4
NO_FLOWINTS = (None, None, NOT_USED)  # compile_flowints of a rule without flowint


def compile_flowints(flowints: list) -> tuple:
    """(conditions, modifiers, order type) of a rule's FlowInt list; each condition and modifier
    is (op, name, number, variable) with one of number / variable None (a condition's ``==``
    written ``=``, as ``rules.matches.compare`` has it); the lists are tuples or None."""
    if not flowints:
        return NO_FLOWINTS
    ops = [(f.op, f.name, None if isinstance(f.value, str) else f.value,
            f.value if isinstance(f.value, str) else None) for f in flowints]
    reads = tuple(("=" if o[0] == "==" else o[0],) + o[1:] for o in ops if o[0] not in MODIFIERS) or None
    writes = tuple(o for o in ops if o[0] in MODIFIERS) or None
    kind = TYPE_SET_READ if reads and writes else TYPE_SET if writes else TYPE_READ
    return reads, writes, kind


def _operand(ints, number, var) -> int:
    if var is None:
        return number
    return ints.get(var, 0) if ints else 0


def holds(conditions: tuple, ints) -> bool:
    """Every condition holds for a flow's flowints ``ints`` (a dict, or None: none set)."""
    for op, name, number, var in conditions:
        if op == "isset":
            ok = bool(ints) and name in ints
        elif op == "isnotset":
            ok = not ints or name not in ints
        else:
            cur = ints.get(name) if ints else None
            ok = cur is not None and compare(op, _operand(ints, number, var), None, cur)
        if not ok:
            return False
    return True


class FlowInts:
    """The detector's bound on flowints per flow and its count of refused ones (the values live
    in each flow's ``FlowDet.ints``)."""

    __slots__ = ("max_per_flow", "refused", "used")

    def __init__(self, settings):
        self.max_per_flow = settings["detect.flowint.max-per-flow"]
        self.refused = 0
        self.used = False  # a rule changed a flowint: the stats report them from then on

    def write(self, modifiers: tuple, fd) -> None:
        """A matching rule's modifiers, in keyword order, on flow detect state ``fd``."""
        if fd is None:
            return
        self.used = True
        ints = fd.ints
        if ints is None:
            ints = fd.ints = {}
        for op, name, number, var in modifiers:
            v = _operand(ints, number, var)
            cur = ints.get(name)
            if op == "-":
                if cur is None:
                    continue
                v = (cur - v) & U32_MAX
            elif op == "+" and cur is not None:
                v = (cur + v) & U32_MAX
            if cur is None and len(ints) >= self.max_per_flow:
                self.refused += 1
                continue
            ints[name] = v

    def counters(self) -> dict:
        """``flowint.refused`` once a rule changed a flowint (before: none, so a rule set
        without flowint keeps its stats as they were)."""
        return {"flowint.refused": self.refused} if self.used else {}
