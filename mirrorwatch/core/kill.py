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

After the first burst
---------------------
The session is marked killed (``Flow.mark_killed``) and every later packet of
it is examined:

- a RST from an endpoint is never answered, and that endpoint is gone: no
  later burst goes to it;
- a new SYN from the client is a new connection reusing the addresses and
  ports: the kill is over, nothing is answered (``new_session_after_kill``);
- data (or SYN/FIN) from an endpoint shows it is alive, and its ack field is
  its exact RCV.NXT: it gets a new burst at once from that number;
- data from the peer of a target whose end lies past every segment sent so
  far toward that target shows the stream outran the last burst: the target
  gets a new burst from the new ``next_seq`` (``peer_data_bursts``); so does
  a target whose own side was never seen (a one-sided mirror);
- a pure ACK from an endpoint carries its RCV.NXT too (RFC 5961 challenge ACK
  when our RST was in-window but not exact): it is answered in the same step
  when the value is final -- the endpoint has every byte we saw its peer send,
  or the value is stuck (the same ack again: challenge/duplicate ACK, e.g. a
  segment lost after the mirror).  An ACK still behind the peer's data in
  flight is skipped (``in_flight_acks``): the bytes in flight arrive before
  any RST we send, so the peer-data rule above covers it.  One asking for a
  position the last burst's predicted segments already carried
  (``covered_acks``) gets the exact segment alone: its peer may have
  stopped there (in ``reject``, once our RST reset it).

Follow-ups are bounded per session by *responses*: a response is every
burst sent within ``inject.response-window`` packet-time seconds of its first
one, so the answers to one train of in-flight segments count once.  A session
gets ``inject.max-responses`` responses after the first burst; a data re-fire
that opens a new response also waits ``inject.min-interval`` seconds after
the last burst.  Within one response, bursts that *chase* (peer data: a guess
of where the stream will be) are at most ``inject.chase-bursts``, and bursts
that *answer* an endpoint's own exact RCV.NXT (challenge ACKs, re-fires) at
most ``inject.answer-bursts`` (a burst doing both counts as both, its frames
as an answer's); the others are counted (``chase_suppressed``,
``answers_suppressed``; ``response_spent`` once both are spent).  Suricata
and Snort never chase; a sensor further behind a stream than a few
escalating bursts reach would otherwise re-forge at every segment.  A
burst whose exact segment is the one last sent to the same endpoint is not
repeated.  Every frame comes out of one token bucket
(``core.kill_state``): first bursts may take all of it, follow-ups leave
``inject.first-shot-reserve`` of it to them, so no killed session, however
busy, delays the first burst of another kill.  Frames the cap withholds are
counted (``frames_capped``).

The injector's own frames come back on the mirror: ``own_frame(pkt)`` tells
them (``core.forge.SentFrames``); the engine counts and skips them before
flow tracking, so they never alter the session's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import ip_network

from mirrorwatch.core.decode.packet import ACK, FIN, PROTO_TCP, RST, SYN
from mirrorwatch.core.events import Kill
from mirrorwatch.core.forge import (
    M32,
    MAX_PREDICTED,
    Forger,
    SentFrames,
    after,
    l2_toward,
    segments_ahead,
)
from mirrorwatch.core.kill_state import (
    ANSWER,
    CHASE,
    FIRST,
    LANE_NAMES,
    FrameBucket,
    KillState,
)

# bit set of endpoints to reset
TO_SERVER, TO_CLIENT = 1, 2  # the server is reset by a segment travelling to it, and so on
BOTH = TO_SERVER | TO_CLIENT

KILL_MODES = ("rst", "fin", "both")
_MODE_NAMES = {"rst": ["tcp-reset"], "fin": ["tcp-fin"], "both": ["tcp-fin", "tcp-reset"]}
_TARGET_NAMES = {TO_SERVER: "to_server", TO_CLIENT: "to_client", BOTH: "both"}
_NON_NEGATIVE = ("inject.max-responses", "inject.min-interval", "inject.response-window", "inject.max-per-second",
                 "inject.chase-bursts", "inject.answer-bursts", "inject.first-shot-reserve", "inject.lag-spread",
                 "inject.max-lag")
