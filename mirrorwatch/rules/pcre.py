"""The ``pcre`` keyword as Suricata parses and runs it (src/detect-pcre.c), on the real PCRE2.

``pcre:"/regex/flags"``: the regex goes to PCRE2 unchanged (no translation),
compiled on bytes without UTF mode, with Suricata's options:

- ``i s m x`` CASELESS, DOTALL, MULTILINE, EXTENDED; ``E`` DOLLAR_ENDONLY;
  ``G`` UNGREEDY; ``A`` anchored at the start position (``Pcre.anchored``:
  detect calls ``match`` instead of ``search``);
- ``R`` relative to the previous match, ``B`` rawbytes;
- ``U I P Q H D M C S Y V W Z`` select an HTTP buffer (``BUFFER_FLAGS``);
- ``O`` the match limits below come from the settings instead of Suricata's
  built-in defaults;
- groups do not capture (PCRE2_NO_AUTO_CAPTURE) unless the regex refers to
  one by number, as Suricata compiles them; ``(?P<pkt_x>``/``flow_``/``alert_``
  variable captures are not supported.

Match limits: every regex carries ``(*LIMIT_MATCH=n)(*LIMIT_DEPTH=m)`` (after
its own leading ``(*VERB)`` items, so ours win).  Without ``O`` they are
Suricata's built-in 3500 / 1500 (SC_MATCH_LIMIT_DEFAULT,
SC_MATCH_LIMIT_RECURSION_DEFAULT); with ``O`` the settings
``pcre.match-limit`` / ``pcre.match-limit-recursion`` (same defaults), as in
Suricata's DetectPcreParse.  A search that hits a limit (or any other PCRE2
match error, e.g. bad UTF-8 under a ``(*UTF)`` regex) is no match and is
counted in ``STATS``.  No wall clock is involved: the same input gives the same
answer on any machine.  (PCRE2 ignores the depth limit under JIT, as in
Suricata, which also runs its regexes JIT-compiled.)

The ``pcre2`` binding adds PCRE2_ALT_BSUX to every pattern, which changes the
meaning of ``\\x{41}`` and ``\\u``; Suricata does not set it, so patterns are
compiled through the binding's ``_cy.compile`` with that option disabled
(setup.cfg pins the binding's version).  Behaviour follows the bundled PCRE2
(``library_version()``): e.g. ``a{,2}`` is a quantifier since PCRE2 10.43.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pcre2
from pcre2 import _cy

# PCRE2 compile options (pcre2.h)
PCRE2_ALT_BSUX = 0x00000002
PCRE2_CASELESS = 0x00000008
PCRE2_DOLLAR_ENDONLY = 0x00000010
PCRE2_DOTALL = 0x00000020
PCRE2_EXTENDED = 0x00000080
PCRE2_MULTILINE = 0x00000400
PCRE2_NO_AUTO_CAPTURE = 0x00002000
PCRE2_UNGREEDY = 0x00040000

# PCRE2 match error codes that mean "a resource limit was hit"
LIMIT_ERRORS = frozenset((-46, -47, -53, -63))  # JIT stack, match, depth, heap
# pcre2_compile: "reference to non-existent subpattern" (retry with capturing groups)
_ERR_NO_SUBPATTERN = 115

# Suricata's built-in limits (detect-pcre.h) and the defaults of the settings
# pcre.match-limit / pcre.match-limit-recursion used under the O flag
DEFAULT_MATCH_LIMIT = 3500
DEFAULT_MATCH_LIMIT_RECURSION = 1500

OPTION_FLAGS = {"i": PCRE2_CASELESS, "s": PCRE2_DOTALL, "m": PCRE2_MULTILINE, "x": PCRE2_EXTENDED,
                "E": PCRE2_DOLLAR_ENDONLY, "G": PCRE2_UNGREEDY}
# flag -> the buffer it inspects (Suricata's list, by canonical keyword name)
BUFFER_FLAGS = {
    "U": "http.uri", "I": "http.uri.raw", "P": "http.request_body", "Q": "file.data",
    "H": "http.header", "D": "http.header.raw", "M": "http.method", "C": "http.cookie",
    "S": "http.stat_code", "Y": "http.stat_msg", "V": "http.user_agent", "W": "http.host",
    "Z": "http.host.raw",
}
# buffer flags that Suricata refuses together with B (rawbytes)
_NOT_WITH_B = frozenset("UVWZHIMC")

_LEADING_VERBS = re.compile(rb"(?:\(\*[A-Z_]+(?:=\d+)?\))*")
_VAR_CAPTURE = re.compile(r"\(\?P<(?:pkt|flow|alert)_[A-Za-z0-9_]+>")
_CAPTURE_TARGETS = re.compile(r"^(.*?)[ ,]+((?:pkt|flow|alert):\S.*)$", re.S)


class PcreError(ValueError):
    """A pcre value that cannot be loaded (one line)."""


class UnsupportedPcre(PcreError):
    """Valid Suricata syntax for a feature not supported here; ``feature`` names it."""

    def __init__(self, feature: str):
        super().__init__(feature)
        self.feature = feature


class PcreStats:
    """Process-wide counters for the stats event: searches cut off by a limit, other match errors."""

    __slots__ = ("limit_hits", "match_errors")

    def __init__(self) -> None:
        self.limit_hits = 0
        self.match_errors = 0

    def as_dict(self) -> dict[str, int]:
        return {"pcre_limit_hits": self.limit_hits, "pcre_match_errors": self.match_errors}


STATS = PcreStats()


@dataclass(frozen=True)
class PcreLimits:
    """``match_limit`` (pcre.match-limit) bounds backtracking steps, ``depth_limit``
    (pcre.match-limit-recursion) the backtracking depth, per search."""

    match_limit: int = DEFAULT_MATCH_LIMIT
    depth_limit: int = DEFAULT_MATCH_LIMIT_RECURSION


BUILTIN_LIMITS = PcreLimits()


@dataclass(frozen=True)
class PcreFlags:
    """The meaning of the letters after the closing '/'."""

    options: int = 0
    anchored: bool = False
    relative: bool = False
    rawbytes: bool = False
    override_limits: bool = False
    buffer: str | None = None


class CompiledPcre:
    """One compiled regex.  ``search``/``match(subject, pos=0)`` take bytes,
    bytearray or memoryview and return a ``pcre2.Match`` (``start()``, ``end()``,
    ``group()``) or None; a limit hit or match error is None and counted in STATS."""

    __slots__ = ("pattern", "options", "jit", "_rx")

    def __init__(self, pattern: bytes, options: int, jit: bool):
        self.pattern = pattern  # as compiled, limit verbs included
        self.options = options
        self.jit = jit
        self._rx = self._compile()

    def _compile(self):
        code = _cy.compile(self.pattern, self.options, PCRE2_ALT_BSUX)
        if self.jit:
            try:
                _cy.jit_compile(code)
            except pcre2.LibraryError:
                self.jit = False  # PCRE2 runs it interpreted, as Suricata falls back
        self._rx = pcre2.Pattern(code, self.pattern, pcre2.RegexFlag(self.options), self.jit, None)
        return self._rx

    def __eq__(self, other) -> bool:  # the same regex: same pattern and options (JIT or not)
        return isinstance(other, CompiledPcre) and (self.pattern, self.options) == (other.pattern, other.options)

    def __hash__(self) -> int:
        return hash((self.pattern, self.options))

    def __reduce__(self):
        # the rule-set cache keeps the pattern, not PCRE2's compiled code (see ``restore_pcre``)
        return restore_pcre, (self.pattern, self.options, self.jit)

    def search(self, subject, pos: int = 0):
        rx = self._rx
        if rx is None:
            rx = self._compile()
        try:
            return rx.search(subject, pos)
        except pcre2.LibraryError as e:
            _count(e)
            return None

    def match(self, subject, pos: int = 0):
        rx = self._rx
        if rx is None:
            rx = self._compile()
        try:
            return rx.match(subject, pos)
        except pcre2.LibraryError as e:
            _count(e)
            return None

    def __repr__(self) -> str:
        return f"<CompiledPcre {self.pattern!r} options={self.options:#x} jit={self.jit}>"


def restore_pcre(pattern: bytes, options: int, jit: bool) -> CompiledPcre:
    """A CompiledPcre from the rule-set cache: compiled on first use (it compiled when the rule
    set was parsed, with the same PCRE2: the cache key holds its version).  Detect matches
    with ``guarded``'s JIT form, so a cached rule set's own copies are rarely compiled at all."""
    rx = CompiledPcre.__new__(CompiledPcre)
    rx.pattern, rx.options, rx.jit, rx._rx = pattern, options, jit, None
    return rx


def _count(err: pcre2.LibraryError) -> None:
    """Count a failed search; the caller returns None (no match)."""
    if getattr(err, "code", None) in LIMIT_ERRORS:
        STATS.limit_hits += 1
    else:
        STATS.match_errors += 1


def guarded(rx: CompiledPcre) -> CompiledPcre:
    """The same regex JIT-compiled for matching (detect calls this once per rule it
    compiles; loading validates without JIT, which is cheaper).  Same contract as
    ``CompiledPcre``: limits apply, a limit hit is counted and is no match."""
    if rx.jit:
        return rx
    return CompiledPcre(rx.pattern, rx.options, jit=True)


def split_pcre(value: str) -> tuple[str, str]:
    """``/regex/flags`` (quotes and '!' already removed) -> (regex, flags).

    The regex runs to the last '/' that is not escaped, as Suricata's parse
    regex; ``, flow:name`` / ``, pkt:name`` capture targets are refused.
    """
    v = value.strip()
    m = _CAPTURE_TARGETS.match(v)
    if m and m.group(1).rstrip().count("/") >= 2:
        raise UnsupportedPcre("pcre variable capture")
    if not v.startswith("/"):
        raise PcreError("must be /regex/flags")
    for end in range(len(v) - 1, 0, -1):
        if v[end] == "/" and (len(v[:end]) - len(v[:end].rstrip("\\"))) % 2 == 0:
            return v[1:end], v[end + 1:]
    raise PcreError("has no closing '/'")


def parse_flags(flags: str, regex: str) -> PcreFlags:
    """Suricata's modifier letters -> PcreFlags; unknown or conflicting letters raise."""
    options = PCRE2_NO_AUTO_CAPTURE
    anchored = relative = rawbytes = override = False
    buffer = None
    for f in flags:
        if f in OPTION_FLAGS:
            options |= OPTION_FLAGS[f]
        elif f == "A":
            anchored = True
        elif f == "R":
            relative = True
        elif f == "O":
            override = True
        elif f == "B":
            if buffer is not None:
                raise PcreError("modifier 'B' inconsistent with the chosen buffer")
            rawbytes = True
        elif f in BUFFER_FLAGS:
            if rawbytes and f in _NOT_WITH_B:
                raise PcreError(f"modifier '{f}' inconsistent with 'B'")
            if buffer is not None:
                raise PcreError("only one modifier may choose the buffer")
            buffer = BUFFER_FLAGS[f]
        else:
            raise PcreError(f"unknown modifier {f!r}")
    if buffer == "http.host" and not options & PCRE2_CASELESS and _has_upper(regex):
        raise PcreError("'W' (http.host is lower case) with an upper case character: write it in lower case")
    return PcreFlags(options, anchored, relative, rawbytes, override, buffer)


