"""The rule-set cache: a parsed rule set and its hyperscan databases kept on disk between runs.

Suricata 8 keeps the hyperscan databases of its signature groups in
``detect.sgh-mpm-caching-path`` when ``detect.sgh-mpm-caching`` is on, one file
per database named by a hash of its patterns, and removes files unused for
``detect.sgh-mpm-caching-max-age``.  mirrorwatch does the same for its
hyperscan databases (``MpmCache``: content-addressed, so a changed rule set
simply asks for other files) and, in the same directory, also keeps the parsed
rule set (``detect.rule-set-caching``, a mirrorwatch key): in Python, parsing
ET Open costs more than compiling its databases.

A rule-set entry is named by a SHA-256 over everything its result depends on
(``rule_set_key``): each rule file's path and bytes, the classification file's
bytes, the rule variables and ``pcre.*`` settings, mirrorwatch's version, the
build running (compiled or interpreted), the Python, PCRE2 and hyperscan
versions and the source of the rules room itself, so an edited parser never
meets a result of the old one.

Trust.  The rule set is stored with ``pickle``, and unpickling runs code named
by the file: an entry is only read from a directory that is not a symlink, is
owned by this user or root and is writable by no one else (else: no cache),
and every entry, databases included, carries an HMAC-SHA256 under a random
key kept beside the entries (``cache.key``, mode 0600, owned by this user,
made on first use).  The HMAC also covers the entry's name, so a valid entry
copied under another name (a foreign or stale one) fails like a corrupt or
truncated file: counted, one console line, rebuilt and stored again.  Only then
does ``pickle`` run, and its unpickler resolves nothing but the rule model's
classes (``_ALLOWED``).  hyperscan's own loader is no parser of untrusted bytes
(a flipped byte can crash the process): it too only sees authenticated bytes.
Anyone able to read ``cache.key`` and write the directory can make this process
run code; that is the user or root, who can do so anyway.

Writes go to a temporary file in the directory, renamed into place: a reader
sees a whole entry or none.  A directory that is missing and cannot be made,
is unsafe or read-only only means no cache (``status`` says why, one line).
"""

from __future__ import annotations

import gc
import hashlib
import hmac
import os
import secrets
import stat
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

MAGIC = b"MWCACHE1"
TAG_LEN = 32  # HMAC-SHA256
KEY_FILE = "cache.key"
KEY_LEN = 32
RULES_PREFIX = "rules-"
HS_PREFIX = "hs-"
PLAN_PREFIX = "plan-"
SUFFIX = ".mwc"
TMP_PREFIX = ".tmp-"
FORMAT = 2  # bump when what an entry holds changes (2: each rule pickled on its own, ``rules.lazy``)
_UNSAFE_MODE = stat.S_IWGRP | stat.S_IWOTH
_KEY_MODE_MASK = 0o077


@contextmanager
def collector_paused():
    """Python's cycle collector off for a block that makes a million long-lived objects (a rule set
    unpickled, the Detector's tables): each pass would walk them all again, for nothing (they hold
    no garbage cycles), and doubles the block's time.  Restored as it was after.

    What the block made then goes straight to the oldest generation (``gc.freeze`` and
    ``gc.unfreeze`` move every tracked object there, two list splices): left in the youngest,
    the first passes after the block would walk them all again, one generation after the other
    (0.4 s of CPU for ET Open's rule set and tables).  Where the process already keeps what
    survives frozen (``cli.collector.tune_gc``: a rule reload), they stay frozen, as the rest."""
    was_enabled = gc.isenabled()
    was_frozen = gc.get_freeze_count()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if not was_frozen:
            gc.unfreeze()
        if was_enabled:
            gc.enable()


class CacheUnusable(OSError):
    """The cache directory or its key cannot be used (a reason, one line)."""


class Rejected(ValueError):
    """An entry failed verification; it is removed and noted (``CacheDir.rejected``)."""


@dataclass
class CacheReport:
    """What the caches did in one load: ``status`` of the rule set (hit, miss, rebuilt, off or
    'unusable: why'), ``plan`` of the detector's plan beside it (the same words; said when it
    differs from the rule set's), hyperscan databases loaded / compiled / rebuilt, entries
    stored or not, the seconds loading the rule set and compiling its databases took;
    ``notes``: the lines said (each distinct one once), passed to ``notify`` as they happen."""

    status: str = "off"
    plan: str = "off"
    hs_loaded: int = 0
    hs_compiled: int = 0
    hs_rebuilt: int = 0
    stored: int = 0
    store_failed: int = 0
    pruned: int = 0
    load_seconds: float = 0.0
    compile_seconds: float = 0.0
    notes: list = field(default_factory=list)
    notify: object = None

    def note(self, line: str) -> None:
        if line in self.notes:
            return
        self.notes.append(line)
        if self.notify is not None:
            self.notify(line)

    def summary(self) -> str:
        """One line for the run summary and ``rules check``.  (Not in the EVE stats event: like its
        uptime, what a cache did depends on the runs before, and two runs' EVE must compare equal.)"""
        plan = f"; detector plan: {self.plan}" if self.plan not in ("off", self.status) else ""
        line = f"rule set loaded in {self.load_seconds:.2f}s (cache: {self.status}{plan})"
        if not self.hs_loaded + self.hs_compiled:  # hyperscan databases not through the cache
            return line
        extra = [f"{n} {what}" for n, what in ((self.hs_rebuilt, "rebuilt"), (self.stored, "stored"),
                                                (self.store_failed, "not stored"), (self.pruned, "pruned")) if n]
        return (f"{line}, matchers prepared in {self.compile_seconds:.2f}s ({self.hs_loaded} hyperscan "
                f"database(s) from the cache, {self.hs_compiled} compiled{''.join(', ' + e for e in extra)})")


