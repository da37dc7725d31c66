"""EVE records into Redis, in the shapes of Suricata's ``filetype: redis``.

The target is a URL, ``redis://HOST:PORT/KEY?mode=MODE``, with Suricata's
modes and their aliases (``util-log-redis.c``):

- ``list`` / ``lpush``: LPUSH onto the list KEY (Suricata's default);
  ``rpush``: RPUSH (oldest first, for consumers that pop from the left);
- ``channel`` / ``publish``: PUBLISH on the channel KEY;
- ``stream`` / ``xadd``: ``XADD KEY MAXLEN ~ N * eve RECORD``, trimmed to
  ``stream-maxlen`` entries (``stream-trim-exact=yes``: ``MAXLEN =``).

Each element is one record's JSON text (no newline), as Suricata sends it.

The engine's thread only appends to a bounded in-memory buffer; a sender
thread takes batches from it and sends each batch in one round trip (one
multi-value push in list mode, a pipeline of commands otherwise), so a slow or
absent server never stalls capture.  When the server cannot be reached, the
batch in hand is kept and sent again after reconnecting (every
``reconnect_interval`` seconds): a batch the server took just before the
connection broke may arrive twice, none is lost unseen.  Records the server
refuses (an error reply), records pushed out of the full buffer and records
still buffered when the run ends (after ``drain_timeout`` seconds of trying)
are counted; ``counters()`` feeds the stats and ``warning()`` says it in one
line.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, urlsplit

SCHEME = "redis://"
DEFAULT_PORT = 6379
DEFAULT_KEY = "suricata"  # Suricata's default key / channel
DEFAULT_MODE = "list"
STREAM_MAXLEN = 100_000  # Suricata's REDIS_MAX_STREAM_LENGTH_DEFAULT
STREAM_FIELD = "eve"  # the stream entry's field name, as Suricata's
BATCH_SIZE = 256  # records per round trip
BUFFER_SIZE = 65_536  # records held while the server is slow or unreachable
RECONNECT_INTERVAL = 1.0  # seconds between connection attempts (Suricata: once per second)
TIMEOUT = 2.0  # seconds a connect or a round trip may take
DRAIN_TIMEOUT = 5.0  # seconds close() keeps trying to deliver what is buffered
SEND_INTERVAL = 0.05  # seconds a record may wait for its batch to fill (latency bound when traffic is light)

# Suricata's mode names -> the Redis command
MODES = {
    "list": "LPUSH", "lpush": "LPUSH", "rpush": "RPUSH",
    "channel": "PUBLISH", "publish": "PUBLISH",
    "stream": "XADD", "xadd": "XADD",
}
_TRUE = ("1", "yes", "true", "on")
_FALSE = ("0", "no", "false", "off")


class RedisURLError(ValueError):
    """A ``redis://`` target that cannot be used (one line for the operator)."""


@dataclass(frozen=True)
class RedisTarget:
    host: str
    port: int = DEFAULT_PORT
    key: str = DEFAULT_KEY
    mode: str = DEFAULT_MODE
    # None: not in the URL, the output's own (the settings') value
    stream_maxlen: int | None = None
    stream_trim_exact: bool | None = None
    batch_size: int | None = None
    username: str | None = None
    password: str | None = None

    @property
    def command(self) -> str:
        return MODES[self.mode]

    def url(self) -> str:
        """The target as a URL for messages (never the password)."""
        return f"{SCHEME}{self.host}:{self.port}/{self.key}?mode={self.mode}"


def is_redis_url(target: str) -> bool:
    return target.startswith(SCHEME)


def _query_int(name: str, text: str, url: str) -> int:
    if not text.isdigit():
        raise RedisURLError(f"{url}: {name} must be a whole number, got {text!r}")
    return int(text)


def _query_bool(name: str, text: str, url: str) -> bool:
    t = text.lower()
    if t not in _TRUE + _FALSE:
        raise RedisURLError(f"{url}: {name} must be yes or no, got {text!r}")
    return t in _TRUE


# query parameter -> (RedisTarget field, parser): Suricata's eve-log redis key names
_QUERY = {
    "mode": ("mode", None),
    "stream-maxlen": ("stream_maxlen", _query_int),
    "stream-trim-exact": ("stream_trim_exact", _query_bool),
    "batch-size": ("batch_size", _query_int),
}


