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

A scan's result depends on the buffer's bytes alone: each buffer's database
remembers, for buffers up to ``SCAN_MEMO_BYTES``, which rules the literals in
given bytes woke (``TxScanner.known``, shared by every transaction, bounded by
``detect.tx-scan-cache-bytes``).  A transaction inspected again at a later
progress step (request line, then headers, then body), or a request with the
method, host or headers of an earlier one, gets its candidates without a scan;
only new bytes are scanned.  Bytes too long to be remembered are scanned without
being looked up (hashing them would cost about what their scan does).  Bytes are
compared rather than assumed settled once ready: an interim 1xx response's status
line and trailers after a chunked body do change a buffer.  A buffer shorter than
its database's shortest literal is not scanned at all.  A buffer joined from
parts the transaction keeps (``http.start``, ``http.message``: the start line,
the header block, the body) is looked up by its parts instead
(``TxScanner.by_parts``): equal parts make equal bytes, a bytes object keeps its
hash (so each part is hashed once, also for its own buffer's lookup), and the
buffer is joined only to be scanned.

A body is scanned once per side: where a side prefilters both ``file.data`` and
``http.message`` (untransformed), the ``file.data`` database also holds the
message's literals (``shared_body``), so the body's scan finds those of them in
the body; the message's database then scans only the start line, the header
block and as much of the body as a literal can reach into from them
(``TxScanner.reach``: its longest literal less a byte).  Every literal of the
message lies in the body, in that head, or across their border, so the two scans
find what scanning the body and the whole message did, and no more.

The buffers a packet's inspection gets are kept until its candidates are judged
(``tx_bufs``: per transaction a list by group slot, ``txrule.new_bufs``): a
candidate's verification takes its buffers from there, or makes one not got yet
(a joined buffer its memo knew), as Suricata makes a transaction's inspection
buffer once per detection run, whichever prefilter engine or rule asks for it
first.
"""

from __future__ import annotations

import cython
import hyperscan as hs

from mirrorwatch.core.applayer.common import TO_CLIENT, TO_SERVER
from mirrorwatch.core.detect.buffers import MESSAGE
from mirrorwatch.core.detect.hsdb import BlockScanner, database, literal_length
from mirrorwatch.core.detect.state import FlowDet
from mirrorwatch.core.detect.txrule import new_bufs, prefilter_group, transformed

TXA_PRUNE = 64  # transactions remembered per flow before the ones the parser let go are forgotten
# buffers up to this size are remembered with the rules their literals woke (a request's line and
# headers); a longer one (a body, a whole message) is scanned each time it is inspected
SCAN_MEMO_BYTES = 4096
BODY = "file.data"  # the buffer whose scan also serves the message's literals in the body (``shared_body``)


class TxSeen:
    """What detect remembers of one transaction: its progress when it was last filed as pending."""

    __slots__ = ("tc", "ts")

    def __init__(self) -> None:
        self.ts = self.tc = -1


class TxScanner:
    """One buffer of a transaction prefilter: the buffer (``group``: a ``txrule.Group`` without
    keywords; its slot, side, readiness, getter and transforms unpacked), the block scanner of its
    literals and the rule tuples each literal wakes.  ``shortest``: the length of its shortest
    literal; a buffer shorter than that holds none and is not scanned.  ``known``: bytes scanned
    (a tuple for a multi-buffer; the parts for a ``by_parts`` buffer) -> the rule tuples their
    literals woke, up to ``limit`` bytes of buffers in all (``known_bytes``); full, it starts
    over.  ``memo_max``: the longest buffer kept there (``SCAN_MEMO_BYTES``, or ``limit`` if
    less); longer ones are not even looked up.  ``by_parts``: an untransformed buffer joined from
    parts (``buffers.Getter.parted``: a start line and header block...), looked up by its parts.
    ``reach``: -1, or for a message whose body another scanner covers (``shared_body``) the bytes
    of the body scanned after its head (a literal crossing from the head into the body ends there)."""

    __slots__ = ("by_parts", "get", "group", "known", "known_bytes", "limit", "memo_max", "reach", "ready",
                 "rules", "scanner", "shortest", "side", "slot", "transforms")

    def __init__(self, group, scanner: BlockScanner, rules: tuple, shortest: int, limit: int,
                 reach: int = -1) -> None:
        self.group = group
        self.slot = group.slot
        self.side = group.side
        self.ready = group.ready
        self.get = group.get
        self.transforms = group.transforms
        self.by_parts = group.get.parted and not group.transforms
        self.scanner = scanner
        self.rules = rules
        self.shortest = shortest
        self.known: dict = {}
        self.known_bytes = 0
        self.limit = limit
        self.memo_max = min(SCAN_MEMO_BYTES, limit)
        self.reach = reach

    def remember(self, key, size: int, woken: list) -> None:
        """Keep what scanning the buffer ``key`` stands for (``size`` bytes, at most ``memo_max``) woke."""
        if self.known_bytes + size > self.limit:
            self.known.clear()
            self.known_bytes = 0
        self.known[key] = woken
        self.known_bytes += size


class TxMixin:
    """The Detector's transaction step (see ``core.detect.Detector``)."""

    def _install_tx(self, plan: dict) -> None:
        """The plan's transaction prefilter (``plan._tx_literals``): per (protocol, side), a block
        scanner per buffer with its literals' rules, and the rules without a fast pattern."""
        self.tx_pref = {}
        limit = self.settings["detect.tx-scan-cache-bytes"]
        for k, entries in plan["tx_pref"].items():
            scanners = []
            entries, reach = shared_body(entries)
            for key, exprs, flags, rules in entries:
                db = database(hs.HS_MODE_BLOCK, exprs, flags, self.mpm_cache)
                shortest = min(map(literal_length, exprs))
                scanners.append(TxScanner(prefilter_group(key), BlockScanner(db), rules, shortest, limit,
                                          reach.get(key, -1)))
            self.tx_pref[k] = tuple(scanners)
        self.tx_always = plan["tx_always"]
        # per transaction (id) inspected on the current packet: its buffers by group slot
        # (``txrule.new_bufs``, ``TxSpec.match``)
        self.tx_bufs: dict = {}
        self.has_tx = bool(self.tx_pref or self.tx_always)
        self.tx_patterns = plan["tx_patterns"]

    @cython.locals(fd=FlowDet, d=cython.int, out=dict, bufs=dict, got=list, cands=set, todo=list)
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
            got = bufs[tx.tx_id] = new_bufs()
            scans = prefilter_tx(tx, scanners, cands, got)
            if scans:
                self.c["tx_scans"] += scans
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


def prefilter_tx(tx, scanners: tuple, cands: set, got: list) -> int:
    """Add to ``cands`` the rules whose fast pattern is in one of ``tx``'s ready buffers; returns
    the scans made.  Bytes their database knows (``TxScanner.known``) are not scanned again, nor
    a buffer shorter than its shortest literal; a buffer too long to be remembered is not looked
    up (hashing it would cost about what its scan does).  The buffers go into ``got`` (by group
    slot: ``txrule.new_bufs``), for the candidates' verification; a ``by_parts`` buffer is looked
    up by its parts (hashed once, when their own buffers are) and joined only to be scanned: on
    a hit it is left for a candidate's verification to make."""
    ts = tx.progress_ts
    tc = tx.progress_tc
    scans = 0
    for s in scanners:
        if (tc if s.side else ts) < s.ready:
            continue
        data = None
        if s.by_parts:
            key = s.get.parts(tx)
            if key is None:
                got[s.slot] = None
                continue
            if s.reach >= 0:  # the body's scanner found the literals within it
                key = (key[0], key[1], key[2][:s.reach])
            size = s.get.size(key)
            memo = size <= s.memo_max
        else:
            key = data = s.get.fetch(tx)
            if s.transforms and data is not None:
                key = data = transformed(s.transforms, data)
            got[s.slot] = data
            if not data:
                continue
            size = _size(data)
            memo = (type(data) is tuple or type(data) is bytes) and size <= s.memo_max
        woken = s.known.get(key) if memo else None
        if woken is None:
            if data is None:
                data = s.get.join(key)
                if s.reach < 0:  # the whole buffer: kept for the candidates' verification
                    got[s.slot] = data
            woken = []
            scans += _scan(s, data, size, woken)
            if memo:
                s.remember(key, size, woken)
        for nums in woken:
            cands.update(nums)
    return scans


def shared_body(entries: tuple) -> tuple[list, dict]:
    """A side's prefilter entries (group key, expressions, flags, rule tuples) with the body
    scanned once: where both an untransformed ``file.data`` and ``http.message`` are there, the
    former also gets the latter's literals (with their rules), and the message scans its body
    only as far as its longest literal can reach from the head.  Returns the entries and
    {message key: reach}."""
    by_key = {e[0]: e for e in entries}
    reach = {}
    for side in (TO_SERVER, TO_CLIENT):
        body = by_key.get((BODY, side, ()))
        msg = by_key.get((MESSAGE, side, ()))
        if body is not None and msg is not None:
            by_key[body[0]] = (body[0], body[1] + msg[1], body[2] + msg[2], body[3] + msg[3])
            reach[msg[0]] = max(map(literal_length, msg[1])) - 1
    return list(by_key.values()), reach


def _size(data) -> int:
    """The bytes of a buffer (the sum of its items' for a multi-buffer)."""
    if type(data) is not tuple:
        return len(data)
    size = 0
    for item in data:
        size += len(item)
    return size


def _scan(s: TxScanner, data, size: int, woken: list) -> int:
    """Append to ``woken`` the rule tuples of the literals ``s`` finds in ``data`` (``size``
    bytes; each item of a multi-buffer on its own), scanning what can hold a literal; returns the
    scans made."""
    shortest = s.shortest
    if type(data) is not tuple:
        if size < shortest:
            return 0
        _wake(s, data, woken)
        return 1
    scans = 0
    for item in data:
        if len(item) >= shortest:
            scans += 1
            _wake(s, item, woken)
    return scans


def _wake(s: TxScanner, data, woken: list) -> None:
    """Append to ``woken`` the rule tuples of the literals ``s`` finds in ``data``."""
    rules = s.rules
    for i in s.scanner.scan(data):
        woken.append(rules[i])
