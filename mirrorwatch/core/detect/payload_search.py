"""The searching payload keywords (content, pcre) and the inspection run they share.

Part of ``detect.payload`` (see its docstring for the semantics): every keyword
compiles to ``fn(buf, blen, cur, run) -> MATCH / NO_MATCH / DISCONTINUE`` that
calls the next keyword's function on success; ``run`` is the per-call scratch.
"""

from __future__ import annotations

from mirrorwatch.rules.model import Content, Pcre
from mirrorwatch.rules.pcre import guarded

MATCH, NO_MATCH, DISCONTINUE = 1, 0, -1


class Run:
    """Per-call scratch: recursion count, lower-cased buffer, variables."""

    __slots__ = ("count", "end", "limit", "low", "vars")

    def __init__(self, limit: int):
        self.count = 0
        self.limit = limit
        self.low = None
        self.vars: dict[str, int] = {}
        self.end = 0


def done(buf, blen, cur, run):
    run.end = cur
    return MATCH


# -- one compiler per keyword: each returns fn(buf, blen, cur, run) -> 1/0/-1
def c_content(c: Content, nxt, retry: bool, relnext: bool):
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
                    depth = min(depth, lim)
            else:
                offset = 0 if off_v is None else (run.vars.get(off_v, 0) if type(off_v) is str else off_v)
                if depth_v is None:
                    depth = blen
                else:
                    depth = offset + (run.vars.get(depth_v, 0) if type(depth_v) is str else depth_v)
            if prev_offset:
                offset = prev_offset
            depth = min(depth, blen)
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


def c_pcre(p: Pcre, nxt, retry: bool, relnext: bool):
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
