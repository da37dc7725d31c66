"""Suricata/Snort rule text -> ``Rule`` objects.

One rule is ``action proto src sport dir dst dport (key:value; key; ...)``.
Options are split at unescaped ``;``; each keyword has a handler below that
fills the Rule.  Anything the engine cannot evaluate (application-layer
protocols, sticky buffers, http modifiers...) raises ``RuleError`` with the
reason ``unsupported keyword 'x'`` / ``unsupported protocol 'x'`` so the
loader can report it and carry on with the next rule: one bad rule never
stops the others.
"""

from __future__ import annotations

import re

from .addresses import ExprError, HeaderVars
from .model import (
    Bsize,
    ByteExtract,
    ByteJump,
    ByteMath,
    ByteTest,
    Content,
    FlowSpec,
    HeaderCheck,
    IsDataAt,
    Pcre,
    Rule,
    TcpFlags,
    Threshold,
)
from .pcre import PcreError, UnsupportedFlag, compile_pcre, parse_pcre


class RuleError(ValueError):
    """A rule that cannot be loaded; ``str()`` is the one-line reason."""


def unsupported(keyword: str) -> RuleError:
    return RuleError(f"unsupported keyword '{keyword}'")


ACTIONS = frozenset(("alert", "pass", "drop", "reject", "rejectsrc", "rejectdst", "rejectboth"))

# rule protocol -> (proto, ipv, tcp_scope).  Suricata meanings: tcp-pkt matches
# only individual packets' payload, tcp-stream only the reassembled stream;
# ipv4/ipv6 are 'ip' restricted to one IP version; 'icmp' covers ICMPv4 and
# ICMPv6 (Suricata), icmpv4/icmpv6 one of them.
PROTOCOLS = {
    "tcp": ("tcp", 0, None),
    "tcp-pkt": ("tcp", 0, "packet"),
    "tcp-stream": ("tcp", 0, "stream"),
    "udp": ("udp", 0, None),
    "icmp": ("icmp", 0, None),
    "icmpv4": ("icmp", 4, None),
    "icmpv6": ("icmpv6", 6, None),
    "ip": ("ip", 0, None),
    "ipv4": ("ip", 4, None),
    "ip4": ("ip", 4, None),
    "ipv6": ("ip", 6, None),
    "ip6": ("ip", 6, None),
}
APP_PROTOCOLS = frozenset((
    "http", "http1", "http2", "ftp", "ftp-data", "tls", "ssl", "smb", "dcerpc", "dns", "smtp", "imap",
    "pop3", "ssh", "enip", "cip", "dnp3", "modbus", "nfs", "ntp", "tftp", "ikev2", "ike", "krb5", "dhcp",
    "snmp", "sip", "rfb", "mqtt", "rdp", "quic", "pgsql", "telnet", "websocket", "ldap", "bittorrent-dht",
    "template", "http-any", "doh2", "sctp", "pkthdr", "msn", "irc", "jabber", "nntp", "ppp", "arp",
))

# the payload matcher recurses once per keyword: bound it far above real rules
MAX_PAYLOAD_KEYWORDS = 256

# classtype-less default priority (Suricata)
DEFAULT_PRIORITY = 3

_INT_RE = re.compile(r"^[+-]?(0x[0-9a-fA-F]+|\d+)$")
_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


# -- option splitting -------------------------------------------------------
_OPT_RE = re.compile(r"\s*([^:;]*?)\s*(?:;|:((?:[^;\\]|\\.)*)(?:;|\Z)|\Z)", re.S)


def split_options(body: str) -> list[tuple[str, str | None]]:
    """``msg:"a\\;b"; nocase; ...`` -> [('msg', '"a\\;b"'), ('nocase', None), ...].

    A value ends at the first ``;`` not escaped by a backslash (Suricata).
    """
    out: list[tuple[str, str | None]] = []
    pos, n = 0, len(body)
    match = _OPT_RE.match
    while pos < n:
        m = match(body, pos)
        if m is None:
            raise RuleError(f"option ends in a lone backslash near {body[pos:pos + 30].strip()!r}")
        key = m.group(1)
        if not key:
            if not body[pos:].strip():
                break
            raise RuleError(f"empty option near {body[pos:pos + 20].strip()!r}")
        value = m.group(2)
        out.append((key.lower(), None if value is None else value.strip()))
        if m.end() == pos:
            raise RuleError(f"cannot split options near {body[pos:pos + 20]!r}")
        pos = m.end()
    return out


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


# -- value helpers ------------------------------------------------------------
def unquote(value: str | None, what: str) -> str:
    if value is None:
        raise RuleError(f"'{what}' needs a value")
    v = value.strip()
    if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        v = v[1:-1]
    return v


