"""Shared test fixtures.

``needs_privilege(reason)`` skips a test that needs root / network namespaces,
unless MIRRORWATCH_REQUIRE_PRIVILEGED=1 (CI), where the same condition is a
failure: CI must really run the live and kill tests.

The session keeps its rule cache in a temporary directory of its own
(``$MIRRORWATCH_CACHE_DIR``, for the engine in-process and the ``mirrorwatch``
subprocesses alike), never in the production default.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("MIRRORWATCH_CORPUS", ROOT.parent / "shared" / "corpus"))
REQUIRE_PRIVILEGED = os.environ.get("MIRRORWATCH_REQUIRE_PRIVILEGED") == "1"
CACHE_DIR_ENV = "MIRRORWATCH_CACHE_DIR"  # mirrorwatch.core.settings.CACHE_DIR_ENV
RULE_CACHE = pytest.StashKey[str]()


def pytest_configure(config):
    """The session's own rule cache, never the production default (/var/lib/mirrorwatch/cache/sgh):
    set before any test imports mirrorwatch (the setting's default is read then), inherited by the
    ``mirrorwatch`` subprocesses the tests start; removed when the session ends."""
    if "mirrorwatch.core.settings" in sys.modules:
        raise pytest.UsageError(f"mirrorwatch was imported before conftest could set ${CACHE_DIR_ENV}")
    config.stash[RULE_CACHE] = tempfile.mkdtemp(prefix="mirrorwatch-test-cache-")
    os.environ[CACHE_DIR_ENV] = str(Path(config.stash[RULE_CACHE]) / "sgh")


def pytest_sessionfinish(session):
    """Pending oracle work (applayer_oracles' pool) is dropped, not run, when the session ends."""
    oracles = sys.modules.get("applayer_oracles")
    if oracles is not None:
        oracles.stop_pool()


def pytest_unconfigure(config):
    folder = config.stash.get(RULE_CACHE, None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def needs_privilege(reason: str) -> None:
    """Skip (or, under MIRRORWATCH_REQUIRE_PRIVILEGED=1, fail) with ``reason``."""
    if REQUIRE_PRIVILEGED:
        pytest.fail(f"privileged test cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def netns_available() -> str | None:
    """None when network namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root"
    if not shutil.which("ip") or not shutil.which("tc"):
        return "needs iproute2 (ip, tc)"
    name = f"mwprobe{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot create network namespaces: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


@pytest.fixture
def privileged():
    """Use in tests that need root and network namespaces."""
    why = netns_available()
    if why:
        needs_privilege(why)


@pytest.fixture
def routed_lab(privileged):
    """A ``netlab.RoutedLab`` (client -- router -- server) for the inline tests; needs iptables."""
    import netlab

    if not shutil.which("iptables"):
        needs_privilege("needs iptables (apt-get install iptables)")
    with netlab.RoutedLab() as lab:
        yield lab


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS} (set MIRRORWATCH_CORPUS)")
    return CORPUS


@pytest.fixture(scope="session")
def et_open_rules(corpus):
    """ET Open parsed once (``load_rules``, no rule cache) for every test that reads the parsed set
    (a 4-6 s parse each time otherwise); a test must not change it."""
    from mirrorwatch.core.settings import Settings
    from mirrorwatch.rules import load_rules

    return load_rules([corpus / "rules" / "et-open"], Settings())


@pytest.fixture
def redis_server(tmp_path):
    """A real redis-server on loopback, on a free port, in the test's folder (tests/redislab.py)."""
    from redislab import RedisServer

    if not shutil.which("redis-server"):
        pytest.fail("redis-server is not installed: `make test` installs it (Debian package redis-server)",
                    pytrace=False)
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()
