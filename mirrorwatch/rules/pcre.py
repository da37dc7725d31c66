"""PCRE (as written in rules) -> a Python regex on bytes.

Patterns are translated to ``re`` syntax and validated with ``re`` at load
(a rule that does not compile is skipped with the reason).  The matcher then
runs them under the ``regex`` package (``guarded``; ``re``-compatible syntax)
when it is installed, because it guards against the catastrophic backtracking
some real rules have (ET 2022542 ``^(?:.[a-z0-9-]{2,}){2,}\x00\x00`` with /i
runs for minutes under ``re`` on 4 KB of 'A') and because it takes a per-call
``timeout`` — the analogue of Suricata's pcre match-limit (see
``detect.payload``).

Rules carry Perl-compatible regexes.  Python 3.11's ``re`` covers most of it
(atomic groups and possessive quantifiers included); this module rewrites the
rest and refuses what has no equivalent, so a rule is skipped with a reason
instead of silently matching something else:

- ``\\Z`` (end or before final newline) -> ``(?=\\n?\\Z)``; ``\\z`` -> ``\\Z``;
  with flag E (dollar-endonly) ``$`` -> ``\\Z``
- ``(?<name>``, ``(?'name'``, ``(?P<name>`` -> ``(?P<name>``; ``\\k<n>``,
  ``\\k'n'``, ``\\k{n}``, ``\\g{n}`` -> ``(?P=n)``; ``\\gN``, ``\\g{N}`` -> ``\\N``
- ``\\x{hh}`` -> ``\\xhh`` (only up to 0xff: patterns are bytes); ``\\o{..}``,
  ``\\e``, ``\\cX``, ``\\h``, ``\\H``, ``\\v``, ``\\V``, ``\\R``, ``\\Q..\\E``, POSIX
  ``[:alpha:]`` classes
- inline option groups in the middle of a pattern (``a(?i)b``), which Python
  refuses, become scoped groups ``a(?i:b)`` ending where the enclosing group ends
- flag U-greedy (PCRE ``U``) inverts every quantifier's greediness
- ``{,n}`` is a literal in PCRE and is escaped
Refused: ``\\K``, ``\\G``, ``\\p{..}``, recursion ``(?R)``/``(?1)``, ``(?|``,
``\\g{-1}``, ``(*VERB)``, callouts, code points above 0xff.
"""

from __future__ import annotations

import re
import warnings

try:  # the `regex` engine: re-compatible syntax, guards against catastrophic
    import regex as _engine  # backtracking, and takes a per-call timeout

    ENGINE = "regex"
except ImportError:  # pragma: no cover - fallback when the dependency is missing
    _engine = re
    ENGINE = "re"

_POSIX = {
    "alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z", "lower": "a-z",
    "space": r" \t\n\r\x0b\x0c", "blank": r" \t", "punct": r"!-/:-@\[-`{-~", "xdigit": "0-9A-Fa-f",
    "word": "a-zA-Z0-9_", "cntrl": r"\x00-\x1f\x7f", "print": r"\x20-\x7e", "graph": r"\x21-\x7e",
    "ascii": r"\x00-\x7f",
}
_H = r"\t\x20\xa0"
_V = r"\n\x0b\x0c\r\x85"
_META = set(".^$*+?{}[]\\|()")


class PcreError(ValueError):
    """A regex that cannot be translated (message says which construct)."""


def _hex(cp: int) -> str:
    if cp > 0xFF:
        raise PcreError(f"code point \\x{{{cp:x}}} above 0xff in a byte pattern")
    return f"\\x{cp:02x}"


def _literal(ch: str) -> str:
    return "\\" + ch if ch in _META or ch in " #" else ch


