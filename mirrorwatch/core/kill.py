"""Deciding when to end a TCP session (sans-I/O: returns ``Kill`` values; ``forge`` builds the segments).

When to kill
------------
Rule actions, as Suricata defines them, seen from a passive sensor:

=============  ==========================================================
``reject``     reset both endpoints (a passive sensor cannot drop the
               packet, so resetting only the sender would leave the other
               side waiting; mirrorwatch resets both)
``rejectboth`` reset both endpoints
``rejectsrc``  reset the packet's source only
``rejectdst``  reset the packet's destination only
``drop``       nothing can be dropped on a mirror port: treated as
               ``rejectboth``
=============  ==========================================================

Sessions with an endpoint inside a ``--never-kill`` network are never killed
(the alert stays ``allowed``).  Only TCP sessions can be killed; a killing
rule on another protocol alerts and is counted under ``not_tcp``; so is a
session carried in MPLS, PPPoE or a tunnel (``unsupported_encap``), whose
frames the injector cannot rebuild.  What the first burst carries (the exact
RCV.NXT of each target, then predicted boundaries when its peer is
streaming) is described in ``core.forge``.

After the kill
--------------
The session is marked killed (``Flow.mark_killed``) when its first burst goes
out, and from then on it is no longer inspected, as Suricata stops
inspecting a flow it dropped (``FLOW_NOPACKET_INSPECTION``): its streams
deliver what they hold and go, and the engine hands every later packet of it
to ``on_uninspected`` alone (counted ``flow_drop``, Suricata's
``ips.drop_reason.flow_drop``): decode and flow tracking still see it, stream
reassembly, the application layer and detection do not.  The flow record is
still written, with ``killed``.  In dry-run the session goes on and is still
inspected.

Every later packet is examined for follow-up bursts (``core.kill_chase``),
except that:

- a RST from an endpoint is never answered, and that endpoint is gone: no
  later burst goes to it;
- a new SYN from the client is a new connection reusing the addresses and
  ports: the kill is over, nothing is answered (``new_session_after_kill``).

The injector's own frames come back on the mirror: ``own_frame(pkt)`` tells
them (``core.forge.SentFrames``); the engine counts and skips them before
flow tracking, so they never alter the session's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import ip_network

from mirrorwatch.core.decode.packet import ACK, FIN, PROTO_TCP, RST, SYN
from mirrorwatch.core.forge import Forger, SentFrames
from mirrorwatch.core.kill_chase import COUNTERS as _CHASE_COUNTERS
from mirrorwatch.core.kill_chase import Chaser, bit
from mirrorwatch.core.kill_state import BOTH, TO_CLIENT, TO_SERVER, KillState

KILL_MODES = ("rst", "fin", "both")
_MODE_NAMES = {"rst": ["tcp-reset"], "fin": ["tcp-fin"], "both": ["tcp-fin", "tcp-reset"]}
_TARGET_NAMES = {TO_SERVER: "to_server", TO_CLIENT: "to_client", BOTH: "both"}
_NON_NEGATIVE = ("inject.max-responses", "inject.min-interval", "inject.response-window", "inject.max-per-second",
                 "inject.chase-bursts", "inject.answer-bursts", "inject.first-shot-reserve", "inject.lag-spread",
                 "inject.max-lag")
_NO_REPLY = RST
_PLAIN_L2 = (0x0800, 0x86DD, 0)  # 0: link types without an EtherType (raw IP, pcap replay)
_OWN_COUNTERS = ("sessions_killed", "never_kill", "not_tcp", "rst_not_answered", "unsupported_encap",
                 "new_session_after_kill", "own_frames_seen", "flow_drop")
_COUNTERS = (_OWN_COUNTERS[0], *_CHASE_COUNTERS, *_OWN_COUNTERS[1:])  # the order of the stats


class KillConfigError(ValueError):
    """A bad kill option (one line for the user)."""


@dataclass
class KillConfig:
    """The user's kill options; caps and rates live in ``Settings`` (``inject.*``)."""

    mode: str = "rst"
    dry_run: bool = False
    never_kill: list = field(default_factory=list)  # CIDR strings
    seed: int | None = None  # IP ID randomness; fixed only by tests

    def networks(self) -> list:
        nets = []
        for text in self.never_kill:
            try:
                nets.append(ip_network(str(text).strip(), strict=False))
            except ValueError:
                raise KillConfigError(f"--never-kill: not an address or network: {text!r}") from None
        return nets


def rule_targets(action: str, to_server: bool) -> int:
    """Which endpoints a rule action resets, given the direction of the matching packet."""
    if action in ("reject", "rejectboth", "drop"):
        return BOTH
    if action == "rejectsrc":
        return TO_CLIENT if to_server else TO_SERVER
    if action == "rejectdst":
        return TO_SERVER if to_server else TO_CLIENT
    return 0


def _check(config: KillConfig, settings) -> None:
    """One ``KillConfigError`` line for the first bad option or ``inject.*`` bound."""
    if config.mode not in KILL_MODES:
        raise KillConfigError(f"--kill-with must be one of {', '.join(KILL_MODES)}, got {config.mode!r}")
    for key in _NON_NEGATIVE:
        if settings[key] < 0:
            raise KillConfigError(f"{key} must be 0 or more, got {settings[key]}")
    if settings["inject.rst-burst"] < 1:
        raise KillConfigError(f"inject.rst-burst must be 1 or more, got {settings['inject.rst-burst']}")
    if settings["inject.first-shot-reserve"] > 1:
        raise KillConfigError("inject.first-shot-reserve is a share of inject.max-per-second: 0 to 1, "
                              f"got {settings['inject.first-shot-reserve']}")


