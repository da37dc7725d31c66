"""Judging candidates: header and flow checks, flowbits, flowint, xbits, the payload matcher, then
what becomes an alert (noalert, thresholds, one alert per sid per packet, packet-alert-max, pass).

The Detector is a plain class of mixins, in which every ``self.x`` is a dictionary lookup and
every ``self.m()`` a generic call.  Judging is module functions instead (``judge_all`` per
inspected packet, ``judge_tx`` per transaction candidate), which read and count in one typed
record the Detector owns (``Judging``, ``Detector.judging``): C calls and C fields once compiled.
"""

from __future__ import annotations

from weakref import WeakMethod

from mirrorwatch.core.applayer.common import PROGRESS_COMPLETE
from mirrorwatch.core.decode.packet import Packet
from mirrorwatch.core.detect.compile import AddrMatcher, CRule, PortMatcher
from mirrorwatch.core.detect.flowint import holds as flowint_holds
from mirrorwatch.core.detect.payload import compile_matches
from mirrorwatch.core.detect.state import FlowDet
from mirrorwatch.core.detect.stream import data_added, with_gaps
from mirrorwatch.core.detect.tx import TXA_PRUNE
from mirrorwatch.core.detect.txrule import TxSpec, new_bufs
from mirrorwatch.core.events import Alert
from mirrorwatch.core.flows.flow import Flow

TCP = 6


class Judging:
    """What judging reads, typed: the detector's compiled rules, settings and stores (the very
    objects it holds, nothing copied), the payload matchers made so far (rule number -> matcher,
    ``_matcher``) and the judging counters, which the detector reports with its own (``counters``).
    ``crule`` (compiles a rule on its first candidacy) is a weak reference to the detector's method:
    the detector holds this record, and a reference cycle would outlive a rule reload (the engine
    relies on reference counting alone: ``cli.collector``)."""

    __slots__ = ("crules", "crule", "skipped", "thresholds", "xbits", "flowints", "alert_max", "guess_tx",
                 "guess_limit", "recursion_limit", "lookback", "tx_bufs", "matchers", "candidates", "alerts",
                 "alerts_dropped_max", "passed_flows", "tx_inspected")

    def __init__(self, det) -> None:
        self.crules, self.crule, self.skipped = det.crules, WeakMethod(det.crule), det.skipped
        self.thresholds, self.xbits, self.flowints = det.thresholds, det.xbits, det.flowints
        self.alert_max = det.alert_max
        self.guess_tx, self.guess_limit = det.guess_tx, det.guess_limit
        self.recursion_limit, self.lookback = det.recursion_limit, det.lookback
        self.tx_bufs = det.tx_bufs  # the transactions' buffers got for the packet being judged
        self.matchers: dict = {}
        self.candidates = self.alerts = self.alerts_dropped_max = self.passed_flows = self.tx_inspected = 0

    def counters(self) -> dict:
        return {"candidates": self.candidates, "alerts": self.alerts, "alerts_dropped_max": self.alerts_dropped_max,
                "passed_flows": self.passed_flows, "tx_inspected": self.tx_inspected}