class _Translator:
    def __init__(self, pat: str, ungreedy: bool, dollar_endonly: bool, extended: bool):
        self.p = pat
        self.i = 0
        self.out: list[str] = []
        self.ungreedy = ungreedy
        self.dollar_endonly = dollar_endonly
        self.extended = extended
        # per open group: how many extra ')' to emit when it closes
        self.closers: list[int] = [0]
        self.ngroups = 0

    def run(self) -> str:
        p = self.p
        n = len(p)
        while self.i < n:
            c = p[self.i]
            if c == "\\":
                self.out.append(self.escape(in_class=False))
            elif c == "[":
                self.out.append(self.char_class())
            elif c == "(":
                self.group()
            elif c == ")":
                self.i += 1
                extra = self.closers.pop() if len(self.closers) > 1 else None
                if extra is None:
                    raise PcreError("unbalanced ')'")
                self.out.append(")" * (extra + 1))
                self.quant_suffix()
            elif c in "*+?":
                self.i += 1
                self.out.append(c)
                self.quant_suffix()
            elif c == "{":
                self.brace()
            elif c == "$" and self.dollar_endonly:
                self.i += 1
                self.out.append(r"\Z")
            elif c == "#" and self.extended:
                j = p.find("\n", self.i)
                self.i = n if j < 0 else j + 1
            else:
                self.i += 1
                self.out.append(c)
        if len(self.closers) != 1:
            raise PcreError("missing ')'")
        self.out.append(")" * self.closers[0])
        return "".join(self.out)

    # -- quantifiers -----------------------------------------------------
    def quant_suffix(self) -> None:
        """After a quantifier (or group close, where nothing follows) handle ? and + suffixes."""
        p = self.p
        if not self.out or self.out[-1][-1:] not in ("*", "+", "?", "}") or self.out[-1] in ("\\*", "\\+", "\\?", "\\}"):
            return
        nxt = p[self.i] if self.i < len(p) else ""
        if nxt == "+":  # possessive (Python 3.11 supports it)
            self.i += 1
            self.out.append("+")
        elif nxt == "?":
            self.i += 1
            if not self.ungreedy:
                self.out.append("?")
        elif self.ungreedy:
            self.out.append("?")

    def brace(self) -> None:
        p = self.p
        m = re.compile(r"\{(\d*)(,?)(\d*)\}").match(p, self.i)
        if not m or (not m.group(1) and not (m.group(2) and m.group(3))) or (not m.group(1) and m.group(2)):
            # not a quantifier in PCRE: literal brace ({,n} included)
            self.i += 1
            self.out.append("\\{")
            return
        self.i = m.end()
        self.out.append(m.group(0))
        self.quant_suffix()

    # -- groups -----------------------------------------------------------
    def group(self) -> None:
        p = self.p
        i = self.i
        if p.startswith("(*", i):
            raise PcreError(f"PCRE verb {p[i:p.find(')', i) + 1]!r} not supported")
        if not p.startswith("(?", i):
            self.i += 1
            self.ngroups += 1
            self.closers.append(0)
            self.out.append("(")
            return
        rest = p[i + 2:i + 3]
        if p.startswith("(?#", i):
            j = p.find(")", i)
            if j < 0:
                raise PcreError("unterminated comment group")
            self.i = j + 1
            return
        m = re.compile(r"\(\?(?:P?<([A-Za-z_]\w*)>|'([A-Za-z_]\w*)')").match(p, i)
        if m:
            self.i = m.end()
            self.ngroups += 1
            self.closers.append(0)
            self.out.append(f"(?P<{m.group(1) or m.group(2)}>")
            return
        m = re.compile(r"\(\?P=([A-Za-z_]\w*)\)").match(p, i)
        if m:
            self.i = m.end()
            self.out.append(m.group(0))
            return
        if p.startswith(("(?<=", "(?<!"), i) and self.lookbehind(i):
            return
        if rest in (":", "=", "!", ">") or p.startswith(("(?<=", "(?<!"), i):
            k = 4 if p.startswith(("(?<=", "(?<!"), i) else 3
            self.i = i + k
            self.closers.append(0)
            self.out.append(p[i:i + k])
            return
        if rest == "(":  # conditional (?(1)..|..) / (?(name)..)
            m = re.compile(r"\(\?\((\d+|<?[A-Za-z_]\w*>?|'[A-Za-z_]\w*')\)").match(p, i)
            if not m:
                raise PcreError("unsupported conditional group")
            self.i = m.end()
            self.closers.append(0)
            self.out.append("(?(" + m.group(1).strip("<>'") + ")")
            return
        m = re.compile(r"\(\?([a-zA-Z]*)(?:-([a-zA-Z]*))?([:)])").match(p, i)
        if not m:
            raise PcreError(f"unsupported group {p[i:i + 4]!r}")
        on, off, end = m.group(1), m.group(2) or "", m.group(3)
        bad = set(on + off) - set("imsx")
        if bad:
            raise PcreError(f"inline option (?{''.join(sorted(bad))}) not supported")
        self.i = m.end()
        if "x" in on:
            self.extended = True
        flags = on + ("-" + off if off else "")
        if end == ":":
            self.closers.append(0)
            self.out.append(f"(?{flags}:" if flags else "(?:")
            return
        # (?i) mid-pattern: scoped group up to the end of the enclosing group
        if not flags:
            return
        if off:
            self.out.append(f"(?{flags}:")
        else:
            self.out.append(f"(?{on}:")
        self.closers[-1] += 1

    def lookbehind(self, i: int) -> bool:
        """PCRE allows alternatives of different fixed lengths in a look-behind;
        Python does not.  ``(?<=a|bc)`` -> ``(?:(?<=a)|(?<=bc))``, ``(?<!a|bc)`` ->
        ``(?<!a)(?<!bc)``.  Returns False when the body has no top-level '|'."""
        end = _group_end(self.p, i)
        body = self.p[i + 4:end]
        alts = _split_top(body)
        if len(alts) < 2:
            return False
        neg = self.p[i + 3] == "!"
        parts = []
        for alt in alts:
            sub = _Translator(alt, self.ungreedy, self.dollar_endonly, self.extended)
            sub.ngroups = self.ngroups
            text = sub.run()
            if sub.ngroups != self.ngroups:
                raise PcreError("capturing group inside a variable-length look-behind not supported")
            parts.append(("(?<!" if neg else "(?<=") + text + ")")
        self.out.append("".join(parts) if neg else "(?:" + "|".join(parts) + ")")
        self.i = end + 1
        return True

    # -- escapes ----------------------------------------------------------
    def escape(self, in_class: bool) -> str:
        p = self.p
        i = self.i
        if i + 1 >= len(p):
            raise PcreError("pattern ends with a backslash")
        c = p[i + 1]
        self.i = i + 2
        if c == "x":
            if p.startswith("{", self.i):
                j = p.find("}", self.i)
                if j < 0:
                    raise PcreError("unterminated \\x{")
                try:
                    cp = int(p[self.i + 1:j] or "0", 16)
                except ValueError:
                    raise PcreError(f"bad \\x{{{p[self.i + 1:j]}}}") from None
                self.i = j + 1
                return _hex(cp)
            m = re.compile(r"[0-9a-fA-F]{1,2}").match(p, self.i)
            if not m:
                return "\\x00"
            self.i = m.end()
            return _hex(int(m.group(0), 16))
        if c == "o" and p.startswith("{", self.i):
            j = p.find("}", self.i)
            if j < 0:
                raise PcreError("unterminated \\o{")
            cp = int(p[self.i + 1:j], 8)
            self.i = j + 1
            return _hex(cp)
        if c in "01234567" and (c == "0" or in_class):
            m = re.compile(r"[0-7]{1,3}").match(p, i + 1)
            self.i = m.end()
            return _hex(int(m.group(0), 8))
        if c in "123456789":
            m = re.compile(r"\d+").match(p, i + 1)
            num = m.group(0)
            # PCRE: a back-reference if that many groups could exist, else octal
            if int(num) < 10 or int(num) <= self.ngroups:
                self.i = m.end()
                return "\\" + num + ("" if self.i >= len(p) or not p[self.i].isdigit() else "")
            m = re.compile(r"[0-7]{1,3}").match(p, i + 1)
            if not m:
                raise PcreError(f"bad escape \\{num}")
            self.i = m.end()
            return _hex(int(m.group(0), 8))
        if c == "e":
            return "\\x1b"
        if c == "a":
            return "\\x07"
        if c == "c":
            if self.i >= len(p):
                raise PcreError("\\c at end of pattern")
            ch = p[self.i]
            self.i += 1
            return _hex(ord(ch.upper()) ^ 0x40)
        if c in "hv":  # horizontal / vertical white space
            chars = _H if c == "h" else _V
            return chars if in_class else f"[{chars}]"
        if c in "HV":
            if in_class:
                raise PcreError(f"\\{c} inside a character class not supported")
            return f"[^{_H if c == 'H' else _V}]"
        if c == "N" and not in_class:
            return r"[^\n]"
        if c == "R" and not in_class:
            return r"(?:\r\n|[\n\x0b\x0c\r\x85])"
        if c == "Q":
            j = p.find("\\E", self.i)
            lit = p[self.i:] if j < 0 else p[self.i:j]
            self.i = len(p) if j < 0 else j + 2
            return "".join("\\" + ch if not ch.isalnum() else ch for ch in lit)
        if c == "E":
            return ""
        if in_class:
            if c in "dDsSwWtnrfb\\]-^[":
                return "\\x08" if c == "b" else "\\" + c
            if c.isalnum():
                raise PcreError(f"escape \\{c} inside a character class not supported")
            return _literal_class(c)
        if c == "Z":
            return r"(?=\n?\Z)"
        if c == "z":
            return r"\Z"
        if c in "AbBdDsSwWtnrf":
            return "\\" + c
        if c == "k":
            m = re.compile(r"<([A-Za-z_]\w*)>|'([A-Za-z_]\w*)'|\{([A-Za-z_]\w*)\}").match(p, self.i)
            if not m:
                raise PcreError("bad \\k back-reference")
            self.i = m.end()
            return f"(?P={m.group(1) or m.group(2) or m.group(3)})"
        if c == "g":
            m = re.compile(r"\{(-?\d+|[A-Za-z_]\w*)\}|(-?\d+)").match(p, self.i)
            if not m:
                raise PcreError("bad \\g back-reference")
            self.i = m.end()
            ref = m.group(1) or m.group(2)
            if ref.startswith("-"):
                raise PcreError("relative back-reference \\g{-n} not supported")
            return f"(?:\\{ref})" if ref.isdigit() else f"(?P={ref})"
        if c in "KGpPXC":
            raise PcreError(f"\\{c} not supported")
        if c.isalnum():
            raise PcreError(f"unknown escape \\{c}")
        return _literal(c)

    def char_class(self) -> str:
        p = self.p
        out = ["["]
        self.i += 1
        if p.startswith("^", self.i):
            out.append("^")
            self.i += 1
        first = True
        while True:
            if self.i >= len(p):
                raise PcreError("missing ']'")
            c = p[self.i]
            if c == "]" and not first:
                self.i += 1
                out.append("]")
                return "".join(out)
            first = False
            if c == "\\":
                out.append(self.escape(in_class=True))
                continue
            if c == "[":
                m = re.compile(r"\[:(\^?)([a-z]+):\]").match(p, self.i)
                if m:
                    if m.group(2) not in _POSIX:
                        raise PcreError(f"unknown POSIX class [:{m.group(2)}:]")
                    if m.group(1):
                        raise PcreError("negated POSIX class not supported")
                    out.append(_POSIX[m.group(2)])
                    self.i = m.end()
                    continue
            self.i += 1
            out.append(_literal_class(c))


