"""Inline (IPS) decisions, sans-I/O: each packet's ``Verdict``, and the resets of the sessions it blocks.

In inline mode the engine's killer is an ``InlineJudge``: ``Engine.process_inline``
runs the packet through the same path as replay, the judge sees every packet
that has a flow (after detect), and the packet's verdict comes back beside the
events.  Suricata's inline semantics:

=============  ===============================================================
rule action    the packet's verdict
=============  ===============================================================
drop           ``drop-flow``: the packet and every later packet of its flow
               are dropped (Suricata's drop applied to the flow, 8's
               ``drop:flow``); the source has the kernel remember the flow
reject         ``reject``: as drop, and the endpoints are reset (the ``Kill``
rejectboth     among the events): reject and rejectboth reset both ends,
rejectsrc      rejectsrc the packet's sender, rejectdst its receiver; the
rejectdst      bad packet itself never reaches its receiver
pass           ``pass-flow`` when detect passed the whole flow (an ip-only
               pass rule or a stream match): the kernel passes the rest
               without queueing it (the bypass mark)
alert          ``accept`` (the alert's verdict stays Suricata's "alert")
=============  ===============================================================

The first decision on a flow stands (Suricata: "first to set wins"): later
packets of a dropped flow, queued before the kernel learnt of it, are dropped
again, and no longer inspected, as Suricata stops inspecting a flow it dropped
(``Flow.no_inspection``: decode and flow tracking still see them, reassembly,
the application layer and detection do not; the engine hands them to
``on_uninspected``); a passed one is passed.  With ``stream.bypass`` a TCP session whose
stream reached ``stream.reassembly.depth`` in either direction is passed too,
after the packet that reached it was inspected.  A packet without a flow
(invalid transport header) that a drop or reject rule matched is dropped.

The resets use the exact numbers an inline sensor knows: the dropped packet
never arrived, so its receiver's next expected byte is the packet's own
sequence number, and the sender's is the receiver's ``next_seq`` (everything
the receiver sent went through the sensor); the segment to the sender
acknowledges the dropped packet (Suricata's reject: seq + payload).  A SYN
that is dropped left its receiver nothing to reset.  ``--kill-with`` picks
RST, FIN or both (``core.forge``).

Compiled (inline.pxd), the judge is a C record the engine calls as C on every
packet (``on_packet``, ``take``).

Every blocked TCP session is remembered (``inline.reset-memory`` of them,
oldest forgotten first) so that a clean stop can reset it at both ends before
the firewall rules that drop it are removed (``stop_resets``): a client that
keeps retransmitting the blocked request would otherwise get it through.
"""

from __future__ import annotations

from collections import OrderedDict

from mirrorwatch.core.decode.packet import ACK, FIN, PROTO_TCP, SYN
from mirrorwatch.core.events import (
    ACCEPTED,
    DROP_FLOW,
    PASS_FLOW,
    REJECT,
    Alert,
    Kill,
    Verdict,
)
from mirrorwatch.core.forge import M32, Forger, l2_toward
from mirrorwatch.core.kill import (
    BOTH,
    KILL_MODES,
    TO_CLIENT,
    TO_SERVER,
    KillConfigError,
    rule_targets,
)

DEFAULT_RESET_MEMORY = 16_384  # inline.reset-memory: blocked TCP sessions kept for the resets of a clean stop
BLOCKING = frozenset(("drop", "reject", "rejectsrc", "rejectdst", "rejectboth"))
RESET_NAMES = {"rst": ["tcp-reset"], "fin": ["tcp-fin"], "both": ["tcp-fin", "tcp-reset"]}  # EVE verdict.reject
TARGET_NAMES = {TO_SERVER: "to_server", TO_CLIENT: "to_client", BOTH: "both"}  # EVE verdict.reject-target
PASS_RULE, STREAM_DEPTH = "pass rule", "stream depth"
SHUTDOWN = "shutdown"  # the trigger of the resets a clean stop sends
_COUNTERS = ("flows_dropped", "flows_rejected", "flows_passed", "flows_depth_bypassed", "exception_drops",
             "flow_packets_dropped",
             "flow_packets_passed", "flowless_dropped", "reset_frames", "shutdown_resets", "reset_memory_full")