def judge_all(j: Judging, pc, sc, pkt, flow, fd, d: int, to_server, chunk, pseudo: bool, tc) -> list:
    """Judge the packet candidates ``pc``, stream candidates ``sc`` (or None) and transaction
    candidates ``tc`` ({rule number: [transactions]} or None) in rule order."""
    crules = j.crules
    payload = pkt.payload
    # Suricata's PKT_STREAM_ADD: the packet's data went into its direction's stream,
    # which the flows room does once the session left 'new' (or for data on a SYN)
    added = pkt.proto == TCP and flow is not None and data_added(flow, d, pkt)
    alerts: list = []
    seen = None  # the sids alerted on this packet, once one is
    spayload = None
    nums = _in_order(pc, sc, tc)
    j.candidates += len(nums)
    for num in nums:
        cr = crules[num]
        if cr is None:
            cr = j.crule()(num)
        if cr.tx is not None:
            if tc is not None:
                _judge_txs(j, cr, tc.get(num), pkt, flow, fd, d, to_server, pseudo, alerts)
            continue
        mode = (1 if num in pc else 0) | (2 if sc is not None and num in sc else 0)
        r = _judge(j, cr, mode, pkt, flow, fd, d, chunk, payload, added, pseudo)
        if r == NO_MATCH:
            continue
        stream = 1 if r >= 0 else 0
        if cr.fb_write and fd is not None:
            write_flowbits(cr, fd)
        if cr.xb_write is not None:
            j.xbits.write(cr.xb_write, pkt)
        if cr.fi_write is not None:
            j.flowints.write(cr.fi_write, fd)
        if cr.action == "pass":
            # Suricata: ip-only rules and stream matches pass the whole flow,
            # packet rules only this packet
            if fd is not None and (cr.kind == "iponly" or stream):
                _pass_flow(j, flow, fd)
            break
        if cr.noalert or seen is not None and cr.key in seen or not _allowed(j, cr, pkt, fd):
            continue
        if seen is None:
            seen = set()
        seen.add(cr.key)
        if stream and fd is not None:
            # stream bytes this alert covered: the rule does not alert on them again (a packet
            # alert does not count: Suricata inspects a packet+stream rule's stream anyway)
            if fd.alerted_upto is None:
                fd.alerted_upto = {}
            fd.alerted_upto[(d, cr.num)] = r  # where the stream match ended
        if len(alerts) >= j.alert_max:
            j.alerts_dropped_max += 1
            continue
        if stream and spayload is None:
            spayload = with_gaps(chunk, fd)
        alerts.append(_alert(j, cr, pkt, flow, fd, d, to_server, stream, spayload if stream else payload, pseudo))
    if tc:
        j.tx_bufs.clear()  # the transactions' buffers are not kept past their packet
    if alerts:
        j.alerts += len(alerts)
        if flow is not None:
            flow.alerted = True
    return alerts


def _in_order(pc, sc, tc) -> list:
    """The rule numbers of ``pc``, ``sc`` and ``tc``'s keys, each once, in rule order (the
    order of the packet's alerts)."""
    if not sc and not tc:
        nums = list(pc)
    elif not pc and not sc:
        nums = list(tc)
    elif not pc and not tc:
        nums = list(sc)
    else:  # candidates of several kinds on one packet
        union = set(pc)
        if sc:
            union.update(sc)
        if tc:
            union.update(tc)
        nums = list(union)
    if len(nums) > 1:
        nums.sort()
    return nums


def _judge_txs(j: Judging, cr: CRule, txs, pkt, flow, fd, d: int, to_server, pseudo: bool, alerts: list) -> None:
    """Application-layer rule ``cr`` on its candidate transactions ``txs`` (or None): on a match,
    its xbits and flowint writes (later rules see them), then its alert (``alert_tx``)."""
    if txs is None:
        return
    for tx in txs:
        if judge_tx(j, cr, pkt, flow, fd, d, tx, pseudo):
            if cr.xb_write is not None:
                j.xbits.write(cr.xb_write, pkt)
            if cr.fi_write is not None:
                j.flowints.write(cr.fi_write, fd)
            alert_tx(j, cr, pkt, flow, fd, to_server, tx, alerts)


def judge_tx(j: Judging, cr: CRule, pkt, flow, fd, d: int, tx, pseudo: bool) -> bool:
    """Application-layer rule ``cr`` matches transaction ``tx`` on this packet of direction ``d``."""
    spec = cr.tx
    if fd is None or not spec.ready(tx, d):
        return False
    if not pre(cr, pkt, flow, fd, d, pkt.payload, pseudo):
        return False
    j.tx_inspected += 1
    tx_id = tx.tx_id
    got = j.tx_bufs.get(tx_id)
    if got is None:
        got = j.tx_bufs[tx_id] = new_bufs()
    return spec.match(tx, d, j.recursion_limit, got)


