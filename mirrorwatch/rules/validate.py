"""Whole-rule checks after every option is read (Suricata's SigValidate*).

- a rule needs a sid; payload keywords (base64_data's too) are bounded; flags only on tcp/ip;
- buffer directions: a rule may not mix to_server-only and to_client-only
  buffers, nor contradict its ``flow:`` direction (SigConsolidateDirection);
- packet-only keywords (dsize, tcp-pkt, flow:no_stream) cannot be combined with
  application-layer buffers;
- Suricata's per-buffer checks on the contents of an untransformed buffer:
  http.host is lower case (no nocase, no upper case letter), http.method has
  no leading / trailing space or tab, http.protocol no space,
  tls.cert_fingerprint is 59 characters with colons and no nocase,
  tls.cert_serial has colons (beyond 2 characters).
"""

from __future__ import annotations

from .buffers import BUFFERS, TC, TS
from .matches import Base64Decode, Content
from .model import Rule
from .options import RuleError
from .state import PAYLOAD

# the payload matcher recurses once per keyword: bound it far above real rules
MAX_PAYLOAD_KEYWORDS = 256
# Suricata's tls.cert_fingerprint form: 20 hex pairs joined by ':'
FINGERPRINT_LEN = 59
_FLOW_OF = {TS: "to_server", TC: "to_client"}


def _host(c: Content) -> str | None:
    if c.nocase:
        return "http.host is lower case: 'nocase' is not allowed"
    if c.pattern.lower() != c.pattern:
        return "http.host is lower case: write the content in lower case"
    return None


def _method(c: Content) -> str | None:
    if c.pattern[:1] in (b" ", b"\t") or c.pattern[-1:] in (b" ", b"\t"):
        return "http.method content with a leading or trailing space or tab"
    return None


def _protocol(c: Content) -> str | None:
    return "http.protocol content with a space" if b" " in c.pattern else None


def _fingerprint(c: Content) -> str | None:
    if len(c.pattern) != FINGERPRINT_LEN or b":" not in c.pattern:
        return "tls.cert_fingerprint content must be 59 characters with ':' delimiters"
    if c.nocase:
        return "tls.cert_fingerprint is lower case: 'nocase' is not allowed"
    return None


def _serial(c: Content) -> str | None:
    if len(c.pattern) > 2 and b":" not in c.pattern:
        return "tls.cert_serial content without ':' delimiters"
    return None


CONTENT_CHECKS = {"http.host": _host, "http.method": _method, "http.protocol": _protocol,
                  "tls.cert_fingerprint": _fingerprint, "tls.cert_serial": _serial}


def validate(rule: Rule) -> None:
    if rule.sid == 0:
        raise RuleError("rule has no sid")
    b64 = next((m.data for m in rule.matches if isinstance(m, Base64Decode)), ())
    if len(rule.matches) + len(b64) > MAX_PAYLOAD_KEYWORDS:
        raise RuleError(f"more than {MAX_PAYLOAD_KEYWORDS} payload keywords")
    if rule.flags is not None and rule.proto not in ("tcp", "ip"):
        raise RuleError(f"flags on a {rule.proto} rule")
    buffers = {m.buffer for m in rule.matches if m.buffer != PAYLOAD}
    if buffers:
        _check_directions(rule, buffers)
        _check_packet_keywords(rule, buffers)
    for m in rule.matches:
        check = CONTENT_CHECKS.get(m.buffer)
        if check is not None and isinstance(m, Content) and not m.transforms:
            problem = check(m)
            if problem:
                raise RuleError(problem)


def _check_directions(rule: Rule, buffers: set[str]) -> None:
    only = {d: sorted(b for b in buffers if BUFFERS[b].direction == d) for d in (TS, TC)}
    if only[TS] and only[TC]:
        raise RuleError(f"rule mixes to_server buffers ({', '.join(only[TS])}) "
                        f"and to_client buffers ({', '.join(only[TC])})")
    flow_dir = rule.flow.direction if rule.flow else None
    for d, names in only.items():
        if names and flow_dir is not None and flow_dir != _FLOW_OF[d]:
            raise RuleError(f"flow:{flow_dir} contradicts {', '.join(names)} ({_FLOW_OF[d]} only)")


def _check_packet_keywords(rule: Rule, buffers: set[str]) -> None:
    packet = ("dsize" if rule.dsize is not None else "tcp-pkt" if rule.tcp_scope == "packet"
              else "flow:no_stream" if rule.flow is not None and rule.flow.no_stream else None)
    if packet:
        raise RuleError(f"{packet} (packet keyword) cannot be combined with {', '.join(sorted(buffers))}")
