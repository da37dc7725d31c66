"""Transaction inspection: application-layer rules judged per transaction, as Suricata's DetectRunTx.

Theory of operation
-------------------
The applayer room's parsers report which transactions changed (``updated()``).
Detect files each changed transaction as pending for both packet directions
(``FlowDet.txp``), and inspects a direction's pending transactions on the next
packet of that direction (a request rule on a to-server packet, a response rule
on a to-client one, as Suricata inspects transactions in the direction of the
packet), or with a flow-end pseudo packet when the flow goes.

Candidates come from one prefilter per buffer: each (protocol, inspection side)
has, per buffer (name, side, transforms) that holds some rule's fast pattern, a
hyperscan block database of those literals; a transaction's buffer is scanned
once it is complete enough (``buffers.Buffer.ready``).  Rules without a fast
pattern are candidates for every transaction of their protocol and side.  A rule
is judged when the transaction has progressed far enough for all its buffers,
and alerts at most once per transaction (``FlowDet.txa``).

Each buffer is scanned once per transaction while its bytes stay the same, as
Suricata runs a transaction's prefilter engine once its progress is past the
engine's (``DetectRunPrefilterTx``, ``prefilter_flags``): a transaction
inspected again at a later progress step (request line, then headers, then
body) gets the literals of a buffer whose bytes did not change from the scan
of the earlier step (``TxSeen``), and only new or changed buffers are scanned.
Bytes are compared rather than assumed settled once ready: an interim 1xx
response's status line and trailers after a chunked body do change a buffer.

The buffers a packet's inspection gets are kept until its candidates are judged
(``tx_bufs``): a candidate's verification takes its buffers from there, as
Suricata makes a transaction's inspection buffer once per detection run,
whichever prefilter engine or rule asks for it first.
"""

from __future__ import annotations

import hyperscan as hs

from mirrorwatch.core.applayer.common import PROGRESS_COMPLETE, TO_SERVER
from mirrorwatch.core.detect.hsdb import BlockScanner, database
from mirrorwatch.core.detect.judge import write_flowbits
from mirrorwatch.core.detect.txrule import prefilter_group
from mirrorwatch.core.events import Alert

TXA_PRUNE = 64  # transactions remembered per flow before the ones the parser let go are forgotten
# buffers up to this size keep their last scan's bytes for the next progress step (a request's
# line and headers); a longer one (a body, a whole message) is scanned again when inspected again
SCAN_MEMO_BYTES = 4096


class TxSeen:
    """What detect remembers of one transaction: its progress when it was last filed as pending,
    and per direction {prefilter scanner: (bytes scanned, rule tuples their literals woke)} until
    that direction's side is complete (its transaction is not pending in it again)."""

    __slots__ = ("scans", "tc", "ts")

    def __init__(self) -> None:
        self.ts = self.tc = -1
        self.scans: tuple = ({}, {})


