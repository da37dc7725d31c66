"""The searching payload keywords (content, pcre) and the inspection run they share.

Part of ``detect.payload`` (see its docstring for the semantics): every keyword
compiles to a ``Step`` whose ``step(buf, blen, cur, run) -> MATCH / NO_MATCH /
DISCONTINUE`` calls the next keyword's step on success (a C call when compiled);
``run`` is the per-call scratch.
"""

from __future__ import annotations

from mirrorwatch.rules.matches import Content, Pcre
from mirrorwatch.rules.pcre import guarded

MATCH, NO_MATCH, DISCONTINUE = 1, 0, -1
MATCH_, NO_MATCH_, DISCONTINUE_ = MATCH, NO_MATCH, DISCONTINUE  # their C aliases (payload_search.pxd)


# a content's offset, depth, distance or within is taken within +-VAR_BOUND (a byte_extract
# variable can hold any 64-bit value): far past any buffer, so the search gives the same answer
VAR_BOUND = 1 << 40


class Run:
    """Per-call scratch: recursion count, lower-cased buffer, variables."""

    __slots__ = ("count", "end", "limit", "low", "vars")

    def __init__(self, limit: int):
        self.count = 0
        self.limit = limit
        self.low = None
        self.vars = {}
        self.end = 0


class Step:
    """One compiled keyword: ``step(buf, blen, cur, run)`` -> MATCH / NO_MATCH / DISCONTINUE, which
    calls the next keyword's step (``nxt``) on success; calling a Step is calling ``step``."""

    __slots__ = ("nxt",)

    def step(self, buf, blen: int, cur: int, run: Run) -> int:
        raise NotImplementedError

    def __call__(self, buf, blen: int, cur: int, run: Run) -> int:
        return self.step(buf, blen, cur, run)


class Done(Step):
    """The end of the list: every keyword matched; the cursor is where the matched data ends."""

    __slots__ = ()

    def step(self, buf, blen: int, cur: int, run: Run) -> int:
        run.end = cur
        return MATCH_


