"""mirrorwatch: a passive network IDS for a switch's mirror (SPAN) port, with TCP-reset blocking.

Two builds of the same files
----------------------------
The modules on the per-packet path (``COMPILED``) are Cython in pure-Python
mode: each is a plain ``.py`` file with a ``.pxd`` beside it that types its
records and hot functions, and the package's own build (``pip install .``,
``make``) compiles them into extension modules.  The very same ``.py`` files
run interpreted (every ``mirrorwatch`` module then loads from its source) when

- ``MIRRORWATCH_PURE=1`` is set (at build time it also means: compile nothing);
- one of them has no compiled module (installed pure, or a build that failed);
- one of them changed after it was compiled (an edit not rebuilt yet: ``make``
  rebuilds it).

It is all or none: compiled modules share each other's typed records, so a
compiled one cannot sit beside an interpreted one.  ``compiled()`` says which
build runs (``mirrorwatch --version`` prints it); ``PURE_REASON`` says why the
interpreted one does (None when compiled).
"""

from __future__ import annotations

import importlib
import os
import sys
from importlib.machinery import EXTENSION_SUFFIXES, SOURCE_SUFFIXES, ExtensionFileLoader, FileFinder, SourceFileLoader

__version__ = "0.1.0"

# The modules the build compiles (setup.py reads this tuple); each has a .pxd beside its .py.
COMPILED = (
    "mirrorwatch.core.decode.packet",
    "mirrorwatch.core.decode.wire",
    "mirrorwatch.core.decode.checksum",
    "mirrorwatch.core.decode.context",
    "mirrorwatch.core.decode.decoder",
    "mirrorwatch.core.decode.ethernet",
    "mirrorwatch.core.decode.vlan",
    "mirrorwatch.core.decode.ipv4",
    "mirrorwatch.core.decode.ipv6",
    "mirrorwatch.core.decode.tcp",
    "mirrorwatch.core.decode.udp",
    "mirrorwatch.core.decode.ip",
    "mirrorwatch.core.decode.ppp",
    "mirrorwatch.core.decode.pppoe",
    "mirrorwatch.core.decode.mpls",
    "mirrorwatch.core.decode.flowsched",
    "mirrorwatch.core.decode.flowshare",
    "mirrorwatch.core.decode.ownframes",
    "mirrorwatch.core.reassembly.context",
    "mirrorwatch.core.reassembly.overlap",
    "mirrorwatch.core.reassembly.stream",
    "mirrorwatch.core.flows.flow",
    "mirrorwatch.core.flows.tcp",
    "mirrorwatch.core.flows.table",
    "mirrorwatch.core.flows.caps",
    "mirrorwatch.core.flows.wheel",
    "mirrorwatch.core.engine",
    "mirrorwatch.core.inline",
    "mirrorwatch.core.detect",
    "mirrorwatch.core.detect.state",
    "mirrorwatch.core.detect.hsdb",
    "mirrorwatch.core.detect.tables",
    "mirrorwatch.core.detect.stream",
    # the application layer's per-byte work: the HTTP/1 parser (its state machine typed as a
    # chain of cdef classes, stream.pxd) and its dispatch
    "mirrorwatch.core.applayer.session",
    "mirrorwatch.core.applayer.common",
    "mirrorwatch.core.applayer.detect_proto",
    "mirrorwatch.core.applayer.dns",
    "mirrorwatch.core.applayer.dns_wire",
    "mirrorwatch.core.applayer.http.state",
    "mirrorwatch.core.applayer.http.stream",
    "mirrorwatch.core.applayer.http.message",
    "mirrorwatch.core.applayer.http.request_side",
    "mirrorwatch.core.applayer.http.response_side",
    "mirrorwatch.core.applayer.http.request",
    "mirrorwatch.core.applayer.http.response",
    "mirrorwatch.core.applayer.http.headers",
    "mirrorwatch.core.applayer.http.framing",
    "mirrorwatch.core.applayer.http.transaction",
    "mirrorwatch.core.applayer.http.body",
    "mirrorwatch.core.applayer.http.files",
    "mirrorwatch.core.applayer.http.config",
    "mirrorwatch.core.applayer.http.uri",
    "mirrorwatch.sources.nfnetlink",
    "mirrorwatch.sources.savefile",
    # inline mode's per-packet loop: the queue's messages through the engine, their verdicts
    "mirrorwatch.inline.verdicts",
    # the EVE flow record's writer: a flood ends a session, so writes a record, per packet
    "mirrorwatch.sinks.fmt",
    "mirrorwatch.sinks.eve_flow",
    "mirrorwatch.core.events",
    # detect's rule judging and its build, and the TLS/SSH parsers: plain Python compiled (their
    # .pxd type nothing)
    "mirrorwatch.core.detect.buffers",
    "mirrorwatch.core.detect.build",
    "mirrorwatch.core.detect.compile",
    "mirrorwatch.core.detect.groups",
    "mirrorwatch.core.detect.headers",
    "mirrorwatch.core.detect.judge",
    "mirrorwatch.core.detect.payload",
    "mirrorwatch.core.detect.payload_bytes",
    "mirrorwatch.core.detect.payload_search",
    "mirrorwatch.core.detect.tag",
    "mirrorwatch.core.detect.threshold",
    "mirrorwatch.core.detect.transforms",
    "mirrorwatch.core.detect.tx",
    "mirrorwatch.core.detect.txrule",
    "mirrorwatch.core.applayer.tls",
    "mirrorwatch.core.applayer.tls_messages",
    "mirrorwatch.core.applayer.tls_record",
    "mirrorwatch.core.applayer.ja",
    "mirrorwatch.core.applayer.ssh",
    "mirrorwatch.core.applayer.x509",
)
PURE_ENV = "MIRRORWATCH_PURE"
# A source this many seconds newer than its compiled module is an edit not rebuilt yet (the slack
# covers installers that write a module's files in any order within the same moment).
STALE_SLACK_S = 2.0
_ROOT = os.path.dirname(os.path.abspath(__file__))


