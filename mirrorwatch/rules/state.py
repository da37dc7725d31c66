"""The per-rule parse state: where the next payload keyword goes.

Suricata keeps a "current list" while it reads a rule's options
(src/detect-engine-buffer.c, detect-parse.c); this class is its model:

- a sticky buffer keyword (``http.uri;``) makes the following payload
  keywords inspect that buffer, until the next sticky buffer or ``pkt_data``;
  switching away from a sticky buffer that got no keyword is an error;
- transforms (``dotprefix;``) must directly follow a sticky buffer (or another
  transform) and apply to the keywords after them; transforms that no keyword
  consumes are an error;
- a legacy content modifier (``content:"x"; http_uri;``) moves the last
  content of the payload list to the tail of that buffer's list; it is an
  error while a sticky buffer is set;
- relative isdataat / byte_* without a sticky buffer join the list of the last
  payload keyword (Suricata's SigMatchListSMBelongsTo), else the payload;
- a buffer or keyword of an application protocol sets ``Rule.app_proto``; two
  different protocols in one rule are an error;
- ``base64_data`` makes the rule's base64_data list current as a sticky buffer does, but
  its keywords go into that list (``Base64Decode.data``), not ``Rule.matches``; it may stay
  empty (Suricata loads such a rule; it never matches).
"""

from __future__ import annotations

from .buffers import APP_PROTOCOLS, BUFFERS, FILE_PROTOCOLS
from .matches import Bsize, Content, Pcre
from .model import Rule
from .options import RuleError

PAYLOAD = "payload"
B64_DATA = "base64_data"  # the current list after base64_data (no buffer of its own)
# canonical application protocol -> transports it runs on
APP_TRANSPORTS = {name: transports for name, transports in APP_PROTOCOLS.values()}


