"""The byte and position payload keywords: byte_test, byte_jump, byte_extract,
byte_math, isdataat, bsize.

Part of ``detect.payload`` (see its docstring for the semantics); each compiler
returns ``fn(buf, blen, cur, run)`` like the ones in ``payload_search``.
"""

from __future__ import annotations

import re

from mirrorwatch.core.detect.payload_search import DISCONTINUE, NO_MATCH
from mirrorwatch.rules.matches import Bsize, ByteExtract, ByteJump, ByteMath, ByteTest, IsDataAt

_STR_RE = {
    "dec": re.compile(rb"\s*([+-]?)([0-9]+)"),
    "hex": re.compile(rb"\s*([+-]?)(?:0[xX])?([0-9a-fA-F]+)"),
    "oct": re.compile(rb"\s*([+-]?)([0-7]+)"),
}
_BASE = {"dec": 10, "hex": 16, "oct": 8}
_U64 = (1 << 64) - 1


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


def c_isdataat(d: IsDataAt, nxt):
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


def c_byte_test(b: ByteTest, nxt):
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


def c_byte_jump(b: ByteJump, nxt):
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


def _read_stored(b, buf, blen: int, pos: int, mask, shift: int):
    """byte_extract / byte_math: (value, bytes consumed) at ``pos``, or None when the
    ``nbytes`` are not all in the buffer (or, relative, nothing is left after the cursor)."""
    if (b.relative and blen - pos <= 0) or pos < 0 or b.nbytes > blen - pos:
        return None
    return _read(buf, pos, b.nbytes, b.endian, b.string, mask, shift)


def _reading(b, offset, then):
    """fn of byte_extract / byte_math: the value stored at the keyword's offset (``offset``: a literal
    or a variable), then ``then(value, end, buf, blen, run)`` decides (``end``: just past the value)."""
    mask, shift = b.bitmask, _shift_of(b.bitmask)

    def fn(buf, blen, cur, run):
        run.count += 1
        if run.count >= run.limit:
            return DISCONTINUE
        pos = _start(b.relative, _value(offset, run), cur)
        got = _read_stored(b, buf, blen, pos, mask, shift)
        if got is None:
            return NO_MATCH
        return then(got[0], pos + got[1], buf, blen, run)

    return fn


def c_byte_extract(b: ByteExtract, nxt):
    def then(val, end, buf, blen, run):
        val *= b.multiplier
        if b.align and val % b.align:
            val += b.align - val % b.align
        run.vars[b.name] = val
        return nxt(buf, blen, end, run)

    return _reading(b, b.offset, then)


def _divide(a: int, b: int):
    return None if b == 0 else a // b


# byte_math's operators (detect-bytemath.c); None: no result (division by zero), no match
MATH_OPS = {"+": int.__add__, "-": int.__sub__, "*": int.__mul__, "/": _divide,
            "<<": int.__lshift__, ">>": int.__rshift__}


def c_byte_math(b: ByteMath, nxt):
    op = MATH_OPS[b.oper]

    def then(val, end, buf, blen, run):
        val = op(val, _value(b.rvalue, run))
        if val is None:
            return NO_MATCH
        run.vars[b.name] = val & _U64
        return nxt(buf, blen, end, run)

    return _reading(b, b.offset, then)


def c_bsize(b: Bsize, nxt):
    test = b.test

    def fn(buf, blen, cur, run):
        run.count += 1
        if run.count >= run.limit:
            return DISCONTINUE
        if test(blen):
            return nxt(buf, blen, cur, run)
        return DISCONTINUE

    return fn