class TxMixin:
    """The Detector's transaction step (see ``core.detect.Detector``)."""

    def _install_tx(self, plan: dict) -> None:
        """The plan's transaction prefilter (``plan._tx_literals``): per (protocol, side), a block
        scanner per buffer with its literals' rules, and the rules without a fast pattern."""
        self.tx_pref = {}
        for k, entries in plan["tx_pref"].items():
            scanners = []
            for key, exprs, flags, rules in entries:
                db = database(hs.HS_MODE_BLOCK, exprs, flags, self.mpm_cache)
                g = prefilter_group(key)  # its side, readiness and key unpacked: no lookup per transaction
                scanners.append((g, g.side, g.ready, key, BlockScanner(db), rules))
            self.tx_pref[k] = tuple(scanners)
        self.tx_always = plan["tx_always"]
        # per transaction (id) inspected on the current packet: {group key: its buffer} (``TxSpec.match``)
        self.tx_bufs: dict = {}
        self.has_tx = bool(self.tx_pref or self.tx_always)
        self.tx_patterns = plan["tx_patterns"]

    def _tx_cands(self, flow, fd, d: int) -> dict | None:
        """{rule number: [transactions]} to judge on a packet of direction ``d``."""
        app = flow.app
        parser = app.parser
        if parser is None:
            return None
        new = parser.updated()
        if new:
            self._file_pending(fd, parser, new)
        if fd.txp is None or not fd.txp[d]:
            return None
        todo = list(fd.txp[d].values())
        fd.txp[d].clear()
        key = (app.proto, d)
        scanners = self.tx_pref.get(key, ())
        always = self.tx_always.get(key, ())
        if not scanners and not always:
            return None
        out: dict = {}
        done = fd.txa
        bufs = self.tx_bufs
        bufs.clear()  # the buffers got for the last packet's transactions
        for tx in todo:
            cands = set(always)
            record = fd.txprog.get(tx.tx_id)
            memo = record.scans[d] if record is not None else {}
            got = bufs[tx.tx_id] = {}
            self._prefilter_tx(tx, scanners, memo, cands, got)
            if (tx.progress_ts if d == TO_SERVER else tx.progress_tc) >= PROGRESS_COMPLETE:
                memo.clear()  # its side is done: the transaction is not pending in this direction again
            if not cands:
                continue
            seen = done.get(tx.tx_id) if done else None
            for num in cands:
                if seen is None or num not in seen:
                    out.setdefault(num, []).append(tx)
        if not out:
            bufs.clear()
            return None
        return out

    def _prefilter_tx(self, tx, scanners: tuple, memo: dict, cands: set, got: dict) -> None:
        """Add to ``cands`` the rules whose fast pattern is in one of ``tx``'s ready buffers;
        a buffer whose bytes are those of its last scan (``memo``) is not scanned again.  The
        buffers go into ``got`` (by group key), for the candidates' verification."""
        progress = (tx.progress_ts, tx.progress_tc)  # by side: TO_SERVER, TO_CLIENT
        scans = 0
        for g, side, ready, key, scanner, rules in scanners:
            if progress[side] < ready:
                continue
            data = got[key] = g.data(tx)
            if not data:
                continue
            last = memo.get(scanner)  # keyed by the scanner: a rule reload brings other ones
            if last is not None and (last[0] is data or last[0] == data):
                for woken in last[1]:
                    cands.update(woken)
                continue
            scans += 1
            if isinstance(data, tuple):  # a multi-buffer: each item
                woken = [rules[i] for item in data for i in scanner.scan(item)]
                size = sum(map(len, data))
            else:
                woken = [rules[i] for i in scanner.scan(data)]
                size = len(data)
            for nums in woken:
                cands.update(nums)
            if size <= SCAN_MEMO_BYTES:
                memo[scanner] = (data, woken)
            elif last is not None:
                del memo[scanner]
        if scans:
            self.c["tx_scans"] += scans

    @staticmethod
    def _file_pending(fd, parser, txs) -> None:
        """Changed transactions become pending for the directions whose side progressed (as
        Suricata's per-direction inspection flags): a response does not send its request back."""
        if fd.txp is None:
            fd.txp = ({}, {})
            fd.txprog = {}
        prog = fd.txprog
        if len(prog) > TXA_PRUNE:
            held = {t.tx_id for t in parser.txs}
            for tx_id in [t for t in prog if t not in held]:
                del prog[tx_id]
        for tx in txs:
            seen = prog.get(tx.tx_id)
            if seen is None:
                seen = prog[tx.tx_id] = TxSeen()
            ts, tc = tx.progress_ts, tx.progress_tc
            if seen.ts != ts:
                fd.txp[0][tx.tx_id] = tx
            if seen.tc != tc:
                fd.txp[1][tx.tx_id] = tx
            seen.ts = ts
            seen.tc = tc

    def _judge_tx(self, cr, pkt, flow, fd, d: int, tx, pseudo: bool) -> bool:
        spec = cr.tx
        if fd is None or d not in spec.sides or not spec.ready(tx, d):
            return False
        if not self._pre(cr, pkt, flow, fd, d, pkt.payload, pseudo):
            return False
        self.c["tx_inspected"] += 1
        got = self.tx_bufs.get(tx.tx_id)
        if got is None:
            got = self.tx_bufs[tx.tx_id] = {}
        return spec.match(tx, d, self.recursion_limit, got)

    def _alert_tx(self, cr, pkt, flow, fd, to_server, tx, alerts: list) -> None:
        """A rule matched a transaction: flowbits, pass, noalert, thresholds, then one alert."""
        if cr.fb_write:
            write_flowbits(cr, fd)
        done = fd.txa
        if done is None:
            done = fd.txa = {}
        elif len(done) > TXA_PRUNE:
            held = {t.tx_id for t in flow.app.parser.txs}
            for tx_id in [t for t in done if t not in held and t != tx.tx_id]:
                del done[tx_id]
        done.setdefault(tx.tx_id, set()).add(cr.num)
        c = self.c
        if cr.action == "pass":
            fd.passed = True
            if flow.action is None:  # Suricata's FLOW_ACTION_PASS: the flow record's "action"
                flow.action = "pass"
            c["passed_flows"] += 1
            return
        if cr.noalert:
            return
        ts = pkt.ts
        if cr.threshold is not None and not self.thresholds.allow(cr.threshold, cr.key, pkt, fd, ts):
            return
        if cr.dfilter is not None and not self.thresholds.allow(cr.dfilter, cr.key, pkt, fd, ts):
            return
        if len(alerts) >= self.alert_max:
            c["alerts_dropped_max"] += 1
            return
        alerts.append(Alert(pkt, flow, to_server, cr.rule, 0, pkt.payload, "packet", tx))
