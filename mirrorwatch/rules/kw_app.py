"""Application-layer keywords: sticky buffers, legacy content modifiers, transforms,
urilen, app-layer-protocol and the TLS / DNS value keywords.

Buffers and their spellings come from ``rules.buffers``; where a keyword
lands is ``ParseState``'s business.
"""

from __future__ import annotations

import re

from .buffers import (
    APP_PROTO_STATES,
    APP_PROTOCOLS,
    MODIFIERS,
    OTHER_APP_PROTOCOLS,
    STICKY,
    TRANSFORMS,
    XOR_TRANSFORM,
)
from .kw_payload import bsize_value, kw_content
from .model import AppCheck
from .options import (
    NEGATION,
    NOOPT,
    QUOTES_MANDATORY,
    QUOTES_OPTIONAL,
    RuleError,
    Value,
)
from .values import parse_cmp

URILEN_MAX = 65535  # urilen is a u16 in Suricata
DNS_OPCODE_MAX = 15
DNS_RRTYPE_MAX = 65535
XOR_KEY_MAX = 255  # bytes (Suricata's xor transform)

TLS_VERSIONS = {"1.0": 0x0301, "1.1": 0x0302, "1.2": 0x0303, "1.3": 0x0304}
SSL_VERSIONS = ("sslv2", "sslv3", "tls1.0", "tls1.1", "tls1.2", "tls1.3")
SSL_STATES = ("client_hello", "server_hello", "client_keyx", "server_keyx", "unknown")
ALPROTO_MODES = ("direction", "to_server", "to_client", "either", "final", "original")

_HEX_KEY_RE = re.compile(r"^(?:[0-9a-fA-F]{2})+$")
# detect-tls-version.c: its PARSE_REGEX character class ([A-z] as written: the six signs between Z and a too)
_TLS_VERSION_RE = re.compile(r"[A-z0-9.]+")
_LEADING_HEX_RE = re.compile(r"[0-9a-fA-F]*")
TLS_RAW_PREFIX = "0x"
TLS_RAW_LEN = 6  # Suricata takes a raw version only as exactly six characters, unquoted: 0xNNNN
_SSL_STATE_RE = re.compile(r"(!?)([_a-zA-Z0-9]+)")
_SSL_STATE_SEP = re.compile(r"\s*[|,]\s*")


def _sticky(name: str, keyword: str):
    def handler(st, v: Value) -> None:
        st.set_sticky(name, keyword)
    return handler


def _modifier(name: str, keyword: str):
    def handler(st, v: Value) -> None:
        st.move_last_content(name, keyword)
    return handler


def _transform(name: str):
    def handler(st, v: Value) -> None:
        st.add_transform(name)
    return handler


def kw_xor(st, v: Value) -> None:
    key = v.text.strip()
    if not _HEX_KEY_RE.match(key) or len(key) // 2 > XOR_KEY_MAX:
        raise RuleError(f"xor: key must be hex bytes (at most {XOR_KEY_MAX}), got {key[:40]!r}")
    st.add_transform(f"{XOR_TRANSFORM}:{key.lower()}")


def kw_uricontent(st, v: Value) -> None:
    kw_content(st, v)
    st.move_last_content("http.uri", "uricontent")


def kw_urilen(st, v: Value) -> None:
    """urilen:N / <N / N<>M [,raw|,norm]: the length of http.uri (or http.uri.raw)."""
    text, _, which = v.text.partition(",")
    which = which.strip().lower() or "norm"
    if which not in ("raw", "norm"):
        raise RuleError("urilen: option must be raw or norm")
    st.set_app_proto("http", "urilen")
    st.add(bsize_value(text, "urilen", URILEN_MAX), ("http.uri.raw" if which == "raw" else "http.uri", ()))


def kw_app_layer_protocol(st, v: Value) -> None:
    name, _, mode = v.text.partition(",")
    name, mode = name.strip().lower(), mode.strip().lower()
    if mode and mode not in ALPROTO_MODES:
        raise RuleError(f"app-layer-protocol: unknown mode {mode!r}")
    if st.rule.app_proto is not None:
        raise RuleError("app-layer-protocol on a rule that already names its protocol")
    if name in APP_PROTOCOLS:
        name = APP_PROTOCOLS[name][0]
    elif name in OTHER_APP_PROTOCOLS:
        raise RuleError(f"unsupported protocol '{name}'")
    elif name not in APP_PROTO_STATES:
        raise RuleError(f"app-layer-protocol: unknown protocol '{name}'")
    st.rule.app_checks.append(AppCheck("app-layer-protocol", name, negated=v.negated, mode=mode or "direction"))


