"""Judging candidates: header and flow checks, flowbits, the payload matcher, then what
becomes an alert (noalert, thresholds, one alert per sid per packet, packet-alert-max, pass)."""

from __future__ import annotations

from mirrorwatch.core.detect.compile import CRule
from mirrorwatch.core.detect.payload import compile_matches
from mirrorwatch.core.detect.stream import data_added, with_gaps
from mirrorwatch.core.events import Alert

TCP = 6


class JudgeMixin:
    """The Detector's verification step (see ``core.detect.Detector``)."""

    def _judge_all(self, pc: set, sc, pkt, flow, fd, d: int, to_server, chunk, pseudo: bool) -> list:
        """Judge the packet candidates ``pc`` and stream candidates ``sc`` in rule order."""
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
        c["candidates"] += len(nums)
        for num in sorted(nums):
            cr = crules[num]
            mode = (1 if num in pc else 0) | (2 if sc and num in sc else 0)
            stream = self._judge(cr, mode, pkt, flow, fd, d, chunk, payload, added, pseudo)
            if stream is None:
                continue
            if cr.fb_write and fd is not None:
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
            if cr.action == "pass":
                # Suricata: ip-only rules and stream matches pass the whole flow,
                # packet rules only this packet
                if fd is not None and (cr.kind == "iponly" or stream):
                    fd.passed = True
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
            if cr.req_stream and fd is not None and (stream or added):
                # stream bytes this alert covered: the rule does not alert on them again
                if fd.alerted_upto is None:
                    fd.alerted_upto = {}
                fd.alerted_upto[(d, cr.num)] = self._match_end if stream else flow.streams[d].off
            if len(alerts) >= self.alert_max:
                c["alerts_dropped_max"] += 1
                continue
            if stream and spayload is None:
                spayload = with_gaps(chunk, fd)
            a = Alert(pkt, flow, to_server, cr.rule, stream, spayload if stream else payload,
                      "flow-timeout" if pseudo else "packet")
            alerts.append(a)
        if alerts:
            c["alerts"] += len(alerts)
            if flow is not None:
                flow.alerted = True
        return alerts

    def _judge(self, cr: CRule, mode: int, pkt, flow, fd, d: int, chunk, payload, added: bool, pseudo: bool):
        """None when the rule does not match, else the alert's stream flag (0/1)."""
        if cr.protos is not None and pkt.proto not in cr.protos:
            return None
        if cr.ipv and pkt.ipv != cr.ipv:
            return None
        src, dst, sp, dp = cr.src, cr.dst, cr.sport, cr.dport
        if src is not None or dst is not None or sp is not None or dp is not None:
            # ports first: a set lookup, cheaper than an address range search
            fwd = ((sp is None or sp(pkt.sport)) and (dp is None or dp(pkt.dport))
                   and (src is None or src(pkt.src)) and (dst is None or dst(pkt.dst)))
            if not fwd and not (cr.bidir and (sp is None or sp(pkt.dport)) and (dp is None or dp(pkt.sport))
                                and (src is None or src(pkt.dst)) and (dst is None or dst(pkt.src))):
                return None
        if cr.needs_flow and flow is None:
            return None  # Suricata's SIG_MASK_REQUIRE_FLOW: flow (not stateless) and flowbits keywords
        if cr.flowspec is not None and flow is not None:
            if cr.to_server and d != 0 or cr.to_client and d != 1:
                return None
            est = flow.state == "established" or fd.est
            if cr.established and not est or cr.not_established and est:
                return None
        if cr.dsize is not None and (pseudo or not cr.dsize.test(len(payload))
                                     or cr.dsize_needs_payload and not payload):
            return None
        if cr.flags is not None and (pseudo or pkt.proto != TCP or not cr.flags.test(pkt.flags)):
            return None
        for check in cr.hdr:
            if not check(pkt, flow, d):
                return None
        if cr.fb_read:
            bits = fd.bits
            for op, names in cr.fb_read:
                if not _flowbits_test(op, names, bits):
                    return None
        if cr.matches is None:
            return 0
        m = self._matchers.get(cr.num)
        if m is None:
            m = self._matcher(cr)
        if mode & 2 and chunk is not None:
            # a stream match counts once: its end must lie past the bytes this rule
            # already alerted on (an earlier stream match, or the packet carrying them)
            upto = fd.alerted_upto.get((d, cr.num), -1) if fd.alerted_upto else -1
            ctx: dict = {}
            for piece, off in zip(chunk, fd.piece_offs):
                if not m(piece, ctx):
                    continue
                end = off + ctx["end"]
                if end <= upto:  # the first match is old: look again just before the new bytes
                    cut = upto - off - self.lookback
                    if cut <= 0 or not m(piece[cut:], ctx):
                        continue
                    end = off + cut + ctx["end"]
                    if end <= upto:
                        continue
                self._match_end = end
                return 1
        if pseudo or not mode & 1 or cr.stream_only or not payload:
            return None
        if added and cr.req_stream and not cr.req_packet:
            return None
        if m(payload):
            return 0
        return None

    def _matcher(self, cr: CRule):
        """payload.compile_matches for a rule, built on its first candidate packet."""
        try:
            m = compile_matches(cr.matches, self.recursion_limit, self.pcre_timeout)
        except ValueError as e:
            self.skipped.append((cr.rule, f"payload: {e}"))
            m = _never
        self._matchers[cr.num] = m
        return m


def _never(buf, ctx=None) -> bool:
    return False


def _flowbits_test(op: str, names, bits) -> bool:
    if op == "isset":
        return bits is not None and all(n in bits for n in names)
    if op == "isnotset":
        return bits is None or not any(n in bits for n in names)
    if op == "isset_any":
        return bits is not None and any(n in bits for n in names)
    # isnotset_any: at least one of them is not set
    return bits is None or not all(n in bits for n in names)
