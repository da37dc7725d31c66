"""Payload keywords: content and its modifiers, pcre, isdataat, bsize, pkt_data, prefilter.

Each keyword lands in the current buffer (``ParseState.current``): the
payload, or the sticky buffer set before it with its transforms.
"""

from __future__ import annotations

import re

from .buffers import same_list
from .matches import Bsize, Content, IsDataAt, Pcre
from .options import (
    NEGATION,
    NOOPT,
    OPTIONAL,
    OWN_QUOTES,
    QUOTES_MANDATORY,
    QUOTES_OPTIONAL,
    RuleError,
    Value,
)
from .pcre import (
    BUILTIN_LIMITS,
    PcreError,
    UnsupportedPcre,
    compile_pcre,
    parse_flags,
    split_pcre,
)
from .state import PAYLOAD
from .values import U32_MAX, parse_cmp, parse_content, parse_int, split_args

VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_CHOP_RE = re.compile(r"^(\d+)\s*,\s*(\d+)$")


def need_content(st, keyword: str) -> Content:
    c = st.last_content
    if c is None:
        raise RuleError(f"'{keyword}' needs a preceding content")
    return c


def num_or_var(st, text: str | None, what: str, lo: int | None = None) -> int | str:
    """A number, or the name of a byte_extract / byte_math variable defined earlier."""
    if text is None:
        raise RuleError(f"'{what}' needs a value")
    t = text.strip()
    if VAR_RE.match(t):
        if t not in st.vars:
            raise RuleError(f"{what}: unknown byte_extract variable '{t}'")
        return t
    return parse_int(t, what, lo=lo)


def kw_content(st, v: Value) -> None:
    st.add(Content(pattern=parse_content(v.text), negated=v.negated))


def kw_nocase(st, v: Value) -> None:
    need_content(st, "nocase").nocase = True


def kw_rawbytes(st, v: Value) -> None:
    c = need_content(st, "rawbytes")
    if c.buffer != PAYLOAD:
        raise RuleError(f"rawbytes on a content in '{c.buffer}'")
    c.rawbytes = True


def _content_modifier(attr: str, lo: int | None, at_least_pattern: bool):
    """offset/depth/distance/within: a number or byte_extract variable on the last content.

    ``at_least_pattern``: depth and within shorter than the pattern can never
    match; Suricata refuses such rules and so do we.
    """

    def handler(st, v: Value) -> None:
        c = need_content(st, attr)
        if c.startswith:
            raise RuleError(f"startswith cannot be mixed with {attr}")
        n = num_or_var(st, v.text, attr, lo=lo)
        if at_least_pattern and isinstance(n, int) and n < len(c.pattern):
            raise RuleError(f"{attr} {n} is smaller than the content length {len(c.pattern)}")
        if getattr(c, attr) is not None:
            raise RuleError(f"content has more than one '{attr}'")
        setattr(c, attr, n)
        if (c.offset is not None or c.depth is not None) and (c.distance is not None or c.within is not None):
            raise RuleError("content mixes absolute (offset/depth) and relative (distance/within) modifiers")

    return handler


def kw_fast_pattern(st, v: Value) -> None:
    c = need_content(st, "fast_pattern")
    c.fast_pattern = True
    if v.text is None:
        return
    t = v.text.strip().lower()
    if t == "only":
        c.fast_pattern_only = True
        return
    m = _CHOP_RE.match(t)
    if not m:
        raise RuleError(f"fast_pattern: bad value {v.text!r} (use 'only' or 'offset,length')")
    off, ln = int(m.group(1)), int(m.group(2))
    if ln == 0 or off + ln > len(c.pattern):
        raise RuleError(f"fast_pattern {off},{ln} lies outside the content")
    c.fast_pattern_chop = (off, ln)


def kw_startswith(st, v: Value) -> None:
    c = need_content(st, "startswith")
    if c.offset is not None or c.depth is not None or c.distance is not None or c.within is not None:
        raise RuleError("startswith cannot be mixed with offset/depth/distance/within")
    c.startswith = True


def kw_endswith(st, v: Value) -> None:
    need_content(st, "endswith").endswith = True


def kw_pcre(st, v: Value) -> None:
    try:
        regex, letters = split_pcre(v.text)
        flags = parse_flags(letters, regex)
        limits = st.ctx.pcre_limits if flags.override_limits else BUILTIN_LIMITS
        rx = compile_pcre(regex, flags, limits)
    except UnsupportedPcre as e:
        raise RuleError(f"unsupported keyword '{e.feature}'") from None
    except PcreError as e:
        raise RuleError(f"pcre {v.text[:60]!r}: {e}") from None
    p = Pcre(source=regex, flags=letters, regex=rx, negated=v.negated, relative=flags.relative,
             anchored=flags.anchored, rawbytes=flags.rawbytes)
    target = None
    if flags.buffer is not None:
        if st.sticky is not None and not same_list(st.sticky, flags.buffer):
            raise RuleError(f"pcre modifier for '{flags.buffer}' while sticky buffer '{st.sticky}' is set")
        if st.sticky is None:
            st.set_app_proto("http", f"pcre /{letters}")
            target = (flags.buffer, ())
    where = target or st.current()
    if flags.relative and st.sticky is None and not st.has_previous(*where):
        raise RuleError("pcre with /R needs a preceding content or pcre in the same buffer")
    st.add(p, where)


def kw_isdataat(st, v: Value) -> None:
    args = split_args(v.text, "isdataat")
    first = args[0]
    neg = first.startswith("!")
    if neg:
        first = first[1:].strip()
    d = IsDataAt(offset=num_or_var(st, first, "isdataat", lo=0), negated=neg)
    for opt in args[1:]:
        o = opt.lower()
        if o == "relative":
            d.relative = True
        elif o == "rawbytes":
            d.rawbytes = True
        else:
            raise RuleError(f"isdataat: unknown option {opt!r}")
    st.add(d, st.relative_target(d.relative))


def bsize_value(text: str | None, what: str, limit: int) -> Bsize:
    op, a, b = parse_cmp(text, what, limit)
    if op == "!<>":
        raise RuleError(f"{what}: negated range not supported")
    return Bsize(op, a, b)


def kw_bsize(st, v: Value) -> None:
    if st.sticky is None:
        raise RuleError("bsize needs a sticky buffer")
    st.add(bsize_value(v.text, "bsize", U32_MAX))


def kw_pkt_data(st, v: Value) -> None:
    st.reset_sticky()
    st.last_content = None


def kw_prefilter(st, v: Value) -> None:
    """prefilter: a hint for Suricata's prefilter engine; the payload prefilter is detect's choice."""
    st.rule.extra["prefilter"] = True


KEYWORDS = {
    "content": (kw_content, QUOTES_MANDATORY | NEGATION),
    "nocase": (kw_nocase, NOOPT),
    "rawbytes": (kw_rawbytes, NOOPT),
    "offset": (_content_modifier("offset", 0, False), 0),
    "depth": (_content_modifier("depth", 1, True), 0),
    "distance": (_content_modifier("distance", None, False), 0),
    "within": (_content_modifier("within", 1, True), 0),
    "fast_pattern": (kw_fast_pattern, OPTIONAL),
    "startswith": (kw_startswith, NOOPT),
    "endswith": (kw_endswith, NOOPT),
    "pcre": (kw_pcre, QUOTES_OPTIONAL | NEGATION | OWN_QUOTES),
    "isdataat": (kw_isdataat, 0),
    "bsize": (kw_bsize, 0),
    "pkt_data": (kw_pkt_data, NOOPT),
    "prefilter": (kw_prefilter, NOOPT),
}
