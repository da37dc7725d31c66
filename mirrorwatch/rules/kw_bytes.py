"""byte_test, byte_jump, byte_extract, byte_math (Suricata's byte keywords).

Numbers may name a byte_extract / byte_math variable defined earlier in the
rule.  Without a sticky buffer a relative keyword joins the buffer of the
last payload keyword (``ParseState.relative_target``).
"""

from __future__ import annotations

from .kw_payload import VAR_RE, num_or_var
from .matches import ByteExtract, ByteJump, ByteMath, ByteTest
from .options import RuleError, Value, unsupported
from .values import parse_hex, parse_int, split_args

_STRING_BASES = ("hex", "dec", "oct")


def _byte_common(obj, opts: list[str], what: str, allowed: set[str]) -> None:
    """Shared byte_* options: relative, big/little, string[,base], dce, bitmask."""
    i = 0
    while i < len(opts):
        raw = opts[i]
        o = raw.lower()
        word, _, arg = o.partition(" ")
        arg = arg.strip()
        if o == "relative":
            obj.relative = True
        elif o in ("big", "little"):
            obj.endian = o
        elif o == "dce":
            raise unsupported("dce")
        elif o == "string":
            obj.string = "dec"
            if i + 1 < len(opts) and opts[i + 1].lower() in _STRING_BASES:
                obj.string = opts[i + 1].lower()
                i += 1
        elif o in _STRING_BASES:
            raise RuleError(f"{what}: base '{o}' without 'string'")
        elif word == "bitmask" and "bitmask" in allowed:
            obj.bitmask = parse_hex(arg, f"{what} bitmask")
        elif word == "endian" and "endian" in allowed:
            if arg not in ("big", "little"):
                raise RuleError(f"{what}: endian must be big or little")
            obj.endian = arg
        elif word in allowed and word not in ("string", "bitmask", "endian"):
            _byte_extra(obj, word, arg, raw, what)
        else:
            raise RuleError(f"{what}: unknown option {raw!r}")
        i += 1


def _byte_extra(obj, word, arg, raw, what):
    if word == "multiplier":
        obj.multiplier = parse_int(arg, f"{what} multiplier", lo=1, hi=65535)
    elif word == "post_offset":
        obj.post_offset = parse_int(arg, f"{what} post_offset")
    elif word == "align":
        if isinstance(obj, ByteJump):
            if arg:
                raise RuleError(f"{what}: 'align' takes no value")
            obj.align = True
        else:
            obj.align = parse_int(arg, f"{what} align", lo=2, hi=4)
            if obj.align not in (2, 4):
                raise RuleError(f"{what}: align must be 2 or 4")
    elif word in ("from_beginning", "from_end"):
        if arg:
            raise RuleError(f"{what}: {raw!r} takes no value")
        setattr(obj, word, True)
    else:
        raise RuleError(f"{what}: unknown option {raw!r}")


def _check_nbytes(obj, what):
    """1..8 bytes, or with 'string' up to 23 digits.  byte_test takes 0 with
    'string' as Suricata does (ET writes ``byte_test:0,=,0,0,string,dec`` on
    http.content_len): Suricata then reads every digit from the offset on."""
    if isinstance(obj.nbytes, str):
        return  # a byte_extract variable, checked at match time
    if obj.string is None and not 1 <= obj.nbytes <= 8:
        raise RuleError(f"{what}: nbytes must be 1..8 without 'string'")
    low = 0 if isinstance(obj, ByteTest) else 1
    if obj.string is not None and not low <= obj.nbytes <= 23:
        raise RuleError(f"{what}: nbytes must be {low}..23 with 'string'")


def kw_byte_test(st, v: Value) -> None:
    args = split_args(v.text, "byte_test")
    if len(args) < 4:
        raise RuleError("byte_test needs nbytes, operator, value, offset")
    op = args[1].replace(" ", "")
    negate = op.startswith("!")
    if negate:
        op = op[1:] or "="
    if op not in ("<", ">", "=", "<=", ">=", "&", "^"):
        raise RuleError(f"byte_test: unknown operator {args[1]!r}")
    b = ByteTest(nbytes=num_or_var(st, args[0], "byte_test nbytes", lo=0), op=op,
                 value=num_or_var(st, args[2], "byte_test value", lo=0),
                 offset=num_or_var(st, args[3], "byte_test offset"), negate=negate)
    _byte_common(b, args[4:], "byte_test", {"string", "bitmask"})
    _check_nbytes(b, "byte_test")
    st.add(b, st.relative_target(b.relative))