class Killer:
    """Turns killing alerts and later packets of killed flows into ``Kill`` events (bounds: ``inject.*``)."""

    def __init__(self, config: KillConfig | None = None, settings=None):
        from mirrorwatch.core.settings import Settings

        config = config or KillConfig()
        settings = settings if settings is not None else Settings()
        _check(config, settings)
        self.config = config
        self.mode = config.mode
        self.dry_run = bool(config.dry_run)
        self._never = [(n.version, int(n.network_address), int(n.netmask)) for n in config.networks()]
        self.forge = Forger(config.mode, config.seed)
        self.rst_burst = int(settings["inject.rst-burst"])
        self._reject_names = _MODE_NAMES[config.mode]
        self.sent = SentFrames(int(settings["inject.own-frame-memory"]))
        self.chase = Chaser(self.forge, config.mode, self.sent, settings, self.dry_run)
        self.sink = None  # injector whose counters() are reported with ours
        self.c = dict.fromkeys(_OWN_COUNTERS, 0)

    @property
    def clock(self):
        """Live: the capture's clock (seconds), so bursts allow for the sensor's lag (``core.forge``); None in replay."""
        return self.chase.clock

    @clock.setter
    def clock(self, clock) -> None:
        self.chase.clock = clock

    def own_frame(self, pkt) -> bool:
        """True (and counted) when ``pkt`` is a frame this killer sent; the engine then skips it."""
        if self.sent and pkt.proto == PROTO_TCP and pkt.flags & (RST | FIN) and pkt in self.sent:
            self.c["own_frames_seen"] += 1
            return True
        return False

    # -- the per-packet entry points (called by the engine) ---------------------------
    def on_uninspected(self, pkt, flow, to_server: bool, events: list) -> None:
        """A packet of a session this killer stopped inspecting (``Flow.no_inspection``): only the follow-ups
        see it."""
        self.c["flow_drop"] += 1
        self.on_packet(pkt, flow, to_server, None, events)

    def on_packet(self, pkt, flow, to_server: bool, alerts, events: list) -> None:
        targets = 0
        killing = None
        if alerts:
            for a in alerts:
                t = rule_targets(a.rule.action, to_server)
                if t:
                    targets |= t
                    if killing is None:
                        killing = []
                    killing.append((a, t))
        st = flow.kill
        if st is not None and pkt.flags & (SYN | ACK) == SYN and to_server:
            # a new connection on the same addresses and ports (the killed one is over): not ours to answer
            flow.kill = st = None
            self.c["new_session_after_kill"] += 1
        if not targets and st is None:
            return
        if flow.proto != PROTO_TCP:
            self.c["not_tcp"] += len(killing or ())
            return
        if pkt.flags & _NO_REPLY:
            self.c["rst_not_answered"] += 1
            if st is not None:
                st.gone |= bit(not to_server)  # the RST's sender closed its side
            return
        if pkt.tunnel or pkt.l2_proto not in _PLAIN_L2:
            # MPLS, PPPoE, GRE...: a plain Ethernet/VLAN frame would not reach the endpoints
            self.c["unsupported_encap"] += 1
            return
        if targets:
            self._on_killing_alerts(pkt, flow, to_server, targets, killing, events)
        elif self.chase.follow_up(pkt, flow, to_server, st, events):
            self._killed(flow, st)

    def _on_killing_alerts(self, pkt, flow, to_server, targets, killing, events) -> None:
        if self._never and self._protected(flow):
            self.c["never_kill"] += 1
            return
        st = flow.kill
        if st is None:
            a0 = killing[0][0]
            st = flow.kill = KillState(targets, f"sid:{a0.rule.sid} {a0.rule.action}", flow, self.rst_burst - 1,
                                       pkt.ts)
            sent = self.chase.first(pkt, flow, st, f"sid:{a0.rule.sid}", events)
        else:  # another killing alert on a killed session (dry-run, or its first burst capped): a follow-up
            st.targets |= targets
            sent = self.chase.follow_up(pkt, flow, to_server, st, events)
        if sent:
            self._killed(flow, st)
        blocked = flow.killed is not None and not self.dry_run
        for a, t in killing:
            a.verdict = {"action": "alert", "reject-target": _TARGET_NAMES[t],
                         "reject": list(self._reject_names) if sent and not self.dry_run else []}
            if blocked:
                a.action = "blocked"

    def _killed(self, flow, st) -> None:
        """A burst went out: the first one marks the session killed and, unless in dry-run, ends its inspection."""
        if flow.killed is None:
            flow.mark_killed(st.reason, self.dry_run)
            self.c["sessions_killed"] += 1
            if not self.dry_run:
                flow.stop_inspection()

    def _protected(self, flow) -> bool:
        for addr in (flow.client, flow.server):
            v = 4 if len(addr) == 4 else 6
            a = int.from_bytes(addr, "big")
            for ver, net, mask in self._never:
                if ver == v and a & mask == net:
                    return True
        return False

    def counters(self) -> dict:
        c = {key: self.c[key] if key in self.c else self.chase.c[key] for key in _COUNTERS}
        c["mode"] = self.mode
        c["dry_run"] = self.dry_run
        if self.sink is not None:
            sinks = self.sink if isinstance(self.sink, (list, tuple)) else [self.sink]
            for s in sinks:
                c.update(s.counters())
        return c