def pure_requested() -> bool:
    """``MIRRORWATCH_PURE`` is set to something other than '' or '0'."""
    return os.environ.get(PURE_ENV, "") not in ("", "0")


def _module_base(name: str) -> str:
    """Path of a ``COMPILED`` module without its suffix (a package is its ``__init__``)."""
    base = os.path.join(_ROOT, *name.split(".")[1:])
    return os.path.join(base, "__init__") if os.path.isdir(base) else base


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _built_mtime(name: str) -> float | None:
    """When the compiled module of ``name`` was built, or None when there is none."""
    base = _module_base(name)
    times = [t for t in (_mtime(base + s) for s in EXTENSION_SUFFIXES) if t is not None]
    return max(times) if times else None


def built() -> dict[str, bool]:
    """Each module of ``COMPILED`` -> whether the build left a compiled module for it (loaded or not)."""
    return {name: _built_mtime(name) is not None for name in COMPILED}


def pure_reason() -> str | None:
    """Why the interpreted build must run, or None when every compiled module is there and current
    (judged now: ``PURE_REASON`` is this at import; a benchmark checks it again between runs)."""
    if pure_requested():
        return f"{PURE_ENV} is set"
    for name in COMPILED:
        t_built = _built_mtime(name)
        if t_built is None:
            return f"{name} has no compiled module (installed without compiling)"
        base = _module_base(name)
        for source in (base + ".py", base + ".pxd"):
            t = _mtime(source)
            if t is not None and t > t_built + STALE_SLACK_S:
                return f"{os.path.relpath(source, os.path.dirname(_ROOT))} changed after it was compiled (run make)"
    return None


class _Interpreted:
    """``sys.meta_path`` finder of the interpreted build: every mirrorwatch module from its ``.py``."""

    _finders: dict[str, FileFinder] = {}

    @classmethod
    def find_spec(cls, fullname: str, path=None, target=None):
        if path is None or not fullname.startswith(__name__ + "."):
            return None
        for entry in path:
            finder = cls._finders.get(entry)
            if finder is None:
                finder = cls._finders[entry] = FileFinder(entry, (SourceFileLoader, SOURCE_SUFFIXES))
            spec = finder.find_spec(fullname, target)
            if spec is not None:
                return spec
        return None

    @classmethod
    def invalidate_caches(cls) -> None:
        for finder in cls._finders.values():
            finder.invalidate_caches()


PURE_REASON = pure_reason()
if PURE_REASON is not None and _Interpreted not in sys.meta_path:
    sys.meta_path.insert(0, _Interpreted)


def compiled() -> dict[str, bool]:
    """Each module of ``COMPILED`` -> whether it runs as compiled code (imports them)."""
    return {name: isinstance(importlib.import_module(name).__loader__, ExtensionFileLoader) for name in COMPILED}


def build_summary() -> str:
    """One line saying which build runs, for ``--version``."""
    runs = compiled()
    if all(runs.values()):
        return f"build: compiled (Cython): {len(runs)} per-packet modules"
    return f"build: interpreted ({PURE_REASON or 'compiled modules not loaded'})"
