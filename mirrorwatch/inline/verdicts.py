"""The verdict writer: one bound queue's packets through the engine, the core's ``Verdict`` values applied.

- ``accept``: the packet joins the current run of accepts; a run goes out as
  one batch verdict (every held packet up to its last id) when it reaches
  ``nfq.batchcount`` packets, before any other verdict (so packets leave in
  the order they came) and at the end of each read (``flush``).
- ``drop-flow`` and ``reject``: NF_REPEAT with the flow-drop mark bit added
  to the packet's mark: the packet runs through the firewall's chain again,
  whose first rule saves the bit into the connection's mark and whose next
  one drops it -- and every later packet of the connection, in the kernel,
  also once the engine is gone.  (A plain NF_DROP would let the sender's
  retransmission through as soon as the engine stops; the connection mark
  cannot be set from the verdict itself without CONFIG_NETFILTER_NETLINK_GLUE_CT.)
- ``pass-flow``: NF_REPEAT with the bypass mark bit: the kernel accepts the
  connection's later packets before the queue.
- ``final``: after the firewall rules are gone (the last packets of a clean
  stop) a repeat would simply accept, so drops are plain NF_DROP.

``feed`` is inline mode's per-packet loop (compiled, verdicts.pxd): each
datagram the queue read is read into C numbers (``nfnetlink.read_datagram``,
one record reused), goes through ``Engine.process_inline`` as a C call, and
gets its verdict at once: no Python object per packet but its payload (and
what the engine makes).
"""

from __future__ import annotations

from mirrorwatch.core.decode.numbers import ETHERTYPE_IPV4, ETHERTYPE_IPV6, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_RAW
from mirrorwatch.core.events import ACCEPT, ACCEPTED, DROP_FLOW, PASS_FLOW, REJECT
from mirrorwatch.sources.nfnetlink import NFQA_SKB_CSUMNOTREADY, NFQA_SKB_GSO, PacketMessage, message_of, read_datagram

DEFAULT_BATCH = 20  # nfq.batchcount (Suricata's name and default): accepts answered by one batch verdict
LINKTYPES = {ETHERTYPE_IPV4: LINKTYPE_IPV4, ETHERTYPE_IPV6: LINKTYPE_IPV6}  # queued packets start at the IP header


class VerdictWriter:
    """Applies verdicts to ``queue`` (an ``NfQueue``); counts them by action."""

    def __init__(self, queue, drop_bit: int, bypass_bit: int, batch: int = DEFAULT_BATCH):
        if batch < 1:
            raise ValueError(f"nfq.batchcount must be 1 or more, got {batch}")
        self.queue = queue
        self.batch = batch
        self.final = False
        self._bits = {DROP_FLOW: drop_bit, REJECT: drop_bit, PASS_FLOW: bypass_bit}
        self._run_end = 0  # the last id of the run of accepts (``_run`` of them) not answered yet
        self._run = 0
        self._msg = PacketMessage()
        self.counts = dict.fromkeys((ACCEPT, DROP_FLOW, REJECT, PASS_FLOW), 0)

    def feed(self, datagrams: list, engine, now: float, out: list, notes: dict) -> None:
        """Every packet of ``datagrams`` (``NfQueue.recv_datagrams``) through ``engine.process_inline`` at
        ``now`` and its verdict given; the events are appended to ``out``; ``notes`` counts the packets the
        kernel queued as GSO super-packets (``gso``), with checksums not filled in (``csum_not_ready``) or
        cut short (``truncated``).  The runs of accepts are flushed at the end."""
        queue, m = self.queue, self._msg
        pending = queue.pending
        received = 0
        for data in datagrams:
            if read_datagram(m, data):  # the kernel's one packet per datagram
                self._one(m, engine, now, out, notes, pending)
                received += 1
                continue
            for p in queue.messages(data):
                self._one(message_of(p), engine, now, out, notes, pending)
                received += 1
        queue.counters["received"] += received
        self.flush()

    def _one(self, m: PacketMessage, engine, now: float, out: list, notes: dict, pending) -> None:
        info = m.skb_info
        truncated = m.cap_len > len(m.payload)
        if info or truncated:
            notes["gso"] += 1 if info & NFQA_SKB_GSO else 0
            notes["csum_not_ready"] += 1 if info & NFQA_SKB_CSUMNOTREADY else 0
            notes["truncated"] += 1 if truncated else 0
        pending.append(m.packet_id)  # received: its verdict is due
        verdict, events = engine.process_inline(now, LINKTYPES.get(m.hw_protocol, LINKTYPE_RAW), m.payload,
                                                not info & NFQA_SKB_CSUMNOTREADY)
        if events:
            out.extend(events)
        self.give(m.packet_id, m.mark, verdict)

    def apply(self, pkt, verdict) -> None:
        """The verdict of ``pkt`` (a ``QueuedPacket``)."""
        self.give(pkt.packet_id, pkt.mark, verdict)

    def give(self, packet_id: int, mark: int, verdict) -> None:
        """The verdict of the received packet ``packet_id`` whose mark is ``mark``."""
        action = ACCEPT if verdict is ACCEPTED else verdict.action
        if action == ACCEPT:
            self._run_end = packet_id
            self._run += 1
            if self._run >= self.batch:
                self.flush()
            return
        self.flush()
        self.counts[action] += 1
        if self.final:
            self.queue.verdict(packet_id, action == PASS_FLOW)
        else:
            self.queue.verdict(packet_id, True, mark=mark | self._bits[action], repeat=True)

    def flush(self) -> None:
        """Send the pending run of accepts, if any."""
        if self._run:
            self.queue.verdict_batch(self._run_end, True)
            self.counts[ACCEPT] += self._run
            self._run = 0
