"""Value syntaxes shared by keywords: numbers, comparisons, content strings, text."""

from __future__ import annotations

import re

from .options import RuleError

U32_MAX = 2**32 - 1

_DEC_RE = re.compile(r"^\d+$")
_INT_RE = re.compile(r"^[+-]?(0x[0-9a-fA-F]+|\d+)$")
_CMP_RE = re.compile(r"^\s*(!?)\s*(<=|>=|<|>|=|!=)?\s*(0x[0-9a-fA-F]+|-?\d+)\s*"
                     r"(?:(<>|-)\s*(0x[0-9a-fA-F]+|\d+))?\s*$")
_ESCAPE_RE = re.compile(r"\\(.)")
# content: the characters a backslash may escape (Suricata's DetectContentDataParse)
_CONTENT_ESCAPES = frozenset('";:\\')
_HEX = frozenset("0123456789abcdefABCDEF")


def parse_decimal(text: str | None, what: str, lo: int = 0, hi: int = U32_MAX) -> int:
    """A plain decimal number (sid, rev, gid, priority...)."""
    t = (text or "").strip()
    if not _DEC_RE.match(t):
        raise RuleError(f"{what}: not a decimal number: {t!r}")
    v = int(t)
    if not lo <= v <= hi:
        raise RuleError(f"{what}: {v} out of range {lo}..{hi}")
    return v


def parse_int(text: str | None, what: str, lo: int | None = None, hi: int | None = None) -> int:
    """A signed decimal or 0x-hex number (byte_* arguments, offsets...)."""
    if text is None:
        raise RuleError(f"'{what}' needs a value")
    t = text.strip()
    if not _INT_RE.match(t):
        raise RuleError(f"{what}: not a number: {t!r}")
    v = int(t, 0) if t.lstrip("+-").lower().startswith("0x") else int(t)
    if lo is not None and v < lo or hi is not None and v > hi:
        raise RuleError(f"{what}: {v} out of range")
    return v


def parse_hex(text: str, what: str) -> int:
    """Bitmasks are hexadecimal, with or without 0x (Suricata)."""
    t = text.strip().lower()
    t = t[2:] if t.startswith("0x") else t
    if not t or not all(c in _HEX for c in t) or int(t, 16) > U32_MAX:
        raise RuleError(f"{what}: not a 32-bit hex mask: {text.strip()!r}")
    return int(t, 16)


def parse_cmp(text: str | None, what: str, hi_limit: int) -> tuple[str, int, int | None]:
    """Suricata's unsigned syntax ``N`` ``!N`` ``<N`` ``>=N`` ``N<>M`` ``N-M`` ``!N<>M`` -> (op, a, b).

    Ranges are exclusive (``a < x < b``) and must hold a value (b > a + 1),
    as Suricata's detect_parse_uint_start_interval requires.
    """
    if text is None:
        raise RuleError(f"'{what}' needs a value")
    m = _CMP_RE.match(text)
    if not m:
        raise RuleError(f"{what}: bad value {text.strip()!r}")
    neg, op, a, rng, b = m.groups()
    av = _to_int(a)
    if av < 0 or av > hi_limit:
        raise RuleError(f"{what}: {av} out of range")
    if rng:
        if op:
            raise RuleError(f"{what}: bad value {text.strip()!r}")
        bv = _to_int(b)
        if bv > hi_limit or bv <= av + 1:
            raise RuleError(f"{what}: bad range {text.strip()!r} (no value lies strictly between)")
        return ("!<>" if neg else "<>"), av, bv
    op = op or "="
    if neg:
        if op != "=":
            raise RuleError(f"{what}: bad value {text.strip()!r}")
        op = "!="
    return op, av, None


def _to_int(t: str) -> int:
    """Decimal (leading zeros allowed) or 0x-hex."""
    return int(t, 16) if t.lower().startswith(("0x", "-0x")) else int(t, 10)


def split_args(value: str | None, what: str) -> list[str]:
    if value is None:
        raise RuleError(f"'{what}' needs a value")
    return [p.strip() for p in value.split(",")]


def unescape_text(v: str) -> str:
    """msg text: a backslash escapes the next character (Suricata's DetectMsgSetup)."""
    if "\\" in v:
        v = _ESCAPE_RE.sub(r"\1", v)
    return v


def parse_content(v: str) -> bytes:
    """The inside of ``"abc|41 42|d\\;"`` -> b'abcABd;' (Suricata's DetectContentDataParse).

    ``|..|`` holds hex byte pairs, spaces and commas allowed between them; a
    backslash escapes only ``" ; : \\``.
    """
    out = bytearray()
    i, n = 0, len(v)
    while i < n:
        ch = v[i]
        if ch == "|":
            j = v.find("|", i + 1)
            if j < 0:
                raise RuleError("content has an unterminated |hex| block")
            hexpart = "".join(c for c in v[i + 1:j] if c not in " ,")
            if len(hexpart) % 2 or not all(c in _HEX for c in hexpart):
                raise RuleError(f"content has bad hex {v[i:j + 1]!r}")
            out += bytes.fromhex(hexpart)
            i = j + 1
        elif ch == "\\":
            if i + 1 >= n:
                raise RuleError("content ends with a lone backslash")
            if v[i + 1] not in _CONTENT_ESCAPES:
                raise RuleError(f"content has an invalid escape \\{v[i + 1]}")
            out += v[i + 1].encode()
            i += 2
        elif ch == '"':
            raise RuleError("content has an unescaped '\"'")
        else:
            out += ch.encode("utf-8")
            i += 1
    if not out:
        raise RuleError("content is empty")
    return bytes(out)
