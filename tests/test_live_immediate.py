"""libpcap immediate mode (``capture.immediate``) through ctypes, and its fallback.

The privileged tests capture on the lab's mirror port from a process in the
sensor namespace, with ``capture.read-timeout`` at 10 s: without immediate
mode a frame would wait for the TPACKET_V3 block timer, up to 10 s (about 5 s
on average), so a frame handed over within 2 s of its kernel timestamp shows
immediate mode is really in force, without depending on tight timings.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pcapy
import pytest

from mirrorwatch.sources import immediate
from netlab import NetLab

MARKER = b"mw-immediate-probe"

# argv: iface, mode (ok | layout-fails | confirm-fails), read-timeout seconds.
# Prints the capture's immediate-mode state, then how long the first marker frame waited.
PROBE = r"""
import json, sys, time
from mirrorwatch.sources import immediate, live
from mirrorwatch.core.settings import Settings
iface, mode, rto, imm = sys.argv[1:5]
if mode == "layout-fails":
    immediate.ImmediateMode._layout_ok = lambda self: False
elif mode == "confirm-fails":
    immediate.ImmediateMode.confirm = lambda self, handle: "forced mismatch"
s = Settings()
s.apply("capture.immediate=" + imm)
s.apply("capture.read-timeout=" + rto)
cap = live.LiveCapture(iface, s)
cap.start()
print(json.dumps({"active": cap.immediate_active, "problem": cap.immediate_problem}), flush=True)
delay, deadline = None, time.monotonic() + 30
while delay is None and time.monotonic() < deadline:
    b = cap.get(0.05)
    now = time.time()
    for ts, frame in live.iter_batch(b) if b else ():
        if b"MARKER" in frame:
            delay = now - ts
            break
c = cap.counters()
cap.close()
print(json.dumps({"delay": delay, "received": c["received"], "drops": c["drops"]}), flush=True)
""".replace("MARKER", MARKER.decode())


@pytest.fixture
def lab(privileged):
    with NetLab() as lab:
        yield lab


# argv: iface, on|off.  Segmentation and receive offloads (TSO, GSO, GRO) through the legacy
# ethtool ioctls (no ethtool binary here), as an operator would with `ethtool -K IFACE ...`.
OFFLOADS = r"""
import array, fcntl, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for cmd in (0x1f, 0x24, 0x2c):  # ETHTOOL_STSO, SGSO, SGRO
    val = array.array("I", [cmd, 1 if sys.argv[2] == "on" else 0])
    fcntl.ioctl(s, 0x8946, struct.pack("16sP16x", sys.argv[1].encode(), val.buffer_info()[0]))
"""


def set_offloads(lab: NetLab, on: bool) -> None:
    """Turn TSO/GSO/GRO on or off on the lab's mirror port (in the sensor namespace)."""
    lab.run(lab.sensor, sys.executable, "-c", OFFLOADS, lab.monitor, "on" if on else "off")


def probe(lab: NetLab, mode: str, read_timeout: float, immediate: str = "true") -> tuple[dict, dict]:
    """Run PROBE in the sensor namespace, send marker datagrams until it reports; (state, result)."""
    p = lab.python(lab.sensor, PROBE, lab.monitor, mode, str(read_timeout), immediate, text=True)
    line = p.stdout.readline()
    if not line.startswith("{"):
        pytest.fail(f"probe did not start: {line} {p.stderr.read()[-800:]}")
    state = json.loads(line)
    for _ in range(5):
        lab.udp_send(lab.SERVER4, 9, MARKER)
        time.sleep(0.1)
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        lab.stop(p)
        pytest.fail("probe never finished")
    assert p.returncode == 0, err[-800:]
    return state, json.loads(out.strip().splitlines()[-1])


def test_layout_checks_out_on_an_offline_handle():
    """No privilege needed: the library pcapy loaded is found and the pointer layout proven."""
    imm = immediate.ImmediateMode()
    assert imm.problem is None and imm.lib is not None
    assert imm._layout_ok()


def test_pointer_refuses_what_is_not_a_pcapy_handle():
    assert immediate.ImmediateMode.pointer(object()) == 0
    assert immediate.ImmediateMode.pointer(b"x" * 64) == 0


def test_enable_refuses_an_activated_handle(tmp_path):
    """An offline handle is already activated: the pre-activation check must say no, not write."""
    imm = immediate.ImmediateMode()
    f = tmp_path / "empty.pcap"
    f.write_bytes(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))
    h = pcapy.open_offline(str(f))
    try:
        assert imm.enable(h) == "the handle's pointer is not a pcap_t awaiting activation"
    finally:
        h.close()


def test_unavailable_library_is_reported_not_used(monkeypatch):
    monkeypatch.setattr(immediate.ImmediateMode, "_layout_ok", lambda self: False)
    imm = immediate.ImmediateMode()
    assert imm.lib is None and "layout" in imm.problem
    assert imm.enable(object()) == imm.problem


