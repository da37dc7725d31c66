"""Suricata/Snort rule text -> ``Rule`` objects.

One rule is ``action proto src sport direction dst dport (key:value; key; ...)``.
``rules.options`` splits it exactly as Suricata does; each keyword's handler
(``rules.keywords.TABLE``) fills the Rule through a ``ParseState``;
``rules.validate`` checks the whole rule.  Anything the engine cannot evaluate
raises ``RuleError`` with the reason ``unsupported keyword 'x'`` /
``unsupported protocol 'x'``, so the loader reports it and carries on with the
next rule: one bad rule never stops the others.
"""

from __future__ import annotations

import re

from .addresses import ExprError, HeaderVars
from .buffers import APP_PROTOCOLS, OTHER_APP_PROTOCOLS
from .keywords import TABLE, is_unsupported
from .model import Rule
from .options import RuleError, check_text, prepare, split_options, split_rule
from .pcre import DEFAULT_MATCH_LIMIT, DEFAULT_MATCH_LIMIT_RECURSION, PcreLimits
from .state import ParseState
from .validate import validate

__all__ = ["RuleContext", "RuleError", "parse_rule", "split_options", "split_rule"]

ACTIONS = frozenset(("alert", "pass", "drop", "reject", "rejectsrc", "rejectdst", "rejectboth"))

# rule protocol -> (proto, ipv, tcp_scope).  Suricata meanings: tcp-pkt matches
# only individual packets' payload, tcp-stream only the reassembled stream;
# ipv4/ipv6 are 'ip' restricted to one IP version; 'icmp' covers ICMPv4 and
# ICMPv6 (Suricata), icmpv4/icmpv6 one of them.
PROTOCOLS = {
    "tcp": ("tcp", 0, None),
    "tcp-pkt": ("tcp", 0, "packet"),
    "tcp-stream": ("tcp", 0, "stream"),
    "udp": ("udp", 0, None),
    "icmp": ("icmp", 0, None),
    "icmpv4": ("icmp", 4, None),
    "icmpv6": ("icmpv6", 6, None),
    "ip": ("ip", 0, None),
    "ipv4": ("ip", 4, None),
    "ip4": ("ip", 4, None),
    "ipv6": ("ip", 6, None),
    "ip6": ("ip", 6, None),
    "pkthdr": ("pkthdr", 0, None),  # every packet, IP or not (Suricata's decoder-events.rules)
}
PORTED = ("tcp", "udp")
_SID_RE = re.compile(r"(?:^|;)\s*sid\s*:\s*(\d+)\s*(?:;|$)")


class RuleContext:
    """What a rule needs from its rule set: variables, classification, pcre limits.

    Settings read: ``vars.address-groups.*``, ``vars.port-groups.*``,
    ``pcre.match-limit`` and ``pcre.match-limit-recursion`` (the limits of
    pcre keywords with the O flag; defaults 3500 / 1500 as Suricata's).
    """

    def __init__(self, settings, classification: dict[str, tuple[str, int]]):
        self.vars = HeaderVars(settings.address_groups, settings.port_groups)
        self.classification = classification
        get = getattr(settings, "get", None)
        if get is None:
            self.pcre_limits = PcreLimits()
        else:
            self.pcre_limits = PcreLimits(int(get("pcre.match-limit", DEFAULT_MATCH_LIMIT)),
                                          int(get("pcre.match-limit-recursion", DEFAULT_MATCH_LIMIT_RECURSION)))


def parse_rule(text: str, ctx: RuleContext, file: str = "", line: int = 0) -> tuple[Rule, list[str]]:
    """Parse one rule.  Returns (rule, warnings); raises ``RuleError`` with
    ``.sid`` set (when known) for a rule that cannot be loaded."""
    sid = None
    try:
        check_text(text)
        tokens, body = split_rule(text)
        m = _SID_RE.search(body)
        sid = int(m.group(1)) if m else None
        opts = split_options(body)
        rule = _header(tokens, ctx, text, file, line)
        warnings: list[str] = []
        _options(rule, opts, ctx, warnings)
        return rule, warnings
    except RuleError as e:
        e.sid = sid
        raise
    except ExprError as e:
        err = RuleError(str(e))
        err.sid = sid
        raise err from None


def _protocol(word: str) -> tuple[str, int, str | None, str | None, tuple[str, ...]]:
    """Header protocol -> (proto, ipv, tcp_scope, app_proto, transport)."""
    w = word.lower()
    if w in PROTOCOLS:
        return PROTOCOLS[w] + (None, ())
    if w in APP_PROTOCOLS:
        app, transport = APP_PROTOCOLS[w]
        return (transport[0] if len(transport) == 1 else "ip", 0, None, app, transport)
    base = w.split(":")[0]
    if base in APP_PROTOCOLS or base in OTHER_APP_PROTOCOLS or base in PROTOCOLS:
        raise RuleError(f"unsupported protocol '{w}'")
    raise RuleError(f"unknown protocol '{word}'")


def _header(tokens: list[str], ctx: RuleContext, text: str, file: str, line: int) -> Rule:
    if not tokens:
        raise RuleError("missing rule header")
    action = tokens[0].lower()
    if action not in ACTIONS:
        raise RuleError(f"unknown action '{tokens[0]}'")
    if len(tokens) < 2:
        raise RuleError("missing protocol")
    proto, ipv, scope, app_proto, transport = _protocol(tokens[1])
    if len(tokens) != 7:
        raise RuleError(f"header needs 'action proto src sport direction dst dport', got {len(tokens)} fields")
    direction = tokens[4]
    if direction not in ("->", "<>"):
        raise RuleError(f"bad direction {direction!r} (use -> or <>)")
    hv = ctx.vars
    rule = Rule(action=action, proto=proto, src=hv.address(tokens[2]), sport=hv.ports(tokens[3]),
                direction=direction, dst=hv.address(tokens[5]), dport=hv.ports(tokens[6]),
                ipv=ipv, tcp_scope=scope, app_proto=app_proto, transport=transport,
                src_negated=hv.address_negated(tokens[2]), dst_negated=hv.address_negated(tokens[5]),
                file=file, line=line, raw=text)
    if proto not in PORTED and app_proto is None and not (rule.sport.any and rule.dport.any):
        # Suricata accepts ports on portless protocols and ignores them
        rule.extra["ports_ignored"] = True
    return rule


def _options(rule: Rule, opts: list[tuple[str, str | None]], ctx: RuleContext, warnings: list[str]) -> None:
    st = ParseState(rule, ctx, warnings)
    for key, raw in opts:
        spec = TABLE.get(key)
        if spec is None:
            raise RuleError(f"unsupported keyword '{key}'" if is_unsupported(key) else f"unknown keyword '{key}'")
        handler, flags = spec
        handler(st, prepare(key, raw, flags, TABLE))
    st.finish()
    validate(rule)
