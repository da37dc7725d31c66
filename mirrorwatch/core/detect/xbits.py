"""xbits and hostbits: bits per host and per IP pair, as Suricata's host-bit.c and ippair-bit.c.

A rule's checks (``isset``, ``isnotset``) run among its header checks (``header_check``,
added when the detector compiles the rule, ``build.crule``: a rule without them pays nothing
per packet; they have no side effect, so their place among the pre-checks does not matter);
its commands (``set``, ``unset``, ``toggle``) run once the whole rule
matched, in rule order, so a later rule on the same packet sees them (as flowbits,
Suricata's post-match list).  Several checks in one rule must all hold.

Semantics, by packet time (the core reads no clock):

- a bit set at packet time ``t`` with ``expire s`` lives while the packet time is at most
  ``t + s`` (HostBitIsset: expired once ``expire < ts``), in whole microseconds as Suricata's
  SCTime_t (so the boundary does not depend on float rounding);
- ``set`` of a bit that is set keeps its expiry (HostBitSet does not renew it); ``toggle``
  removes a set bit, else sets it with a new expiry; ``unset`` removes it;
- an expired bit is absent for every command, whether or not it was pruned yet (Suricata
  removes one when a check meets it, or when its host-timeout pass runs: timing-dependent);
- ``track ip_src`` / ``ip_dst`` (and hostbits ``src`` / ``dst``) key the host table by the
  packet's source / destination address, ``ip_pair`` the IP pair table by the unordered
  address pair (Suricata's IPPair compares both orders); the VLAN is no part of either key.

Both tables are bounded, as Suricata's by ``host.memcap`` and ``ippair.memcap``: an entry
(a host or pair with live bits) is accounted ``HOST_ENTRY_BYTES`` / ``PAIR_ENTRY_BYTES`` (the
size of Suricata's Host / IPPair with its storage).  Here only hosts and pairs holding bits
are kept (Suricata's host table also holds tags and thresholds; those are bounded by their
own settings here).  A new entry in a full table takes the place of the oldest one (in
constant time, so a flood of new hosts costs no sweep per host), counted when that one
still held live bits (``xbits.host_evicted`` / ``xbits.ippair_evicted``), as Suricata
recycles a used host when at its memcap.  Expired bits are pruned once every
``PRUNE_INTERVAL`` of packet time, when a bit is set (``xbits.expired``).

Rule order (detect-engine-sigorder.c), after action and flowbits: hostbits type, then
IP pair bits type, each "set only" before "set and read" before "read only" before "none".
Suricata counts as writers only ``hostbits`` commands and as readers only ``xbits``
checks (SCSigGetXbitsType), so an ``xbits:set`` rule is ordered as a rule without bits,
after the ``xbits:isset`` readers: a bit set and checked on the same packet is seen by the
checker only in Suricata's order, which is kept here.

Workers: each worker (``replay --workers``, ``listen`` fanout) has its own tables, so a
bit set by one worker is not seen by another; with ``autofp-scheduler=ippair`` a pair's
packets all go to one worker (``ip_pair`` bits behave as with one worker), host bits of a
host talking to several peers may not.  Suricata shares one host table between its threads.
"""

from __future__ import annotations

from collections import OrderedDict

HOST_ENTRY_BYTES = 160  # sizeof(Host) with its storage slots on 64-bit Suricata
PAIR_ENTRY_BYTES = 192  # sizeof(IPPair) with its storage slots
US = 1_000_000  # packet times and expiries are kept in microseconds
PRUNE_INTERVAL = 10 * US  # packet time between sweeps for expired bits
SRC, DST, PAIR = 0, 1, 2
_TRACK = {"ip_src": SRC, "ip_dst": DST, "ip_pair": PAIR}
READS = ("isset", "isnotset")
# Suricata's sigorder values: DETECT_XBITS_NOT_USED, _TYPE_READ, _TYPE_SET_READ, _TYPE_SET
NOT_USED, TYPE_READ, TYPE_SET_READ, TYPE_SET = 1, 2, 3, 4
NO_XBITS = (None, None, (NOT_USED, NOT_USED))  # compile_xbits of a rule without xbits / hostbits


def compile_xbits(xbits: list) -> tuple:
    """(checks, commands, (host order type, pair order type)) of a rule's XBit list; checks
    (isset: bool, name, track) and commands (cmd, name, track, expire) are tuples or None."""
    if not xbits:
        return NO_XBITS  # most rules: nothing to build when the detector first compiles them
    reads = tuple((x.cmd == "isset", x.name, _TRACK[x.track]) for x in xbits if x.cmd in READS)
    writes = tuple((x.cmd, x.name, _TRACK[x.track], x.expire) for x in xbits if x.cmd not in READS)
    host = _order_type(xbits, lambda x: x.track != "ip_pair")
    pair = _order_type(xbits, lambda x: x.track == "ip_pair")
    return reads or None, writes or None, (host, pair)


def _order_type(xbits: list, table) -> int:
    """SCSigGetXbitsType: readers are xbits checks, writers hostbits commands."""
    read = any(x.keyword == "xbits" and x.cmd in READS and table(x) for x in xbits)
    write = any(x.keyword == "hostbits" and x.cmd not in READS and table(x) for x in xbits)
    return TYPE_SET_READ if read and write else TYPE_SET if write else TYPE_READ if read else NOT_USED


