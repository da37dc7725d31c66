"""The inline bypass switch as people see it: one console line and the EVE ``engine`` record.

Suricata logs engine state changes as ``engine`` events (``{"engine": {"message", "module"}}``);
a switch between inline and bypass is one of those here, module ``inline``.
"""

from __future__ import annotations

from mirrorwatch.core.events import BYPASS, BypassSwitch


def bypass_message(e: BypassSwitch) -> str:
    """``inline: BYPASS (reason) ...`` / ``inline: INLINE again (reason) ...``."""
    head = "BYPASS, packets pass uninspected" if e.state == BYPASS else "INLINE again, packets are inspected"
    released = f"; {e.released:,} held packets released uninspected" if e.released else ""
    return f"inline: {head} ({e.reason}){released}; switched in {e.switch_s * 1000:.1f} ms"


def bypass_record(e: BypassSwitch) -> dict:
    """The ``engine`` object of the EVE record for a BypassSwitch event."""
    return {"message": bypass_message(e), "module": "inline", "state": e.state, "reason": e.reason,
            "released": e.released, "switch_ms": round(e.switch_s * 1000, 1)}