def test_immediate_mode_hands_frames_over_at_once(lab):
    state, res = probe(lab, "ok", 10.0)
    assert state == {"active": True, "problem": None}
    assert res["delay"] is not None, res
    assert res["delay"] < 2.0, f"frame waited {res['delay']:.3f}s: immediate mode not in force"
    assert res["received"] >= 1 and res["drops"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("mode,reason", [("layout-fails", "layout"), ("confirm-fails", "forced mismatch")])
def test_failed_validation_falls_back_to_the_read_timeout(lab, mode, reason):
    """Validation failing before activation, or after it (the handle is reopened), still captures."""
    state, res = probe(lab, mode, 0.05)
    assert state["active"] is False and reason in state["problem"]
    assert res["delay"] is not None and res["received"] >= 1, res


def run_until_listening(lab: NetLab, p: subprocess.Popen, err_path) -> None:
    """Wait for listen's "listening on" line, then stop it cleanly."""
    deadline = time.monotonic() + 30
    while "listening on" not in err_path.read_text():
        if p.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"listen did not start: {err_path.read_text()[-800:]}")
        time.sleep(0.05)
    assert lab.stop(p, signal.SIGTERM) == 0


@pytest.mark.slow
def test_listen_warns_once_and_says_which_mode(lab, tmp_path):
    err_path = tmp_path / "listen.err"
    code = ("import sys; from mirrorwatch.sources import immediate; from mirrorwatch.cli import main; "
            "immediate.ImmediateMode.confirm = lambda self, handle: 'forced mismatch'; "
            "main(sys.argv[1:], prog_name='mirrorwatch')")
    p = lab.python(lab.sensor, code, "listen", lab.monitor, "--no-table", "-q", "--eve", str(tmp_path / "eve.json"),
                   "--set", "capture.immediate=true",
                   stdout=subprocess.DEVNULL, stderr=open(err_path, "w"))
    run_until_listening(lab, p, err_path)
    lines = err_path.read_text().splitlines()
    warnings = [ln for ln in lines if "warning" in ln]
    assert len(warnings) == 1 and "capture.immediate not enabled" in warnings[0] and "forced mismatch" in warnings[0]
    listening = next(ln for ln in lines if "listening on" in ln)
    assert "read-timeout 1 ms" in listening and "immediate mode" not in listening


def test_listen_says_immediate_mode_when_it_is_on(lab, tmp_path):
    err_path = tmp_path / "listen.err"
    p = lab.mirrorwatch("listen", lab.monitor, "--no-table", "-q", "--eve", str(tmp_path / "eve.json"),
                        "--set", "capture.immediate=true", stdout=subprocess.DEVNULL, stderr=open(err_path, "w"))
    run_until_listening(lab, p, err_path)
    text = err_path.read_text()
    assert "warning" not in text
    assert "immediate mode" in next(ln for ln in text.splitlines() if "listening on" in ln)


def test_ring_problem_names_what_rules_immediate_mode_out():
    assert "not Ethernet" in immediate.ring_problem("lo", 262144, 64 << 20)
    assert "cannot read" in immediate.ring_problem("nosuch0", 262144, 64 << 20)
    assert immediate.offloads("nosuch0") is None


LISTENING = r"""
import json, sys
from mirrorwatch.sources import immediate
print(json.dumps({"offloads": immediate.offloads(sys.argv[1]),
                  "big": immediate.ring_problem(sys.argv[1], 262144, 64 << 20),
                  "small": immediate.ring_problem(sys.argv[1], 262144, 1 << 20)}))
"""


@pytest.mark.slow
def test_auto_mode_follows_the_offloads(lab, tmp_path):
    """Offloads on (the veth default): auto keeps the packed ring and says why; off: immediate mode,
    frames handed over at once (read-timeout 10 s would hold them for seconds otherwise)."""
    set_offloads(lab, True)
    state = json.loads(lab.run(lab.sensor, sys.executable, "-c", LISTENING, lab.monitor).stdout)
    assert "tso" in state["offloads"] and "gro" in state["offloads"]
    assert "offloads on mon0" in state["big"] and "ethtool -K mon0" in state["big"]
    err_path = tmp_path / "on.err"
    p = lab.mirrorwatch("listen", lab.monitor, "--no-table", "-q", "--eve", str(tmp_path / "on.json"),
                        stdout=subprocess.DEVNULL, stderr=open(err_path, "w"))
    run_until_listening(lab, p, err_path)
    listening = next(ln for ln in err_path.read_text().splitlines() if "listening on" in ln)
    assert "read-timeout 1 ms (capture.immediate=auto: offloads on mon0" in listening, listening
    assert "warning" not in err_path.read_text()

    set_offloads(lab, False)
    state = json.loads(lab.run(lab.sensor, sys.executable, "-c", LISTENING, lab.monitor).stdout)
    assert state["offloads"] == [] and state["big"] is None
    assert "raise --buffer-size" in state["small"]  # 1 MiB of 9018-byte (MTU 9000) slots
    state, res = probe(lab, "ok", 10.0, immediate="auto")
    assert state == {"active": True, "problem": None}
    assert res["delay"] is not None and res["delay"] < 2.0, res
    err_path = tmp_path / "off.err"
    p = lab.mirrorwatch("listen", lab.monitor, "--no-table", "-q", "--eve", str(tmp_path / "off.json"),
                        stdout=subprocess.DEVNULL, stderr=open(err_path, "w"))
    run_until_listening(lab, p, err_path)
    listening = next(ln for ln in err_path.read_text().splitlines() if "listening on" in ln)
    assert "immediate mode" in listening and "capture.immediate=auto" not in listening, listening
