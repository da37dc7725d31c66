"""base64_decode and base64_data (``core.detect.payload_b64`` evaluates them).

What Suricata 7 accepts (detect-base64-decode.c, detect-base64-data.c):

- ``base64_decode[:[bytes <n>][,][offset <n>][,][relative]]``, read by an unanchored regex in that
  order (``\\s*(bytes\\s+(\\d+),?)?\\s*(offset\\s+(\\d+),?)?\\s*(\\w+)?``): at least one of
  them must be there; the last word must be ``relative``; text after it is ignored (here with a
  warning, as options written in another order: ``relative, bytes 10`` ignores the bytes).
  ``bytes`` 0..65535 (0 or absent: 65535, BASE64_DECODE_MAX), ``offset`` 0..4294967295.
- ``base64_decode`` joins the current sticky buffer, else the buffer of the last content,
  pcre, byte_test, byte_jump, byte_extract or isdataat, else the payload (the last of those
  in the base64_data buffer: refused here, as decoding decoded data);
- ``base64_data`` (no value) needs a base64_decode before it and makes the rule's one
  base64_data buffer the current one: the keywords after it (until a sticky buffer or
  ``pkt_data``) inspect the decoded bytes.  No transform may follow it, no legacy content
  modifier (``http_uri``...) apply in it.
"""

from __future__ import annotations

import re

from .matches import Base64Decode, ByteExtract, ByteJump, ByteTest, Content, IsDataAt, Pcre
from .options import NOOPT, OPTIONAL, RuleError, Value
from .state import B64_DATA, PAYLOAD
from .values import U32_MAX

BASE64_DECODE_MAX = 65535  # detect-base64-decode.c: bytes when absent or 0, and at most (a uint16)
_RE = re.compile(r"\s*(bytes\s+(\d+),?)?\s*(offset\s+(\d+),?)?\s*(\w+)?", re.ASCII)
# the keywords whose buffer a base64_decode without a sticky buffer joins (DetectGetLastSMFromLists)
_FOLLOWS = (Content, Pcre, ByteTest, ByteJump, ByteExtract, IsDataAt)


def parse_base64_decode(text: str | None) -> tuple[Base64Decode, str]:
    """(the keyword, the text Suricata ignores after it)."""
    if text is None:
        return Base64Decode(BASE64_DECODE_MAX), ""
    m = _RE.match(text)
    if m.lastindex is None:
        raise RuleError(f"base64_decode: {text!r} is not [bytes <n>][, offset <n>][, relative]")
    nbytes = int(m.group(2)) if m.group(2) is not None else 0
    if nbytes > BASE64_DECODE_MAX:
        raise RuleError(f"base64_decode: bytes {m.group(2)} is above {BASE64_DECODE_MAX}")
    offset = int(m.group(4)) if m.group(4) is not None else 0
    if offset > U32_MAX:
        raise RuleError(f"base64_decode: offset {m.group(4)} is above {U32_MAX}")
    word = m.group(5)
    if word is not None and word != "relative":
        raise RuleError(f"base64_decode: unknown option {word!r} (bytes <n>, offset <n>, relative, in that order)")
    return Base64Decode(nbytes or BASE64_DECODE_MAX, offset, word is not None), text[m.end():].strip()


def _target(st) -> tuple[str, tuple[str, ...]]:
    """The buffer a base64_decode joins (see the module docstring)."""
    if st.sticky is not None:
        return st.current()
    last = st.last_match
    if not isinstance(last, _FOLLOWS):  # byte_math: the last of the others
        last = next((m for m in reversed(st.rule.matches) if isinstance(m, _FOLLOWS)), None)
    return (last.buffer, last.transforms) if last is not None else (PAYLOAD, ())


def kw_base64_decode(st, v: Value) -> None:
    b, ignored = parse_base64_decode(v.text)
    if ignored:
        st.warnings.append(f"base64_decode: {ignored!r} after the options is ignored (as Suricata does)")
    where = _target(st)
    if where[0] == B64_DATA:
        raise RuleError("base64_decode in the base64_data buffer (decoding decoded data) is not supported")
    b.data = st.base64_data_list()
    st.add(b, where)


def kw_base64_data(st, v: Value) -> None:
    st.set_base64_data()


KEYWORDS = {
    "base64_decode": (kw_base64_decode, OPTIONAL),
    "base64_data": (kw_base64_data, NOOPT),
}