_NO_REPLY = RST
_PURE_ACK_MASK = SYN | FIN | RST | ACK
_PLAIN_L2 = (0x0800, 0x86DD, 0)  # 0: link types without an EtherType (raw IP, pcap replay)
_KIND_COUNTERS = {"challenge-ack": "challenge_ack_replies", "refire": "refires", "peer-data": "peer_data_bursts"}
_LANE_FRAMES = tuple(f"{name}_frames" for name in LANE_NAMES)
_SUPPRESSED = {ANSWER: "answers_suppressed", CHASE: "chase_suppressed"}
_LANE_BOUNDS = {ANSWER: "inject.answer-bursts", CHASE: "inject.chase-bursts"}
_COUNTERS = ("sessions_killed", "first_shots", "bursts", "frames", *_LANE_FRAMES, "predicted_frames",
             "challenge_ack_replies", "refires", "peer_data_bursts", "chase_suppressed", "answers_suppressed",
             "response_spent",
             "duplicate_suppressed", "cap_reached", "interval_suppressed", "rate_limited", "frames_capped", "lag_exceeded",
             "never_kill", "not_tcp", "rst_not_answered", "unsupported_encap", "in_flight_acks", "covered_acks",
             "new_session_after_kill", "own_frames_seen")


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


def _bit(toward_server: bool) -> int:
    return TO_SERVER if toward_server else TO_CLIENT


