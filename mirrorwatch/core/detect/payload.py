"""Payload keywords of one rule over one buffer, with Suricata's semantics.

``compile_matches(rule.matches)`` turns the keyword list (content, pcre,
byte_test, byte_jump, byte_extract, byte_math, isdataat, bsize) into one
closure ``fn(buf, ctx=None) -> bool``; ``match(matches, buf, ctx)`` compiles
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

import re

from mirrorwatch.rules.model import (
    Bsize,
    ByteExtract,
    ByteJump,
    ByteMath,
    ByteTest,
    Content,
    IsDataAt,
    Pcre,
)
from mirrorwatch.rules.pcre import guarded

DEFAULT_RECURSION_LIMIT = 3000

MATCH, NO_MATCH, DISCONTINUE = 1, 0, -1

_STR_RE = {
    "dec": re.compile(rb"\s*([+-]?)([0-9]+)"),
    "hex": re.compile(rb"\s*([+-]?)(?:0[xX])?([0-9a-fA-F]+)"),
    "oct": re.compile(rb"\s*([+-]?)([0-7]+)"),
}
_BASE = {"dec": 10, "hex": 16, "oct": 8}
_U64 = (1 << 64) - 1


class _Run:
    """Per-call scratch: recursion count, lower-cased buffer, variables."""

    __slots__ = ("count", "limit", "low", "vars", "end")

    def __init__(self, limit: int):
        self.count = 0
        self.limit = limit
        self.low = None
        self.vars: dict[str, int] = {}
        self.end = 0


def _done(buf, blen, cur, run):
    run.end = cur
    return MATCH


def _read(buf, pos: int, nbytes: int, endian: str, string: str | None, mask: int | None = None, shift: int = 0):
    """(value, bytes consumed) or None: Suricata's ByteExtractUint64 / ByteExtractStringUint64,
    then the keyword's ``bitmask`` (value ANDed, shifted right past the mask's trailing zeros)."""
    if string is None:
        val, used = int.from_bytes(buf[pos:pos + nbytes], "little" if endian == "little" else "big"), nbytes
    else:
        chunk = bytes(buf[pos:pos + nbytes]).split(b"\0", 1)[0]
        m = _STR_RE[string].match(chunk)
        if not m:
            return None
        val = int(m.group(2), _BASE[string])
        if val > _U64:
            return None  # strtoull ERANGE
        if m.group(1) == b"-":
            val = (-val) & _U64
        used = m.end()
    if mask:
        val &= mask
        if val and shift:
            val >>= shift
    return val, used


def _shift_of(mask: int | None) -> int:
    if not mask:
        return 0
    return (mask & -mask).bit_length() - 1


def _value(v, run):
    """A literal or a byte_extract variable's current value."""
    return run.vars.get(v, 0) if isinstance(v, str) else v


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
                mark(last_cp, m.within is not None)
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


# -- one compiler per keyword: each returns fn(buf, blen, cur, run) -> 1/0/-1
def _c_content(c: Content, nxt, retry: bool, relnext: bool):
    pat = c.pattern.lower() if c.nocase else c.pattern
    plen = len(pat)
    nocase = c.nocase
    negated = c.negated
    endswith = c.endswith
    relative = c.distance is not None or c.within is not None
    has_dist = c.distance is not None
    has_within = c.within is not None
    dist_v, within_v = c.distance, c.within
    off_v = c.offset
    depth_v = c.depth
    if c.startswith:
        off_v, depth_v = 0, plen
    single = not (relative or relnext or c.offset is not None or c.depth is not None or c.startswith)

    def fn(buf, blen, cur, run):
        run.count += 1
        if run.count >= run.limit:
            return DISCONTINUE
        if nocase:
            hay = run.low
            if hay is None:
                hay = run.low = buf.lower()
        else:
            hay = buf
        prev_buffer_offset = cur
        prev_offset = 0
        while True:
            if relative:
                offset = prev_buffer_offset
                depth = blen
                dist = 0
                if has_dist:
                    dist = run.vars.get(dist_v, 0) if type(dist_v) is str else dist_v
                    if dist < 0 and -dist > offset:
                        offset = 0
                    else:
                        offset += dist
                if has_within:
                    w = run.vars.get(within_v, 0) if type(within_v) is str else within_v
                    lim = prev_buffer_offset + w + dist
                    if depth > lim:
                        depth = lim
            else:
                offset = 0 if off_v is None else (run.vars.get(off_v, 0) if type(off_v) is str else off_v)
                if depth_v is None:
                    depth = blen
                else:
                    depth = offset + (run.vars.get(depth_v, 0) if type(depth_v) is str else depth_v)
            if prev_offset:
                offset = prev_offset
            if depth > blen:
                depth = blen
            if offset > depth or depth <= 0:
                if negated:
                    return nxt(buf, blen, cur, run)
                return NO_MATCH
            if (endswith and depth < blen) or plen > depth - offset:
                found = -1
            else:
                found = hay.find(pat, offset, depth)
            if found < 0:
                if negated:
                    return nxt(buf, blen, cur, run)
                return NO_MATCH if relative else DISCONTINUE
            match_offset = found + plen
            if negated:
                if endswith and depth - offset != match_offset:
                    return nxt(buf, blen, cur, run)
                return DISCONTINUE if single else NO_MATCH
            if not endswith or match_offset == blen:
                r = nxt(buf, blen, match_offset, run)
                if r != NO_MATCH:
                    return r
                if not retry:
                    return DISCONTINUE
            prev_offset = match_offset - (plen - 1)

    return fn


