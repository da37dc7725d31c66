"""Suricata's transforms: a sticky buffer's bytes changed before the rule's keywords see them.

Each transform is a function of bytes; a rule's buffer with transforms is inspected
as ``apply(("dotprefix", "to_lowercase"), data)``.  Names and behaviour follow
Suricata's ``transform-*.c``; a transform with an argument is written
``"name:arg"`` (``xor:"0d0ac8ff"``).
"""

from __future__ import annotations

import hashlib
import re

_WS = b" \t\n\v\f\r"
_WS_RUN = re.compile(rb"([ \t\n\v\f\r])[ \t\n\v\f\r]+")
_PCT = re.compile(rb"%([0-9a-fA-F]{2})")


def dotprefix(b: bytes) -> bytes:
    return b"." + b


def strip_whitespace(b: bytes) -> bytes:
    return b.translate(None, _WS)


def compress_whitespace(b: bytes) -> bytes:
    """Each run of whitespace becomes its first character (transform-compress-whitespace.c)."""
    return _WS_RUN.sub(rb"\1", b)


def url_decode(b: bytes) -> bytes:
    """'+' becomes a space and %HH its byte; a malformed escape stays as it is."""
    return _PCT.sub(lambda m: bytes((int(m.group(1), 16),)), b.replace(b"+", b" "))


def _xor(key_text: str):
    key = bytes.fromhex(key_text.strip().strip('"'))
    if not key:
        raise ValueError("xor needs a non-empty hex key")

    def xor(b: bytes) -> bytes:
        return bytes(c ^ key[i % len(key)] for i, c in enumerate(b))

    return xor


TRANSFORMS = {
    "dotprefix": dotprefix,
    "to_lowercase": bytes.lower,
    "to_uppercase": bytes.upper,
    "strip_whitespace": strip_whitespace,
    "compress_whitespace": compress_whitespace,
    "url_decode": url_decode,
    "to_md5": lambda b: hashlib.md5(b).digest(),
    "to_sha1": lambda b: hashlib.sha1(b).digest(),
    "to_sha256": lambda b: hashlib.sha256(b).digest(),
}
WITH_ARGUMENT = {"xor": _xor}


def compile_transforms(names) -> tuple:
    """The transform functions for a rule's list; ValueError names one mirrorwatch lacks."""
    out = []
    for spec in names or ():
        name, _, arg = str(spec).partition(":")
        name = name.strip()
        if name in TRANSFORMS:
            out.append(TRANSFORMS[name])
        elif name in WITH_ARGUMENT:
            out.append(WITH_ARGUMENT[name](arg))
        else:
            raise ValueError(f"transform {name!r}")
    return tuple(out)


def apply(funcs: tuple, data: bytes) -> bytes:
    for f in funcs:
        data = f(data)
    return data
