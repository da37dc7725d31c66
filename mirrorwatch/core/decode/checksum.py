"""Internet checksums (RFC 1071): the one implementation, to verify and to compute.

The ones'-complement sum of 16-bit words is addition modulo 0xFFFF (0 and
0xFFFF both stand for zero), and a byte string read as one integer is the sum
of its 16-bit words times powers of 65536, each of which is 1 modulo 0xFFFF.
So one ``int.from_bytes`` call and one remainder give the sum, computed by
CPython's bignum code instead of a Python loop over words.

The bytes are read little-endian, which CPython does markedly faster than
big-endian.  That swaps the bytes of every word, which multiplies the sum by
256 modulo 0xFFFF: an invertible factor, so a *partial sum* here is zero
exactly when the big-endian one is, and multiplying by 256 again turns it
back (256 * 256 = 65536 = 1 modulo 0xFFFF).  An odd trailing byte lands as
the low byte of its word, i.e. already zero-padded.  A big-endian 16-bit value
(a protocol number, a length) joins a partial sum shifted left by 8.  Partial
sums of pieces that start at even offsets add, which is how the pseudo-header
is folded in from the IP header in place, without building it.

A buffer that carries its own checksum sums to zero: that is the whole
verification.

Compiled (checksum.pxd), a frame's bytes are summed by a C loop instead, as
little-endian 64-bit words into a 64-bit integer, counting the carries out of it
apart: a 64-bit word is four 16-bit words times powers of 65536, and a carry is
2 ** 64 = 65536 ** 4, all 1 modulo 0xFFFF, so sum plus carries is the same partial
sum modulo 0xFFFF as CPython's integer (``_sum64``).  A big-endian host loads each
word byte-swapped, i.e. the sum times 256, which one more factor of 256 turns
back.  ``partial`` returns the sum reduced (below 0xFFFF) in both builds, so its
callers add and compare C integers.
"""

from __future__ import annotations

import sys

import cython

from mirrorwatch.core.decode.numbers import PROTO_ICMP

ONES = 0xFFFF
# What the decoder does with checksums (``Decoder.check``): nothing; verify and judge the
# packet (``csum_ok``); or, under ``-k auto`` until it has decided, verify TCP/UDP only to
# sample them, without judging any packet.
CHECK_OFF, CHECK_ON, CHECK_SAMPLE = 0, 1, 2
# From this many bytes on, ``partial`` sums two or four pieces: the remainder CPython takes
# digit by digit is then taken of a number half or a quarter as long, which costs less in all.
SPLIT_BYTES = 400
SPLIT4_BYTES = 1000
IPV4_ADDRS = 12  # offset of the source address in the IPv4 header (the pseudo-header's addresses)
IPV4_ADDRS_END = 20
IPV6_ADDRS = 8
IPV6_ADDRS_END = 40
WORD = 8  # the compiled loop's bytes per load
# what turns the compiled loop's sum of host-order words into the little-endian partial sum
WORD_SHIFT = 0 if sys.byteorder == "little" else 8

_from = int.from_bytes


def partial(buf, start: int, end: int) -> int:
    """Partial sum of ``buf[start:end]``, reduced: below ``ONES`` (see the module docstring)."""
    if cython.compiled and type(buf) is bytes:
        return _sum64(buf, start, end)
    m = end - start
    if m < SPLIT_BYTES:
        return _from(buf[start:end], "little") % ONES
    if m < SPLIT4_BYTES:
        h = start + ((m >> 2) << 1)
        return (_from(buf[start:h], "little") + _from(buf[h:end], "little")) % ONES
    q = (m >> 3) << 1
    h1 = start + q
    h2 = h1 + q
    h3 = h2 + q
    return (_from(buf[start:h1], "little") + _from(buf[h1:h2], "little") + _from(buf[h2:h3], "little")
            + _from(buf[h3:end], "little")) % ONES


def _sum64(buf: bytes, start: int, end: int) -> int:
    """The compiled build's partial sum of ``buf[start:end]`` (module docstring), reduced: 64-bit
    words (``_load64``) two at a time, then the 0-15 bytes left each in its place in its 16-bit word."""
    if end > len(buf):
        end = len(buf)  # the C loop reads no byte outside the buffer
    p = buf
    s = carries = 0
    i = start if start > 0 else 0
    while i + 2 * WORD <= end:
        w = _load64(p + i)  # noqa: F821 - checksum.pxd's inline C load, the compiled build's only
        s += w
        carries += s < w
        w = _load64(p + i + WORD)  # noqa: F821
        s += w
        carries += s < w
        i += 2 * WORD
    s = s % ONES + carries
    if WORD_SHIFT:
        s = (s % ONES) << WORD_SHIFT
    shift = 0
    while i < end:  # at an even offset from start: its bytes alternate low and high in their words
        s += p[i] << shift
        shift ^= 8
        i += 1
    return s % ONES


def transport_ok(f, ipv: int, ip_off: int, l4: int, end: int, proto: int) -> bool:
    """The segment ``f[l4:end]`` carries a correct checksum: with the pseudo-header of the IP
    header at ``ip_off`` (version ``ipv``), except for ICMPv4, which has none.  When the
    addresses directly precede the segment (no options or extension headers) the two are
    one piece."""
    if proto == PROTO_ICMP:
        return partial(f, l4, end) == 0
    if ipv == 4:
        a = ip_off + IPV4_ADDRS
        a_end = ip_off + IPV4_ADDRS_END
    else:
        a = ip_off + IPV6_ADDRS
        a_end = ip_off + IPV6_ADDRS_END
    v = (proto + end - l4) << 8
    if a_end != l4:
        v += partial(f, a, a_end)
        a = l4
    return (v + partial(f, a, end)) % ONES == 0


def pseudo_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Partial sum of the IPv4/IPv6 pseudo-header for TCP/UDP/ICMPv6 (an ``initial`` below)."""
    return partial(src, 0, len(src)) + partial(dst, 0, len(dst)) + ((proto + length) << 8)


def checksum(data, initial: int = 0) -> int:
    """The 16-bit value to store in a checksum field (that field zeroed in ``data``);
    ``initial`` is a partial sum to add (e.g. ``pseudo_sum``).  Never 0 (UDP's "none")."""
    s = (((partial(data, 0, len(data)) + initial) % ONES) << 8) % ONES  # back to big-endian
    return (~s) & ONES if s else ONES


def verify(data, initial: int = 0) -> bool:
    """True when ``data`` (checksum field included) plus ``initial`` sums to zero."""
    return (partial(data, 0, len(data)) + initial) % ONES == 0


def ipv4_header_checksum(header) -> int:
    """Checksum for an IPv4 header whose checksum field (bytes 10-11) may hold anything."""
    h = bytes(header)
    return checksum(h[:10] + b"\0\0" + h[12:])