class BlockedSession:
    """What a clean stop needs of a blocked TCP session once its Flow may be gone: the Flow
    fields a ``Kill``'s sinks read (EVE ``kill`` record, live table) and the segments that
    reset both endpoints (their numbers fixed when the session was blocked)."""

    __slots__ = ("flow_id", "proto", "ipv", "client", "cport", "server", "sport", "frames")

    def __init__(self, flow, frames: list):
        self.flow_id, self.proto, self.ipv = flow.flow_id, flow.proto, flow.ipv
        self.client, self.cport, self.server, self.sport = flow.client, flow.cport, flow.server, flow.sport
        self.frames = frames


def segment_end(pkt) -> int:
    """The sequence number just past ``pkt`` (payload, SYN and FIN each count)."""
    fl = pkt.flags
    return (pkt.seq + len(pkt.payload) + (1 if fl & SYN else 0) + (1 if fl & FIN else 0)) & M32


def reset_specs(pkt, flow, to_server: bool, targets: int) -> list[tuple[bool, int, int]]:
    """(toward_server, seq, ack) of the segment that resets each target of a dropped ``pkt``.

    The sender is reset at its exact RCV.NXT (the receiver's ``next_seq``; its
    last ack when the receiver sent nothing yet), acknowledging the dropped
    packet; the receiver at the dropped packet's sequence number, unless the
    packet was a SYN (the receiver never heard of the session).
    """
    d = 0 if to_server else 1
    has_ack = bool(pkt.flags & ACK)
    peer_next = flow.next_seq[1 - d]
    specs = []
    if targets & (TO_CLIENT if to_server else TO_SERVER):
        seq = peer_next if peer_next is not None else (pkt.ack if has_ack else 0)
        specs.append((not to_server, seq, segment_end(pkt)))
    if targets & (TO_SERVER if to_server else TO_CLIENT) and (has_ack or not pkt.flags & SYN):
        specs.append((to_server, pkt.seq, pkt.ack if has_ack else (peer_next or 0)))
    return specs