def header_check(detector, checks: tuple):
    """A rule's checks as one of its header checks, ``check(pkt, flow, d) -> bool``, on the store
    the detector holds when the packet is judged (a reload hands it to the next detector)."""

    def check(pkt, flow, d) -> bool:
        return detector.xbits.test(checks, pkt)

    return check


class BitTable:
    """Host or IP pair -> {bit name: expiry}, bounded by a memcap; times in microseconds."""

    __slots__ = ("entries", "max_entries", "evicted", "expired", "next_prune")

    def __init__(self, memcap: int, entry_bytes: int):
        self.entries: OrderedDict = OrderedDict()  # oldest first
        self.max_entries = memcap // entry_bytes
        self.evicted = 0  # entries dropped with live bits to make room (or refused: memcap below one)
        self.expired = 0  # bits pruned after their expiry
        self.next_prune = None

    def isset(self, key, name: str, ts: int) -> bool:
        bits = self.entries.get(key)
        if bits is None:
            return False
        exp = bits.get(name)
        return exp is not None and ts <= exp

    def set(self, key, name: str, ts: int, expire: int) -> None:
        if self.next_prune is None or ts >= self.next_prune:
            self.prune(ts)
        bits = self.entries.get(key)
        if bits is None:
            if self.max_entries <= 0:
                self.evicted += 1
                return
            if len(self.entries) >= self.max_entries:
                self._make_room(ts)
            bits = self.entries[key] = {}
        exp = bits.get(name)
        if exp is None or exp < ts:
            bits[name] = ts + expire * US

    def unset(self, key, name: str) -> None:
        bits = self.entries.get(key)
        if bits is not None and bits.pop(name, None) is not None and not bits:
            del self.entries[key]

    def toggle(self, key, name: str, ts: int, expire: int) -> None:
        if self.isset(key, name, ts):
            self.unset(key, name)
        else:
            self.set(key, name, ts, expire)

    def prune(self, ts: int) -> None:
        """Drop the bits expired at packet time ``ts``, and the entries left without bits."""
        self.next_prune = ts + PRUNE_INTERVAL
        empty = []
        for key, bits in self.entries.items():
            gone = [name for name, exp in bits.items() if exp < ts]
            for name in gone:
                del bits[name]
            self.expired += len(gone)
            if not bits:
                empty.append(key)
        for key in empty:
            del self.entries[key]

    def _make_room(self, ts: int) -> None:
        entries = self.entries
        while len(entries) >= self.max_entries:
            bits = entries.popitem(last=False)[1]
            live = sum(exp >= ts for exp in bits.values())
            self.expired += len(bits) - live
            if live:
                self.evicted += 1


class XbitStore:
    """The host and IP pair tables of one detector (kept across rule reloads, as Suricata's)."""

    __slots__ = ("hosts", "pairs", "used")

    def __init__(self, settings):
        self.hosts = BitTable(settings["host.memcap"], HOST_ENTRY_BYTES)
        self.pairs = BitTable(settings["ippair.memcap"], PAIR_ENTRY_BYTES)
        self.used = False  # a rule wrote a bit: the stats report the tables from then on

    def _where(self, track: int, pkt) -> tuple:
        """(table, key) of a packet's host or pair; the key is None for a packet without
        addresses (a decoder event on a non-IP frame): no bit is found or set there."""
        a, b = pkt.src, pkt.dst
        if not a or not b:
            return self.hosts, None
        if track == SRC:
            return self.hosts, a
        if track == DST:
            return self.hosts, b
        return self.pairs, (a, b) if a <= b else (b, a)

    def test(self, checks: tuple, pkt) -> bool:
        """Every check of a rule holds for ``pkt`` (isset / isnotset)."""
        ts = round(pkt.ts * US)
        for isset, name, track in checks:
            table, key = self._where(track, pkt)
            if (key is not None and table.isset(key, name, ts)) != isset:
                return False
        return True

    def write(self, commands: tuple, pkt) -> None:
        """A matching rule's set / unset / toggle, in rule order."""
        ts = round(pkt.ts * US)
        self.used = True
        for cmd, name, track, expire in commands:
            table, key = self._where(track, pkt)
            if key is None:
                continue
            if cmd == "set":
                table.set(key, name, ts, expire)
            elif cmd == "unset":
                table.unset(key, name)
            else:
                table.toggle(key, name, ts, expire)

    def counters(self) -> dict:
        """The tables' figures for the stats, once a rule wrote a bit (before: none, so a rule set
        without xbits keeps its stats as they were)."""
        if not self.used:
            return {}
        h, p = self.hosts, self.pairs
        return {"xbits.hosts": len(h.entries), "xbits.ippairs": len(p.entries),
                "xbits.host_memuse": len(h.entries) * HOST_ENTRY_BYTES,
                "xbits.ippair_memuse": len(p.entries) * PAIR_ENTRY_BYTES,
                "xbits.host_evicted": h.evicted, "xbits.ippair_evicted": p.evicted,
                "xbits.expired": h.expired + p.expired}