def unescape_text(v: str) -> str:
    """msg text: ``\\"`` ``\\;`` ``\\\\`` (and any ``\\x``) -> the character."""
    if "\\" in v:
        v = re.sub(r"\\(.)", r"\1", v)
    return clean_text(v)


def clean_text(v: str) -> str:
    """Rule files are read with surrogateescape; text that ends up in alerts
    (msg, metadata, references) must be valid Unicode: bad bytes become U+FFFD."""
    if v.isascii():
        return v
    return v.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def parse_int(text: str | None, what: str, lo: int | None = None, hi: int | None = None) -> int:
    if text is None:
        raise RuleError(f"'{what}' needs a value")
    t = text.strip()
    if not _INT_RE.match(t):
        raise RuleError(f"{what}: not a number: {t!r}")
    v = int(t, 0) if t.lstrip("+-").lower().startswith("0x") else int(t)
    if lo is not None and v < lo or hi is not None and v > hi:
        raise RuleError(f"{what}: {v} out of range")
    return v


def parse_content(value: str | None) -> tuple[bytes, bool]:
    """``[!]"abc|41 42|d\\;"`` -> (b'abcABd;', negated)."""
    if value is None:
        raise RuleError("'content' needs a value")
    v = value.strip()
    neg = False
    if v.startswith("!"):
        neg = True
        v = v[1:].strip()
    if len(v) < 2 or v[0] != '"' or v[-1] != '"':
        raise RuleError("content must be a quoted string")
    v = v[1:-1]
    out = bytearray()
    i, n = 0, len(v)
    while i < n:
        ch = v[i]
        if ch == "|":
            j = v.find("|", i + 1)
            if j < 0:
                raise RuleError("content has an unterminated |hex| block")
            hexpart = v[i + 1:j].replace(" ", "").replace("\t", "")
            if len(hexpart) % 2 or not all(c in "0123456789abcdefABCDEF" for c in hexpart):
                raise RuleError(f"content has bad hex {v[i:j + 1]!r}")
            out += bytes.fromhex(hexpart)
            i = j + 1
        elif ch == "\\":
            if i + 1 >= n:
                raise RuleError("content ends with a lone backslash")
            nxt = v[i + 1]
            if nxt not in '";:\\':
                raise RuleError(f"content has an invalid escape \\{nxt}")
            out += nxt.encode()
            i += 2
        elif ch == '"':
            raise RuleError("content has an unescaped '\"'")
        else:
            out += ch.encode("utf-8", "surrogateescape")
            i += 1
    if not out:
        raise RuleError("content is empty")
    return bytes(out), neg


def parse_hex(text: str, what: str) -> int:
    """Bitmasks are hexadecimal, with or without 0x (Suricata)."""
    t = text.strip().lower()
    t = t[2:] if t.startswith("0x") else t
    if not t or not all(c in "0123456789abcdef" for c in t) or int(t, 16) > 0xFFFFFFFF:
        raise RuleError(f"{what}: not a 32-bit hex mask: {text.strip()!r}")
    return int(t, 16)


_CMP_RE = re.compile(r"^\s*(!?)\s*(<=|>=|<|>|=|!=)?\s*(0x[0-9a-fA-F]+|-?\d+)\s*(?:(<>|-)\s*(0x[0-9a-fA-F]+|\d+))?\s*$")


