"""The verdict writer: the core's ``Verdict`` values, applied to one bound queue.

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
"""

from __future__ import annotations

from mirrorwatch.core.events import ACCEPT, DROP_FLOW, PASS_FLOW, REJECT

DEFAULT_BATCH = 20  # nfq.batchcount (Suricata's name and default): accepts answered by one batch verdict


class VerdictWriter:
    """Applies verdicts to ``queue`` (an ``NfQueue``); counts them by action."""

    def __init__(self, queue, drop_bit: int, bypass_bit: int, batch: int = DEFAULT_BATCH):
        if batch < 1:
            raise ValueError(f"nfq.batchcount must be 1 or more, got {batch}")
        self.queue = queue
        self.batch = batch
        self.final = False
        self._bits = {DROP_FLOW: drop_bit, REJECT: drop_bit, PASS_FLOW: bypass_bit}
        self._run_end: int | None = None
        self._run = 0
        self.counts = dict.fromkeys((ACCEPT, DROP_FLOW, REJECT, PASS_FLOW), 0)

    def apply(self, pkt, verdict) -> None:
        """The verdict of ``pkt`` (a ``QueuedPacket``)."""
        action = verdict.action
        if action == ACCEPT:
            self._run_end = pkt.packet_id
            self._run += 1
            if self._run >= self.batch:
                self.flush()
            return
        self.flush()
        self.counts[action] += 1
        if self.final:
            self.queue.verdict(pkt.packet_id, action == PASS_FLOW)
        else:
            self.queue.verdict(pkt.packet_id, True, mark=pkt.mark | self._bits[action], repeat=True)

    def flush(self) -> None:
        """Send the pending run of accepts, if any."""
        if self._run_end is not None:
            self.queue.verdict_batch(self._run_end, True)
            self.counts[ACCEPT] += self._run
            self._run_end = None
            self._run = 0
