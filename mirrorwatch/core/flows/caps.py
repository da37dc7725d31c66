"""The flow table's caps, the memory they bound, and emergency mode (as Suricata has it).

Two caps bound the table: ``flow.max-sessions`` (sessions) and ``flow.memcap``
(bytes: every session's record and its streams' fixed part, estimated with
the per-record costs below, measured with tracemalloc by the tests; the
stream bytes themselves are under ``stream.reassembly.memcap``).  A new
session that finds the table at a cap counts a hit of that cap
(``max_sessions``/``memcap``) and:

1. if the table is not in emergency mode yet, puts it there (``emerg_mode_entered``,
   a ``FlowEmergency`` event): every protocol's ``flow-timeouts.<proto>.emergency-*``
   timeouts apply from now, and every session is refiled under them;
2. ends one session (reason ``forced``; ``evicted``, Suricata's ``get_used``),
   the least valuable: the oldest session that never got an answer and is
   one packet (an unanswered SYN, a one-packet UDP "session": unanswered
   sessions are kept in creation order in an index of their own, from which
   answered ones drop out as they are met), else the least recently active
   one.  A session that
   alerted, is being killed, or holds state the rules still need
   (``holds_state``: flowbits, per-flow threshold counters) is protected: it
   is passed over and moved to the recent end of the order it was found in,
   so the next search does not meet it again; only when the
   ``EVICTION_SCAN`` sessions looked at are all protected does the oldest of
   them go.  ``get_used_eval`` counts the sessions looked at,
   ``get_used_eval_reject`` the protected ones passed over.

Emergency mode ends at the sweep (``expire``) that finds
``flow.emergency-recovery`` percent of both caps free (``emerg_mode_over``,
a ``FlowEmergency`` event); the normal timeouts apply again.
"""

from __future__ import annotations

from collections import OrderedDict

from mirrorwatch.core.decode.packet import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP
from mirrorwatch.core.events import FlowEmergency, FlowEnded
from mirrorwatch.core.flows.flow import Flow

# Estimated bytes of one session's record, as the flows room allocates it (Flow, its per-direction
# lists, key tuple, addresses, table and wheel entries) and of one reassembled direction's fixed
# part (Stream object, its buffer and lists).  tests/test_flow_caps.py measures them.
FLOW_BYTES_TCP = 1700
FLOW_BYTES_OTHER = 1100
STREAM_BYTES = 500
EVICTION_SCAN = 32  # least recently active sessions looked at to choose the one to end

_PROTO_NAMES = ((PROTO_TCP, "tcp"), (PROTO_UDP, "udp"), (PROTO_ICMP, "icmp"), (PROTO_ICMPV6, "icmp"))


def timeout_tables(settings, prefix: str = "") -> tuple[dict, tuple]:
    """``{proto: (new, established, closed)}`` and the default triple, from
    ``flow-timeouts.<proto>.<prefix>new`` etc. (prefix '' or 'emergency-')."""
    def get(name: str, kind: str) -> float:
        return settings[f"flow-timeouts.{name}.{prefix}{kind}"]

    table = {}
    for proto, name in _PROTO_NAMES:
        closed = get("tcp", "closed") if proto == PROTO_TCP else get(name, "established")
        table[proto] = (get(name, "new"), get(name, "established"), closed)
    dflt = (get("default", "new"), get("default", "established"), get("default", "established"))
    return table, dflt


class ActivityOrder:
    """The table's sessions from the least to the most recently active: a chain through the flows
    themselves (``Flow.lru_older``/``lru_newer``), so a packet moves its session to the recent end
    with a few pointer changes, and iterating (oldest first) may end or move the flow it was given."""

    __slots__ = ("newest", "oldest")

    def __init__(self) -> None:
        self.oldest = self.newest = None

    def append(self, f: Flow) -> None:
        """``f`` (not in the order) becomes the most recently active."""
        last = self.newest
        f.lru_older = last
        f.lru_newer = None
        if last is None:
            self.oldest = f
        else:
            last.lru_newer = f
        self.newest = f

    def remove(self, f: Flow) -> None:
        """``f`` leaves the order (nothing happens if it is not in it)."""
        older = f.lru_older
        newer = f.lru_newer
        if older is None:
            if self.oldest is not f:
                return
            self.oldest = newer
        else:
            older.lru_newer = newer
        if newer is None:
            self.newest = older
        else:
            newer.lru_older = older
        f.lru_older = f.lru_newer = None

    def touch(self, f: Flow) -> None:
        """``f`` was active: it becomes the most recently active."""
        if f is not self.newest:
            self.remove(f)
            self.append(f)

    def __iter__(self):
        f = self.oldest
        while f is not None:
            newer = f.lru_newer
            yield f
            f = newer


