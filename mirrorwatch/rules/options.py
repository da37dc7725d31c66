"""Rule text -> header tokens and (keyword, value) options, as Suricata splits them.

Suricata (src/detect-parse.c, SigParse / SigParseOptions):

- a rule is valid UTF-8 without control characters (tab, CR, LF allowed);
- the header is ``action proto src sport direction dst dport``, lists in
  brackets may hold spaces; the options follow inside ``( ... )``;
- an option ends at the first ``;`` not preceded by a backslash; every option,
  the last one included, must end with ``;``;
- the name runs to the first ``:``, the value after it; blanks around both
  are trimmed;
- per keyword (the flags below): a keyword without a value refuses one, one
  with a mandatory value needs it; ``!`` negates where the keyword allows it;
  quoted values must be whole: start and end with ``"`` (else "possible
  missing semicolon"), and a keyword that takes no quotes refuses them.

Stricter than Suricata, so a damaged rule is refused instead of loaded with a
different meaning: inside a quoted value every ``"`` must be escaped (Suricata
checks this for content but not for msg: ``msg:"a" content:"b";`` loads there
with msg ``a" content:"b``), and an unquoted value may not contain ``"`` nor
run into what looks like the next option (``metadata:x y rev:2`` lost its
``;``).  Real pcre regexes contain bare quotes (``(%22|")``), so for values
whose quotes are their own business only the "next option" check applies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Suricata's DETECT_MAX_RULE_SIZE: its rule loader reads lines of this size
MAX_RULE_SIZE = 8192


class RuleError(ValueError):
    """A rule that cannot be loaded; ``str()`` is the one-line reason."""


def unsupported(keyword: str) -> RuleError:
    return RuleError(f"unsupported keyword '{keyword}'")


# keyword flags (Suricata's SIGMATCH_*)
NOOPT = 1  # takes no value
OPTIONAL = 2  # value optional
QUOTES_MANDATORY = 4
QUOTES_OPTIONAL = 8
NEGATION = 16  # a leading '!' negates (passed to the handler)
OWN_QUOTES = 32  # the keyword's own syntax allows '"' inside (pcre, reference)


@dataclass(frozen=True)
class Value:
    """A prepared option value: ``text`` unquoted (None when absent), ``negated``, ``quoted``."""

    text: str | None
    negated: bool = False
    quoted: bool = False


_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_UNESCAPED_QUOTE = re.compile(r'(?<!\\)(?:\\\\)*"')
# the shape of a swallowed next option: ' name:' (or ':name:' where a ';' became
# ':') in a bare value, '" name:' in a quoted one
_NEXT_PLAIN = re.compile(r"(?<=[\s:])([A-Za-z_][A-Za-z0-9_.-]*)(?=\s*:)")
_NEXT_QUOTED = re.compile(r'"\s*([A-Za-z_][A-Za-z0-9_.-]*)(?=\s*:)')
_BAD_NAME = re.compile(r"[\s\"']")


def check_text(text: str) -> None:
    """Suricata refuses rules that are not UTF-8 or hold control characters."""
    if len(text) >= MAX_RULE_SIZE:
        raise RuleError(f"rule is longer than {MAX_RULE_SIZE - 1} characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RuleError("rule is not valid UTF-8") from None
    if _CTRL.search(text):
        raise RuleError("rule contains control characters")


def split_rule(text: str) -> tuple[list[str], str]:
    """Rule text -> (header tokens, option body).  Brackets keep spaces in lists."""
    start = text.find("(")
    end = text.rfind(")")
    if start < 0 or end < start:
        raise RuleError("no option block '( ... )'")
    if text[end + 1:].strip():
        raise RuleError(f"text after the closing ')': {text[end + 1:].strip()[:30]!r}")
    head = text[:start]
    if "[" not in head:
        return head.split(), text[start + 1:end]
    tokens: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in head:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch in " \t\r\n" and depth <= 0:
            if cur:
                tokens.append("".join(cur))
                cur = []
        elif ch not in " \t\r\n":
            cur.append(ch)
    if cur:
        tokens.append("".join(cur))
    return tokens, text[start + 1:end]


def split_options(body: str) -> list[tuple[str, str | None]]:
    """``msg:"a\\;b"; nocase;`` -> [('msg', '"a\\;b"'), ('nocase', None)].

    Names are lower-cased; a value is None when there is no ':'.
    """
    out: list[tuple[str, str | None]] = []
    pos, n = 0, len(body)
    while True:
        while pos < n and body[pos] in " \t\r\n":
            pos += 1
        if pos >= n:
            return out
        end = pos
        while True:
            end = body.find(";", end)
            if end < 0:
                raise RuleError(f"option {body[pos:pos + 40].strip()!r} has no terminating ';'")
            if end > pos and body[end - 1] == "\\":
                end += 1
                continue
            break
        name, sep, value = body[pos:end].partition(":")
        name = name.strip()
        if not name:
            raise RuleError(f"option without a keyword near {body[pos:pos + 30].strip()!r}")
        if _BAD_NAME.search(name):
            raise RuleError(f"bad keyword {name[:40]!r} (missing ';' or ':'?)")
        out.append((name.lower(), value.strip() if sep else None))
        pos = end + 1


def prepare(name: str, raw: str | None, flags: int, keywords) -> Value:
    """Check a raw value against the keyword's flags (Suricata's SigParseOptions).

    ``keywords``: the names that count as "the next option" when a value runs
    into one.
    """
    if flags & NOOPT:
        if raw:
            raise RuleError(f"'{name}' takes no value")
        return Value(None)
    if not raw:
        if flags & OPTIONAL:
            return Value(None)
        raise RuleError(f"'{name}' needs a value")
    v = raw
    negated = False
    if flags & NEGATION and v.startswith("!"):
        negated = True
        v = v[1:].lstrip()
        if not v:
            raise RuleError(f"'{name}' needs a value after '!'")
    if flags & QUOTES_MANDATORY and not v.startswith('"'):
        raise RuleError(f"'{name}' needs a double-quoted value")
    if flags & (QUOTES_MANDATORY | QUOTES_OPTIONAL) and v.startswith('"'):
        inner = v[1:-1]
        if len(v) < 2 or not v.endswith('"') or (len(inner) - len(inner.rstrip("\\"))) % 2:
            raise RuleError(f"'{name}' value is not closed by '\"' (missing ';'?)")
        if not inner:
            raise RuleError(f"'{name}' has an empty value")
        if flags & OWN_QUOTES:
            _refuse_next_option(name, inner, keywords, _NEXT_QUOTED)
        elif _UNESCAPED_QUOTE.search(inner):
            raise RuleError(f"'{name}' value holds an unescaped '\"' (missing ';'?)")
        return Value(inner, negated, True)
    if '"' in v and not flags & OWN_QUOTES:
        raise RuleError(f"'{name}' does not take a quoted value" if v.startswith('"')
                        else f"'{name}' value holds a '\"' (missing ';'?)")
    _refuse_next_option(name, v, keywords, _NEXT_PLAIN)
    if flags & OWN_QUOTES:
        _refuse_next_option(name, v, keywords, _NEXT_QUOTED)
    return Value(v, negated)


def _refuse_next_option(name: str, value: str, keywords, shape: re.Pattern) -> None:
    for m in shape.finditer(value):
        word = m.group(1).lower()
        if word in keywords:
            raise RuleError(f"'{name}' value runs into '{word}:' (missing ';'?)")
