"""Internet checksums (RFC 1071) at C speed.

The ones'-complement sum of 16-bit big-endian words is addition modulo 0xFFFF
(0 and 0xFFFF both stand for zero), and ``int.from_bytes(data, 'big')`` is the
sum of those words times powers of 65536, each of which is 1 modulo 0xFFFF.  So
``int.from_bytes(data, 'big') % 0xFFFF`` is the ones'-complement sum, computed
by CPython's bignum code instead of a Python loop over words.  An odd-length
buffer is padded with one zero byte, i.e. the integer is shifted left by 8.

A buffer that already carries its checksum sums to 0xFFFF, i.e. to 0 modulo
0xFFFF: that is the whole verification.  Pieces at even offsets can be summed
separately and added (how the pseudo-header is folded in without copying).
"""

from __future__ import annotations

_from = int.from_bytes


def ones_sum(data) -> int:
    """Ones'-complement sum of ``data`` (any bytes-like object), modulo 0xFFFF."""
    v = _from(data, "big")
    if len(data) & 1:
        v <<= 8
    return v % 0xFFFF


def pseudo_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Sum of the IPv4/IPv6 pseudo-header for TCP/UDP/ICMPv6 (modulo 0xFFFF)."""
    return (_from(src, "big") + _from(dst, "big") + proto + length) % 0xFFFF


def checksum(data, initial: int = 0) -> int:
    """The 16-bit value to store in a checksum field (that field zeroed in ``data``)."""
    s = (ones_sum(data) + initial) % 0xFFFF
    return (~s) & 0xFFFF if s else 0xFFFF


def verify(data, initial: int = 0) -> bool:
    """True when ``data`` (checksum field included) plus ``initial`` sums to zero."""
    v = _from(data, "big")
    if len(data) & 1:
        v <<= 8
    return (v + initial) % 0xFFFF == 0


def ipv4_header_checksum(header) -> int:
    """Checksum for an IPv4 header whose checksum field (bytes 10-11) may hold anything."""
    h = bytes(header)
    return checksum(h[:10] + b"\0\0" + h[12:])
