"""The sans-I/O core: frames in, events out.

Theory of operation
-------------------
``Engine.process(ts, linktype, frame)`` is called once per captured frame, by
the pcap-file source in replay and by the capture thread's consumer in live
mode.  It runs the four rooms in order and returns the events they produced:

    decode   frame bytes -> ``Packet`` (or None: counted by reason, skipped;
             a valid IP packet with a malformed transport header comes back
             flagged ``invalid``: no session, detect judges it flowless)
    flows    Packet -> (Flow, direction); TCP state and per-direction
             reassembly are updated; sessions that timed out by packet time
             come back as ``FlowEnded``
    detect   Packet + Flow + settled in-order stream bytes -> ``Alert``s;
             every session that ends (evicted, timed out, shut down) first
             passes through ``Detector.flow_end`` so the stream bytes not yet
             inspected are (Suricata's flow-timeout pseudo packets)
    kill     Alerts of killing rules (and later packets of killed flows)
             -> ``Kill`` values with the exact frames to forge

Once the killer reset a session (``Flow.no_inspection``, not in dry-run), its
later packets are decoded and tracked, then go to the killer alone
(``Killer.on_uninspected``): no reassembly, application layer, detection or
tags, as Suricata skips a flow it dropped.

Inline mode (``process_inline``): the same path, with the engine's killer an
``inline.InlineJudge`` (``judge``) that is consulted on every packet with a
flow (compiled: a C call); the packet's ``Verdict`` comes back beside the
events.

Time is the packets' time.  Live mode calls ``tick(now)`` from its loop when
no packet has arrived for a while, so idle sessions still end.  ``finish()``
flushes every session (reason ``shutdown``) and returns the final ``Stats``.

When a TCP direction starts being reassembled, the functions in
``stream_hooks`` run (e.g. the stream dumper attaching its observer), then
detect's own hook, which wraps whatever observer is there so the bytes a gap
would drop still get inspected.  When a later SYN shows the flows room it had
the roles the wrong way round, it swaps its per-direction fields and detect
swaps its own (``Detector.on_swap``).  ``reload_rules`` swaps the Detector;
sessions keep their flowbits, threshold counters carry over.

The engine owns no clock, socket or file: the same code runs live and in
replay, and tests drive it frame by frame.
"""

from __future__ import annotations

from mirrorwatch.core.applayer.session import uninspected
from mirrorwatch.core.decode.packet import new_packet
from mirrorwatch.core.events import AppTx, DecodeAnomaly, FlowEnded, Stats, TaggedPacket
from mirrorwatch.core.inline import InlineJudge
from mirrorwatch.core.settings import Settings

_EMPTY: tuple = ()