def kw_byte_jump(st, v: Value) -> None:
    args = split_args(v.text, "byte_jump")
    if len(args) < 2:
        raise RuleError("byte_jump needs nbytes, offset")
    b = ByteJump(nbytes=num_or_var(st, args[0], "byte_jump nbytes", lo=0),
                 offset=num_or_var(st, args[1], "byte_jump offset"))
    _byte_common(b, args[2:], "byte_jump", {"string", "bitmask", "multiplier", "post_offset", "align",
                                            "from_beginning", "from_end"})
    if b.from_beginning and b.from_end:
        raise RuleError("byte_jump: both from_beginning and from_end")
    if b.nbytes == 0 and not b.from_end:
        raise RuleError("byte_jump: nbytes 0 is only valid with from_end")
    if b.nbytes != 0:
        _check_nbytes(b, "byte_jump")
    st.add(b, st.relative_target(b.relative))


def kw_byte_extract(st, v: Value) -> None:
    args = split_args(v.text, "byte_extract")
    if len(args) < 3:
        raise RuleError("byte_extract needs nbytes, offset, name")
    name = args[2]
    if not VAR_RE.match(name):
        raise RuleError(f"byte_extract: bad variable name {name!r}")
    b = ByteExtract(nbytes=parse_int(args[0], "byte_extract nbytes", lo=1),
                    offset=parse_int(args[1], "byte_extract offset"), name=name)
    _byte_common(b, args[3:], "byte_extract", {"string", "bitmask", "multiplier", "align"})
    _check_nbytes(b, "byte_extract")
    st.vars.add(name)
    st.add(b, st.relative_target(b.relative))


def kw_byte_math(st, v: Value) -> None:
    fields: dict[str, str] = {}
    flags: list[str] = []
    for part in split_args(v.text, "byte_math"):
        k, _, val = part.partition(" ")
        if val.strip():
            fields[k.lower()] = val.strip()
        else:
            flags.append(part)
    try:
        b = ByteMath(nbytes=parse_int(fields.pop("bytes"), "byte_math bytes", lo=1, hi=10),
                     offset=num_or_var(st, fields.pop("offset"), "byte_math offset"),
                     oper=fields.pop("oper"), rvalue=num_or_var(st, fields.pop("rvalue"), "byte_math rvalue"),
                     name=fields.pop("result"))
    except KeyError as e:
        raise RuleError(f"byte_math needs {e.args[0]}") from None
    if b.oper not in ("+", "-", "*", "/", "<<", ">>"):
        raise RuleError(f"byte_math: unknown oper {b.oper!r}")
    if not VAR_RE.match(b.name):
        raise RuleError(f"byte_math: bad result name {b.name!r}")
    if "endian" in fields:
        e = fields.pop("endian").lower()
        if e == "dce":
            raise unsupported("dce")
        if e not in ("big", "little"):
            raise RuleError("byte_math: endian must be big or little")
        b.endian = e
    if "string" in fields:
        s = fields.pop("string").lower()
        if s not in _STRING_BASES:
            raise RuleError("byte_math: string must be hex, dec or oct")
        b.string = s
    if "bitmask" in fields:
        b.bitmask = parse_hex(fields.pop("bitmask"), "byte_math bitmask")
    if fields:
        raise RuleError(f"byte_math: unknown option {next(iter(fields))!r}")
    for f in flags:
        if f.lower() == "relative":
            b.relative = True
        elif f.lower() == "dce":
            raise unsupported("dce")
        else:
            raise RuleError(f"byte_math: unknown option {f!r}")
    st.vars.add(b.name)
    st.add(b, st.relative_target(b.relative))


KEYWORDS = {
    "byte_test": (kw_byte_test, 0),
    "byte_jump": (kw_byte_jump, 0),
    "byte_extract": (kw_byte_extract, 0),
    "byte_math": (kw_byte_math, 0),
}
