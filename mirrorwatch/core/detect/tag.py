"""Tagged packets: Suricata's ``tag`` keyword (detect-tag.c, detect-engine-tag.c).

A rule with ``tag:session`` or ``tag:host`` that alerts starts a tag on its flow or on one of the
packet's hosts; the packets that follow (of that flow, or to or from that host) are tagged until
the tag has seen ``count`` packets, bytes or seconds.  Suricata logs each tagged packet once as an
EVE ``packet`` record (its alert logger's ``tagged-packets``, on by default).

As Suricata: tags are handled after the packet's alerts, so the packet that starts a tag counts as
its first packet but is not tagged itself (the alert logs it); a rule matching again restarts its
tag (at most ``TAG_MATCH_LIMIT`` times); a flow or host holds at most ``TAG_MAX_TAGS`` tags; a
host's tags unseen for ``TAG_MAX_IDLE`` seconds are dropped.  The hosts holding tags are bounded
by the setting ``detect.tag.max-hosts`` (Suricata bounds its host table by memory): past it the
host tagged longest ago loses its tags, counted.
"""

from __future__ import annotations

TAG_MAX_TAGS = 50  # DETECT_TAG_MAX_TAGS: tags per flow or host
TAG_MATCH_LIMIT = 10  # DETECT_TAG_MATCH_LIMIT: re-matches of a rule that still restart its tag
TAG_MAX_IDLE = 600  # TAG_MAX_LAST_TIME_SEEN: seconds a host's tag lives without a packet
SESSION = "session"
SRC = "src"


class TagEntry:
    """One rule's tag on a flow or host (Suricata's DetectTagDataEntry)."""

    __slots__ = ("key", "metric", "count", "first_ts", "last_ts", "packets", "bytes", "matches", "skipped_first")

    def __init__(self, key: tuple, metric: str, count: int, ts: float):
        self.key = key  # (gid, sid)
        self.metric = metric
        self.count = count
        self.first_ts = self.last_ts = ts
        self.packets = 0
        self.bytes = 0
        self.matches = 0
        self.skipped_first = False

    def restart(self, ts: float) -> None:
        """The rule matched again: its tag starts over (up to TAG_MATCH_LIMIT times)."""
        self.matches += 1
        if self.matches < TAG_MATCH_LIMIT:
            self.first_ts = self.last_ts = ts
            self.packets = self.bytes = 0

    def see(self, ts: float, size: int) -> bool | None:
        """Count a packet: True when it is tagged, False when not (the first), None when expired."""
        self.last_ts = ts
        self.packets += 1
        self.bytes += size
        if not self.skipped_first:
            self.skipped_first = True
            return False
        return None if _EXPIRED[self.metric](self) else True


_EXPIRED = {
    "packets": lambda e: e.packets > e.count,
    "bytes": lambda e: e.bytes > e.count,
    "seconds": lambda e: int(e.last_ts) - int(e.first_ts) > e.count,
}


def _add(entries: list, key: tuple, spec, ts: float) -> bool:
    """Start (or restart) ``key``'s tag in ``entries``; False when the list is full."""
    for e in entries:
        if e.key == key:
            e.restart(ts)
            return True
    if len(entries) >= TAG_MAX_TAGS:
        return False
    entries.insert(0, TagEntry(key, spec.metric, spec.count, ts))  # Suricata prepends
    return True


def _visit(entries: list, ts: float, size: int) -> bool:
    """Count the packet in every entry, dropping the expired ones; True when one tags it."""
    tagged = False
    for e in list(entries):
        seen = e.see(ts, size)
        if seen is None:
            entries.remove(e)
        elif seen:
            tagged = True
    return tagged


class TagTracker:
    """The tags of one engine: per flow (released when the flow ends) and per host address.

    ``flows`` and ``hosts`` are never rebound: the engine keeps them and looks at them per
    packet (both empty: nothing is tagged, nothing to count)."""

    def __init__(self, max_hosts: int):
        self.max_hosts = max_hosts
        self.flows: dict = {}  # flow -> [TagEntry]
        self.hosts: dict[bytes, list] = {}  # packed address -> [TagEntry], oldest tagged first
        self.c = {"tags_started": 0, "tags_refused_full": 0, "tagged_packets": 0, "hosts_dropped": 0}

    def start(self, alerts, pkt, flow) -> None:
        """The packet's alerts start the tags of their rules (Suricata's DetectTagMatch)."""
        for a in alerts:
            for spec in getattr(a.rule, "tags", ()):
                if spec.type == SESSION:
                    if flow is None:
                        continue
                    entries = self.flows.setdefault(flow, [])
                else:
                    entries = self._host(pkt.src if spec.direction == SRC else pkt.dst)
                started = _add(entries, (a.rule.gid, a.rule.sid), spec, pkt.ts)
                self.c["tags_started" if started else "tags_refused_full"] += 1

    def _host(self, address: bytes) -> list:
        entries = self.hosts.get(address)
        if entries is None:
            if len(self.hosts) >= self.max_hosts:
                del self.hosts[next(iter(self.hosts))]
                self.c["hosts_dropped"] += 1
            entries = self.hosts[address] = []
        return entries

    def packet(self, pkt, flow) -> bool:
        """Count ``pkt`` in its flow's and hosts' tags (Suricata's TagHandlePacket); True when tagged."""
        ts, size = pkt.ts, len(pkt.frame)
        tagged = False
        if flow is not None:
            entries = self.flows.get(flow)
            if entries is not None:
                tagged = _visit(entries, ts, size)
                if not entries:
                    del self.flows[flow]
        for address in (pkt.src, pkt.dst):
            entries = self.hosts.get(address)
            if entries is None:
                continue
            entries[:] = [e for e in entries if e.last_ts + TAG_MAX_IDLE >= ts]
            tagged = _visit(entries, ts, size) or tagged
            if not entries:
                del self.hosts[address]
        if tagged:
            self.c["tagged_packets"] += 1
        return tagged

    def flow_end(self, flow) -> None:
        self.flows.pop(flow, None)

    def counters(self) -> dict:
        return {**self.c, "flows": len(self.flows), "hosts": len(self.hosts)}
