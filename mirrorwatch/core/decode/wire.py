"""Big-endian numbers read from a frame, for the layers on the per-packet path.

Compiled (wire.pxd), each read is two or four byte loads and shifts in C; the
caller has checked the header's length, and ``f[i]`` still raises IndexError
past the end (bounds are checked), as ``struct.unpack_from`` would.  ``take``
copies a field's bytes straight from the frame's buffer (a slice of ``bytes``
would build a slice object first).
"""

from __future__ import annotations


def u16(f: bytes, i: int) -> int:
    """The big-endian 16-bit number at ``f[i:i + 2]``."""
    return f[i] << 8 | f[i + 1]


def u32(f: bytes, i: int) -> int:
    """The big-endian 32-bit number at ``f[i:i + 4]``."""
    return u16(f, i) << 16 | u16(f, i + 2)  # unsigned halves: no sign to spread in C


def take(f: bytes, start: int, stop: int) -> bytes:
    """The bytes of a field, ``f[start:stop]`` clamped to ``f`` (a negative ``start`` counts as 0):
    compiled, no byte outside ``f`` is read whatever the offsets."""
    n = len(f)
    if stop > n:
        stop = n
    if start < 0:
        start = 0
    if start >= stop:
        return b""
    p = f
    return p[start:stop]  # compiled: one copy from the buffer (p is its C pointer)