class Killer:
    """Turns killing alerts and later packets of killed flows into ``Kill`` events (bounds: ``inject.*``)."""

    def __init__(self, config: KillConfig | None = None, settings=None):
        from mirrorwatch.core.settings import Settings

        config = config or KillConfig()
        settings = settings if settings is not None else Settings()
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
        self.config = config
        self.mode = config.mode
        self.dry_run = bool(config.dry_run)
        self._never = [(n.version, int(n.network_address), int(n.netmask)) for n in config.networks()]
        self.forge = Forger(config.mode, config.seed)
        self.rst_burst = int(settings["inject.rst-burst"])
        self._reject_names = _MODE_NAMES[config.mode]
        self.max_responses = int(settings["inject.max-responses"])
        self.min_interval = float(settings["inject.min-interval"])
        self.window = float(settings["inject.response-window"])
        self._lane_bursts = {lane: int(settings[key]) for lane, key in _LANE_BOUNDS.items()}
        self.bucket = FrameBucket(settings["inject.max-per-second"], settings["inject.first-shot-reserve"])
        self.spread = float(settings["inject.lag-spread"])
        self.max_lag = float(settings["inject.max-lag"])
        self.clock = None  # live: the capture's clock (seconds), so bursts allow for the sensor's lag (core.forge)
        self.sent = SentFrames(int(settings["inject.own-frame-memory"]))
        self.sink = None  # injector whose counters() are reported with ours
        self.c = dict.fromkeys(_COUNTERS, 0)

    def own_frame(self, pkt) -> bool:
        """True (and counted) when ``pkt`` is a frame this killer sent; the engine then skips it."""
        if self.sent and pkt.proto == PROTO_TCP and pkt.flags & (RST | FIN) and pkt in self.sent:
            self.c["own_frames_seen"] += 1
            return True
        return False

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
            if st is not None:
                st.gone |= _bit(not to_server)  # the RST's sender closed its side
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
            st = flow.kill = KillState(targets, f"sid:{a0.rule.sid} {a0.rule.action}", flow, self.rst_burst - 1,
                                       pkt.ts)
            specs = self._fresh(st, self._first_specs(flow, targets))
            sent = self._burst(pkt, flow, st, specs, f"sid:{a0.rule.sid}", FIRST, events)
        else:  # another killing alert on a killed session: a follow-up under the same caps
            st.targets |= targets
            sent = self._follow_up(pkt, flow, to_server, st, events)
        blocked = flow.killed is not None and not self.dry_run
        for a, t in killing:
            a.verdict = {"action": "alert", "reject-target": _TARGET_NAMES[t],
                         "reject": list(self._reject_names) if sent and not self.dry_run else []}
            if blocked:
                a.action = "blocked"

    @staticmethod
    def _first_specs(flow, targets: int) -> list:
        """(toward_server, seq, ack, l2) of the first burst's exact segment toward each target."""
        ns, la = flow.next_seq, flow.last_ack
        specs = []
        if targets & TO_SERVER:  # impersonate the client (direction 0)
            specs.append((True, _first(ns[0], la[1]), _first(ns[1], la[0]), l2_toward(flow, True)))
        if targets & TO_CLIENT:  # impersonate the server (direction 1)
            specs.append((False, _first(ns[1], la[0]), _first(ns[0], la[1]), l2_toward(flow, False)))
        return specs

    def _follow_up(self, pkt, flow, to_server, st, events) -> bool:
        """A later packet of a killed session: answer what tells an endpoint's exact RCV.NXT (``_whom``)."""
        d = 0 if to_server else 1  # direction index of the packet
        prev_ack = st.prev_ack[d]
        if pkt.flags & ACK:
            st.prev_ack[d] = pkt.ack
        new_round = st.round_start is None or pkt.ts - st.round_start > self.window
        if not new_round and all(st.round_used[lane] >= n for lane, n in self._lane_bursts.items()):
            self.c["response_spent"] += 1  # a busy killed session costs this much per packet until the next response
            return False
        pure_ack = (pkt.flags & _PURE_ACK_MASK) == ACK and not len(pkt.payload)
        to_sender, to_peer, predict = self._whom(pkt, flow, to_server, st, pure_ack, prev_ack)
        if not to_sender and not to_peer:
            return False
        if new_round and not self._may_open_round(pkt, st, pure_ack):
            return False
        specs = [s for s in self._fresh(st, self._follow_specs(pkt, flow, to_server, st, to_sender, to_peer))
                 if new_round or self._lane_open(st, CHASE if s[0] == to_server else ANSWER)]
        if not specs:
            return False
        lanes = {CHASE if s[0] == to_server else ANSWER for s in specs}  # toward the receiver: a guess from its peer
        if CHASE in lanes and st.reach[d] is not None:
            st.span[d] = min(2 * st.span[d], MAX_PREDICTED)  # the stream outran the last burst: reach twice as far
        kind = "challenge-ack" if pure_ack else "refire" if ANSWER in lanes else "peer-data"
        if not self._burst(pkt, flow, st, specs, kind, min(lanes), events, predict):
            return False
        self.c[_KIND_COUNTERS[kind]] += 1
        if new_round:
            st.responses += 1
            st.round_start = pkt.ts
            st.round_used = [0, 0, 0]
        for lane in lanes:
            st.round_used[lane] += 1
        return True

    def _lane_open(self, st, lane: int) -> bool:
        """May the current response send one more burst of ``lane`` (counted when not)?"""
        if st.round_used[lane] < self._lane_bursts[lane]:
            return True
        self.c[_SUPPRESSED[lane]] += 1
        return False

    def _follow_specs(self, pkt, flow, to_server, st, to_sender: bool, to_peer: bool) -> list:
        """(toward_server, seq, ack, l2) of the exact segments a later packet calls for."""
        d = 0 if to_server else 1
        ns = flow.next_seq
        specs = []
        if to_sender:
            # the sender's exact RCV.NXT is the ack field of what it just sent
            seq = pkt.ack if pkt.flags & ACK else _first(ns[1 - d], flow.last_ack[d])
            if not (self.mode == "fin" and st.last_seq[1 - d] is not None
                    and seq == (st.last_seq[1 - d] + 1) & M32):  # else it acknowledges our FIN: that side has it
                specs.append((not to_server, seq, _first(ns[d], pkt.seq), (pkt.dst_mac, pkt.src_mac, pkt.vlans)))
        if to_peer:
            ack = pkt.ack if pkt.flags & ACK else ns[1 - d]
            specs.append((to_server, _first(ns[d], pkt.seq), ack, l2_toward(flow, to_server)))
        return specs

    def _whom(self, pkt, flow, to_server, st, pure_ack: bool, prev_ack) -> tuple[bool, bool, bool]:
        """(answer the packet's sender, answer its peer, with predicted segments), by the rules of "After the
        first burst"."""
        d = 0 if to_server else 1
        live = st.targets & ~st.gone
        ns = flow.next_seq
        to_sender = bool(live & _bit(not to_server))
        if pure_ack:
            if to_sender and pkt.ack != prev_ack:
                if ns[1 - d] is not None and after(ns[1 - d], pkt.ack):
                    self.c["in_flight_acks"] += 1
                    return False, False, False
                if self._covered(st, 1 - d, pkt.ack):
                    self.c["covered_acks"] += 1
                    return True, False, False
            return to_sender, False, True
        if not live & _bit(to_server):
            return to_sender, False, True
        never_seen = ns[1 - d] is None and flow.last_ack[1 - d] is None
        outran = bool(len(pkt.payload)) and (st.reach[d] is None or after(_first(ns[d], pkt.seq), st.reach[d]))
        return to_sender, never_seen or outran, True

    @staticmethod
    def _covered(st, d: int, seq: int) -> bool:
        """Is ``seq`` one of the predicted positions of the last burst in direction ``d`` (already sent)?"""
        last, reach = st.last_seq[d], st.reach[d]
        return last is not None and after(seq, last) and not after(seq, reach)

    def _may_open_round(self, pkt, st, pure_ack: bool) -> bool:
        """May a burst open a new response now (``inject.max-responses``, ``inject.min-interval``)?"""
        if st.responses >= self.max_responses:
            self.c["cap_reached"] += 1
            return False
        if not pure_ack and self.min_interval > 0 and st.last_fire is not None \
                and pkt.ts - st.last_fire < self.min_interval:
            self.c["interval_suppressed"] += 1
            return False
        return True

    # -- one burst ------------------------------------------------------------------
    def _fresh(self, st, specs) -> list:
        """The (toward_server, seq, ack, l2) specs whose exact segment is not the one last sent that way."""
        fresh = []
        for toward_server, seq, ack, l2 in specs:
            seq, ack = (seq or 0) & M32, (ack or 0) & M32
            if st.last_seq[0 if toward_server else 1] == seq:
                self.c["duplicate_suppressed"] += 1
            else:
                fresh.append((toward_server, seq, ack, l2))
        return fresh

    def _burst(self, pkt, flow, st, fresh, trigger: str, lane: int, events, predict: bool = True) -> bool:
        """Build, rate-limit, remember and append one burst; False when nothing goes out.

        ``fresh``: (toward_server, seq, ack, l2) of each target's exact
        segment (``_fresh``).  The exact segments go whole or not at all, as
        ``lane`` may take them (``core.kill_state``); predicted ones (when
        ``predict``) follow as far as the bucket lets them.
        """
        if not fresh:
            return False
        self.bucket.refill(pkt.ts)
        exact = len(fresh) * len(self.forge.flags)
        room = self.bucket.room(lane, exact)
        if room < 0:  # decided before any segment is built: a killed flow can be busy
            self.c["rate_limited"] += 1
            self.c["frames_capped"] += exact
            return False
        frames = [s for spec in fresh for s in self.forge.exact(flow, *spec)]
        lag = self.clock() - pkt.ts if self.clock is not None and predict else 0.0
        if lag > self.max_lag:  # too far behind for a prediction to land: the exact segments alone
            self.c["lag_exceeded"] += 1
            predict = False
        for toward_server, seq, ack, l2 in fresh:
            d = 0 if toward_server else 1
            seqs = self._predictions(flow, toward_server, seq, st.span[d], lag, st.rate(flow, d, pkt.ts)) \
                if predict else ()
            if len(seqs) > room:
                self.c["frames_capped"] += len(seqs) - room
                seqs = seqs[:room]
            room -= len(seqs)
            frames += self.forge.predicted(flow, toward_server, seqs, ack, l2)
            st.last_seq[d] = seq
            end = seqs[-1] if seqs else seq
            st.reach[d] = end if st.reach[d] is None or after(end, st.reach[d]) else st.reach[d]
            self.c["predicted_frames"] += len(seqs)
        self._emit(pkt, flow, frames, trigger, lane, st, events)
        return True

    def _predictions(self, flow, toward_server: bool, seq: int, span: int, lag: float, rate) -> list:
        """The boundaries a burst predicts after ``seq``: the next ``span`` ones, or, when the sensor is ``lag``
        seconds behind the packet, those around where the sender (at ``rate``, None: its average) will be by
        now (``core.forge``)."""
        ahead = segments_ahead(flow, 0 if toward_server else 1, lag, rate) if lag > 0 else 0
        margin = int(ahead * self.spread) + span
        first = max(1, ahead - margin)
        count = min(ahead + margin - first + 1, MAX_PREDICTED)
        first = max(first, ahead - count // 2) if count == MAX_PREDICTED else first
        return self.forge.boundaries(flow, toward_server, seq, count, first)

    def _emit(self, pkt, flow, frames, trigger, lane, st, events) -> None:
        self.bucket.take(len(frames))
        st.last_fire = pkt.ts
        if st.round_start is None:
            st.round_start = pkt.ts  # the first burst opens the first (uncounted) response
        if flow.killed is None:
            flow.mark_killed(st.reason, self.dry_run)
            self.c["sessions_killed"] += 1
        for seg in frames:
            self.sent.add(seg)
        self.c["first_shots"] += lane == FIRST
        self.c["bursts"] += 1
        self.c["frames"] += len(frames)
        self.c[_LANE_FRAMES[lane]] += len(frames)
        events.append(Kill(pkt.ts, flow, frames, trigger, self.dry_run, pkt.pcap_cnt))

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