def alert_tx(j: Judging, cr: CRule, pkt, flow, fd, to_server, tx, alerts: list) -> None:
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
    if cr.action == "pass":
        _pass_flow(j, flow, fd)
        return
    if cr.noalert or not _allowed(j, cr, pkt, fd):
        return
    if len(alerts) >= j.alert_max:
        j.alerts_dropped_max += 1
        return
    alerts.append(Alert(pkt, flow, to_server, cr.rule, 0, pkt.payload, "packet", tx))


def _pass_flow(j: Judging, flow, fd) -> None:
    """A pass rule silences the flow."""
    fd.passed = True
    if flow.action is None:  # Suricata's FLOW_ACTION_PASS: the flow record's "action"
        flow.action = "pass"
    j.passed_flows += 1


def _allowed(j: Judging, cr: CRule, pkt, fd) -> bool:
    """The rule's threshold and detection_filter let this match alert."""
    if cr.threshold is not None and not j.thresholds.allow(cr.threshold, cr.key, pkt, fd, pkt.ts):
        return False
    return cr.dfilter is None or j.thresholds.allow(cr.dfilter, cr.key, pkt, fd, pkt.ts)


def _alert(j: Judging, cr: CRule, pkt, flow, fd, d: int, to_server, stream: int, payload, pseudo: bool):
    """The alert of a packet or stream match, given the transaction detect.guess-applayer-tx picks."""
    a = Alert(pkt, flow, to_server, cr.rule, stream, payload, "flow-timeout" if pseudo else "packet")
    if j.guess_tx and flow is not None and flow.app is not None:
        a.tx = _guess_tx(j, flow, fd, d)
        a.tx_guessed = a.tx is not None and flow.proto == TCP
    return a


def _guess_tx(j: Judging, flow, fd, d: int):
    """Suricata's detect.guess-applayer-tx (DetectRulePacketAppendAlert): the transaction detect
    inspects next in direction ``d`` (the oldest not complete there, else the newest), when it is
    the flow's newest one (IsOnlyTxInDirection), for at most detect.stream-tx-log-limit alerts."""
    parser = flow.app.parser
    txs = parser.txs if parser is not None else None
    if not txs:
        return None
    tx = next((t for t in txs if (t.progress_ts if d == 0 else t.progress_tc) < PROGRESS_COMPLETE), txs[-1])
    if tx is not txs[-1]:
        return None
    logged = fd.guessed
    if logged is None:
        logged = fd.guessed = {}
    n = logged.get(tx.tx_id, 0)
    if n >= j.guess_limit:
        return None
    logged[tx.tx_id] = n + 1
    return tx


def _matcher(j: Judging, cr: CRule):
    """payload.compile_matches for a rule, built on its first candidate packet."""
    try:
        m = compile_matches(cr.matches, j.recursion_limit)
    except ValueError as e:
        j.skipped.append((cr.rule, f"payload: {e}"))
        m = _never
    j.matchers[cr.num] = m
    return m


def _never(buf, ctx=None) -> bool:
    return False


# ``_judge``'s results besides a stream match's end offset (>= 0)
NO_MATCH = -2
PACKET_MATCH = -1


def _judge(j: Judging, cr: CRule, mode: int, pkt, flow, fd, d: int, chunk, payload, added: bool, pseudo: bool) -> int:
    """NO_MATCH, PACKET_MATCH (the packet's payload matched) or, for a match in the stream data
    ``chunk``, the stream offset where the match ended."""
    if not pre(cr, pkt, flow, fd, d, payload, pseudo):
        return NO_MATCH
    if cr.matches is None:
        return PACKET_MATCH
    return _judge_payload(j, cr, mode, fd, d, chunk, payload, added, pseudo)