class InlineJudge:
    """Decides every packet's verdict (see the module docstring); the engine's killer in inline mode.

    ``mode``: ``--kill-with`` (rst, fin or both); ``bypass_depth``: Suricata's
    ``stream.bypass``; ``reset_memory``: blocked TCP sessions remembered for
    ``stop_resets``.  ``take(events)`` hands out the verdict of the packet just
    processed (``Engine.process_inline`` calls it).  The engine consults it on
    every packet with a flow, not only on killing alerts.
    """

    def __init__(self, mode: str = "rst", *, bypass_depth: bool = True,
                 reset_memory: int = DEFAULT_RESET_MEMORY):
        if mode not in KILL_MODES:
            raise KillConfigError(f"--kill-with must be one of {', '.join(KILL_MODES)}, got {mode!r}")
        if reset_memory < 0:
            raise KillConfigError(f"inline.reset-memory must be 0 or more, got {reset_memory}")
        self.mode = mode
        self.forge = Forger(mode)
        self.bypass_depth = bypass_depth
        self.reset_memory = reset_memory
        self.verdict = ACCEPTED
        self._blocked: OrderedDict[int, BlockedSession] = OrderedDict()
        self.sink = None  # injector(s) whose counters() are reported with ours
        self.c = dict.fromkeys(_COUNTERS, 0)

    @classmethod
    def from_settings(cls, settings, mode: str = "rst") -> InlineJudge:
        return cls(mode, bypass_depth=bool(settings["stream.bypass"]), reset_memory=settings["inline.reset-memory"])

    # -- the engine's side -------------------------------------------------------------
    def own_frame(self, pkt) -> bool:
        """Never: the injected segments carry the firewall's injected mark and are accepted before the queue."""
        return False

    def take(self, events: list) -> Verdict:
        """The verdict of the packet just processed; the judge is ready for the next one."""
        verdict = self.verdict
        self.verdict = ACCEPTED
        if verdict is ACCEPTED and events:
            verdict = self._flowless(events)
        return verdict

    def on_uninspected(self, pkt, flow, to_server: bool, events: list) -> None:
        """A later packet of a flow this judge dropped (``Flow.no_inspection``), queued before the kernel
        knew: dropped again, uninspected."""
        self.verdict = flow.kill
        self.c["flow_packets_dropped"] += 1

    def on_exception(self, flow) -> None:
        """An exception policy (drop-flow: a session whose handshake was not seen) drops the flow."""
        reason = "exception-policy"
        self.verdict = flow.kill = Verdict(DROP_FLOW, reason)
        self.c["exception_drops"] += 1
        flow.mark_killed(reason)
        flow.stop_inspection()

    def on_packet(self, pkt, flow, to_server: bool, alerts, events: list) -> None:
        standing = flow.kill
        if standing is not None:  # passed before, queued before the kernel knew (a dropped flow is not inspected)
            self.verdict = standing
            self.c["flow_packets_passed"] += 1
            return
        if alerts:
            for a in alerts:  # in rule order: pass, drop, reject, alert (Suricata's action order)
                if a.rule.action in BLOCKING:
                    self._block(pkt, flow, to_server, a, alerts, events)
                    return
        fd = flow.det
        if fd is not None and fd.passed:
            self._pass(flow, PASS_RULE, "flows_passed")
        elif self.bypass_depth and flow.proto == PROTO_TCP and _depth_reached(flow):
            self._pass(flow, STREAM_DEPTH, "flows_depth_bypassed")

    def _pass(self, flow, reason: str, counter: str) -> None:
        flow.kill = self.verdict = Verdict(PASS_FLOW, reason)
        self.c[counter] += 1

    def _block(self, pkt, flow, to_server: bool, first: Alert, alerts, events: list) -> None:
        """Drop (and reject) the packet's flow for ``first``, the first blocking alert in rule order."""
        rule = first.rule
        reason = f"sid:{rule.sid} {rule.action}"
        targets = rule_targets(rule.action, to_server) if rule.action != "drop" else 0
        tcp = flow.proto == PROTO_TCP
        frames = self._segments(flow, reset_specs(pkt, flow, to_server, targets)) if targets and tcp else []
        if frames:
            events.append(Kill(pkt.ts, flow, frames, f"sid:{rule.sid}", False, pkt.pcap_cnt))
            self.c["reset_frames"] += len(frames)
        verdict_obj = {"action": "drop"}
        if targets:
            verdict_obj.update({"reject-target": TARGET_NAMES[targets],
                                "reject": list(RESET_NAMES[self.mode]) if frames else []})
        _annotate(alerts, verdict_obj)
        self.c["flows_rejected" if targets else "flows_dropped"] += 1
        self.verdict = Verdict(REJECT if targets else DROP_FLOW, reason)
        flow.kill = Verdict(DROP_FLOW, reason)  # what the flow's later packets get
        if flow.action is None:  # Suricata's FLOW_ACTION_DROP: the flow record's "action"
            flow.action = "drop"
        flow.mark_killed(reason)
        flow.stop_inspection()
        if tcp:
            self._remember(flow, self._segments(flow, reset_specs(pkt, flow, to_server, BOTH)))

    def _segments(self, flow, specs) -> list:
        return [seg for toward_server, seq, ack in specs
                for seg in self.forge.exact(flow, toward_server, seq, ack, l2_toward(flow, toward_server))]

    def _remember(self, flow, frames: list) -> None:
        if not frames or not self.reset_memory:
            return
        blocked = self._blocked
        blocked[flow.flow_id] = BlockedSession(flow, frames)
        if len(blocked) > self.reset_memory:
            blocked.popitem(last=False)
            self.c["reset_memory_full"] += 1

    def _flowless(self, events: list) -> Verdict:
        """A packet without a flow: dropped when a drop or reject rule matched it."""
        alerts = [e for e in events if type(e) is Alert and e.flow is None]
        for a in alerts:
            if a.rule.action in BLOCKING:
                _annotate(alerts, {"action": "drop"})
                self.c["flowless_dropped"] += 1
                return Verdict(DROP_FLOW, f"sid:{a.rule.sid} {a.rule.action}")
        return ACCEPTED

    # -- a clean stop ------------------------------------------------------------------
    def stop_resets(self, ts: float) -> list:
        """``Kill`` events resetting every remembered blocked TCP session at both ends (then forgotten)."""
        kills = [Kill(ts, s, s.frames, SHUTDOWN) for s in self._blocked.values()]
        self._blocked.clear()
        self.c["shutdown_resets"] += len(kills)
        return kills

    def counters(self) -> dict:
        c = dict(self.c)
        c["mode"] = self.mode
        c["blocked_remembered"] = len(self._blocked)
        if self.sink is not None:
            for s in self.sink if isinstance(self.sink, (list, tuple)) else [self.sink]:
                c.update(s.counters())
        return c


def _depth_reached(flow) -> bool:
    """Either direction's stream reached ``stream.reassembly.depth``."""
    for st in flow.streams:
        if st is not None and st.depth_reached:
            return True
    return False


def _annotate(alerts, verdict_obj: dict) -> None:
    """The alerts of a dropped packet: its verdict; those of blocking rules are ``blocked``."""
    for a in alerts:
        a.verdict = verdict_obj
        if a.rule.action in BLOCKING:
            a.action = "blocked"
