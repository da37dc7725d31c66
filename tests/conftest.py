"""Shared test fixtures.

``needs_privilege(reason)`` skips a test that needs root / network namespaces,
unless MIRRORWATCH_REQUIRE_PRIVILEGED=1 (CI), where the same condition is a
failure: CI must really run the live and kill tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("MIRRORWATCH_CORPUS", ROOT.parent / "shared" / "corpus"))
REQUIRE_PRIVILEGED = os.environ.get("MIRRORWATCH_REQUIRE_PRIVILEGED") == "1"


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
