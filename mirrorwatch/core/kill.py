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
the last burst; one response sends at most ``bursts_per_response`` bursts with
predicted segments (``response_full``: later ones carry the exact segment alone).  A burst whose exact segment is the one last sent to the
same endpoint is not repeated.  All frames share a global token bucket
(``inject.max-per-second``): a burst takes its exact segments whole or not at
all, and as many predicted ones as tokens remain above half the bucket; the
exact segments of follow-ups never take it below a quarter, so a busy killed
session cannot delay the first burst of another kill, and guesses never take
the room of exact answers.

The injector's own frames come back on the mirror: ``own_frame(pkt)`` tells
them (``core.forge.SentFrames``); the engine counts and skips them before
flow tracking, so they never alter the session's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import ip_network

from mirrorwatch.core.decode.packet import ACK, FIN, PROTO_TCP, RST, SYN
from mirrorwatch.core.events import Kill
from mirrorwatch.core.forge import M32, MAX_PREDICTED, RST_BURST, Forger, SentFrames, after, l2_toward

# bit set of endpoints to reset
TO_SERVER, TO_CLIENT = 1, 2  # the server is reset by a segment travelling to it, and so on
BOTH = TO_SERVER | TO_CLIENT

KILL_MODES = ("rst", "fin", "both")
_MODE_NAMES = {"rst": ["tcp-reset"], "fin": ["tcp-fin"], "both": ["tcp-fin", "tcp-reset"]}
_TARGET_NAMES = {TO_SERVER: "to_server", TO_CLIENT: "to_client", BOTH: "both"}
_NO_REPLY = RST
_PURE_ACK_MASK = SYN | FIN | RST | ACK
_PLAIN_L2 = (0x0800, 0x86DD, 0)  # 0: link types without an EtherType (raw IP, pcap replay)
BURSTS_PER_RESPONSE = 8  # bursts in one response (inject.response-window) of a killed session
_KIND_COUNTERS = {"challenge-ack": "challenge_ack_replies", "refire": "refires", "peer-data": "peer_data_bursts"}
_COUNTERS = ("sessions_killed", "bursts", "frames", "predicted_frames", "challenge_ack_replies", "refires",
             "peer_data_bursts", "duplicate_suppressed", "cap_reached", "interval_suppressed", "rate_limited",
             "never_kill", "not_tcp", "rst_not_answered", "unsupported_encap", "in_flight_acks", "covered_acks",
             "response_full",
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


class KillState:
    """Per-flow scratch of the killer (``flow.kill``)."""

    __slots__ = ("targets", "gone", "responses", "last_fire", "round_start", "round_bursts", "last_seq", "reach",
                 "span", "prev_ack", "reason")

    def __init__(self, targets: int, reason: str, last_ack=(None, None), span: int = RST_BURST - 1):
        self.targets = targets
        self.gone = 0  # targets that sent a RST themselves: nothing more goes to them
        self.prev_ack = list(last_ack)  # ack field of each direction's previous packet
        self.responses = 0
        self.last_fire = None
        self.round_start = None  # packet time of the current response's first burst
        self.round_bursts = 0  # bursts sent in the current response
        self.last_seq = [None, None]  # exact seq of the last burst toward [server, client]
        self.reach = [None, None]  # highest seq sent toward [server, client]
        self.span = [span, span]  # predicted segments the next burst toward [server, client] carries
        self.reason = reason


class Killer:
    """Turns killing alerts and later packets of killed flows into ``Kill`` events.

    ``rst_burst``: segments in one burst toward an endpoint (its exact RCV.NXT
    and the boundaries predicted after it; ``core.forge``);
    ``bursts_per_response``: bursts one response may send (a sensor too far
    behind a stream to win the race would otherwise chase it segment after
    segment).
    """

    def __init__(self, config: KillConfig | None = None, settings=None, rst_burst: int = RST_BURST,
                 bursts_per_response: int = BURSTS_PER_RESPONSE):
        from mirrorwatch.core.settings import Settings

        config = config or KillConfig()
        settings = settings if settings is not None else Settings()
        if config.mode not in KILL_MODES:
            raise KillConfigError(f"--kill-with must be one of {', '.join(KILL_MODES)}, got {config.mode!r}")
        if rst_burst < 1 or bursts_per_response < 1:
            raise KillConfigError(f"the RST burst ({rst_burst} segments) and the bursts per response "
                                  f"({bursts_per_response}) must be 1 or more")
        self.bursts_per_response = bursts_per_response
        self.config = config
        self.mode = config.mode
        self.dry_run = bool(config.dry_run)
        self._never = [(n.version, int(n.network_address), int(n.netmask)) for n in config.networks()]
        self.forge = Forger(config.mode, config.seed)
        self.rst_burst = rst_burst
        self._reject_names = _MODE_NAMES[config.mode]
        for key in ("inject.max-responses", "inject.min-interval", "inject.response-window", "inject.max-per-second"):
            if settings[key] < 0:
                raise KillConfigError(f"{key} must be 0 or more, got {settings[key]}")
        self.max_responses = int(settings["inject.max-responses"])
        self.min_interval = float(settings["inject.min-interval"])
        self.window = float(settings["inject.response-window"])
        self.rate = float(settings["inject.max-per-second"])
        self._tokens = self.rate
        # first bursts' exact segments may empty the bucket; the exact segments of follow-ups leave a quarter of
        # it to them, and predicted segments half: a busy killed session cannot delay another kill, and its
        # guesses never take the room of the exact answers
        self._reserve = self.rate / 4
        self._predict_reserve = self.rate / 2
        self._bucket_ts = None
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
            st = flow.kill = KillState(targets, f"sid:{a0.rule.sid} {a0.rule.action}", flow.last_ack,
                                       self.rst_burst - 1)
            specs = self._fresh(st, self._first_specs(flow, targets))
            sent = self._burst(pkt, flow, st, specs, f"sid:{a0.rule.sid}", 0, events)
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
        pure_ack = (pkt.flags & _PURE_ACK_MASK) == ACK and not len(pkt.payload)
        to_sender, to_peer, predict = self._whom(pkt, flow, to_server, st, pure_ack, prev_ack)
        if not to_sender and not to_peer:
            return False
        new_round = st.round_start is None or pkt.ts - st.round_start > self.window
        if new_round and not self._may_open_round(pkt, st, pure_ack):
            return False
        if predict and not new_round and st.round_bursts >= self.bursts_per_response:
            self.c["response_full"] += 1  # this response had its bursts: more guesses would not land sooner
            predict = False
        ns = flow.next_seq
        specs = []
        if to_sender:
            # the sender's exact RCV.NXT is the ack field of what it just sent
            seq = pkt.ack if pkt.flags & ACK else _first(ns[1 - d], flow.last_ack[d])
            if not (self.mode == "fin" and st.last_seq[1 - d] is not None
                    and seq == (st.last_seq[1 - d] + 1) & M32):  # else it acknowledges our FIN: that side has it
                specs.append((not to_server, seq, _first(ns[d], pkt.seq), (pkt.dst_mac, pkt.src_mac, pkt.vlans)))
        if to_peer:
            if st.reach[d] is not None:  # the stream outran the last burst: reach twice as far
                st.span[d] = min(2 * st.span[d], MAX_PREDICTED)
            ack = pkt.ack if pkt.flags & ACK else ns[1 - d]
            specs.append((to_server, _first(ns[d], pkt.seq), ack, l2_toward(flow, to_server)))
        specs = self._fresh(st, specs)
        kind = "challenge-ack" if pure_ack else "refire" if any(s[0] != to_server for s in specs) else "peer-data"
        if not self._burst(pkt, flow, st, specs, kind, self._reserve, events, predict):
            return False
        self.c[_KIND_COUNTERS[kind]] += 1
        if new_round:
            st.responses += 1
            st.round_start = pkt.ts
            st.round_bursts = int(predict)
        return True

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

    def _burst(self, pkt, flow, st, fresh, trigger: str, reserve: float, events, predict: bool = True) -> bool:
        """Build, rate-limit, remember and append one burst; False when nothing goes out.

        ``fresh``: (toward_server, seq, ack, l2) of each target's exact
        segment (``_fresh``).  The exact segments go whole or not at all, if
        the token bucket stays above ``reserve``; predicted ones (when
        ``predict``) follow while it stays above half its size; such a burst
        counts toward ``bursts_per_response``.
        """
        if not fresh:
            return False
        self._refill(pkt.ts)
        exact = len(fresh) * len(self.forge.flags)
        if int(self._tokens - reserve) < exact:  # decided before any segment is built: a killed flow can be busy
            self.c["rate_limited"] += 1
            return False
        room = int(self._tokens - max(reserve, self._predict_reserve)) - exact
        frames = [s for spec in fresh for s in self.forge.exact(flow, *spec)]
        for toward_server, seq, ack, l2 in fresh:
            d = 0 if toward_server else 1
            more = self.forge.predicted(flow, toward_server, seq, ack, l2, min(st.span[d], room)) \
                if predict and room > 0 else []
            frames += more
            room -= len(more)
            st.last_seq[d] = seq
            end = more[-1].seq if more else seq
            st.reach[d] = end if st.reach[d] is None or after(end, st.reach[d]) else st.reach[d]
            self.c["predicted_frames"] += len(more)
        st.round_bursts += predict
        self._emit(pkt, flow, frames, trigger, st, events)
        return True

    def _emit(self, pkt, flow, frames, trigger, st, events) -> None:
        self._tokens -= len(frames)
        st.last_fire = pkt.ts
        if st.round_start is None:
            st.round_start = pkt.ts  # the first burst opens the first (uncounted) response
        if flow.killed is None:
            flow.mark_killed(st.reason, self.dry_run)
            self.c["sessions_killed"] += 1
        for seg in frames:
            self.sent.add(seg)
        self.c["bursts"] += 1
        self.c["frames"] += len(frames)
        events.append(Kill(pkt.ts, flow, frames, trigger, self.dry_run, pkt.pcap_cnt))

    def _refill(self, ts: float) -> None:
        """Global token bucket on packet time: at most ``inject.max-per-second`` frames per second."""
        if self._bucket_ts is not None and ts > self._bucket_ts:
            self._tokens = min(self.rate, self._tokens + (ts - self._bucket_ts) * self.rate)
        if self._bucket_ts is None or ts > self._bucket_ts:
            self._bucket_ts = ts

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