def _c_pcre(p: Pcre, nxt, retry: bool, relnext: bool):
    rx = guarded(p.regex)
    do = rx.match if p.anchored else rx.search
    relative = p.relative
    negated = p.negated

    def fn(buf, blen, cur, run):
        run.count += 1
        if run.count >= run.limit:
            return DISCONTINUE
        base = cur if relative else 0
        subject = buf[base:] if base else buf
        start = 0
        while True:
            m = do(subject, start - base if start else 0)
            if negated:
                if m is not None:
                    return NO_MATCH
                new_cur, start = cur, 0
            else:
                if m is None:
                    return NO_MATCH
                new_cur = base + m.end()
                start = base + m.start() + 1
            if not relnext:
                return nxt(buf, blen, new_cur, run)
            r = nxt(buf, blen, new_cur, run)
            if r != NO_MATCH:
                return r
            if start == 0:
                return NO_MATCH
            if start - base > len(subject):
                return NO_MATCH

    return fn


def _c_isdataat(d: IsDataAt, nxt):
    off_v = d.offset
    is_var = isinstance(off_v, str)
    relative, negated = d.relative, d.negated
    fail_hard = NO_MATCH if is_var else DISCONTINUE

    def fn(buf, blen, cur, run):
        run.count += 1
        if run.count >= run.limit:
            return DISCONTINUE
        dataat = run.vars.get(off_v, 0) if is_var else off_v
        if is_var and dataat >= 100_000_000:
            return nxt(buf, blen, cur, run) if negated else NO_MATCH
        if relative:
            if cur + dataat > blen:
                return nxt(buf, blen, cur, run) if negated else fail_hard
            return NO_MATCH if negated else nxt(buf, blen, cur, run)
        if dataat < blen:
            return fail_hard if negated else nxt(buf, blen, cur, run)
        return nxt(buf, blen, cur, run) if negated else fail_hard

    return fn


def _start(relative: bool, offset: int, cur: int) -> int:
    return cur + offset if relative else offset


def _c_byte_test(b: ByteTest, nxt):
    mask, shift = b.bitmask, _shift_of(b.bitmask)
    maxbytes = 8 if b.string is None else 23
    op, negate = b.op, b.negate

    def fn(buf, blen, cur, run):
        run.count += 1
        if run.count >= run.limit:
            return DISCONTINUE
        pos = _start(b.relative, _value(b.offset, run), cur)
        nbytes = _value(b.nbytes, run)
        if nbytes == 0 and b.string is not None and 0 <= pos < blen:
            nbytes = blen - pos  # Suricata 7: a string read of 0 bytes takes the rest of the buffer
        elif pos < 0 or blen - pos <= 0 or nbytes > blen - pos or not 0 < nbytes <= maxbytes:
            return NO_MATCH
        got = _read(buf, pos, nbytes, b.endian, b.string, mask, shift)
        if got is None:
            return NO_MATCH
        val = got[0]
        value = _value(b.value, run)
        if op == "=":
            ok = val == value
        elif op == "<":
            ok = val < value
        elif op == ">":
            ok = val > value
        elif op == "<=":
            ok = val <= value
        elif op == ">=":
            ok = val >= value
        elif op == "&":
            ok = bool(val & value)
        else:  # '^'
            ok = bool(val ^ value)
        if ok != negate:
            return nxt(buf, blen, cur, run)
        return NO_MATCH

    return fn


def _c_byte_jump(b: ByteJump, nxt):
    mask, shift = b.bitmask, _shift_of(b.bitmask)
    maxbytes = 8 if b.string is None else 23

    def fn(buf, blen, cur, run):
        run.count += 1
        if run.count >= run.limit:
            return DISCONTINUE
        nbytes = _value(b.nbytes, run)
        pos = _start(b.relative, _value(b.offset, run), cur)
        avail = blen - pos
        if b.relative and nbytes and avail <= 0:
            return NO_MATCH
        if pos < 0 or nbytes > avail or not 0 <= nbytes <= maxbytes:
            return NO_MATCH
        if nbytes:
            got = _read(buf, pos, nbytes, b.endian, b.string, mask, shift)
            if got is None:
                return NO_MATCH
            val, used = got
        else:
            val, used = 0, 0
        val *= b.multiplier
        if b.align and val % 4:
            val += 4 - val % 4
        val += b.post_offset
        if b.from_beginning:
            jump = val
        elif b.from_end:
            jump = blen + val
        else:
            jump = pos + val + used
        if jump < 0:
            jump = 0
        elif jump > blen:
            return NO_MATCH
        return nxt(buf, blen, jump, run)

    return fn