def _has_upper(regex: str) -> bool:
    """Suricata's DetectPcreHasUpperCase: an upper case letter outside escapes (and \\xHH)."""
    i, n = 0, len(regex)
    while i < n:
        if regex[i] == "\\":
            i += 4 if regex[i + 1:i + 2] == "x" else 2
            continue
        if regex[i].isupper():
            return True
        i += 1
    return False


def compile_pcre(regex: str, flags: PcreFlags, limits: PcreLimits = BUILTIN_LIMITS) -> CompiledPcre:
    """Compile (without JIT: detect asks ``guarded`` for the JIT form)."""
    if _VAR_CAPTURE.search(regex):
        raise UnsupportedPcre("pcre variable capture")
    if "\\X" in regex:
        raise UnsupportedPcre("pcre \\X")  # Suricata refuses it in fuzzing builds as too slow
    body = regex.encode("utf-8", "surrogateescape")
    lead = _LEADING_VERBS.match(body).end()
    limit = b"(*LIMIT_MATCH=%d)(*LIMIT_DEPTH=%d)" % (limits.match_limit, limits.depth_limit)
    pattern = body[:lead] + limit + body[lead:]
    try:
        return CompiledPcre(pattern, flags.options, jit=False)
    except pcre2.PatternError as e:
        if e.code != _ERR_NO_SUBPATTERN:
            raise PcreError(_message(e, lead, len(limit))) from None
    # a numbered back-reference: compile with capturing groups, as Suricata retries
    try:
        return CompiledPcre(pattern, flags.options & ~PCRE2_NO_AUTO_CAPTURE, jit=False)
    except pcre2.PatternError as e:
        raise PcreError(_message(e, lead, len(limit))) from None


def _message(err: pcre2.PatternError, lead: int, inserted: int) -> str:
    """PCRE2's compile error, with the offset counted in the rule's own regex."""
    text = str(err).split("; ", 1)[-1]
    pos = getattr(err, "pos", 0)
    if pos >= lead + inserted:
        pos -= inserted
    return f"{text} (offset {pos})"


def library_version() -> str:
    return str(pcre2.__libpcre2_version__)