class Engine:
    """Wires decode -> flows -> detect -> kill for one capture."""

    def __init__(self, settings: Settings, ruleset, *, checksum_mode: str = "auto", killer=None):
        from mirrorwatch.core.applayer.session import AppLayer
        from mirrorwatch.core.decode.decoder import Decoder
        from mirrorwatch.core.detect import Detector
        from mirrorwatch.core.detect.tag import TagTracker
        from mirrorwatch.core.flows.table import FlowTable
        from mirrorwatch.core.flows.tcp import exception_mode

        self.settings = settings
        self.decoder = Decoder(settings, checksum_mode=checksum_mode)
        self.flows = FlowTable(settings)
        self.detector = Detector(ruleset, settings)
        self.applayer = AppLayer(settings)
        self.tags = TagTracker(settings["detect.tag.max-hosts"])
        # the tracker's tables, read per packet (empty unless a rule with ``tag`` alerted)
        self._tag_flows, self._tag_hosts = self.tags.flows, self.tags.hosts
        # Hooks run when a TCP direction starts being reassembled (e.g. the stream
        # dumper attaching its observer); detect's own hook runs last, so it can
        # wrap whatever observer is already there.
        self.stream_hooks: list = []
        self.flows.on_new_stream = self._new_stream
        self.flows.on_swap = self._swapped
        self.flows.holds_state = Detector.holds_state  # what the table ends last when it must make room
        self.killer = killer
        self.judge = killer if isinstance(killer, InlineJudge) else None  # inline: every packet needs a verdict
        if self.judge is not None:
            exception_mode(self.flows, settings, True)  # Suricata's IPS mode: its exception policies
        self.pcap_cnt = 0
        self.bytes = 0
        self.first_ts: float | None = None
        self.last_ts = 0.0
        self._sweep_interval = settings["flow.timeout-check-interval"]
        # the packet time at or after which the next frame (or ``advance``) sweeps for timed-out sessions
        self.sweep_due = float("-inf")  # the first frame sets it (see process)
        self.count_outer = True  # replay --workers: False while a frame's tunnel session is another worker's
        self._outer_decoder = None  # outer_only's own (its counters are not the engine's)

    # -- the per-frame path -------------------------------------------------
    def process(self, ts: float, linktype: int, frame: bytes, wirelen: int | None = None) -> list:
        # Hot path: one compare decides the sweep (``sweep_due`` starts at -inf, so
        # the first frame takes that branch once to set the capture's start).
        self.pcap_cnt = n = self.pcap_cnt + 1
        self.bytes += len(frame) if wirelen is None else wirelen
        if ts > self.last_ts:
            self.last_ts = ts
        events: list = []
        if ts >= self.sweep_due:
            if self.first_ts is None:
                self.first_ts = ts
                self.sweep_due = ts + self._sweep_interval
            else:
                self._sweep(ts, events)
        pkt = self.decoder.decode(ts, linktype, frame, n)
        if pkt is None:
            return events
        if pkt.tunnel:
            if self.count_outer:
                self._tunnel_flows(pkt, events)
            pkt.wirelen -= pkt.tunnel_off  # the carried packet's own length, as Suricata's tunnel packet
        if not (pkt.ipv or pkt.events):
            return events
        if pkt.invalid or not pkt.ipv:
            # a malformed header (with its decoder events), or not IP: no session (Suricata), the
            # packet-level rules (IP-only, decode-event) still apply
            alerts = self.detector.inspect(pkt, None, None)
            if alerts:
                events.extend(alerts)
            if pkt.events:
                events.append(DecodeAnomaly(pkt))
            return events
        killer = self.killer
        if killer is not None and pkt.flags & 0x05 and killer.own_frame(pkt):
            return events  # our own RST/FIN seen back on the mirror: counted, not tracked
        flow, to_server = self.flows.process(pkt, events)
        if events:
            events = self._ended(events)
        if flow.no_inspection:  # killed (tracked for the kill chase) or bypassed: no longer inspected
            if killer is not None and not flow.bypassed:
                killer.on_uninspected(pkt, flow, to_server, events)
            return events
        if flow.action == "drop" and self.judge is not None:  # inline: an exception policy drops the flow
            self.judge.on_exception(flow)
            return events
        if pkt.proto == 17 and pkt.payload and flow is not None:
            self.applayer.udp(flow, pkt.payload, 0 if to_server else 1, pkt.sport, pkt.dport)
        det = self.detector
        try:  # Detector.inspect's contract (never raises), without its extra call per packet
            alerts = det.inspect_unguarded(pkt, flow, to_server)
        except Exception as e:  # noqa: BLE001 - the core goes on with the next packet
            det.count_error(e, pkt)
            alerts = None
        if alerts:
            events.extend(alerts)
        if alerts or self._tag_flows or self._tag_hosts:
            self._tag(pkt, flow, alerts, events)
        app = flow.app
        if app is not None and app.parser is not None:
            self._log_txs(flow, app, pkt, events)
        # the killer acts on killing alerts and on later packets of sessions it is killing; the judge on every one
        judge = self.judge
        if judge is not None:
            judge.on_packet(pkt, flow, to_server, alerts, events)
        elif killer is not None and (alerts or flow.kill is not None):
            killer.on_packet(pkt, flow, to_server, alerts, events)
        return events

    def outer_only(self, ts: float, linktype: int, frame: bytes) -> list | None:
        """replay --workers: a frame another engine analyses, whose UDP tunnel's own session is this
        engine's (the partitioner keys the carried packet and the tunnel apart, as Suricata's autofp
        hands each to the worker of its own flow): time moves as ``advance`` moves it, and the session
        counts the frame.  Returns the events, or None."""
        events = self.advance(ts) or []
        dec = self._outer_decoder
        if dec is None:
            from mirrorwatch.core.decode.decoder import Decoder

            dec = self._outer_decoder = Decoder(self.settings, checksum_mode="none")
        pkt = dec.decode(ts, linktype, frame, self.pcap_cnt + 1)
        if pkt is not None and pkt.tunnel:
            self._tunnel_flows(pkt, events)
        return events or None

    def _tunnel_flows(self, pkt, events: list) -> None:
        """A UDP tunnel's own session (VXLAN, Geneve, Teredo: ``pkt.tunnel`` entries with ports), which
        Suricata tracks besides the carried packet's (DecodeUDP sets the outer packet up for a flow): its
        counters and its flow record.  Rules do not inspect the outer packet here (Suricata checks its
        headers, not its payload); IP-in-IP and GRE carry no session of their own, as in Suricata."""
        for ipv, src, dst, proto, sport, dport in pkt.tunnel:
            if proto != 17:
                continue
            outer = new_packet(pkt.ts, pkt.pcap_cnt, pkt.linktype, b"")
            outer.frame = pkt.frame
            outer.wirelen = pkt.wirelen
            outer.vlans = pkt.vlans
            outer.vlan_id = pkt.vlan_id
            outer.ipv = ipv
            outer.src = src
            outer.dst = dst
            outer.proto = proto
            outer.sport = sport
            outer.dport = dport
            self.flows.process(outer, events)

    def process_inline(self, ts: float, linktype: int, frame: bytes, csum_ready: bool = True) -> tuple:
        """Inline (IPS) mode: a packet an inline source holds -> (its ``Verdict``, the events).

        The packet goes through ``process``; the killer must be an
        ``inline.InlineJudge``.  ``csum_ready`` False: the kernel that queued
        the packet has not filled its checksums in yet (CHECKSUM_PARTIAL, GSO),
        so they are not judged.
        """
        judge = self.judge
        if judge is None:
            raise TypeError("process_inline needs an inline.InlineJudge as the engine's killer")
        if csum_ready:
            events = self.process(ts, linktype, frame)
        else:
            with self.decoder.unverified():
                events = self.process(ts, linktype, frame)
        return judge.take(events), events

    def _new_stream(self, flow, direction: int, stream) -> None:
        for hook in self.stream_hooks:
            hook(flow, direction, stream)
        self.applayer.on_new_stream(flow, direction, stream)
        self.detector.on_new_stream(flow, direction, stream)

    def _tag(self, pkt, flow, alerts, events: list) -> None:
        """Tags: the packet's alerts start theirs, then the packet is counted in its flow's and hosts'
        (after the alerts, as Suricata's PacketAlertFinalize); a tagged packet is a TaggedPacket event."""
        if alerts:
            self.tags.start(alerts, pkt, flow)
        if self.tags.packet(pkt, flow):
            events.append(TaggedPacket(pkt, flow))

    def _log_txs(self, flow, app, pkt, events: list) -> None:
        """Transactions complete and inspected become EVE http/dns/tls records (AppTx events),
        logged on ``pkt`` (its time and number), as Suricata's transaction loggers.  ``app``:
        ``flow.app``, which has a parser."""
        if not self.detector.has_tx:
            uninspected(app)  # nothing inspects them: they are done once complete
        else:
            fd = flow.det
            if fd is not None and fd.txp is not None and (fd.txp[0] or fd.txp[1]) \
                    and not getattr(app.parser, "logs_when_made", False):
                # logged once detect has inspected them in both directions, as Suricata; a parser
                # whose transactions are complete when made (DNS) has them logged on their packet
                return
        for tx in self.applayer.logged(flow):
            events.append(AppTx(pkt.ts, flow, app.proto, tx, pkt.pcap_cnt))

    def _flow_end(self, flow, ts: float, events: list) -> None:
        """A session leaves: detect inspects what is left, then its remaining transactions are logged."""
        self.detector.flow_end(flow, events)
        if self._tag_flows:
            self.tags.flow_end(flow)
        if flow.app is not None:
            for tx in self.applayer.flow_end(flow):
                events.append(AppTx(ts, flow, flow.app.proto, tx))

    def _swapped(self, flow) -> None:
        self.detector.on_swap(flow)

    def _ended(self, events: list) -> list:
        """Sessions the flow table evicted while placing this packet: detect inspects
        what their streams still hold (alerts come before each FlowEnded)."""
        out: list = []
        for ev in events:
            if type(ev) is FlowEnded:
                self._flow_end(ev.flow, ev.ts, out)
            out.append(ev)
        return out

    # -- time and end of capture ----------------------------------------------
    def _sweep(self, now: float, events: list) -> None:
        self.sweep_due = now + self._sweep_interval
        for flow in self.flows.expire(now):
            self._flow_end(flow, now, events)
            events.append(FlowEnded(now, flow, "timeout"))
        events.extend(self.flows.pop_notices())  # emergency mode over (FlowEmergency)
        self.decoder.expire(now)

    def tick(self, now: float) -> list:
        """Advance time without a packet (live mode): ends idle sessions."""
        events: list = []
        if now > self.last_ts:
            self.last_ts = now
        if self.first_ts is not None and now >= self.sweep_due:
            self._sweep(now, events)
        return events

    def advance(self, ts: float) -> list | None:
        """A frame this engine does not analyse passed at ``ts`` (``--workers``: another engine's frame).

        Time moves exactly as ``process`` moves it for a frame, so sessions time out on
        the same frames as in a single engine.  Returns the events of the sweep that was
        due, or None when none was.
        """
        if ts > self.last_ts:
            self.last_ts = ts
        if ts < self.sweep_due:
            return None
        events: list = []
        if self.first_ts is None:
            self.first_ts = ts
            self.sweep_due = ts + self._sweep_interval
        else:
            self._sweep(ts, events)
        return events

    def finish(self) -> list:
        """End of capture: every session ends with reason 'shutdown', then the final stats."""
        events: list = []
        for flow in self.flows.flush_all():
            self._flow_end(flow, self.last_ts, events)
            events.append(FlowEnded(self.last_ts, flow, "shutdown"))
        events.append(Stats(self.last_ts, self.counters()))
        return events

    def reload_rules(self, ruleset, detector=None) -> None:
        """Swap in a new rule set (SIGHUP); built by the caller, swapped atomically here.

        ``detector``: one already built from ``ruleset`` by ``build_detector`` (e.g. in
        a loader thread, so the packet loop does not wait for the compilation).
        """
        self.detector = detector if detector is not None else self.build_detector(ruleset)

    def build_detector(self, ruleset):
        """A Detector for ``ruleset`` that takes over this engine's threshold counters (any thread)."""
        from mirrorwatch.core.detect import Detector

        return Detector(ruleset, self.settings, previous=self.detector)

    def counters(self) -> dict:
        c = {
            "capture": {"packets": self.pcap_cnt, "bytes": self.bytes},
            "decoder": self.decoder.counters(),
            "flow": self.flows.counters(),
            "detect": self.detector.counters(),
            "app_layer": self.applayer.counters(),
            "tag": self.tags.counters(),
        }
        if self.killer is not None:
            c["kill"] = self.killer.counters()
        return c
