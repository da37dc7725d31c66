"""Meta keywords: msg, sid, gid, rev, priority, classtype, reference, metadata, target, tag, noalert."""

from __future__ import annotations

import re

from .model import TagSpec
from .options import NOOPT, OWN_QUOTES, QUOTES_MANDATORY, RuleError, Value
from .values import parse_decimal, unescape_text

# classtype-less default priority (Suricata)
DEFAULT_PRIORITY = 3
PRIORITY_MAX = 255

# Suricata's parse regexes (detect-classtype.c, detect-reference.c); the
# reference text is kept whole (Suricata keeps its prefix of URL characters)
_CLASSTYPE_RE = re.compile(r"^\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*$")
_REFERENCE_RE = re.compile(r'^\s*([A-Za-z0-9]+)\s*,"?\s*"?\s*((?:[a-zA-Z]+://)?[a-zA-Z0-9\-_./?=].*?)"?\s*"?\s*$')
# detect-tag.c: its PARSE_REGEX, DETECT_TAG_MAX_PKTS and defaults
_TAG_RE = re.compile(r"\s*(host|session)\s*(?:,\s*(\d+)\s*,\s*(packets|bytes|seconds)\s*(?:,\s*(src|dst))?\s*)?")
TAG_MAX_PKTS = 256
TAG_METRIC_PACKETS = "packets"
TAG_DEFAULT_DIRECTION = "dst"
U32_MAX = 0xFFFFFFFF


def kw_msg(st, v: Value) -> None:
    st.once("msg")
    st.rule.msg = unescape_text(v.text)


def kw_sid(st, v: Value) -> None:
    st.once("sid")
    st.rule.sid = parse_decimal(v.text, "sid", lo=1)


def kw_gid(st, v: Value) -> None:
    st.rule.gid = parse_decimal(v.text, "gid")


def kw_rev(st, v: Value) -> None:
    st.once("rev")
    st.rule.rev = parse_decimal(v.text, "rev", lo=1)


def kw_priority(st, v: Value) -> None:
    st.rule.priority = parse_decimal(v.text, "priority", lo=1, hi=PRIORITY_MAX)
    st.has_priority = True


def kw_classtype(st, v: Value) -> None:
    m = _CLASSTYPE_RE.match(v.text)
    if not m:
        raise RuleError(f"classtype: bad name {v.text!r}")
    name = m.group(1).lower()
    rule = st.rule
    entry = st.ctx.classification.get(name)
    # Suricata: a second classtype replaces the first only when its priority is higher
    if rule.classtype is not None and (entry is None or entry[1] >= rule.priority or st.has_priority):
        st.warnings.append(f"duplicate classtype '{name}' ignored")
        return
    rule.classtype = name
    if entry is None:
        st.warnings.append(f"unknown classtype '{name}', using default priority {DEFAULT_PRIORITY}")
        return
    rule.category = entry[0]
    if not st.has_priority:
        rule.priority = entry[1]


def kw_reference(st, v: Value) -> None:
    m = _REFERENCE_RE.match(v.text)
    if not m:
        raise RuleError(f"reference: expected 'system,id', got {v.text[:60]!r}")
    st.rule.references.append(f"{m.group(1)},{m.group(2).strip()}")


def kw_metadata(st, v: Value) -> None:
    """``key value`` items separated by commas; items without a value are skipped (Suricata)."""
    for item in v.text.split(","):
        key, _, value = item.strip().partition(" ")
        value = " ".join(value.split())
        if key and value:
            st.rule.metadata.append(f"{key} {value}")


def kw_target(st, v: Value) -> None:
    t = v.text.strip()
    if t not in ("src_ip", "dest_ip"):
        raise RuleError("target must be src_ip or dest_ip")
    st.rule.target = t


def kw_tag(st, v: Value) -> None:
    """tag:session|host[,count,packets|seconds|bytes[,src|dst]] as detect-tag.c parses it: 256
    packets by default (a larger packet count is cut to 256), the destination host by default; a
    direction on a session tag means nothing (Suricata warns)."""
    m = _TAG_RE.fullmatch(v.text)
    if m is None:
        raise RuleError("tag: expected session or host, then optionally count, packets|seconds|bytes, "
                        f"src|dst; got {v.text.strip()!r}")
    kind, count, metric, direction = m.groups()
    n = TAG_MAX_PKTS if count is None else int(count)
    if n > U32_MAX:
        raise RuleError(f"tag: count must be at most {U32_MAX}")
    metric = metric or TAG_METRIC_PACKETS
    if metric == TAG_METRIC_PACKETS:
        n = min(n, TAG_MAX_PKTS)
    if direction and kind == "session":
        st.warnings.append(f"tag: a direction ({direction}) means nothing for a session tag")
    st.rule.tags.append(TagSpec(kind, n, metric, direction or TAG_DEFAULT_DIRECTION))


def kw_noalert(st, v: Value) -> None:
    st.rule.noalert = True


KEYWORDS = {
    "msg": (kw_msg, QUOTES_MANDATORY),
    "sid": (kw_sid, 0),
    "gid": (kw_gid, 0),
    "rev": (kw_rev, 0),
    "priority": (kw_priority, 0),
    "classtype": (kw_classtype, 0),
    "reference": (kw_reference, OWN_QUOTES),
    "metadata": (kw_metadata, 0),
    "target": (kw_target, 0),
    "tag": (kw_tag, 0),
    "noalert": (kw_noalert, NOOPT),
}
