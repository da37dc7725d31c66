"""decode-event rules: judged on the packets that raised their decoder event, and only those.

Such a rule (``alert pkthdr any any -> any any (decode-event:ipv4.trunc_pkt; ...)``,
Suricata's decoder-events.rules) has no literal to prefilter on, and a header group
would judge it on every packet.  The build files it under its event instead
(``event_index``), never in a header, ip-only or literal group; per packet the
detector asks ``EventMixin.event_cands`` only when the packet carries events
(``Packet.events``, empty on a clean packet), so the rules cost nothing elsewhere.
A packet without an IP layer (a frame that failed below it) is judged against these
rules alone (``Detector.inspect_no_ip``), as Suricata's ``pkthdr`` rules see every packet.
The keyword's check itself (``event_check``) verifies every decode-event of a rule.
"""

from __future__ import annotations

from mirrorwatch.core.decode.decode_events import EVENT_PREFIX, RAISED
from mirrorwatch.core.detect.compile import Unsupported
from mirrorwatch.rules.kw_events import KEYWORD

NO_CANDIDATES: frozenset = frozenset()


def event_check(event: str):
    """The header check of ``decode-event``: ``check(pkt, flow, d)``; Unsupported (the rule is
    skipped with the reason) for an event Suricata knows but this decoder never raises, so that
    no rule is silently blind."""
    if event not in RAISED:
        raise Unsupported(f"decode-event '{event.removeprefix(EVENT_PREFIX)}' is not raised by mirrorwatch's decoder")

    def check(pkt, flow, d) -> bool:
        return event in pkt.events

    return check


def rule_event(rule) -> str | None:
    """The (first) decoder event a rule names with decode-event, None when it names none."""
    for h in rule.header_checks:
        if h.keyword == KEYWORD:
            return h.value
    return None


def event_index(entries) -> dict:
    """``(event, rule number)`` pairs -> {event: frozenset of rule numbers}."""
    index: dict = {}
    for event, num in entries:
        index.setdefault(event, set()).add(num)
    return {event: frozenset(nums) for event, nums in index.items()}


class EventMixin:
    """The Detector's decode-event candidates (its build sets ``event_rules``, ``event_index``'s)."""

    def event_cands(self, events: tuple) -> frozenset:
        """The rules on any of the packet's decoder ``events``."""
        rules = self.event_rules
        if len(events) == 1:
            return rules.get(events[0], NO_CANDIDATES)
        out: set = set()
        for event in events:
            out.update(rules.get(event, ()))
        return frozenset(out)
