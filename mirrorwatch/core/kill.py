"""Deciding when and how to end a TCP session (sans-I/O: returns ``Kill`` values).

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
frames the injector cannot rebuild.

What to send
------------
A forged segment to endpoint E impersonates E's peer P.  Its sequence number
is E's next expected byte: P's ``next_seq`` (seq + payload + SYN + FIN of the
highest segment seen from P), falling back to E's own last ack field; its ack
number is P's next expected byte (E's ``next_seq``, falling back to P's last
ack).  MAC addresses and the whole VLAN stack are those of the last frame seen
from P to E (or those of E to P, swapped); TTL / hop limit is P's.  The IP ID
is random.  ``--kill-with rst`` sends RST+ACK, ``fin`` sends FIN+ACK, ``both``
sends FIN+ACK at S and RST+ACK at S+1 (the FIN consumes one sequence number).

After the first burst
---------------------
The session is marked killed (``flow.killed``) and every later packet of it
is examined:

- a RST from an endpoint is never answered;
- a new SYN from the client is a new connection reusing the addresses and
  ports: the kill is over, nothing is answered (``new_session_after_kill``);
- data (or SYN/FIN) from an endpoint shows it is alive, and its ack field is
  its exact RCV.NXT: it gets a new segment at once with seq = that number;
- a pure ACK from an endpoint carries its RCV.NXT too (RFC 5961 challenge ACK
  when our RST was in-window but not exact): it is answered in the same step
  when the value is final -- the endpoint has every byte we saw its peer send,
  or the value is stuck (the same ack again: challenge/duplicate ACK, e.g. a
  segment lost after the mirror).  An ACK still behind the peer's data in
  flight is skipped (``in_flight_acks``): each in-flight segment moves that
  endpoint's RCV.NXT, and its ACK for the last one carries the final value.
  So the receiver of a stream is answered from its own ACKs, not from each
  segment it is sent (only when its side was never seen, on a one-sided
  mirror, are the sender's segments answered toward it).

Follow-ups are bounded per session by *responses*: a response is every
burst sent within ``inject.response-window`` packet-time seconds of its first
one, so the answers to one train of in-flight segments count once.  A session
gets ``inject.max-responses`` responses after the first burst; a data re-fire
that opens a new response also waits ``inject.min-interval`` seconds after
the last burst.  A segment identical to the last one sent to the same
endpoint is not repeated.  All frames share a global token bucket
(``inject.max-per-second``) and follow-ups never take it below half its
size, so a busy killed session cannot delay the first burst of another kill.

The injector's own frames come back on the mirror (the capture interface sees
what is sent on it; a SPAN of the destination port's tx mirrors them too).
``own_frame(pkt)`` recognises them by (addresses, ports, seq, ack, flags, IP
ID) among the last ``inject.own-frame-memory`` frames sent; the engine counts
and skips them before flow tracking, so they never alter the session's state.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from ipaddress import ip_network

from mirrorwatch.core.decode.packet import ACK, FIN, PROTO_TCP, RST, SYN
from mirrorwatch.core.events import ForgedSegment, Kill

# bit set of endpoints to reset
TO_SERVER, TO_CLIENT = 1, 2  # the server is reset by a segment travelling to it, and so on
BOTH = TO_SERVER | TO_CLIENT

KILL_MODES = ("rst", "fin", "both")
_MODE_NAMES = {"rst": ["tcp-reset"], "fin": ["tcp-fin"], "both": ["tcp-fin", "tcp-reset"]}
_TARGET_NAMES = {TO_SERVER: "to_server", TO_CLIENT: "to_client", BOTH: "both"}
_NO_REPLY = RST
_PURE_ACK_MASK = SYN | FIN | RST | ACK
_PLAIN_L2 = (0x0800, 0x86DD, 0)  # 0: link types without an EtherType (raw IP, pcap replay)


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


class KillState:
    """Per-flow scratch of the killer (``flow.kill``)."""

    __slots__ = ("targets", "responses", "last_fire", "round_start", "last_seq", "prev_ack", "reason")

    def __init__(self, targets: int, reason: str, last_ack=(None, None)):
        self.targets = targets
        self.prev_ack = list(last_ack)  # ack field of each direction's previous packet
        self.responses = 0
        self.last_fire = None
        self.round_start = None  # packet time of the current response's first burst
        self.last_seq = [None, None]  # last seq sent toward [server, client]
        self.reason = reason


class Killer:
    """Turns killing alerts and later packets of killed flows into ``Kill`` events."""

    def __init__(self, config: KillConfig | None = None, settings=None):
        from mirrorwatch.core.settings import Settings

        config = config or KillConfig()
        settings = settings if settings is not None else Settings()
        if config.mode not in KILL_MODES:
            raise KillConfigError(f"--kill-with must be one of {', '.join(KILL_MODES)}, got {config.mode!r}")
        self.config = config
        self.mode = config.mode
        self.dry_run = bool(config.dry_run)
        self._never = [(n.version, int(n.network_address), int(n.netmask)) for n in config.networks()]
        self._flags = {"rst": (RST | ACK,), "fin": (FIN | ACK,), "both": (FIN | ACK, RST | ACK)}[config.mode]
        self._reject_names = _MODE_NAMES[config.mode]
        for key in ("inject.max-responses", "inject.min-interval", "inject.response-window", "inject.max-per-second"):
            if settings[key] < 0:
                raise KillConfigError(f"{key} must be 0 or more, got {settings[key]}")
        self.max_responses = int(settings["inject.max-responses"])
        self.min_interval = float(settings["inject.min-interval"])
        self.window = float(settings["inject.response-window"])
        self.rate = float(settings["inject.max-per-second"])
        self._tokens = self.rate
        self._reserve = self.rate / 2  # follow-ups never take the bucket below this: first kills come first
        self._bucket_ts = None
        self._rand = random.Random(config.seed)
        mem = max(1, int(settings["inject.own-frame-memory"]))
        self._sent_order: deque = deque(maxlen=mem)
        self._sent: dict = {}
        self.sink = None  # injector whose counters() are reported with ours
        self.c = dict.fromkeys(
            ("sessions_killed", "bursts", "frames", "challenge_ack_replies", "refires", "duplicate_suppressed",
             "cap_reached", "interval_suppressed", "rate_limited", "never_kill", "not_tcp", "rst_not_answered",
             "unsupported_encap", "in_flight_acks", "new_session_after_kill", "own_frames_seen"), 0)

    # -- recognising our own frames -------------------------------------------------
    def own_frame(self, pkt) -> bool:
        """True (and counted) when ``pkt`` is a frame this killer sent; the engine then skips it."""
        if not self._sent or pkt.proto != PROTO_TCP or not pkt.flags & (RST | FIN):
            return False
        key = (pkt.src, pkt.dst, pkt.sport, pkt.dport, pkt.seq, pkt.ack, pkt.flags,
               pkt.ip_id if pkt.ipv == 4 else 0)
        if key in self._sent:
            self.c["own_frames_seen"] += 1
            return True
        return False

    def _remember(self, seg: ForgedSegment) -> None:
        key = seg.key()
        order = self._sent_order
        if len(order) == order.maxlen:
            old = order[0]
            n = self._sent.get(old, 0) - 1
            if n > 0:
                self._sent[old] = n
            else:
                self._sent.pop(old, None)
        order.append(key)
        self._sent[key] = self._sent.get(key, 0) + 1

    # -- the per-packet entry point (called by the engine) ----------------------------
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
            return
        if pkt.tunnel or pkt.l2_proto not in _PLAIN_L2:
            # MPLS, PPPoE, GRE...: a plain Ethernet/VLAN frame would not reach the endpoints
            self.c["unsupported_encap"] += 1
            return
        if targets:
            self._on_killing_alerts(pkt, flow, to_server, targets, killing, events)
        else:
            self._follow_up(pkt, flow, to_server, st, events)

    def _on_killing_alerts(self, pkt, flow, to_server, targets, killing, events) -> None:
        if self._never and self._protected(flow):
            self.c["never_kill"] += 1
            return
        st = flow.kill
        if st is None:
            a0 = killing[0][0]
            st = flow.kill = KillState(targets, f"sid:{a0.rule.sid} {a0.rule.action}", flow.last_ack)
            frames = self._segments_from_flow(flow, targets, st)
            sent = self._emit(pkt, flow, frames, f"sid:{a0.rule.sid}", st, events)
        else:  # another killing alert on a killed session: a follow-up under the same caps
            st.targets |= targets
            sent = self._follow_up(pkt, flow, to_server, st, events)
        blocked = flow.killed is not None and not self.dry_run
        for a, t in killing:
            a.verdict = {"action": "alert", "reject-target": _TARGET_NAMES[t],
                         "reject": list(self._reject_names) if sent and not self.dry_run else []}
            if blocked:
                a.action = "blocked"

    def _follow_up(self, pkt, flow, to_server, st, events) -> bool:
        """A later packet of a killed session: answer what tells an endpoint's exact RCV.NXT.

        The packet's sender E is alive.  If E sends data (or SYN/FIN), its ack
        field is its RCV.NXT: E gets a segment at once.  Its peer P gets one
        from P's own ACK, not from E's data: while E's segments are in flight
        each moves P's RCV.NXT, and P's ACK for the last of them carries the
        final value.  A pure ACK from P is answered when it is final: P has
        everything we saw E send, or P's RCV.NXT is stuck (the same ack again:
        a challenge or duplicate ACK after an inexact RST or a segment lost
        after the mirror).  A pure ACK that progresses but is still behind is
        mid-train: a later one follows.  When P was never seen (one-sided
        mirror), E's data is answered toward P directly.
        """
        d = 0 if to_server else 1  # direction index of the packet
        sender = TO_CLIENT if to_server else TO_SERVER  # the bit that resets the packet's sender
        prev_ack = st.prev_ack[d]
        if pkt.flags & ACK:
            st.prev_ack[d] = pkt.ack
        ns = flow.next_seq
        pure_ack = (pkt.flags & _PURE_ACK_MASK) == ACK and not len(pkt.payload)
        to_sender = bool(st.targets & sender)
        to_peer = False
        if pure_ack:
            if to_sender:
                peer_next = ns[1 - d]
                caught_up = peer_next is None or ((pkt.ack - peer_next) & 0xFFFFFFFF) < 0x80000000
                if not caught_up and pkt.ack != prev_ack:
                    self.c["in_flight_acks"] += 1
                    return False
        else:
            to_peer = bool(st.targets & (BOTH ^ sender)) and (ns[1 - d] is None and flow.last_ack[1 - d] is None)
        if not to_sender and not to_peer:
            return False
        new_round = st.round_start is None or pkt.ts - st.round_start > self.window
        if new_round:
            if st.responses >= self.max_responses:
                self.c["cap_reached"] += 1
                return False
            if not pure_ack and self.min_interval > 0 and st.last_fire is not None \
                    and pkt.ts - st.last_fire < self.min_interval:
                self.c["interval_suppressed"] += 1
                return False
        self._refill(pkt.ts)
        if self._tokens < self._reserve + 1:  # decided before any segment is built: a killed flow can be busy
            self.c["rate_limited"] += 1
            return False
        frames = []
        if to_sender:
            # the sender's exact RCV.NXT is the ack field of what it just sent
            seq = pkt.ack if pkt.flags & ACK else _first(ns[1 - d], flow.last_ack[d])
            if self.mode == "fin" and st.last_seq[1 - d] is not None and seq == (st.last_seq[1 - d] + 1) & 0xFFFFFFFF:
                pass  # it acknowledges our FIN: that side has it
            else:
                frames += self._make(flow, not to_server, seq, _first(ns[d], pkt.seq), pkt.dst_mac, pkt.src_mac,
                                     pkt.vlans, st)
        if to_peer:
            ack = pkt.ack if pkt.flags & ACK else ns[1 - d]
            frames += self._make(flow, to_server, _first(ns[d], pkt.seq), ack, *self._l2(flow, to_server), st)
        if not frames:
            return False
        if not self._emit(pkt, flow, frames, "challenge-ack" if pure_ack else "refire", st, events):
            return False
        self.c["challenge_ack_replies" if pure_ack else "refires"] += 1
        if new_round:
            st.responses += 1
            st.round_start = pkt.ts
        return True

    # -- building the segments ------------------------------------------------------
    def _segments_from_flow(self, flow, targets: int, st) -> list:
        ns, la = flow.next_seq, flow.last_ack
        frames = []
        if targets & TO_SERVER:  # impersonate the client (direction 0)
            frames += self._make(flow, True, _first(ns[0], la[1]), _first(ns[1], la[0]), *self._l2(flow, True), st)
        if targets & TO_CLIENT:  # impersonate the server (direction 1)
            frames += self._make(flow, False, _first(ns[1], la[0]), _first(ns[0], la[1]), *self._l2(flow, False), st)
        return frames

    @staticmethod
    def _l2(flow, toward_server: bool) -> tuple:
        """(src_mac, dst_mac, vlans) for a frame in that direction, as seen on this flow."""
        d = 0 if toward_server else 1
        l2 = flow.l2
        if l2[d]:
            return l2[d]
        if l2[1 - d]:
            src, dst, vlans = l2[1 - d]
            return dst, src, vlans
        return b"", b"", ()

    def _make(self, flow, toward_server: bool, seq, ack, src_mac, dst_mac, vlans, st) -> list:
        """The segment(s) of one burst toward one endpoint (two for --kill-with both)."""
        d = 0 if toward_server else 1
        if toward_server:
            src, dst, sport, dport = flow.client, flow.server, flow.cport, flow.sport
        else:
            src, dst, sport, dport = flow.server, flow.client, flow.sport, flow.cport
        seq = (seq or 0) & 0xFFFFFFFF
        ack = (ack or 0) & 0xFFFFFFFF
        if st.last_seq[d] == seq:
            self.c["duplicate_suppressed"] += 1
            return []
        st.last_seq[d] = seq
        ttl = flow.ttl[d]
        out = []
        for flags in self._flags:
            ip_id = self._rand.getrandbits(16) if flow.ipv == 4 else 0
            out.append(ForgedSegment(toward_server, flow.ipv, src, dst, sport, dport, seq, ack, flags, ttl, ip_id,
                                     src_mac, dst_mac, vlans))
            if flags & FIN:
                seq = (seq + 1) & 0xFFFFFFFF
        return out

    def _emit(self, pkt, flow, frames, trigger, st, events) -> bool:
        """Rate-limit, remember and append one burst; False when nothing goes out."""
        if not frames:
            return False
        if not self._take_tokens(pkt.ts, len(frames)):
            self.c["rate_limited"] += 1
            for seg in frames:  # not sent: a later packet may try the same values again
                st.last_seq[0 if seg.to_server else 1] = None
            return False
        st.last_fire = pkt.ts
        if st.round_start is None:
            st.round_start = pkt.ts  # the first burst opens the first (uncounted) response
        if flow.killed is None:
            flow.killed = st.reason + (" (dry-run)" if self.dry_run else "")
            self.c["sessions_killed"] += 1
        for seg in frames:
            self._remember(seg)
        self.c["bursts"] += 1
        self.c["frames"] += len(frames)
        events.append(Kill(pkt.ts, flow, frames, trigger, self.dry_run, pkt.pcap_cnt))
        return True

    def _refill(self, ts: float) -> None:
        """Global token bucket on packet time: at most ``inject.max-per-second`` frames per second."""
        if self._bucket_ts is not None and ts > self._bucket_ts:
            self._tokens = min(self.rate, self._tokens + (ts - self._bucket_ts) * self.rate)
        if self._bucket_ts is None or ts > self._bucket_ts:
            self._bucket_ts = ts

    def _take_tokens(self, ts: float, n: int) -> bool:
        self._refill(ts)
        if self._tokens < n:
            return False
        self._tokens -= n
        return True

    def _protected(self, flow) -> bool:
        for addr in (flow.client, flow.server):
            v = 4 if len(addr) == 4 else 6
            a = int.from_bytes(addr, "big")
            for ver, net, mask in self._never:
                if ver == v and a & mask == net:
                    return True
        return False

    def counters(self) -> dict:
        c = dict(self.c)
        c["mode"] = self.mode
        c["dry_run"] = self.dry_run
        if self.sink is not None:
            sinks = self.sink if isinstance(self.sink, (list, tuple)) else [self.sink]
            for s in sinks:
                c.update(s.counters())
        return c


def _first(a, b):
    return a if a is not None else b