def pre(cr: CRule, pkt, flow, fd, d: int, payload, pseudo: bool) -> bool:
    """Everything but the payload keywords: protocol, addresses, ports, flow, dsize, flags,
    header keywords, the application protocol, flowbits, flowint conditions."""
    if cr.protos is not None and pkt.proto not in cr.protos:
        return False
    if cr.ipv and pkt.ipv != cr.ipv:
        return False
    src, dst, sp, dp = cr.src, cr.dst, cr.sport, cr.dport
    if src is not None or dst is not None or sp is not None or dp is not None:
        # ports first: a set lookup, cheaper than an address range search
        fwd = ((sp is None or sp.test(pkt.sport)) and (dp is None or dp.test(pkt.dport))
               and (src is None or src.test(pkt.src)) and (dst is None or dst.test(pkt.dst)))
        if not fwd and not (cr.bidir and (sp is None or sp.test(pkt.dport)) and (dp is None or dp.test(pkt.sport))
                            and (src is None or src.test(pkt.dst)) and (dst is None or dst.test(pkt.src))):
            return False
    if cr.needs_flow and flow is None:
        return False  # Suricata's SIG_MASK_REQUIRE_FLOW: flow (not stateless) and flowbits keywords
    if cr.flowspec is not None and flow is not None:
        if cr.to_server and d != 0 or cr.to_client and d != 1:
            return False
        # TCP: the session's state before this packet (a flow-timeout pseudo packet is established)
        est = (fd.est or pseudo) if flow.proto == TCP else flow.state == "established" or fd.est
        if cr.established and not est or cr.not_established and est:
            return False
    if cr.dsize is not None and (pseudo or not cr.dsize.test(len(payload))
                                 or cr.dsize_needs_payload and not payload):
        return False
    if cr.flags is not None and (pseudo or pkt.proto != TCP or not cr.flags.test(pkt.flags)):
        return False
    for check in cr.hdr:
        if not check(pkt, flow, d):
            return False
    if cr.app_proto is not None and (flow is None or flow.app is None or flow.app.proto != cr.app_proto):
        return False
    if cr.app_checks is not None:
        for check in cr.app_checks:
            if not check(flow):
                return False
    if cr.fb_read:
        bits = fd.bits
        for op, names in cr.fb_read:
            if not _flowbits_test(op, names, bits):
                return False
    if cr.fi_read is not None and not flowint_holds(cr.fi_read, fd.ints):
        return False
    return True


def _judge_payload(j: Judging, cr: CRule, mode: int, fd, d: int, chunk, payload, added: bool, pseudo: bool) -> int:
    """``_judge``'s payload step: the stream pieces of ``chunk`` (when ``mode`` has 2), then the
    packet's payload (when it has 1)."""
    m = j.matchers.get(cr.num)
    if m is None:
        m = _matcher(j, cr)
    if mode & 2 and chunk is not None:
        # a stream match counts once: its end must lie past the bytes this rule
        # already alerted on in the stream
        upto = fd.alerted_upto.get((d, cr.num), -1) if fd.alerted_upto else -1
        ctx: dict = {}
        for piece, off in zip(chunk, fd.piece_offs):
            if not m(piece, ctx):
                continue
            end = off + ctx["end"]
            if end <= upto:  # the first match is old: look again just before the new bytes
                cut = upto - off - j.lookback
                if cut <= 0 or not m(piece[cut:], ctx):
                    continue
                end = off + cut + ctx["end"]
                if end <= upto:
                    continue
            return end
    if pseudo or not mode & 1 or cr.stream_only or not payload:
        return NO_MATCH
    if added and cr.req_stream and not cr.req_packet:
        return NO_MATCH
    if m(payload):
        return PACKET_MATCH
    return NO_MATCH


def write_flowbits(cr: CRule, fd) -> None:
    """A matching rule's flowbits set/unset/toggle, applied at match time (later rules see them)."""
    bits = fd.bits
    if bits is None:
        bits = fd.bits = set()
    for op, names in cr.fb_write:
        for nm in names:
            if op == "set":
                bits.add(nm)
            elif op == "unset":
                bits.discard(nm)
            elif nm in bits:
                bits.discard(nm)
            else:
                bits.add(nm)


def _flowbits_test(op: str, names, bits) -> bool:
    if op == "isset":
        return bits is not None and all(n in bits for n in names)
    if op == "isnotset":
        return bits is None or not any(n in bits for n in names)
    if op == "isset_any":
        return bits is not None and any(n in bits for n in names)
    # isnotset_any: at least one of them is not set
    return bits is None or not all(n in bits for n in names)