class ParseState:
    __slots__ = ("rule", "ctx", "warnings", "vars", "has_priority", "seen", "last_content", "last_match",
                 "sticky", "transforms", "pending", "list_set", "buffer_count", "b64")

    def __init__(self, rule: Rule, ctx, warnings: list[str]):
        self.rule = rule
        self.ctx = ctx
        self.warnings = warnings
        self.vars: set[str] = set()  # byte_extract / byte_math names defined so far
        self.has_priority = False
        self.seen: set[str] = set()  # keywords that may appear once
        self.last_content: Content | None = None
        self.last_match = None  # last payload keyword added (bsize aside)
        self.sticky: str | None = None
        self.transforms: tuple[str, ...] = ()
        self.pending: list[str] = []
        self.list_set = False
        self.buffer_count = 0
        self.b64: list | None = None  # the rule's base64_data keywords, once it has a base64_decode

    def once(self, keyword: str) -> None:
        if keyword in self.seen:
            raise RuleError(f"more than one '{keyword}'")
        self.seen.add(keyword)

    # -- application protocol -------------------------------------------------
    def set_app_proto(self, proto: str, keyword: str) -> None:
        rule = self.rule
        if rule.app_proto is not None:
            if rule.app_proto != proto:
                raise RuleError(f"'{keyword}' is {proto}, the rule is {rule.app_proto}")
            return
        transports = APP_TRANSPORTS[proto]
        if rule.proto in ("tcp", "udp"):
            transports = tuple(t for t in transports if t == rule.proto)
        elif rule.proto != "ip":
            transports = ()
        if not transports:
            raise RuleError(f"'{keyword}' ({proto}) cannot be used on a {rule.proto} rule")
        rule.app_proto = proto
        rule.transport = transports
        if len(transports) == 1:
            rule.proto = transports[0]

    def _claim(self, name: str, keyword: str) -> None:
        proto = BUFFERS[name].app_proto
        if proto is not None:
            self.set_app_proto(proto, keyword)
        elif self.rule.app_proto is not None and self.rule.app_proto not in FILE_PROTOCOLS:
            raise RuleError(f"'{keyword}' cannot be used with protocol {self.rule.app_proto}")

    # -- sticky buffers and transforms -----------------------------------------
    def _leave_buffer(self) -> None:
        if self.pending:
            raise RuleError(f"transform(s) {', '.join(self.pending)} not followed by a match")
        if self.sticky not in (None, B64_DATA) and self.buffer_count == 0:
            raise RuleError(f"sticky buffer '{self.sticky}' has no matches")

    def set_sticky(self, name: str, keyword: str) -> None:
        self._leave_buffer()
        self._claim(name, keyword)
        self.sticky = name
        self.transforms = ()
        self.list_set = True
        self.buffer_count = 0

    def reset_sticky(self) -> None:
        """pkt_data: back to the packet payload."""
        self._leave_buffer()
        self.sticky = None
        self.transforms = ()
        self.list_set = False
        self.buffer_count = 0

    def base64_data_list(self) -> list:
        """The rule's one base64_data list (every base64_decode of the rule inspects it)."""
        if self.b64 is None:
            self.b64 = []
        return self.b64

    def set_base64_data(self) -> None:
        if self.b64 is None:
            raise RuleError("'base64_data' needs a base64_decode before it")
        self._leave_buffer()
        self.sticky = B64_DATA
        self.transforms = ()
        self.list_set = False  # no transform may follow
        self.buffer_count = 0

    def add_transform(self, transform: str) -> None:
        if self.sticky is None:
            raise RuleError(f"transform '{transform}' needs a sticky buffer before it")
        if self.sticky == B64_DATA:
            raise RuleError(f"transform '{transform}' cannot apply to base64_data")
        if not self.list_set:
            raise RuleError(f"transform '{transform}' must directly follow a sticky buffer")
        self.pending.append(transform)

    def current(self) -> tuple[str, tuple[str, ...]]:
        """(buffer, transforms) for a keyword added now; consumes pending transforms."""
        if self.pending:
            self.transforms = tuple(self.pending)
            self.pending = []
            self.list_set = False
            self.buffer_count = 0
        return (self.sticky or PAYLOAD, self.transforms)

    def relative_target(self, relative: bool) -> tuple[str, tuple[str, ...]]:
        """Where an isdataat / byte_* keyword goes (see the module docstring)."""
        if self.sticky is not None:
            return self.current()
        if relative and self.last_match is not None:
            return (self.last_match.buffer, self.last_match.transforms)
        return (PAYLOAD, ())

    def add(self, match, target: tuple[str, tuple[str, ...]] | None = None) -> None:
        """Append a payload keyword to its buffer (the current one unless ``target``)."""
        match.buffer, match.transforms = target if target is not None else self.current()
        (self.b64 if match.buffer == B64_DATA else self.rule.matches).append(match)
        if self.sticky is not None and match.buffer == self.sticky:
            self.buffer_count += 1
        if not isinstance(match, Bsize):
            self.last_match = match
        if isinstance(match, Content):
            self.last_content = match

    def has_previous(self, buffer: str, transforms: tuple[str, ...]) -> bool:
        """Is there a content or pcre in that buffer already (pcre R's requirement)?"""
        return any(isinstance(m, (Content, Pcre)) and m.buffer == buffer and m.transforms == transforms
                   for m in self.rule.matches)

    # -- legacy content modifiers -------------------------------------------------
    def move_last_content(self, name: str, keyword: str) -> None:
        if self.sticky is not None:
            raise RuleError(f"'{keyword}' while sticky buffer '{self.sticky}' is set (use pkt_data first)")
        matches = self.rule.matches
        idx = next((i for i in range(len(matches) - 1, -1, -1)
                    if isinstance(matches[i], Content) and matches[i].buffer == PAYLOAD), None)
        if idx is None:
            raise RuleError(f"'{keyword}' needs a preceding content")
        content = matches[idx]
        if content.rawbytes:
            raise RuleError(f"'{keyword}' cannot be used with rawbytes")
        self._claim(name, keyword)
        content.buffer = name
        del matches[idx]
        matches.append(content)

    def finish(self) -> None:
        self._leave_buffer()