class FnStep(Step):
    """A keyword compiled to a function ``fn(buf, blen, cur, run)`` (``payload_bytes``)."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn
        self.nxt = None

    def step(self, buf, blen: int, cur: int, run: Run) -> int:
        return self.fn(buf, blen, cur, run)


done = Done()
done.nxt = None


def _bounded(v) -> int:
    """A number within +-VAR_BOUND."""
    return VAR_BOUND if v > VAR_BOUND else -VAR_BOUND if v < -VAR_BOUND else v


def _option(v) -> tuple:
    """A content option (None, a number or a variable's name) as (number, variable name or None)."""
    if v is None:
        return 0, None
    if isinstance(v, str):
        return 0, v
    return _bounded(v), None


# -- one step per searching keyword
class ContentStep(Step):
    """content with its modifiers (see ``payload``'s docstring for the semantics).  Each of offset,
    depth, distance and within is a number (``off``...) or a variable's name (``off_var``...)."""

    __slots__ = ("pat", "plen", "nocase", "negated", "endswith", "relative", "has_dist", "has_within",
                 "has_off", "has_depth", "dist", "within", "off", "depth", "dist_var", "within_var",
                 "off_var", "depth_var", "single", "retry")

    def __init__(self, c: Content, nxt: Step, retry: bool, relnext: bool):
        self.nxt = nxt
        self.retry = retry
        self.pat = bytes(c.pattern.lower() if c.nocase else c.pattern)
        self.plen = len(self.pat)
        self.nocase = bool(c.nocase)
        self.negated = bool(c.negated)
        self.endswith = bool(c.endswith)
        self.relative = c.distance is not None or c.within is not None
        self.has_dist = c.distance is not None
        self.has_within = c.within is not None
        off_v, depth_v = (0, self.plen) if c.startswith else (c.offset, c.depth)
        self.has_off = off_v is not None
        self.has_depth = depth_v is not None
        self.dist, self.dist_var = _option(c.distance)
        self.within, self.within_var = _option(c.within)
        self.off, self.off_var = _option(off_v)
        self.depth, self.depth_var = _option(depth_v)
        self.single = not (self.relative or relnext or c.offset is not None or c.depth is not None
                           or c.startswith)

    def step(self, buf, blen: int, cur: int, run: Run) -> int:
        run.count += 1
        if run.count >= run.limit:
            return DISCONTINUE_
        if self.nocase:
            hay = run.low
            if hay is None:
                hay = run.low = buf.lower()
        else:
            hay = buf
        plen = self.plen
        negated = self.negated
        endswith = self.endswith
        prev_buffer_offset = cur
        prev_offset = 0
        while True:
            if self.relative:
                offset = prev_buffer_offset
                depth = blen
                dist = 0
                if self.has_dist:
                    dist = self.dist if self.dist_var is None else _bounded(run.vars.get(self.dist_var, 0))
                    if dist < 0 and -dist > offset:
                        offset = 0
                    else:
                        offset += dist
                if self.has_within:
                    w = self.within if self.within_var is None else _bounded(run.vars.get(self.within_var, 0))
                    lim = prev_buffer_offset + w + dist
                    depth = min(depth, lim)
            else:
                offset = 0
                if self.has_off:
                    offset = self.off if self.off_var is None else _bounded(run.vars.get(self.off_var, 0))
                if not self.has_depth:
                    depth = blen
                else:
                    depth = offset + (self.depth if self.depth_var is None
                                      else _bounded(run.vars.get(self.depth_var, 0)))
            if prev_offset:
                offset = prev_offset
            depth = min(depth, blen)
            if offset > depth or depth <= 0:
                if negated:
                    return self.nxt.step(buf, blen, cur, run)
                return NO_MATCH_
            if (endswith and depth < blen) or plen > depth - offset:
                found = -1
            else:
                found = hay.find(self.pat, offset, depth)
            if found < 0:
                if negated:
                    return self.nxt.step(buf, blen, cur, run)
                return NO_MATCH_ if self.relative else DISCONTINUE_
            match_offset = found + plen
            if negated:
                if endswith and depth - offset != match_offset:
                    return self.nxt.step(buf, blen, cur, run)
                return DISCONTINUE_ if self.single else NO_MATCH_
            if not endswith or match_offset == blen:
                r = self.nxt.step(buf, blen, match_offset, run)
                if r != NO_MATCH_:
                    return r
                if not self.retry:
                    return DISCONTINUE_
            prev_offset = match_offset - (plen - 1)


class PcreStep(Step):
    """pcre, retried at its next match while a relative keyword after it fails (``relnext``)."""

    __slots__ = ("do", "relative", "negated", "relnext")

    def __init__(self, p: Pcre, nxt: Step, relnext: bool):
        rx = guarded(p.regex)
        self.do = rx.match if p.anchored else rx.search
        self.relative = bool(p.relative)
        self.negated = bool(p.negated)
        self.relnext = relnext
        self.nxt = nxt

    def step(self, buf, blen: int, cur: int, run: Run) -> int:
        run.count += 1
        if run.count >= run.limit:
            return DISCONTINUE_
        do = self.do
        base = cur if self.relative else 0
        subject = buf[base:] if base else buf
        start = 0
        while True:
            m = do(subject, start - base if start else 0)
            if self.negated:
                if m is not None:
                    return NO_MATCH_
                new_cur, start = cur, 0
            else:
                if m is None:
                    return NO_MATCH_
                new_cur = base + m.end()
                start = base + m.start() + 1
            if not self.relnext:
                return self.nxt.step(buf, blen, new_cur, run)
            r = self.nxt.step(buf, blen, new_cur, run)
            if r != NO_MATCH_:
                return r
            if start == 0:
                return NO_MATCH_
            if start - base > len(subject):
                return NO_MATCH_


def c_content(c: Content, nxt: Step, retry: bool, relnext: bool) -> Step:
    return ContentStep(c, nxt, retry, relnext)


def c_pcre(p: Pcre, nxt: Step, retry: bool, relnext: bool) -> Step:
    return PcreStep(p, nxt, relnext)
