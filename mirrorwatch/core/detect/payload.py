"""Payload keywords of one rule over one buffer, with Suricata's semantics.

``compile_matches(rule.matches)`` turns the keyword list (content, pcre,
byte_test, byte_jump, byte_extract, byte_math, isdataat, bsize, base64_decode
with its base64_data keywords: ``payload_b64``) into one
callable ``Matcher``: ``fn(buf, ctx=None) -> bool``; ``match(matches, buf, ctx)`` compiles
once per list and calls it.  It is called after the hyperscan prefilter hit,
so it must be exact, not fast-and-loose.

The semantics follow Suricata's DetectEngineContentInspection:

- a cursor (``buffer_offset``) starts at 0; a content match moves it to the
  end of the match, pcre to the end of its match, byte_jump to the jump
  target, byte_extract/byte_math past the bytes read;
- absolute content searches ``[offset, offset+depth)``; relative content
  (distance/within) searches from ``cursor+distance`` up to
  ``cursor+distance+within``;
- when a later keyword fails, an earlier content is retried at its next
  occurrence (recursive inspection) — but only when a later keyword depends on
  it through ``within`` or a relative pcre/byte/isdataat (Suricata's
  WITHIN_NEXT / RELATIVE_NEXT), and a pcre is retried at its next match when
  any relative keyword follows;
- a failing keyword that does not depend on earlier matches (absolute content,
  absolute isdataat, a negated stand-alone content) ends the inspection at once
  ("discontinue"), since no retry of an earlier keyword can change it;
- every keyword evaluation counts against ``recursion_limit`` (Suricata's
  ``inspection_recursion_limit``, setting ``detect.inspection-recursion-limit``);
  reaching it is a no-match;
- one pcre search is bounded by PCRE2's match and depth limits (Suricata's,
  see ``rules.pcre``): reaching them is a no-match, counted in
  ``rules.pcre.STATS``; the result is the same on any machine.

``buf`` is bytes or bytearray, inspected as a whole from offset 0.  When a
dict is passed as ``ctx``, a successful match stores ``ctx['end']`` (the cursor
after the last keyword: where the matched data ends) and ``ctx['vars']`` (the
byte_extract/byte_math values).
"""

from __future__ import annotations

from mirrorwatch.core.detect.payload_bytes import (
    c_bsize,
    c_byte_extract,
    c_byte_jump,
    c_byte_math,
    c_byte_test,
    c_isdataat,
)
from mirrorwatch.core.detect.payload_b64 import c_base64_decode
from mirrorwatch.core.detect.payload_search import MATCH, FnStep, Run, Step, c_content, c_pcre, done
from mirrorwatch.rules.matches import (
    Base64Decode, Bsize, ByteExtract, ByteJump, ByteMath, ByteTest, Content, IsDataAt, Pcre,
)

DEFAULT_RECURSION_LIMIT = 3000

# keyword class -> compiler(keyword, next, retry, relnext)
_SEARCH_COMPILERS = {Content: c_content, Pcre: c_pcre}
# keyword class -> compiler(keyword, next) -> function (made a step by ``FnStep``)
_BYTE_COMPILERS = {
    IsDataAt: c_isdataat,
    ByteTest: c_byte_test,
    ByteJump: c_byte_jump,
    ByteExtract: c_byte_extract,
    ByteMath: c_byte_math,
    Bsize: c_bsize,
}


def _dependency_flags(matches) -> tuple[list[bool], list[bool]]:
    """Per keyword: (retry: a later keyword needs this one's next occurrence,
    relnext: any later keyword is relative to it).  Mirrors how Suricata sets
    WITHIN_NEXT / DISTANCE_NEXT / RELATIVE_NEXT at rule set-up."""
    n = len(matches)
    retry = [False] * n
    relnext = [False] * n
    last_cp = None  # last content/pcre
    last_any = None  # last content/pcre/byte_*/isdataat

    def mark(idx, strong):
        if idx is None or not isinstance(matches[idx], (Content, Pcre)):
            return
        relnext[idx] = True
        if strong or isinstance(matches[idx], Pcre):
            retry[idx] = True

    for i, m in enumerate(matches):
        if isinstance(m, Content):
            if m.distance is not None or m.within is not None:
                # detect-distance.c: a negated content's distance sets RELATIVE_NEXT (within's
                # flag too) on the content before it, so that one's next occurrence is tried
                mark(last_cp, m.within is not None or m.negated)
            last_cp = last_any = i
        elif isinstance(m, Pcre):
            if m.relative:
                mark(last_cp, True)
            last_cp = last_any = i
        elif isinstance(m, (ByteTest, ByteJump, ByteExtract, ByteMath, IsDataAt)):
            if m.relative:
                mark(last_any, True)
            last_any = i
    return retry, relnext


class Matcher:
    """A rule's payload keywords compiled: ``matcher(buf, ctx=None) -> bool`` (``match`` from C)."""

    __slots__ = ("entry", "limit")

    def __init__(self, entry: Step, limit: int):
        self.entry = entry
        self.limit = limit

    def __call__(self, buf, ctx=None) -> bool:
        return self.match(buf, ctx)

    def match(self, buf, ctx) -> bool:
        """The keywords match ``buf``; a dict ``ctx`` gets the match's end and variables."""
        if type(buf) is memoryview:
            buf = bytes(buf)
        run = Run(self.limit)
        ok = self.entry.step(buf, len(buf), 0, run) == MATCH
        if ok and ctx is not None:
            ctx["end"] = run.end
            ctx["vars"] = run.vars
        return ok


def compile_matches(matches, recursion_limit: int = DEFAULT_RECURSION_LIMIT) -> Matcher:
    """Compile a rule's payload keywords into ``fn(buf, ctx=None) -> bool``.

    An empty list matches any buffer.  Raises ValueError for a keyword object it does not know.
    """
    return Matcher(_chain(matches), recursion_limit)


def _chain(matches) -> Step:
    """The first step of ``matches`` compiled, each step calling the next."""
    retry, relnext = _dependency_flags(matches)
    nxt = done
    for i in range(len(matches) - 1, -1, -1):
        m = matches[i]
        kind = type(m)
        if kind in _SEARCH_COMPILERS:
            nxt = _SEARCH_COMPILERS[kind](m, nxt, retry[i], relnext[i])
        elif kind in _BYTE_COMPILERS:
            nxt = FnStep(_BYTE_COMPILERS[kind](m, nxt))
        elif kind is Base64Decode:  # a terminal step: its base64_data keywords end the list
            nxt = FnStep(c_base64_decode(m, _chain(m.data) if m.data else None))
        else:
            raise ValueError(f"not a payload keyword: {kind.__name__}")
    return nxt


_CACHE: dict[int, tuple[list, object]] = {}
_CACHE_MAX = 50_000


def match(matches, buf, ctx=None) -> bool:
    """Evaluate ``matches`` (a rule's payload keywords) over ``buf``.

    Compiles the list once (cached by identity); hot callers should keep the
    ``Matcher`` from ``compile_matches`` instead.
    """
    hit = _CACHE.get(id(matches))
    if hit is None or hit[0] is not matches:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        hit = (matches, compile_matches(matches))
        _CACHE[id(matches)] = hit
    return hit[1](buf, ctx)
