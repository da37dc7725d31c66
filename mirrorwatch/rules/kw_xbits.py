"""xbits and hostbits: bits kept per host or per IP pair, across flows (``core.detect.xbits``).

What Suricata 8 accepts (detect-xbits.c, detect-hostbits.c):

- ``xbits:<set|unset|isset|isnotset|toggle>,<name>,track <ip_src|ip_dst|ip_pair>[,expire <seconds>]``:
  comma-separated, ``track`` and ``expire`` in either order, each at most once; ``expire`` a
  whole number of seconds above 0, 30 when absent (DETECT_XBITS_EXPIRE_DEFAULT).  ``track`` is
  required here: without it Suricata loads a rule whose bits never match (Suricata 7 refused
  it).  ``track tx`` (bits per transaction, only with Suricata 8's explicit rule hooks) is not
  supported: the rule is skipped with that reason.
- ``hostbits:<set|unset|isset|isnotset|toggle>,<name>[,<src|dst>]``: ``src`` when no direction
  is given; ``both`` Suricata refuses ("not implemented"); no expire option, a set hostbit lives
  300 seconds.
- ``xbits:noalert`` / ``hostbits:noalert``: the rule does not alert, as ``noalert``.

Host bits are one namespace: ``hostbits:set,a`` and ``xbits:isset,a,track ip_src`` name the
same bit ("no difference between hostbits and xbits with track ip_<src|dst>").
"""

from __future__ import annotations

import re

from .model import XBit
from .options import RuleError, Value

XBITS_EXPIRE_DEFAULT = 30  # DETECT_XBITS_EXPIRE_DEFAULT
HOSTBITS_EXPIRE = 300  # detect-hostbits.c: cd->expire = 300
EXPIRE_MAX = 2**32 - 1  # a uint32 of seconds
COMMANDS = ("set", "unset", "isset", "isnotset", "toggle")
XBITS_TRACK = ("ip_src", "ip_dst", "ip_pair")
HOSTBITS_DIR = {"src": "ip_src", "dst": "ip_dst"}
# detect-hostbits.c's PARSE_REGEX: action, name, direction, and anything left over (an error)
_HOSTBITS_RE = re.compile(r"^([a-z]+)(?:\s*,\s*([^\s,]+))?(?:\s*)?(?:\s*,\s*([^,\s]+))?(?:\s*)?(.+)?", re.S)


def _noalert(st, rest: bool, what: str) -> None:
    if rest:
        raise RuleError(f"{what}:noalert takes no name")
    st.rule.noalert = True


def _command(word: str, what: str) -> str:
    if word not in COMMANDS:
        raise RuleError(f"{what}: unknown command {word!r} (use {', '.join(COMMANDS)} or noalert)")
    return word


def _expire(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= EXPIRE_MAX:
        raise RuleError(f"xbits: expire must be a number of seconds above 0, got {text!r}")
    return int(text)


def _xbits_options(parts: list[tuple[str, str]]) -> tuple[str, int]:
    """(track, expire) from the ``track X`` / ``expire N`` parts."""
    track = None
    expire = None
    for word, val in parts:
        if word not in ("track", "expire"):
            raise RuleError(f"xbits: unknown option {word!r} (track or expire)")
        if not val:
            raise RuleError(f"xbits: '{word}' needs a value")
        if word == "track":
            if track is not None:
                raise RuleError("xbits: more than one 'track'")
            if val == "tx":
                raise RuleError("unsupported keyword 'xbits' with track tx (bits per transaction need a rule hook)")
            if val not in XBITS_TRACK:
                raise RuleError(f"xbits: track must be one of {', '.join(XBITS_TRACK)}, got {val!r}")
            track = val
        else:
            if expire is not None:
                raise RuleError("xbits: more than one 'expire'")
            expire = _expire(val)
    if track is None:
        raise RuleError("xbits: needs 'track ip_src', 'track ip_dst' or 'track ip_pair'")
    return track, XBITS_EXPIRE_DEFAULT if expire is None else expire


def kw_xbits(st, v: Value) -> None:
    if v.text is None:
        raise RuleError("'xbits' needs a value")
    parts = []
    for token in v.text.split(","):
        word, _, val = token.strip().partition(" ")
        if word:
            parts.append((word, val.strip()))
    if not parts:
        raise RuleError("'xbits' needs a value")
    (cmd, val), rest = parts[0], parts[1:]
    if cmd == "noalert" and not val:
        _noalert(st, bool(rest), "xbits")
        return
    if val:
        raise RuleError(f"xbits: {cmd!r} takes no value")
    cmd = _command(cmd, "xbits")
    if not rest or rest[0][1]:
        raise RuleError(f"xbits:{cmd} needs a bit name (no spaces) before track")
    track, expire = _xbits_options(rest[1:])
    st.rule.xbits.append(XBit(cmd, rest[0][0], track, expire, "xbits"))


def kw_hostbits(st, v: Value) -> None:
    m = _HOSTBITS_RE.match(v.text or "")
    if m is None or m.group(4) is not None:
        raise RuleError(f"hostbits: {v.text!r} is not <command>,<name>[,<src|dst>] (no expire: bits live "
                        f"{HOSTBITS_EXPIRE} s)")
    cmd, name, direction = m.group(1), m.group(2), m.group(3)
    if direction is not None and direction not in HOSTBITS_DIR:
        if direction == "both":
            raise RuleError("hostbits: direction 'both' is not implemented (Suricata refuses it too)")
        raise RuleError(f"hostbits: direction must be src or dst, got {direction!r}")
    if cmd == "noalert":
        _noalert(st, name is not None, "hostbits")
        return
    cmd = _command(cmd, "hostbits")
    if name is None:
        raise RuleError(f"hostbits:{cmd} needs a bit name")
    st.rule.xbits.append(XBit(cmd, name, HOSTBITS_DIR[direction or "src"], HOSTBITS_EXPIRE, "hostbits"))


KEYWORDS = {
    "xbits": (kw_xbits, 0),
    "hostbits": (kw_hostbits, 0),
}
