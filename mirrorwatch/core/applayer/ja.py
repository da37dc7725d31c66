"""TLS client/server fingerprints: JA3, JA3S (Salesforce) and JA4 (FoxIO).

JA3 = "version,ciphers,extensions,groups,point_formats" (decimal values joined
by '-', GREASE values left out), hashed with MD5; JA3S = "version,cipher,
extensions". JA4 follows Suricata's rust/src/ja4.rs: "t" + version code + "d"
(SNI present) or "i" + cipher count + extension count (both capped at 99,
GREASE left out, SNI and ALPN counted) + first and last character of the
first ALPN value, then the first 12 hex digits of SHA-256 over the sorted
cipher list and over "sorted extensions (without SNI/ALPN)_signature
algorithms in order". Like Suricata, an empty list is hashed as the empty
string (FoxIO's reference prints "000000000000" there) and the '_' separator
is always present.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

GREASE = frozenset(0x0A0A + 0x1010 * i for i in range(16))
EXT_SERVER_NAME = 0x0000
EXT_ALPN = 0x0010
JA4_MAX_COUNT = 99
JA4_HASH_LEN = 12
JA4_PROTO_TCP = "t"

JA4_VERSION_CODES = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3"}
_HEX_DIGITS = "0123456789abcdef"


def _join(values: Iterable[int]) -> str:
    return "-".join(str(v) for v in values if v not in GREASE)


def ja3_string(version: int, ciphers: Iterable[int], extensions: Iterable[int],
               groups: Iterable[int], point_formats: Iterable[int]) -> str:
    return ",".join((str(version), _join(ciphers), _join(extensions), _join(groups),
                     _join(point_formats)))


def ja3s_string(version: int, cipher: int, extensions: Iterable[int]) -> str:
    return ",".join((str(version), _join([cipher]), _join(extensions)))


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode("ascii")).hexdigest()


def _truncated_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:JA4_HASH_LEN]


def ja4_alpn_code(alpn: bytes | None) -> str:
    """First and last character of the first ALPN value (hex nibbles if not alphanumeric)."""
    if not alpn:
        return "00"
    if len(alpn) == 2 and int.from_bytes(alpn, "big") in GREASE:
        return "00"
    first, last = alpn[0], alpn[-1]
    if chr(first).isascii() and chr(first).isalnum() and chr(last).isascii() and chr(last).isalnum():
        return chr(first) + chr(last)
    return _HEX_DIGITS[first >> 4] + _HEX_DIGITS[last & 0xF]


def ja4(version: int | None, has_sni: bool, ciphers: Iterable[int], extensions: Iterable[int],
        signature_algorithms: Iterable[int], first_alpn: bytes | None) -> str:
    """JA4 of a ClientHello over TCP; ``version`` is the highest offered version."""
    ciphers = [c for c in ciphers if c not in GREASE]
    extensions = [e for e in extensions if e not in GREASE]
    hashed_exts = sorted(e for e in extensions if e not in (EXT_SERVER_NAME, EXT_ALPN))
    sigalgs = [s for s in signature_algorithms if s not in GREASE]
    part_a = (f"{JA4_PROTO_TCP}{JA4_VERSION_CODES.get(version, '00')}"
              f"{'d' if has_sni else 'i'}{min(JA4_MAX_COUNT, len(ciphers)):02d}"
              f"{min(JA4_MAX_COUNT, len(extensions)):02d}{ja4_alpn_code(first_alpn)}")
    part_b = _truncated_sha256(",".join(f"{c:04x}" for c in sorted(ciphers)))
    part_c = _truncated_sha256(",".join(f"{e:04x}" for e in hashed_exts) + "_"
                               + ",".join(f"{s:04x}" for s in sigalgs))
    return f"{part_a}_{part_b}_{part_c}"