def _c_byte_extract(b: ByteExtract, nxt):
    mask, shift = b.bitmask, _shift_of(b.bitmask)

    def fn(buf, blen, cur, run):
        run.count += 1
        if run.count >= run.limit:
            return DISCONTINUE
        pos = _start(b.relative, b.offset, cur)
        if (b.relative and blen - pos <= 0) or pos < 0 or b.nbytes > blen - pos:
            return NO_MATCH
        got = _read(buf, pos, b.nbytes, b.endian, b.string, mask, shift)
        if got is None:
            return NO_MATCH
        val, used = got
        val *= b.multiplier
        if b.align and val % b.align:
            val += b.align - val % b.align
        run.vars[b.name] = val
        return nxt(buf, blen, pos + used, run)

    return fn


def _c_byte_math(b: ByteMath, nxt):
    mask, shift = b.bitmask, _shift_of(b.bitmask)

    def fn(buf, blen, cur, run):
        run.count += 1
        if run.count >= run.limit:
            return DISCONTINUE
        pos = _start(b.relative, _value(b.offset, run), cur)
        if (b.relative and blen - pos <= 0) or pos < 0 or b.nbytes > blen - pos:
            return NO_MATCH
        got = _read(buf, pos, b.nbytes, b.endian, b.string, mask, shift)
        if got is None:
            return NO_MATCH
        val, used = got
        rv = _value(b.rvalue, run)
        op = b.oper
        if op == "+":
            val += rv
        elif op == "-":
            val -= rv
        elif op == "*":
            val *= rv
        elif op == "/":
            if rv == 0:
                return NO_MATCH
            val //= rv
        elif op == "<<":
            val <<= rv
        else:
            val >>= rv
        run.vars[b.name] = val & _U64
        return nxt(buf, blen, pos + used, run)

    return fn


def _c_bsize(b: Bsize, nxt):
    test = b.test

    def fn(buf, blen, cur, run):
        run.count += 1
        if run.count >= run.limit:
            return DISCONTINUE
        if test(blen):
            return nxt(buf, blen, cur, run)
        return DISCONTINUE

    return fn


def compile_matches(matches, recursion_limit: int = DEFAULT_RECURSION_LIMIT):
    """Compile a rule's payload keywords into ``fn(buf, ctx=None) -> bool``.

    Keywords that are not payload keywords are ignored; an empty list matches
    any buffer.  Raises ValueError for a keyword object it does not know.
    """
    retry, relnext = _dependency_flags(matches)
    nxt = _done
    for i in range(len(matches) - 1, -1, -1):
        m = matches[i]
        if isinstance(m, Content):
            nxt = _c_content(m, nxt, retry[i], relnext[i])
        elif isinstance(m, Pcre):
            nxt = _c_pcre(m, nxt, retry[i], relnext[i])
        elif isinstance(m, IsDataAt):
            nxt = _c_isdataat(m, nxt)
        elif isinstance(m, ByteTest):
            nxt = _c_byte_test(m, nxt)
        elif isinstance(m, ByteJump):
            nxt = _c_byte_jump(m, nxt)
        elif isinstance(m, ByteExtract):
            nxt = _c_byte_extract(m, nxt)
        elif isinstance(m, ByteMath):
            nxt = _c_byte_math(m, nxt)
        elif isinstance(m, Bsize):
            nxt = _c_bsize(m, nxt)
        else:
            raise ValueError(f"not a payload keyword: {type(m).__name__}")
    entry = nxt
    limit = recursion_limit

    def run_matches(buf, ctx=None) -> bool:
        if type(buf) is memoryview:
            buf = bytes(buf)
        run = _Run(limit)
        ok = entry(buf, len(buf), 0, run) == MATCH
        if ok and ctx is not None:
            ctx["end"] = run.end
            ctx["vars"] = run.vars
        return ok

    return run_matches


_CACHE: dict[int, tuple[list, object]] = {}
_CACHE_MAX = 50_000


def match(matches, buf, ctx=None) -> bool:
    """Evaluate ``matches`` (a rule's payload keywords) over ``buf``.

    Compiles the list once (cached by identity); hot callers should keep the
    closure from ``compile_matches`` instead.
    """
    hit = _CACHE.get(id(matches))
    if hit is None or hit[0] is not matches:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        hit = (matches, compile_matches(matches))
        _CACHE[id(matches)] = hit
    return hit[1](buf, ctx)
