"""Progress bars: drawn in a real terminal (tmux, as tests/test_table.py drives it), absent from pipes."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slowcap import write_ping_sweep

from mirrorwatch.cli.progress import FilesRead

ROOT = Path(__file__).resolve().parent.parent
BAR = "━"
TIMINGS = re.compile(r"in \d+\.\d+s(, \d+\.\d+s CPU \([\d,]+ packets/s, [\d.]+ Mbit/s\))?")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def pane():
    """A fresh 120x40 tmux session; ``run(cmd)`` types a shell command into it."""
    if not shutil.which("tmux"):
        pytest.fail("tmux is not installed: `make test` installs it", pytrace=False)
    name = f"mwprogress{os.getpid()}"
    tmux("new-session", "-d", "-s", name, "-x", "120", "-y", "40", "-e", "TERM=xterm-256color")

    class Pane:
        def run(self, cmd: str) -> None:
            tmux("send-keys", "-t", name, f"cd {shlex.quote(str(ROOT))} && {cmd}", "Enter")

        def text(self) -> str:
            return tmux("capture-pane", "-p", "-t", name, "-S", "-200")

        def wait(self, pred, timeout: float = 30.0) -> str:
            deadline = time.monotonic() + timeout
            while not pred(text := self.text()):
                assert time.monotonic() < deadline, text
                time.sleep(0.1)
            return text

    yield Pane()
    subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True, check=False)


def mw(*args: str) -> str:
    return " ".join(shlex.quote(a) for a in (sys.executable, "-m", "mirrorwatch", *args))


def masked(text: str) -> str:
    return TIMINGS.sub("in T", text)


@pytest.mark.slow
def test_replay_draws_a_bar_on_a_terminal_and_erases_it(pane, tmp_path):
    pcap = write_ping_sweep(tmp_path / "pings.pcap", count=40, interval=0.1)
    done = tmp_path / "done"
    pane.run(f"{mw('replay', '--realtime', '--no-table', str(pcap))}; touch {done}")
    pane.wait(lambda t: re.search(r"replaying .*━.* \d+% .*kB +[1-9][\d,]* packets/s [1-9]\d* alerts", t))
    assert not done.exists(), "the bar is drawn while the replay runs, counting"
    final = pane.wait(lambda t: done.exists() and "40 packets" in t)
    assert "replaying" not in final, "the bar is erased at the end"
    assert final.count("MW SCAN ICMP echo request") == 41  # 40 alert lines and the summary's row, none lost


@pytest.mark.slow
def test_piped_output_is_exactly_what_it_was(pane, tmp_path):
    pcap = write_ping_sweep(tmp_path / "pings.pcap", count=30, interval=0.05)
    plain = subprocess.run([sys.executable, "-m", "mirrorwatch", "replay", "--realtime", str(pcap)],
                           capture_output=True, text=True, check=False, cwd=ROOT, timeout=60)
    assert plain.returncode == 0 and "replaying" not in plain.stdout + plain.stderr
    # stdout and stderr both piped: nothing extra anywhere
    both, done = tmp_path / "both.txt", tmp_path / "done1"
    pane.run(f"{mw('replay', '--realtime', str(pcap))} 2>&1 | cat > {both}; touch {done}")
    pane.wait(lambda t: done.exists())
    assert masked(both.read_text()) == masked(plain.stderr + plain.stdout)
    # stdout piped, stderr on the terminal: the bar goes to the terminal, the pipe gets the old bytes
    out, done = tmp_path / "out.txt", tmp_path / "done2"
    pane.run(f"{mw('replay', '--realtime', str(pcap))} | cat > {out}; touch {done}")
    pane.wait(lambda t: f"replaying {BAR}" in t)
    pane.wait(lambda t: done.exists())
    assert masked(out.read_text()) == masked(plain.stdout)
    assert "\x1b" not in out.read_text()


@pytest.mark.slow
def test_rules_check_shows_progress_on_a_terminal(pane, tmp_path):
    rules = tmp_path / "big.rules"
    rules.write_text("".join(
        f'alert tcp any any -> any 80 (msg:"generated {n}"; flow:to_server,established; content:"pattern-{n}"; '
        f"nocase; sid:{n}; rev:1;)\n" for n in range(1, 20_001)))
    done = tmp_path / "done"
    pane.run(f"{mw('rules', 'check', str(rules))}; touch {done}")
    pane.wait(lambda t: re.search(r"(parsing rules|preparing the rules) .*━.* \d+% .*MB", t))
    final = pane.wait(lambda t: done.exists() and "20000 loaded" in t, timeout=120)
    assert "parsing rules" not in final and "preparing the rules" not in final
    piped = subprocess.run([sys.executable, "-m", "mirrorwatch", "rules", "check", str(rules)],
                           capture_output=True, text=True, check=False, cwd=ROOT, timeout=60)
    assert piped.returncode == 0 and piped.stderr == "" and "parsing rules" not in piped.stdout


def test_files_read_follows_the_open_descriptor(tmp_path):
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    a.write_bytes(b"x" * 1000)
    b.write_bytes(b"y" * 3000)
    files = FilesRead([a, b])
    assert files.total == 4000 and files.done() == 0
    fd = os.open(a, os.O_RDONLY)
    os.read(fd, 400)
    assert files.done() == 400
    os.close(fd)
    fd = os.open(b, os.O_RDONLY)
    os.read(fd, 1500)
    assert files.done() == 1000 + 1500  # the first file is read, the second half way
    os.close(fd)
    assert files.done() == 2500  # between files: where the reading was
