"""base64_decode and its base64_data buffer (Suricata 7's detect-base64-decode.c,
detect-base64-data.c, util-base64.c), a step of ``detect.payload``'s keyword chain.

The step, where its buffer's keyword list reaches it (``DetectBase64DecodeDoMatch``):

- it starts at the cursor (``relative``: after the previous keyword's match) or at 0, then
  ``offset`` bytes further (an offset at or past the end of what is left: no match), and
  decodes at most ``nbytes`` bytes from there, in Suricata's ``BASE64_MODE_RFC4648``
  (``decode_rfc4648``);
- no decoded byte, or a rule without base64_data keywords: no match (so the previous
  keyword may be tried at its next occurrence, as after any failing keyword);
- else the base64_data keywords inspect the decoded bytes from a cursor at 0
  (``DetectBase64DataDoMatch``), sharing the run's recursion count and byte_extract
  variables; their result is the buffer's: base64_data is a terminal list, so keywords
  after base64_decode in its own buffer are never evaluated.  The match ends (``ctx['end']``,
  a stream match's end) where the decoded input ended.

Suricata's decode buffer is as large as the largest ``bytes`` among the rule set's
base64_decodes; the decoder's end-of-buffer checks can only cut its output when that is
under 6 bytes (every base64_decode of the rule set with ``bytes`` 1..5); here the buffer
is always ``BASE64_DECODE_MAX`` bytes, as with any other rule set.
"""

from __future__ import annotations

import binascii
import re

from mirrorwatch.core.detect.payload_search import DISCONTINUE, MATCH, NO_MATCH

_INVALID = re.compile(rb"[^A-Za-z0-9+/=]")  # outside the base64 alphabet and '='
_PAD_AS_ZERO = bytes.maketrans(b"=", b"A")  # util-base64.c decodes '=' as the value 0
# bytes a trailing block of 1, 2, 3 characters gives: cut by an invalid character / at the end
_CUT_TAIL = (0, 1, 1, 2)
_END_TAIL = (0, 0, 1, 2)


def decode_rfc4648(src: bytes) -> bytes:
    """util-base64.c's DecodeBase64 in BASE64_MODE_RFC4648 (its destination never full):

    - decoding stops at the first character outside the alphabet and ``=`` (the bytes before
      it stay decoded);
    - every 4 characters give 3 bytes, less one per ``=`` among them (at most 3): ``=`` is
      padding wherever it stands, decoded as 0, and decoding goes on after it;
    - a trailing block of 1-3 characters gives 1, 1 or 2 bytes when an invalid character cut
      it, 0, 1 or 2 at the end of the input (its ``=`` then not counted).
    """
    m = _INVALID.search(src)
    end = len(src) if m is None else m.start()
    full = end - end % 4
    tail = end - full
    data = src[:end].translate(_PAD_AS_ZERO) + b"A" * (-end % 4)
    out = binascii.a2b_base64(data)
    keep = (_END_TAIL if m is None else _CUT_TAIL)[tail]
    if b"=" not in src[:full]:
        return out[:full // 4 * 3 + keep]
    parts = []
    for i in range(0, full, 4):
        parts.append(out[i // 4 * 3:i // 4 * 3 + 3 - min(src.count(b"=", i, i + 4), 3)])
    parts.append(out[full // 4 * 3:full // 4 * 3 + keep])
    return b"".join(parts)


def c_base64_decode(b, data):
    """The step function of base64_decode ``b`` whose base64_data keywords are the chain ``data``
    (None when the rule has none)."""
    nbytes, offset, relative = b.nbytes, b.offset, b.relative

    def fn(buf, blen, cur, run):
        run.count += 1
        if run.count >= run.limit:
            return DISCONTINUE
        start = min(cur, blen) if relative else 0
        if offset:
            if offset >= blen - start:
                return NO_MATCH
            start += offset
        stop = min(blen, start + nbytes)
        decoded = decode_rfc4648(bytes(buf[start:stop]))
        if not decoded or data is None:
            return NO_MATCH
        low = run.low
        run.low = None  # the decoded buffer's own lower-cased copy
        r = data.step(decoded, len(decoded), 0, run)
        run.low = low
        if r == MATCH:
            run.end = stop
        return r

    return fn