def idle_timeout(ft, f: Flow) -> float:
    """Seconds ``f`` may stay idle in table ``ft`` now (its protocol, state, and whether in emergency mode)."""
    by_proto = ft._timeouts
    timeouts = by_proto.get(f.proto)
    return (ft._default_timeouts if timeouts is None else timeouts)[f.tclass]


def refile(ft, f: Flow) -> None:
    """File ``f`` in ``ft``'s wheel again if its timeout makes it due sooner than where it is filed."""
    deadline = f.last_ts + idle_timeout(ft, f)
    if f.bucket is None or deadline <= f.bucket - 1:
        wheel = ft.wheel
        wheel.file(f, deadline)


def set_tclass(ft, f: Flow, tclass: int) -> None:
    """A state change brings another timeout; file the flow earlier if it is now due sooner."""
    f.tclass = tclass
    refile(ft, f)


class Capacity:
    """The caps half of ``FlowTable`` (its base class): accounting, eviction, emergency mode."""

    def _init_caps(self, settings) -> None:
        self.max_sessions = max(1, settings["flow.max-sessions"])
        self.memcap = max(FLOW_BYTES_TCP, settings["flow.memcap"])
        self.memuse = 0
        recovery = min(100, max(0, settings["flow.emergency-recovery"]))
        self._recover_sessions = self.max_sessions * (100 - recovery) // 100
        self._recover_memuse = self.memcap * (100 - recovery) // 100
        self._normal = timeout_tables(settings)
        self._emergency = timeout_tables(settings, "emergency-")
        self._timeouts, self._default_timeouts = self._normal
        self.emergency = False
        self.evict_scan = EVICTION_SCAN
        # ``holds_state(flow)``: True when the session carries state the rules still need
        # (detect's flowbits, threshold counters); None: nobody keeps any
        self.holds_state = None
        self._notices: list = []  # FlowEmergency events raised by a sweep, for the engine
        # sessions not answered when last looked at, in creation order (flow -> None)
        self._unanswered: OrderedDict = OrderedDict()

    # -- the caps ---------------------------------------------------------------
    def _make_room(self, cost: int, ts: float, events: list) -> None:
        """A new session of ``cost`` bytes: end others until it fits under both caps."""
        flows = self.flows
        while flows and (len(flows) >= self.max_sessions or self.memuse + cost > self.memcap):
            cap = "flow.max-sessions" if len(flows) >= self.max_sessions else "flow.memcap"
            self.c["max_sessions" if cap == "flow.max-sessions" else "memcap"] += 1
            if not self.emergency:
                events.append(self._set_emergency(True, ts, cap))
            victim = self._victim()
            del flows[victim.key]
            self._end(victim, "forced")
            self.c["evicted"] += 1
            events.append(FlowEnded(ts, victim, "forced"))

    def _victim(self) -> Flow:
        """The session to end (module docstring): unanswered ones first, protected ones last."""
        c = self.c
        un = self._unanswered
        passed = 0
        while un and passed < self.evict_scan:
            f = next(iter(un))
            c["get_used_eval"] += 1
            p = f.pkts
            if p[0] and p[1]:  # answered since it was indexed
                del un[f]
            elif p[0] + p[1] > 1 or self._protected(f):  # more than a lone packet, or protected
                un.move_to_end(f)
                passed += 1
            else:
                c["get_used_eval_reject"] += passed
                return f
        protected = []
        for f in self.order:
            c["get_used_eval"] += 1
            if not self._protected(f):
                break
            protected.append(f)
            if len(protected) >= self.evict_scan:
                f = protected.pop(0)  # all protected: the oldest goes after all
                break
        for p in protected:
            self.order.touch(p)
        c["get_used_eval_reject"] += passed + len(protected)
        return f

    def _protected(self, f: Flow) -> bool:
        return f.alerted or f._killed is not None or f.kill is not None \
            or (self.holds_state is not None and self.holds_state(f))

    # -- emergency mode ------------------------------------------------------------
    def _set_emergency(self, on: bool, ts: float, cap: str = "") -> FlowEmergency:
        self.emergency = on
        self._timeouts, self._default_timeouts = self._emergency if on else self._normal
        self.c["emerg_mode_entered" if on else "emerg_mode_over"] += 1
        if on:  # the emergency timeouts are shorter: every session is due sooner
            for f in self.flows.values():
                self._refile(f)
        return FlowEmergency(ts, on, cap, len(self.flows), self.memuse)

    def _check_recovery(self, now: float) -> None:
        """After a sweep: leave emergency mode once ``flow.emergency-recovery`` percent is free."""
        if self.emergency and len(self.flows) <= self._recover_sessions and self.memuse <= self._recover_memuse:
            self._notices.append(self._set_emergency(False, now))

    def pop_notices(self) -> list:
        """FlowEmergency events raised by ``expire`` since the last call (the engine emits them)."""
        out = self._notices
        self._notices = []
        return out
