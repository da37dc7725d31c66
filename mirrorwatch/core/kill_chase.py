"""The bursts of a kill (sans-I/O): what each one carries, and which later packets call for one.

``core.kill`` decides that a session dies; a ``Chaser`` plans its bursts.  What
the first burst carries (the exact RCV.NXT of each target, then predicted
boundaries when its peer is streaming) is described in ``core.forge``.

After the first burst
---------------------
Every later packet of a killed session is examined:

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

(RSTs and new SYNs are the killer's: ``core.kill``.)

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
"""

from __future__ import annotations

from mirrorwatch.core.decode.packet import ACK, FIN, RST, SYN
from mirrorwatch.core.events import Kill
from mirrorwatch.core.forge import M32, MAX_PREDICTED, after, l2_toward, segments_ahead
from mirrorwatch.core.kill_state import (
    ANSWER,
    CHASE,
    FIRST,
    LANE_NAMES,
    TO_CLIENT,
    TO_SERVER,
    FrameBucket,
)

_PURE_ACK_MASK = SYN | FIN | RST | ACK
_KIND_COUNTERS = {"challenge-ack": "challenge_ack_replies", "refire": "refires", "peer-data": "peer_data_bursts"}
_LANE_FRAMES = tuple(f"{name}_frames" for name in LANE_NAMES)
_SUPPRESSED = {ANSWER: "answers_suppressed", CHASE: "chase_suppressed"}
_LANE_BOUNDS = {ANSWER: "inject.answer-bursts", CHASE: "inject.chase-bursts"}
COUNTERS = ("first_shots", "bursts", "frames", *_LANE_FRAMES, "predicted_frames",
            "challenge_ack_replies", "refires", "peer_data_bursts", "chase_suppressed", "answers_suppressed",
            "response_spent", "duplicate_suppressed", "cap_reached", "interval_suppressed", "rate_limited",
            "frames_capped", "lag_exceeded", "in_flight_acks", "covered_acks")


def bit(toward_server: bool) -> int:
    """The target bit of the endpoint a segment travelling ``toward_server`` (or not) reaches."""
    return TO_SERVER if toward_server else TO_CLIENT


class Chaser:
    """Plans and emits the bursts of killed sessions (bounds: ``inject.*``, validated by ``core.kill.Killer``)."""

    def __init__(self, forge, mode: str, sent, settings, dry_run: bool):
        self.forge = forge  # core.forge.Forger of ``mode`` (``core.kill.KILL_MODES``)
        self.mode = mode
        self.sent = sent  # core.forge.SentFrames: every frame emitted, so the engine knows them again
        self.dry_run = dry_run
        self.max_responses = int(settings["inject.max-responses"])
        self.min_interval = float(settings["inject.min-interval"])
        self.window = float(settings["inject.response-window"])
        self._lane_bursts = {lane: int(settings[key]) for lane, key in _LANE_BOUNDS.items()}
        self.bucket = FrameBucket(settings["inject.max-per-second"], settings["inject.first-shot-reserve"])
        self.spread = float(settings["inject.lag-spread"])
        self.max_lag = float(settings["inject.max-lag"])
        self.clock = None  # live: the capture's clock (seconds), so bursts allow for the sensor's lag (core.forge)
        self.c = dict.fromkeys(COUNTERS, 0)

    def first(self, pkt, flow, st, trigger: str, events: list) -> bool:
        """The first burst of a kill (``st``: its new ``KillState``); False when nothing went out."""
        return self._burst(pkt, flow, st, self._fresh(st, self._first_specs(flow, st.targets)), trigger, FIRST,
                           events)

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

    def follow_up(self, pkt, flow, to_server: bool, st, events: list) -> bool:
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
        to_sender = bool(live & bit(not to_server))
        if pure_ack:
            if to_sender and pkt.ack != prev_ack:
                if ns[1 - d] is not None and after(ns[1 - d], pkt.ack):
                    self.c["in_flight_acks"] += 1
                    return False, False, False
                if self._covered(st, 1 - d, pkt.ack):
                    self.c["covered_acks"] += 1
                    return True, False, False
            return to_sender, False, True
        if not live & bit(to_server):
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
        for seg in frames:
            self.sent.add(seg)
        self.c["first_shots"] += lane == FIRST
        self.c["bursts"] += 1
        self.c["frames"] += len(frames)
        self.c[_LANE_FRAMES[lane]] += len(frames)
        events.append(Kill(pkt.ts, flow, frames, trigger, self.dry_run, pkt.pcap_cnt))


def _first(a, b):
    return a if a is not None else b