def parse_redis_url(url: str) -> RedisTarget:
    """``redis://[USER:PASSWORD@]HOST[:PORT][/KEY][?mode=...&stream-maxlen=N&stream-trim-exact=yes&batch-size=N]``."""
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORT
    except ValueError as e:
        raise RedisURLError(f"{url}: {e}") from None
    if parts.scheme != "redis" or not parts.hostname:
        raise RedisURLError(f"{url}: expected redis://HOST:PORT/KEY?mode=list|rpush|channel|stream")
    fields: dict = {"host": parts.hostname, "port": port, "key": parts.path.lstrip("/") or DEFAULT_KEY,
                    "username": parts.username or None, "password": parts.password}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        spec = _QUERY.get(name)
        if spec is None:
            raise RedisURLError(f"{url}: unknown parameter {name!r} (use {', '.join(_QUERY)})")
        field, parse = spec
        fields[field] = parse(name, value, url) if parse is not None else value.lower()
    if fields.get("mode", DEFAULT_MODE) not in MODES:
        raise RedisURLError(f"{url}: unknown mode {fields['mode']!r} (use {', '.join(MODES)})")
    return RedisTarget(**fields)


# -- commands: (pipeline, target, batch) -> queued; results -> (refused, unheard) ----------------------
def _queue_push(pipe, target: RedisTarget, batch: list) -> None:
    pipe.execute_command(target.command, target.key, *batch)  # one command, all or nothing


def _queue_publish(pipe, target: RedisTarget, batch: list) -> None:
    for rec in batch:
        pipe.execute_command("PUBLISH", target.key, rec)


def _queue_xadd(pipe, target: RedisTarget, batch: list) -> None:
    if target.stream_maxlen > 0:
        head = ("XADD", target.key, "MAXLEN", "=" if target.stream_trim_exact else "~", target.stream_maxlen, "*")
    else:
        head = ("XADD", target.key, "*")
    for rec in batch:
        pipe.execute_command(*head, STREAM_FIELD, rec)


_QUEUE = {"LPUSH": _queue_push, "RPUSH": _queue_push, "PUBLISH": _queue_publish, "XADD": _queue_xadd}


def _outcome(command: str, results: list, batch_len: int) -> tuple[int, int, str | None]:
    """(records refused, records published to no subscriber, first error text) of one batch."""
    errors = [r for r in results if isinstance(r, Exception)]
    first = str(errors[0]) if errors else None
    if command in ("LPUSH", "RPUSH"):
        return (batch_len if errors else 0), 0, first
    unheard = sum(1 for r in results if r == 0) if command == "PUBLISH" else 0
    return len(errors), unheard, first