def kw_tls_version(st, v: Value) -> None:
    """tls.version:1.0|1.1|1.2|1.3 or a raw 0xNNNN, quoted or not, as detect-tls-version.c parses it:
    a name is recognised by its first three characters (strncmp), a raw value must be six characters
    unquoted and is read as strtol does (its leading hex digits; mode 'raw': drafts not folded)."""
    t = v.text.strip()
    if not _TLS_VERSION_RE.fullmatch(t):
        raise RuleError(f"tls.version: invalid value {t!r}")
    named = next((num for name, num in TLS_VERSIONS.items() if t.startswith(name)), None)
    if named is not None:
        check = AppCheck("tls.version", named)
    elif t.startswith(TLS_RAW_PREFIX) and len(t) == TLS_RAW_LEN and not v.quoted:
        digits = _LEADING_HEX_RE.match(t, len(TLS_RAW_PREFIX)).group()
        check = AppCheck("tls.version", int(digits or "0", 16), mode="raw")
    else:
        raise RuleError(f"tls.version: expected 1.0, 1.1, 1.2, 1.3 or 0xNNNN, got {t!r}")
    st.set_app_proto("tls", "tls.version")
    st.rule.app_checks.append(check)


def kw_ssl_version(st, v: Value) -> None:
    t = v.text.strip()
    negated = t.startswith("!")
    names = [p.strip().lower() for p in t.lstrip("!").replace(" ", ",").split(",") if p.strip()]
    if not names or any(n not in SSL_VERSIONS for n in names):
        raise RuleError(f"ssl_version: expected {', '.join(SSL_VERSIONS)}, got {t!r}")
    if len(set(names)) != len(names):
        raise RuleError("ssl_version: a version is given twice")
    st.set_app_proto("tls", "ssl_version")
    st.rule.app_checks.append(AppCheck("ssl_version", frozenset(names), negated=negated))


def kw_ssl_state(st, v: Value) -> None:
    """Items ``[!]state`` separated by '|' or ',' (see ``AppCheck``)."""
    named, negated = set(), set()
    for item in _SSL_STATE_SEP.split(v.text.strip()):
        m = _SSL_STATE_RE.fullmatch(item)
        if not m or m.group(2) not in SSL_STATES:
            raise RuleError(f"ssl_state: unknown state {item!r} (use {', '.join(SSL_STATES)})")
        named.add(m.group(2))
        if m.group(1):
            negated.add(m.group(2))
    st.set_app_proto("tls", "ssl_state")
    st.rule.app_checks.append(AppCheck("ssl_state", frozenset(named), value2=frozenset(negated)))


def _tls_flag(keyword: str):
    def handler(st, v: Value) -> None:
        st.set_app_proto("tls", keyword)
        st.rule.app_checks.append(AppCheck(keyword))
    return handler


def _tls_text(keyword: str):
    """tls.subject / tls.issuerdn / tls.fingerprint (Suricata's value keywords)."""
    def handler(st, v: Value) -> None:
        st.set_app_proto("tls", keyword)
        st.rule.app_checks.append(AppCheck(keyword, v.text, negated=v.negated))
    return handler


def _dns_number(keyword: str, limit: int):
    def handler(st, v: Value) -> None:
        op, a, b = parse_cmp(v.text, keyword, limit)
        st.set_app_proto("dns", keyword)
        st.rule.app_checks.append(AppCheck(keyword, a, op=op, value2=b))
    return handler


KEYWORDS = {spelling: (_sticky(name, spelling), NOOPT) for spelling, name in STICKY.items()}
KEYWORDS.update({spelling: (_modifier(name, spelling), NOOPT) for spelling, name in MODIFIERS.items()})
KEYWORDS.update({name: (_transform(name), NOOPT) for name in TRANSFORMS})
KEYWORDS.update({
    XOR_TRANSFORM: (kw_xor, QUOTES_OPTIONAL),
    "uricontent": (kw_uricontent, QUOTES_MANDATORY | NEGATION),
    "urilen": (kw_urilen, 0),
    "app-layer-protocol": (kw_app_layer_protocol, QUOTES_OPTIONAL | NEGATION),
    "tls.version": (kw_tls_version, QUOTES_OPTIONAL),
    "ssl_version": (kw_ssl_version, 0),
    "ssl_state": (kw_ssl_state, 0),
    "tls_cert_expired": (_tls_flag("tls_cert_expired"), NOOPT),
    "tls_cert_valid": (_tls_flag("tls_cert_valid"), NOOPT),
    "tls.subject": (_tls_text("tls.subject"), QUOTES_MANDATORY | NEGATION),
    "tls.issuerdn": (_tls_text("tls.issuerdn"), QUOTES_MANDATORY | NEGATION),
    "tls.fingerprint": (_tls_text("tls.fingerprint"), QUOTES_MANDATORY | NEGATION),
    "dns.opcode": (_dns_number("dns.opcode", DNS_OPCODE_MAX), 0),
    "dns.rrtype": (_dns_number("dns.rrtype", DNS_RRTYPE_MAX), 0),
})
