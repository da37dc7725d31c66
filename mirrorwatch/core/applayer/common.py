"""Definitions every application-layer parser shares.

Directions, the transaction progress scale, the per-parser counters, and the
byte-to-text conversion Suricata's EVE writer applies to protocol strings.
"""

from __future__ import annotations

TO_SERVER = 0
TO_CLIENT = 1
DIRECTIONS = (TO_SERVER, TO_CLIENT)

# Transaction progress, per direction (progress_ts / progress_tc).
PROGRESS_NONE = 0
PROGRESS_LINE = 1
PROGRESS_HEADERS = 2
PROGRESS_BODY = 3
PROGRESS_COMPLETE = 4

_ASCII_LIMIT = 0x80


class ParserStats:
    """Counters of one parser object (one flow)."""

    __slots__ = ("gaps", "memcap_hits", "parse_errors", "txs")

    def __init__(self) -> None:
        self.parse_errors = 0
        self.gaps = 0
        self.txs = 0
        self.memcap_hits = 0

    def as_dict(self) -> dict[str, int]:
        """Every counter, those of subclasses included."""
        names = [n for cls in reversed(type(self).__mro__) for n in getattr(cls, "__slots__", ())]
        return {name: getattr(self, name) for name in names}


class TxTracker:
    """The transactions a parser holds for one flow, in creation order.

    ``touch`` marks a transaction changed; ``updated`` hands the changed ones
    out once each and forgets them; ``pop_done`` removes those complete in both
    directions that were handed out since their last change.
    """

    __slots__ = ("_next_id", "_updated", "txs")

    def __init__(self) -> None:
        self.txs: list = []
        self._next_id = 0
        self._updated: dict[int, object] = {}

    def next_id(self) -> int:
        tx_id = self._next_id
        self._next_id += 1
        return tx_id

    def add(self, tx) -> None:
        self.txs.append(tx)
        self._updated[tx.tx_id] = tx

    def touch(self, tx) -> None:
        self._updated[tx.tx_id] = tx

    def updated(self) -> list:
        out = list(self._updated.values())
        self._updated.clear()
        return out

    def pop_done(self) -> list:
        done = [tx for tx in self.txs
                if tx.progress_ts == PROGRESS_COMPLETE and tx.progress_tc == PROGRESS_COMPLETE
                and tx.tx_id not in self._updated]
        if done:
            done_ids = {tx.tx_id for tx in done}
            self.txs = [tx for tx in self.txs if tx.tx_id not in done_ids]
        return done


class MemAccount:
    """Bytes the application layer holds against a cap: Suricata's ``memuse``/``memcap`` pair.

    ``memuse`` is what is held now, ``memcap`` how many allocations were refused.
    An account with a ``parent`` (a protocol's share under the global
    ``app-layer.memcap``) charges both; a cap of 0 means unlimited (as Suricata's
    ``app-layer.protocols.http.memcap``).
    """

    __slots__ = ("cap", "memcap", "memuse", "parent", "peak")

    def __init__(self, cap: int, parent: MemAccount | None = None) -> None:
        self.cap = cap
        self.parent = parent
        self.memuse = 0
        self.peak = 0
        self.memcap = 0

    def fits(self, size: int) -> bool:
        """Whether ``size`` more bytes fit under every cap above; a refusal is counted on
        the account that is full."""
        acct: MemAccount | None = self
        while acct is not None:
            if acct.cap and acct.memuse + size > acct.cap:
                acct.memcap += 1
                return False
            acct = acct.parent
        return True

    def reserve(self, size: int) -> bool:
        """Take ``size`` more bytes if they fit (``fits``); a refusal takes nothing."""
        if not self.fits(size):
            return False
        self.add(size)
        return True

    def add(self, size: int) -> None:
        """Charge ``size`` bytes (negative: release) here and in every parent."""
        acct: MemAccount | None = self
        while acct is not None:
            acct.memuse += size
            if acct.memuse > acct.peak:
                acct.peak = acct.memuse
            acct = acct.parent

    def counters(self, hits: str = "memcap") -> dict[str, int]:
        """The account as EVE stats: bytes held, their peak, refusals (named ``hits``)."""
        return {"memuse": self.memuse, "memuse_peak": self.peak, hits: self.memcap}


def string_from_bytes(data: bytes) -> str:
    """Bytes as Suricata's JsonBuilder writes them (set_string_from_bytes).

    Valid UTF-8 is kept; otherwise ASCII bytes pass through and every other
    byte becomes the four characters ``\\xNN`` (lowercase hex).
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(chr(b) if b < _ASCII_LIMIT else f"\\x{b:02x}" for b in data)
