"""Judging candidates: header and flow checks, flowbits, flowint, xbits, the payload matcher, then
what becomes an alert (noalert, thresholds, one alert per sid per packet, packet-alert-max, pass)."""

from __future__ import annotations

import cython

from mirrorwatch.core.applayer.common import PROGRESS_COMPLETE
from mirrorwatch.core.decode.packet import Packet
from mirrorwatch.core.detect.compile import AddrMatcher, CRule, PortMatcher
from mirrorwatch.core.detect.flowint import holds as flowint_holds
from mirrorwatch.core.detect.payload import compile_matches
from mirrorwatch.core.detect.state import FlowDet
from mirrorwatch.core.detect.stream import data_added, with_gaps
from mirrorwatch.core.events import Alert
from mirrorwatch.core.flows.flow import Flow

TCP = 6


class JudgeMixin:
    """The Detector's verification step (see ``core.detect.Detector``)."""

    @cython.locals(cr=CRule, pkt=Packet, flow=Flow, fd=FlowDet, d=cython.int, r=cython.longlong, added=cython.bint,
                   stream=cython.int, c=dict, crules=list)
    def _judge_all(self, pc: set, sc, pkt, flow, fd, d: int, to_server, chunk, pseudo: bool, tc=None) -> list:
        """Judge the packet candidates ``pc``, stream candidates ``sc`` and transaction
        candidates ``tc`` ({rule number: [transactions]}) in rule order."""
        crules = self.crules
        payload = pkt.payload
        # Suricata's PKT_STREAM_ADD: the packet's data went into its direction's stream,
        # which the flows room does once the session left 'new' (or for data on a SYN)
        added = pkt.proto == TCP and flow is not None and data_added(flow, d, pkt)
        alerts: list = []
        seen: set = set()
        spayload = None
        c = self.c
        nums = pc | sc if sc else pc
        if tc:
            nums = nums | tc.keys()
        c["candidates"] += len(nums)
        for num in sorted(nums):
            cr = crules[num]
            if cr is None:
                cr = self.crule(num)
            if cr.tx is not None:
                for tx in tc.get(num, ()) if tc else ():
                    if self._judge_tx(cr, pkt, flow, fd, d, tx, pseudo):
                        if cr.xb_write is not None:
                            self.xbits.write(cr.xb_write, pkt)
                        if cr.fi_write is not None:
                            self.flowints.write(cr.fi_write, fd)
                        self._alert_tx(cr, pkt, flow, fd, to_server, tx, alerts)
                continue
            mode = (1 if num in pc else 0) | (2 if sc and num in sc else 0)
            r = _judge(self, cr, mode, pkt, flow, fd, d, chunk, payload, added, pseudo)
            if r == NO_MATCH:
                continue
            stream = 1 if r >= 0 else 0
            if cr.fb_write and fd is not None:
                write_flowbits(cr, fd)
            if cr.xb_write is not None:
                self.xbits.write(cr.xb_write, pkt)
            if cr.fi_write is not None:
                self.flowints.write(cr.fi_write, fd)
            if cr.action == "pass":
                # Suricata: ip-only rules and stream matches pass the whole flow,
                # packet rules only this packet
                if fd is not None and (cr.kind == "iponly" or stream):
                    fd.passed = True
                    if flow.action is None:  # Suricata's FLOW_ACTION_PASS: the flow record's "action"
                        flow.action = "pass"
                    c["passed_flows"] += 1
                break
            if cr.noalert or cr.key in seen:
                continue
            ts = pkt.ts
            if cr.threshold is not None and not self.thresholds.allow(cr.threshold, cr.key, pkt, fd, ts):
                continue
            if cr.dfilter is not None and not self.thresholds.allow(cr.dfilter, cr.key, pkt, fd, ts):
                continue
            seen.add(cr.key)
            if stream and fd is not None:
                # stream bytes this alert covered: the rule does not alert on them again (a packet
                # alert does not count: Suricata inspects a packet+stream rule's stream anyway)
                if fd.alerted_upto is None:
                    fd.alerted_upto = {}
                fd.alerted_upto[(d, cr.num)] = r  # where the stream match ended
            if len(alerts) >= self.alert_max:
                c["alerts_dropped_max"] += 1
                continue
            if stream and spayload is None:
                spayload = with_gaps(chunk, fd)
            a = Alert(pkt, flow, to_server, cr.rule, stream, spayload if stream else payload,
                      "flow-timeout" if pseudo else "packet")
            if self.guess_tx and flow is not None and flow.app is not None:
                a.tx = self._guess_tx(flow, fd, d)
                a.tx_guessed = a.tx is not None and flow.proto == TCP
            alerts.append(a)
        if tc:
            self.tx_bufs.clear()  # the transactions' buffers are not kept past their packet
        if alerts:
            c["alerts"] += len(alerts)
            if flow is not None:
                flow.alerted = True
        return alerts

    def _guess_tx(self, flow, fd, d: int):
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
        if n >= self.guess_limit:
            return None
        logged[tx.tx_id] = n + 1
        return tx

    def _matcher(self, cr: CRule):
        """payload.compile_matches for a rule, built on its first candidate packet."""
        try:
            m = compile_matches(cr.matches, self.recursion_limit)
        except ValueError as e:
            self.skipped.append((cr.rule, f"payload: {e}"))
            m = _never
        self._matchers[cr.num] = m
        return m


def _never(buf, ctx=None) -> bool:
    return False


# ``_judge``'s results besides a stream match's end offset (>= 0)
NO_MATCH = -2
PACKET_MATCH = -1


def _judge(det, cr: CRule, mode: int, pkt, flow, fd, d: int, chunk, payload, added: bool, pseudo: bool) -> int:
    """NO_MATCH, PACKET_MATCH (the packet's payload matched) or, for a match in the stream data
    ``chunk``, the stream offset where the match ended."""
    if not pre(cr, pkt, flow, fd, d, payload, pseudo):
        return NO_MATCH
    if cr.matches is None:
        return PACKET_MATCH
    return _judge_payload(det, cr, mode, fd, d, chunk, payload, added, pseudo)


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


def _judge_payload(det, cr: CRule, mode: int, fd, d: int, chunk, payload, added: bool, pseudo: bool) -> int:
    """``_judge``'s payload step: the stream pieces of ``chunk`` (when ``mode`` has 2), then the
    packet's payload (when it has 1)."""
    m = det._matchers.get(cr.num)
    if m is None:
        m = det._matcher(cr)
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
                cut = upto - off - det.lookback
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


@cython.locals(cr=CRule)
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