class RedisOutput:
    """The transport under an EVE writer: ``write(line)`` (a newline-terminated record) from the
    engine's thread, delivery in a sender thread; ``flush``/``close``/``reopen`` as a file's.
    """

    def __init__(self, target: RedisTarget, *, batch_size: int = BATCH_SIZE, buffer_size: int = BUFFER_SIZE,
                 stream_maxlen: int = STREAM_MAXLEN, stream_trim_exact: bool = False,
                 send_interval: float = SEND_INTERVAL, reconnect_interval: float = RECONNECT_INTERVAL,
                 timeout: float = TIMEOUT, drain_timeout: float = DRAIN_TIMEOUT):
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        self.target = target = replace(
            target, batch_size=max(1, target.batch_size or batch_size),
            stream_maxlen=stream_maxlen if target.stream_maxlen is None else target.stream_maxlen,
            stream_trim_exact=stream_trim_exact if target.stream_trim_exact is None else target.stream_trim_exact)
        self.batch_size = target.batch_size
        self.buffer_size = max(self.batch_size, buffer_size)
        self.send_interval = send_interval
        self.reconnect_interval = reconnect_interval
        self.drain_timeout = drain_timeout
        self._client = _connect(target, timeout)
        self._unreachable = (RedisConnectionError, RedisTimeoutError, OSError)
        self._queue_cmds = _QUEUE[target.command]
        self._buf: deque = deque()
        self._inflight: list = []
        self._wake = threading.Event()  # a batch is ready
        self._retry = threading.Event()  # flush/close: try the unreachable server again now
        self._closing = False
        self._deadline = float("inf")
        # the engine's thread counts drops; the sender counts the rest
        self.dropped = 0
        self.sent = self.refused = self.unheard = self.lost = self.reconnects = 0
        self.first_error: str | None = None
        self._up = True
        self._thread = threading.Thread(target=self._run, name="eve-redis", daemon=True)
        self._thread.start()

    # -- the engine's side ---------------------------------------------------------------
    def write(self, line: str) -> None:
        buf = self._buf
        buf.append(line)
        n = len(buf)
        if n >= self.batch_size:
            if n > self.buffer_size:
                try:
                    buf.popleft()  # the oldest gives way
                    self.dropped += 1
                except IndexError:  # the sender emptied it meanwhile
                    pass
            self._wake.set()

    def flush(self) -> None:
        """Send what is buffered now, and try an unreachable server again now (does not wait)."""
        self._wake.set()
        self._retry.set()

    def reopen(self) -> None:
        """SIGHUP: nothing to reopen (the connection is re-made when it breaks)."""

    def close(self) -> None:
        """Deliver what is buffered (up to ``drain_timeout`` seconds), then count the rest as lost."""
        if self._closing:
            return
        self._deadline = time.monotonic() + self.drain_timeout
        self._closing = True
        self.flush()
        self._thread.join()
        self.lost = len(self._buf) + len(self._inflight)
        self._buf.clear()
        self._inflight = []
        self._client.close()

    # -- the sender's side ----------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._deliver()
        except Exception as e:  # noqa: BLE001 - a defect stops delivery; what is left is counted as lost, with why
            self.first_error = f"sender stopped: {type(e).__name__}: {_one_line(e)}"

    def _deliver(self) -> None:
        while True:
            if not self._inflight:
                if not self._closing:
                    self._wake.wait(self.send_interval)
                    self._wake.clear()
                self._take()
                if not self._inflight:
                    if self._closing:
                        return
                    continue
            if self._send():
                continue
            wait = min(self.reconnect_interval, self._deadline - time.monotonic())
            if wait <= 0:
                return
            self._retry.wait(wait)
            self._retry.clear()

    def _take(self) -> None:
        buf, batch = self._buf, []
        popleft = buf.popleft
        try:
            for _ in range(self.batch_size):
                batch.append(popleft()[:-1])  # the writer's line ends in a newline
        except IndexError:
            pass
        self._inflight = batch

    def _send(self) -> bool:
        """Send the batch in hand; False when the server could not be reached (the batch is kept)."""
        batch = self._inflight
        pipe = self._client.pipeline(transaction=False)
        self._queue_cmds(pipe, self.target, batch)
        try:
            results = pipe.execute(raise_on_error=False)
        except self._unreachable as e:
            self._up = False
            self.first_error = self.first_error or _one_line(e)
            return False
        if not self._up:
            self._up = True
            self.reconnects += 1
        refused, unheard, error = _outcome(self.target.command, results, len(batch))
        self.refused += refused
        self.unheard += unheard
        self.sent += len(batch) - refused
        if error and self.first_error is None:
            self.first_error = _one_line(error)
        self._inflight = []
        return True

    # -- accounting ---------------------------------------------------------------------
    def counters(self) -> dict:
        return {
            "sent": self.sent, "buffered": len(self._buf) + len(self._inflight), "dropped": self.dropped,
            "refused": self.refused, "lost": self.lost, "unheard": self.unheard, "reconnects": self.reconnects,
        }

    def undelivered(self) -> int:
        return self.dropped + self.refused + self.lost

    def warning(self) -> str | None:
        """One line when records did not reach Redis, or reached a channel nobody listened to."""
        parts = [f"{n:,} {what}" for n, what in (
            (self.dropped, "dropped from the full buffer"),
            (self.lost, f"still buffered after {self.drain_timeout:g}s of trying at exit"),
            (self.refused, "refused by the server"),
        ) if n]
        why = f" (first error: {self.first_error})" if self.first_error and parts else ""
        unheard = f"{self.unheard:,} published to no subscriber" if self.unheard else ""
        if not parts:
            return f"EVE to {self.target.url()}: {unheard} (a channel keeps nothing)" if unheard else None
        total = self.sent + self.undelivered()
        return (f"EVE to {self.target.url()}: {self.undelivered():,} of {total:,} records not delivered: "
                f"{', '.join(parts)}{why}" + (f"; {unheard}" if unheard else ""))


def _connect(target: RedisTarget, timeout: float):
    """A client that fails fast and never retries by itself: the sender decides what is sent again."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(host=target.host, port=target.port, username=target.username, password=target.password,
                       socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))


def _one_line(e) -> str:
    return " ".join(str(e).split()) or type(e).__name__