def _scan(p: str, i: int):
    """Yield (index, char, depth) of the structural characters of ``p`` from ``i``,
    skipping escapes and character classes; depth counts open parentheses."""
    depth = 0
    n = len(p)
    while i < n:
        c = p[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            j = i + 1
            if j < n and p[j] == "^":
                j += 1
            if j < n and p[j] == "]":
                j += 1
            while j < n and p[j] != "]":
                if p[j] == "\\":
                    j += 1
                elif p[j] == "[" and p.startswith("[:", j):
                    k = p.find(":]", j + 2)
                    if k > 0:
                        j = k + 1
                j += 1
            i = j + 1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        yield i, c, depth
        i += 1


def _group_end(p: str, i: int) -> int:
    for j, c, depth in _scan(p, i):
        if c == ")" and depth == 0:
            return j
    raise PcreError("missing ')'")


def _split_top(body: str) -> list[str]:
    parts, last = [], 0
    for j, c, depth in _scan(body, 0):
        if c == "|" and depth == 0:
            parts.append(body[last:j])
            last = j + 1
    parts.append(body[last:])
    return parts


def _literal_class(c: str) -> str:
    return "\\" + c if c in "[]\\^&~|" else c


_PCRE_FLAG_HTTP = {
    "U": "http_uri", "I": "http_raw_uri", "P": "http_client_body", "Q": "http_server_body",
    "H": "http_header", "D": "http_raw_header", "M": "http_method", "C": "http_cookie",
    "S": "http_stat_code", "Y": "http_stat_msg", "V": "http_user_agent", "W": "http_host",
    "Z": "http_raw_host", "K": "http_raw_cookie",
}


class UnsupportedFlag(PcreError):
    """A pcre modifier naming an application-layer buffer (reported as that keyword)."""

    def __init__(self, keyword: str):
        super().__init__(keyword)
        self.keyword = keyword


def parse_pcre(value: str):
    """Split ``[!]"/re/flags"`` -> (negated, pattern text, flags)."""
    v = value.strip()
    neg = False
    if v.startswith("!"):
        neg = True
        v = v[1:].strip()
    if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        v = v[1:-1]  # quotes are optional, as in Suricata
    if v.startswith("m") and len(v) > 1 and not v[1].isalnum():
        delim = v[1]
        v = v[1:]
    else:
        delim = "/"
    if not v.startswith(delim):
        raise PcreError("pcre must start with '/'")
    end = v.rfind(delim)
    if end <= 0:
        raise PcreError("pcre has no closing '/'")
    return neg, v[1:end], v[end + 1:]


def compile_pcre(pattern: str, flags: str):
    """Translate and compile; returns (regex, relative, anchored, rawbytes).

    Raises ``UnsupportedFlag`` for HTTP modifiers, ``PcreError`` otherwise.
    """
    reflags = 0
    relative = anchored = rawbytes = ungreedy = endonly = False
    for f in flags:
        if f == "i":
            reflags |= re.I
        elif f == "s":
            reflags |= re.S
        elif f == "m":
            reflags |= re.M
        elif f == "x":
            reflags |= re.X
        elif f == "A":
            anchored = True
        elif f == "E":
            endonly = True
        elif f == "G":
            ungreedy = True
        elif f == "R":
            relative = True
        elif f == "B":
            rawbytes = True
        elif f == "O":
            pass  # override match-limit: Python has none
        elif f in _PCRE_FLAG_HTTP:
            raise UnsupportedFlag(_PCRE_FLAG_HTTP[f])
        elif f.isspace():
            continue
        else:
            raise PcreError(f"unknown pcre modifier {f!r}")
    text = _Translator(pattern, ungreedy, endonly and not reflags & re.M, bool(reflags & re.X)).run()
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise PcreError("pattern is not encodable as bytes") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rx = re.compile(data, reflags)
    except (re.error, OverflowError, RecursionError) as e:
        raise PcreError(f"not translatable to Python re: {e}") from None
    return rx, relative, anchored, rawbytes


def guarded(rx):
    """The same pattern compiled with the ``regex`` engine (see the module
    docstring), or ``rx`` itself when that engine is missing or refuses it.

    Done when detect compiles a rule's matcher, not at load: it costs about
    1 ms per pattern and most loaded rules never reach their pcre.
    """
    if _engine is re:
        return rx
    flags = ((_engine.I if rx.flags & re.I else 0) | (_engine.S if rx.flags & re.S else 0)
             | (_engine.M if rx.flags & re.M else 0) | (_engine.X if rx.flags & re.X else 0))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _engine.compile(rx.pattern, flags)
    except (_engine.error, OverflowError, RecursionError):
        return rx