def parse_cmp(text: str | None, what: str, hi_limit: int) -> tuple[str, int, int | None]:
    """Suricata's numeric syntax: ``N`` ``!N`` ``<N`` ``>=N`` ``N<>M`` ``N-M`` -> (op, a, b).

    Ranges are exclusive (``a < x < b``) as in Suricata.
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
        if bv > hi_limit or bv <= av:
            raise RuleError(f"{what}: bad range {text.strip()!r}")
        return ("!<>" if neg else "<>"), av, bv
    op = op or "="
    if neg:
        if op not in ("=",):
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


# -- flags ------------------------------------------------------------------
TCP_FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80,
                 "2": 0x40, "1": 0x80, "0": 0}
FRAG_BITS = {"M": 0x1, "D": 0x2, "R": 0x4}


def parse_flagspec(value: str | None, what: str, table: dict[str, int]) -> TcpFlags:
    if value is None:
        raise RuleError(f"'{what}' needs a value")
    spec, _, mask = value.partition(",")
    spec = spec.strip()
    mode = ""
    if spec[:1] in ("+", "*", "!"):
        mode, spec = spec[0], spec[1:].strip()
    elif spec[-1:] in ("+", "*", "!"):
        mode, spec = spec[-1], spec[:-1].strip()
    if not spec:
        raise RuleError(f"{what}: no flags given")
    bits = 0
    for ch in spec.upper():
        if ch not in table:
            raise RuleError(f"{what}: unknown flag {ch!r}")
        if ch == "0" and len(spec) > 1:
            raise RuleError(f"{what}: '0' cannot be combined with other flags")
        bits |= table[ch]
    mbits = 0
    for ch in mask.strip().upper():
        if ch not in table or ch == "0":
            raise RuleError(f"{what}: unknown mask flag {ch!r}")
        mbits |= table[ch]
    return TcpFlags(mode, bits, mbits)


# -- the per-rule parse state -------------------------------------------------
class _State:
    __slots__ = ("rule", "last_content", "vars", "has_priority", "classification", "warnings", "buffer")

    def __init__(self, rule: Rule, classification, warnings):
        self.rule = rule
        self.last_content: Content | None = None
        self.vars: set[str] = set()
        self.has_priority = False
        self.classification = classification
        self.warnings = warnings
        self.buffer = "payload"


def _need_content(st: _State, kw: str) -> Content:
    c = st.last_content
    if c is None:
        raise RuleError(f"'{kw}' needs a preceding content")
    return c


def _num_or_var(st: _State, text: str | None, what: str, lo: int | None = None) -> int | str:
    if text is None:
        raise RuleError(f"'{what}' needs a value")
    t = text.strip()
    if _VAR_RE.match(t):
        if t not in st.vars:
            raise RuleError(f"{what}: unknown byte_extract variable '{t}'")
        return t
    return parse_int(t, what, lo=lo)


def _set_mod(c: Content, attr: str, value) -> None:
    if getattr(c, attr) is not None:
        raise RuleError(f"content has more than one '{attr}'")
    setattr(c, attr, value)


def _check_abs_rel(c: Content) -> None:
    if (c.offset is not None or c.depth is not None) and (c.distance is not None or c.within is not None):
        raise RuleError("content mixes absolute (offset/depth) and relative (distance/within) modifiers")


# keyword handlers: (state, value) -> None
def kw_msg(st, v):
    st.rule.msg = unescape_text(unquote(v, "msg"))


def kw_sid(st, v):
    st.rule.sid = parse_int(v, "sid", lo=1, hi=2**32 - 1)


def kw_gid(st, v):
    st.rule.gid = parse_int(v, "gid", lo=0, hi=2**32 - 1)


def kw_rev(st, v):
    st.rule.rev = parse_int(v, "rev", lo=0, hi=2**32 - 1)


def kw_priority(st, v):
    st.rule.priority = parse_int(v, "priority", lo=1, hi=255)
    st.has_priority = True


def kw_classtype(st, v):
    name = unquote(v, "classtype").strip().lower()
    if not name:
        raise RuleError("'classtype' needs a value")
    if st.rule.classtype is not None:
        raise RuleError("more than one 'classtype'")
    st.rule.classtype = name
    entry = st.classification.get(name)
    if entry is None:
        st.warnings.append(f"unknown classtype '{name}', using default priority {DEFAULT_PRIORITY}")
        return
    st.rule.category = entry[0]
    if not st.has_priority:
        st.rule.priority = entry[1]


def kw_reference(st, v):
    st.rule.references.append(clean_text(unquote(v, "reference").strip()))


def kw_metadata(st, v):
    st.rule.metadata.extend(clean_text(" ".join(p.split())) for p in split_args(v, "metadata") if p)


def kw_content(st, v):
    pattern, neg = parse_content(v)
    c = Content(pattern=pattern, negated=neg, buffer=st.buffer)
    st.rule.matches.append(c)
    st.last_content = c


def kw_nocase(st, v):
    _need_content(st, "nocase").nocase = True


def kw_rawbytes(st, v):
    _need_content(st, "rawbytes").rawbytes = True


def _content_modifier(attr: str, lo: int | None, at_least_pattern: bool):
    """offset/depth/distance/within: a number or byte_extract variable on the last content.

    ``at_least_pattern``: depth and within shorter than the pattern can never
    match; Suricata refuses such rules and so do we.
    """

    def handler(st, v):
        c = _need_content(st, attr)
        if c.startswith:
            raise RuleError(f"startswith cannot be mixed with {attr}")
        n = _num_or_var(st, v, attr, lo=lo)
        if at_least_pattern and isinstance(n, int) and n < len(c.pattern):
            raise RuleError(f"{attr} {n} is smaller than the content length {len(c.pattern)}")
        _set_mod(c, attr, n)
        _check_abs_rel(c)

    return handler


kw_offset = _content_modifier("offset", 0, False)
kw_depth = _content_modifier("depth", 1, True)
kw_distance = _content_modifier("distance", None, False)
kw_within = _content_modifier("within", 1, True)


def kw_fast_pattern(st, v):
    c = _need_content(st, "fast_pattern")
    c.fast_pattern = True
    if v is None:
        return
    t = v.strip().lower()
    if t == "only":
        c.fast_pattern_only = True
        return
    m = re.match(r"^(\d+)\s*,\s*(\d+)$", t)
    if not m:
        raise RuleError(f"fast_pattern: bad value {v!r} (use 'only' or 'offset,length')")
    off, ln = int(m.group(1)), int(m.group(2))
    if ln == 0 or off + ln > len(c.pattern):
        raise RuleError(f"fast_pattern {off},{ln} lies outside the content")
    c.fast_pattern_chop = (off, ln)


def kw_startswith(st, v):
    c = _need_content(st, "startswith")
    if c.offset is not None or c.depth is not None or c.distance is not None or c.within is not None:
        raise RuleError("startswith cannot be mixed with offset/depth/distance/within")
    c.startswith = True


def kw_endswith(st, v):
    c = _need_content(st, "endswith")
    c.endswith = True


def kw_pcre(st, v):
    try:
        neg, pat, flags = parse_pcre(v or "")
        rx, relative, anchored, rawbytes = compile_pcre(pat, flags)
    except UnsupportedFlag as e:
        raise unsupported(e.keyword) from None
    except PcreError as e:
        raise RuleError(f"pcre {v!s:.60}: {e}") from None
    p = Pcre(source=pat, flags=flags, regex=rx, negated=neg, relative=relative, buffer=st.buffer,
             anchored=anchored, rawbytes=rawbytes)
    st.rule.matches.append(p)


def kw_flow(st, v):
    if st.rule.flow is not None:
        raise RuleError("more than one 'flow'")
    f = FlowSpec()
    for opt in split_args(v, "flow"):
        o = opt.lower()
        if o == "established":
            f.established = True
        elif o == "not_established":
            f.not_established = True
        elif o == "stateless":
            f.stateless = True
        elif o in ("to_server", "from_client"):
            if f.direction == "to_client":
                raise RuleError("flow: both to_server and to_client")
            f.direction = "to_server"
        elif o in ("to_client", "from_server"):
            if f.direction == "to_server":
                raise RuleError("flow: both to_server and to_client")
            f.direction = "to_client"
        elif o == "only_stream":
            f.only_stream = True
        elif o == "no_stream":
            f.no_stream = True
        elif o in ("only_frag", "no_frag"):
            st.rule.extra[o] = True
        else:
            raise RuleError(f"flow: unknown option {opt!r}")
    if f.established and f.not_established:
        raise RuleError("flow: both established and not_established")
    if f.only_stream and f.no_stream:
        raise RuleError("flow: both only_stream and no_stream")
    st.rule.flow = f


def _bsize_like(v, what):
    op, a, b = parse_cmp(v, what, 2**32 - 1)
    if op == "!<>":
        raise RuleError(f"{what}: negated range not supported")
    return Bsize(op, a, b)


def kw_dsize(st, v):
    if st.rule.dsize is not None:
        raise RuleError("more than one 'dsize'")
    st.rule.dsize = _bsize_like(v, "dsize")


def kw_bsize(st, v):
    b = _bsize_like(v, "bsize")
    st.rule.matches.append(b)


def kw_flags(st, v):
    if st.rule.flags is not None:
        raise RuleError("more than one 'flags'")
    st.rule.flags = parse_flagspec(v, "flags", TCP_FLAG_BITS)


def kw_flowbits(st, v):
    args = split_args(v, "flowbits")
    op = args[0].lower()
    if op == "noalert":
        if len(args) > 1:
            raise RuleError("flowbits:noalert takes no name")
        st.rule.flowbits.append(("noalert", []))
        st.rule.noalert = True
        return
    if op not in ("set", "isset", "isnotset", "unset", "toggle"):
        raise RuleError(f"flowbits: unknown command {args[0]!r}")
    if len(args) != 2 or not args[1]:
        raise RuleError(f"flowbits:{op} needs one name (a|b or a&b groups allowed)")
    expr = args[1].replace(" ", "")
    if "|" in expr and "&" in expr:
        raise RuleError("flowbits: cannot mix '|' and '&'")
    if "|" in expr:
        if op not in ("isset", "isnotset"):
            raise RuleError(f"flowbits:{op} does not take 'a|b' groups")
        st.rule.flowbits.append((op + "_any", expr.split("|")))
    else:
        st.rule.flowbits.append((op, expr.split("&")))


_THRESH_TRACK = ("by_src", "by_dst", "by_rule", "by_both", "by_flow")


def _threshold(v, what):
    fields: dict[str, str] = {}
    for part in split_args(v, what):
        k, _, val = part.strip().partition(" ")
        if not val.strip():
            raise RuleError(f"{what}: '{part}' needs a value")
        fields[k.strip().lower()] = val.strip()
    ttype = fields.pop("type", None)
    if what == "detection_filter":
        if ttype is not None:
            raise RuleError("detection_filter takes no 'type'")
        ttype = "detection_filter"
    elif ttype not in ("limit", "threshold", "both", "backoff"):
        raise RuleError(f"{what}: type must be limit, threshold, both or backoff")
    track = fields.pop("track", None)
    if track not in _THRESH_TRACK:
        raise RuleError(f"{what}: track must be one of {', '.join(_THRESH_TRACK)}")
    multiplier = None
    if ttype == "backoff":
        if "count" not in fields or "multiplier" not in fields or "seconds" in fields:
            raise RuleError(f"{what}: backoff needs count and multiplier (no seconds)")
        multiplier = parse_int(fields.pop("multiplier"), f"{what} multiplier", lo=1)
        fields["seconds"] = "0"
    if "count" not in fields or "seconds" not in fields:
        raise RuleError(f"{what}: needs count and seconds")
    count = parse_int(fields.pop("count"), f"{what} count", lo=0)
    seconds = parse_int(fields.pop("seconds"), f"{what} seconds", lo=0)
    unique = fields.pop("unique_on", None)
    if unique is not None and unique not in ("src_port", "dst_port"):
        raise RuleError(f"{what}: unique_on must be src_port or dst_port")
    if fields:
        raise RuleError(f"{what}: unknown option {next(iter(fields))!r}")
    return Threshold(ttype, track, count, float(seconds), unique, multiplier)


def kw_threshold(st, v):
    if st.rule.threshold is not None:
        raise RuleError("more than one 'threshold'")
    st.rule.threshold = _threshold(v, "threshold")


def kw_detection_filter(st, v):
    if st.rule.detection_filter is not None:
        raise RuleError("more than one 'detection_filter'")
    st.rule.detection_filter = _threshold(v, "detection_filter")


def kw_isdataat(st, v):
    args = split_args(v, "isdataat")
    first = args[0]
    neg = first.startswith("!")
    if neg:
        first = first[1:].strip()
    d = IsDataAt(offset=_num_or_var(st, first, "isdataat", lo=0), negated=neg)
    for opt in args[1:]:
        o = opt.lower()
        if o == "relative":
            d.relative = True
        elif o == "rawbytes":
            d.rawbytes = True
        else:
            raise RuleError(f"isdataat: unknown option {opt!r}")
    st.rule.matches.append(d)


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
    if isinstance(obj.nbytes, str):
        return  # a byte_extract variable, checked at match time
    if obj.string is None and not 1 <= obj.nbytes <= 8:
        raise RuleError(f"{what}: nbytes must be 1..8 without 'string'")
    if obj.string is not None and not 1 <= obj.nbytes <= 23:
        raise RuleError(f"{what}: nbytes must be 1..23 with 'string'")


def kw_byte_test(st, v):
    args = split_args(v, "byte_test")
    if len(args) < 4:
        raise RuleError("byte_test needs nbytes, operator, value, offset")
    op = args[1].replace(" ", "")
    negate = op.startswith("!")
    if negate:
        op = op[1:] or "="
    if op not in ("<", ">", "=", "<=", ">=", "&", "^"):
        raise RuleError(f"byte_test: unknown operator {args[1]!r}")
    b = ByteTest(nbytes=_num_or_var(st, args[0], "byte_test nbytes", lo=1), op=op,
                 value=_num_or_var(st, args[2], "byte_test value", lo=0),
                 offset=_num_or_var(st, args[3], "byte_test offset"), negate=negate)
    _byte_common(b, args[4:], "byte_test", {"string", "bitmask"})
    _check_nbytes(b, "byte_test")
    st.rule.matches.append(b)


def kw_byte_jump(st, v):
    args = split_args(v, "byte_jump")
    if len(args) < 2:
        raise RuleError("byte_jump needs nbytes, offset")
    b = ByteJump(nbytes=_num_or_var(st, args[0], "byte_jump nbytes", lo=0),
                 offset=_num_or_var(st, args[1], "byte_jump offset"))
    _byte_common(b, args[2:], "byte_jump", {"string", "bitmask", "multiplier", "post_offset", "align",
                                            "from_beginning", "from_end"})
    if b.from_beginning and b.from_end:
        raise RuleError("byte_jump: both from_beginning and from_end")
    if b.nbytes == 0 and not b.from_end:
        raise RuleError("byte_jump: nbytes 0 is only valid with from_end")
    if b.nbytes != 0:
        _check_nbytes(b, "byte_jump")
    st.rule.matches.append(b)


def kw_byte_extract(st, v):
    args = split_args(v, "byte_extract")
    if len(args) < 3:
        raise RuleError("byte_extract needs nbytes, offset, name")
    name = args[2]
    if not _VAR_RE.match(name):
        raise RuleError(f"byte_extract: bad variable name {name!r}")
    b = ByteExtract(nbytes=parse_int(args[0], "byte_extract nbytes", lo=1),
                    offset=parse_int(args[1], "byte_extract offset"), name=name)
    _byte_common(b, args[3:], "byte_extract", {"string", "bitmask", "multiplier", "align"})
    _check_nbytes(b, "byte_extract")
    st.vars.add(name)
    st.rule.matches.append(b)


def kw_byte_math(st, v):
    fields: dict[str, str] = {}
    flags: list[str] = []
    for part in split_args(v, "byte_math"):
        k, _, val = part.partition(" ")
        if val.strip():
            fields[k.lower()] = val.strip()
        else:
            flags.append(part)
    try:
        b = ByteMath(nbytes=parse_int(fields.pop("bytes"), "byte_math bytes", lo=1, hi=10),
                     offset=_num_or_var(st, fields.pop("offset"), "byte_math offset"),
                     oper=fields.pop("oper"), rvalue=_num_or_var(st, fields.pop("rvalue"), "byte_math rvalue"),
                     name=fields.pop("result"))
    except KeyError as e:
        raise RuleError(f"byte_math needs {e.args[0]}") from None
    if b.oper not in ("+", "-", "*", "/", "<<", ">>"):
        raise RuleError(f"byte_math: unknown oper {b.oper!r}")
    if not _VAR_RE.match(b.name):
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
    st.rule.matches.append(b)


def kw_noalert(st, v):
    st.rule.noalert = True


def kw_tag(st, v):
    """tag:session[,count,metric] or tag:host,count,metric,src|dst (Suricata)."""
    args = [a.lower() for a in split_args(v, "tag")]
    if args[0] not in ("session", "host"):
        raise RuleError("tag: type must be session or host")
    if len(args) >= 3:
        parse_int(args[1], "tag count", lo=0)
        if args[2] not in ("packets", "seconds", "bytes"):
            raise RuleError("tag: metric must be packets, seconds or bytes")
    elif len(args) == 2:
        raise RuleError("tag: count needs a metric")
    if args[0] == "host" and (len(args) != 4 or args[3] not in ("src", "dst")):
        raise RuleError("tag:host needs count, metric and src or dst")
    if args[0] == "session" and len(args) > 3:
        raise RuleError("tag:session takes at most count and metric")
    st.rule.tag = args


def kw_target(st, v):
    t = (v or "").strip().lower()
    if t not in ("src_ip", "dest_ip"):
        raise RuleError("target must be src_ip or dest_ip")
    st.rule.target = t


def kw_pkt_data(st, v):
    st.buffer = "payload"
    st.last_content = None


def kw_prefilter(st, v):
    """prefilter: a hint for Suricata's prefilter engine; the payload prefilter is detect's choice."""
    st.rule.extra["prefilter"] = True


def kw_tcp_flags(st, v):
    kw_flags(st, v)


# header keywords -> HeaderCheck
_NUMERIC_HEADER = {
    "ttl": 255, "itype": 255, "icode": 255, "icmp_id": 65535, "icmp_seq": 65535, "id": 65535,
    "seq": 2**32 - 1, "ack": 2**32 - 1, "window": 65535, "tos": 255, "fragoffset": 8191,
    "tcp.mss": 65535, "tcp.wscale": 255, "ip_proto": 255, "icmpv6.mtu": 2**32 - 1,
}
_IP_PROTO_NAMES = {"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "ipv6": 41, "gre": 47, "esp": 50, "ah": 51,
                   "ipv6-icmp": 58, "icmpv6": 58, "sctp": 132, "ipip": 4, "pim": 103}
_IPOPTS = ("rr", "eol", "nop", "ts", "sec", "esec", "lsrr", "lsrre", "ssrr", "satid", "any")


def _header_numeric(keyword):
    limit = _NUMERIC_HEADER[keyword]

    def handler(st, v):
        if keyword == "ip_proto" and v is not None:
            t = v.strip()
            body = t.lstrip("!<>= ")
            if body.lower() in _IP_PROTO_NAMES:
                v = t[:len(t) - len(body)] + str(_IP_PROTO_NAMES[body.lower()])
        op, a, b = parse_cmp(v, keyword, limit)
        st.rule.header_checks.append(HeaderCheck(keyword, op, a, b))

    return handler


def kw_sameip(st, v):
    st.rule.header_checks.append(HeaderCheck("sameip", "=", True))


def kw_ipopts(st, v):
    o = (v or "").strip().lower()
    if o not in _IPOPTS:
        raise RuleError(f"ipopts: unknown option {v!r}")
    st.rule.header_checks.append(HeaderCheck("ipopts", "=", o))


def kw_fragbits(st, v):
    st.rule.header_checks.append(HeaderCheck("fragbits", "flags", parse_flagspec(v, "fragbits", FRAG_BITS)))


def kw_stream_size(st, v):
    args = split_args(v, "stream_size")
    if len(args) != 3:
        raise RuleError("stream_size needs side, operator, value")
    side = args[0].lower()
    if side not in ("server", "client", "both", "either"):
        raise RuleError("stream_size: side must be server, client, both or either")
    op = args[1]
    if op not in ("<", ">", "=", "!=", "<=", ">="):
        raise RuleError(f"stream_size: unknown operator {op!r}")
    st.rule.header_checks.append(HeaderCheck("stream_size", op, (side, op, parse_int(args[2], "stream_size", lo=0))))


KEYWORDS = {
    "msg": kw_msg, "sid": kw_sid, "gid": kw_gid, "rev": kw_rev, "priority": kw_priority,
    "classtype": kw_classtype, "reference": kw_reference, "metadata": kw_metadata,
    "content": kw_content, "nocase": kw_nocase, "rawbytes": kw_rawbytes, "offset": kw_offset,
    "depth": kw_depth, "distance": kw_distance, "within": kw_within, "fast_pattern": kw_fast_pattern,
    "startswith": kw_startswith, "endswith": kw_endswith, "pcre": kw_pcre, "flow": kw_flow,
    "dsize": kw_dsize, "bsize": kw_bsize, "flags": kw_flags, "tcp.flags": kw_tcp_flags,
    "flowbits": kw_flowbits, "threshold": kw_threshold, "detection_filter": kw_detection_filter,
    "isdataat": kw_isdataat, "byte_test": kw_byte_test, "byte_jump": kw_byte_jump,
    "byte_extract": kw_byte_extract, "byte_math": kw_byte_math, "noalert": kw_noalert, "tag": kw_tag,
    "target": kw_target, "pkt_data": kw_pkt_data, "prefilter": kw_prefilter,
    "sameip": kw_sameip, "ipopts": kw_ipopts, "fragbits": kw_fragbits, "stream_size": kw_stream_size,
}
KEYWORDS.update({k: _header_numeric(k) for k in _NUMERIC_HEADER})


_SID_RE = re.compile(r"(?:^|;)\s*sid\s*:\s*(\d+)\s*(?:;|$)")


# Keywords of Suricata / Snort 2 that mirrorwatch does not evaluate (app-layer
# buffers and modifiers, transforms, datasets, lua...): reported as
# "unsupported keyword"; anything else is a typo or foreign syntax: "unknown".
_OTHER_KEYWORDS = frozenset((
    "uricontent", "urilen", "file_data", "pkt_data_raw", "base64_decode", "base64_data", "asn1", "xbits",
    "flowint", "flowvar", "pktvar", "hostbits", "ftpbounce", "ssl_state", "ssl_version", "app-layer-protocol",
    "app-layer-event", "app-layer-state", "decode-event", "engine-event", "stream-event", "dataset", "datarep",
    "iprep", "geoip", "lua", "luajit", "replace", "requires", "config", "bypass", "filestore", "filename",
    "fileext", "filemagic", "filemd5", "filesha1", "filesha256", "filesize", "rpc", "l3_proto",
    "ipv4-csum", "tcpv4-csum", "tcpv6-csum", "udpv4-csum", "udpv6-csum", "icmpv4-csum", "icmpv6-csum",
    "dotprefix", "strip_whitespace", "compress_whitespace", "url_decode", "xor", "pcrexform", "header_lowercase",
    "strip_pseudo_headers", "from_base64", "entropy", "absent", "frame", "template", "tls_store",
    "dnp3_func", "dnp3_ind", "dnp3_obj", "dnp3_data", "modbus", "enip_command", "cip_service", "ja3_hash",
    "ja3_string", "ja3s_hash", "ja3s_string", "dns_query", "tls_sni", "tls_cert_issuer", "tls_cert_subject",
    "tls_cert_serial", "tls_cert_fingerprint", "tls_cert_notbefore", "tls_cert_notafter", "tls_cert_expired",
    "tls_cert_valid", "ssh_proto", "ssh_software", "ssh_protoversion", "ssh_softwareversion", "dce_iface",
    "dce_opnum", "dce_stub_data", "krb5_msg_type", "krb5_cname", "krb5_sname", "krb5_err_code",
    "nfs_procedure", "nfs_version", "tcp.hdr", "udp.hdr", "ipv4.hdr", "ipv6.hdr", "icmpv4.hdr", "icmpv6.hdr",
    # Snort 2
    "resp", "react", "session", "logto", "activates", "activated_by", "count", "sd_pattern", "file_type",
    "appid", "protected_content", "hash", "length", "cvs", "sip_method", "sip_stat_code", "sip_header",
    "sip_body", "gtp_type", "gtp_info", "gtp_version", "modbus_func", "modbus_unit", "modbus_data",
    "service",
))
_OTHER_PREFIXES = ("http", "tls", "ssl", "dns", "ssh", "smb", "dce", "krb5", "sip", "snmp", "mqtt", "rfb", "quic",
                   "ja3", "ja4", "ike", "nfs", "ftp", "file", "dnp3", "modbus", "enip", "cip", "smtp", "pgsql",
                   "rdp", "websocket", "ldap", "dhcp", "tftp", "gtp", "base64", "to_", "email", "sdp", "bittorrent")


def is_known_keyword(key: str) -> bool:
    """A real (Suricata or Snort) keyword that this engine does not evaluate."""
    return key in _OTHER_KEYWORDS or "." in key or key.startswith(_OTHER_PREFIXES)


def _find_sid(opts) -> int | None:
    for k, v in opts:
        if k == "sid" and v is not None and v.strip().isdigit():
            return int(v.strip())
    return None


class RuleContext:
    """What a rule needs from its rule set: variables and classification."""

    def __init__(self, settings, classification: dict[str, tuple[str, int]]):
        self.vars = HeaderVars(settings.address_groups, settings.port_groups)
        self.classification = classification


def parse_rule(text: str, ctx: RuleContext, file: str = "", line: int = 0) -> tuple[Rule, list[str]]:
    """Parse one rule.  Returns (rule, warnings); raises ``RuleError`` with
    ``.sid`` set (when known) for a rule that cannot be loaded."""
    sid = None
    try:
        tokens, body = split_rule(text)
        if len(tokens) > 1 and tokens[1].lower() not in PROTOCOLS:
            # app-layer header: report it without parsing every option
            m = _SID_RE.search(body)
            sid = int(m.group(1)) if m else None
            _build(tokens, [], ctx, text, file, line)
        opts = split_options(body)
        sid = _find_sid(opts)
        return _build(tokens, opts, ctx, text, file, line)
    except RuleError as e:
        e.sid = sid
        raise
    except ExprError as e:
        err = RuleError(str(e))
        err.sid = sid
        raise err from None


def _build(tokens, opts, ctx, text, file, line):
    if not tokens:
        raise RuleError("missing rule header")
    action = tokens[0].lower()
    if action not in ACTIONS:
        raise RuleError(f"unknown action '{tokens[0]}'")
    if len(tokens) < 2:
        raise RuleError("missing protocol")
    proto_word = tokens[1].lower()
    proto = PROTOCOLS.get(proto_word)
    if proto is None:
        if proto_word in APP_PROTOCOLS or proto_word.split(":")[0] in APP_PROTOCOLS:
            raise RuleError(f"unsupported protocol '{proto_word}'")
        raise RuleError(f"unknown protocol '{tokens[1]}'")
    if len(tokens) != 7:
        raise RuleError(f"header needs 'action proto src sport direction dst dport', got {len(tokens)} fields")
    direction = tokens[4]
    if direction not in ("->", "<>"):
        raise RuleError(f"bad direction {direction!r} (use -> or <>)")
    hv = ctx.vars
    rule = Rule(action=action, proto=proto[0], src=hv.address(tokens[2]), sport=hv.ports(tokens[3]),
                direction=direction, dst=hv.address(tokens[5]), dport=hv.ports(tokens[6]),
                ipv=proto[1], tcp_scope=proto[2], file=file, line=line, raw=text)
    if proto[0] not in ("tcp", "udp") and not (rule.sport.any and rule.dport.any):
        # Suricata accepts ports on portless protocols and ignores them
        rule.extra["ports_ignored"] = True
    warnings: list[str] = []
    st = _State(rule, ctx.classification, warnings)
    for key, value in opts:
        handler = KEYWORDS.get(key)
        if handler is None:
            raise unsupported(key) if is_known_keyword(key) else RuleError(f"unknown keyword '{key}'")
        handler(st, value)
    if rule.sid == 0:
        raise RuleError("rule has no sid")
    if len(rule.matches) > MAX_PAYLOAD_KEYWORDS:
        raise RuleError(f"more than {MAX_PAYLOAD_KEYWORDS} payload keywords")
    if rule.flags is not None and rule.proto not in ("tcp", "ip"):
        raise RuleError(f"flags on a {rule.proto} rule")
    return rule, warnings