class CacheDir:
    """One cache directory: authenticated entries, atomic writes, pruning by age."""

    def __init__(self, path: str, max_age: float, report: CacheReport):
        self.path = path
        self.max_age = max_age
        self.report = report
        self.key = self._open()

    def _open(self) -> bytes:
        try:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
        except OSError as e:
            raise CacheUnusable(f"cannot make {self.path}: {e.strerror or e}") from None
        st = os.lstat(self.path)
        if not stat.S_ISDIR(st.st_mode):
            raise CacheUnusable(f"{self.path} is not a directory")
        if st.st_uid not in (os.geteuid(), 0) or st.st_mode & _UNSAFE_MODE:
            raise CacheUnusable(f"{self.path} is writable by other users (want mode 0700, owned by this user)")
        return self._read_key() or self._make_key()

    def _read_key(self) -> bytes | None:
        try:
            fd = os.open(os.path.join(self.path, KEY_FILE), os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CacheUnusable(f"cannot read {KEY_FILE} in {self.path}: {e.strerror or e}") from None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & _KEY_MODE_MASK:
                raise CacheUnusable(f"{KEY_FILE} in {self.path} is not this user's alone (want mode 0600)")
            key = f.read(KEY_LEN + 1)
        if len(key) != KEY_LEN:
            raise CacheUnusable(f"{KEY_FILE} in {self.path} is damaged (remove it)")
        return key

    def _make_key(self) -> bytes:
        """A new key, written whole before it appears under its name (linked from a private temporary
        file): a process starting at the same moment reads either no key or the complete one."""
        key = secrets.token_bytes(KEY_LEN)
        try:
            fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=self.path)  # mode 0600, O_EXCL; a stray one is pruned
        except OSError as e:
            raise CacheUnusable(f"cannot write to {self.path}: {e.strerror or e}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(key)
            os.link(tmp, os.path.join(self.path, KEY_FILE))
        except FileExistsError:  # another process made it meanwhile
            return self._read_key() or b""
        except OSError as e:
            raise CacheUnusable(f"cannot write to {self.path}: {e.strerror or e}") from None
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        return key

    def _tag(self, name: str, payload) -> bytes:
        mac = hmac.new(self.key, name.encode() + b"\0", hashlib.sha256)
        mac.update(payload)
        return mac.digest()

    def read(self, name: str) -> bytes | None:
        """The authenticated payload of entry ``name``; None when absent or unreadable.  A damaged,
        truncated, foreign or tampered entry is removed and noted, and ``Rejected`` raised."""
        path = os.path.join(self.path, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as e:
            self.report.note(f"rule cache: cannot read {path}: {e.strerror or e}")
            return None
        with os.fdopen(fd, "rb") as f:
            head = payload = b""
            if stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                head = f.read(len(MAGIC) + TAG_LEN)
                payload = f.read()  # read apart from the head: tens of MB are not copied again
        if not payload or head[:len(MAGIC)] != MAGIC or not hmac.compare_digest(
                head[len(MAGIC):], self._tag(name, payload)):
            self.rejected(name, "failed verification (damaged, truncated or not ours)")
            raise Rejected(name)
        self._touch(path)
        return payload

    def rejected(self, name: str, why: str) -> None:
        """An entry cannot be used (``why``): removed, one line; the caller counts and rebuilds it."""
        path = os.path.join(self.path, name)
        self.report.note(f"rule cache: {path} {why}: rebuilding it")
        try:
            os.unlink(path)
        except OSError:
            pass

    def _touch(self, path: str) -> None:
        try:
            os.utime(path)  # used now: pruning by age keeps it
        except OSError:
            pass

    def write(self, name: str, payload: bytes) -> None:
        """Store an entry atomically (temporary file, then rename); a failure is counted."""
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=self.path)
            with os.fdopen(fd, "wb") as f:
                f.write(MAGIC)
                f.write(self._tag(name, payload))
                f.write(payload)
            os.replace(tmp, os.path.join(self.path, name))
            tmp = None
            self.report.stored += 1
        except OSError as e:
            self.report.store_failed += 1
            self.report.note(f"rule cache: cannot store in {self.path}: {e.strerror or e} (running without it)")
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass

    def prune(self) -> None:
        """Remove entries (and stray temporary files) unused for ``max_age`` seconds (0: never)."""
        if self.max_age <= 0:
            return
        cutoff = time.time() - self.max_age
        try:
            entries = list(os.scandir(self.path))
        except OSError:
            return
        for e in entries:
            if not e.name.startswith((RULES_PREFIX, HS_PREFIX, PLAN_PREFIX, TMP_PREFIX)):
                continue
            try:
                if e.is_file(follow_symlinks=False) and e.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(e.path)
                    self.report.pruned += 1
            except OSError:
                pass


def open_cache(settings, report: CacheReport) -> CacheDir | None:
    """The cache directory of ``settings``, or None (caching off, or unusable: noted)."""
    path = settings["detect.sgh-mpm-caching-path"]
    try:
        return CacheDir(path, settings["detect.sgh-mpm-caching-max-age"], report)
    except CacheUnusable as e:
        report.status = "unusable"
        report.note(f"rule cache: {e}; running without it")
        return None
