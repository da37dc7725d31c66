"""Killing sessions between real Linux TCP stacks, seen through a mirror port.

Client and server namespaces talk through a bridge whose ports are mirrored to
a sensor namespace (``netlab``).  ``mirrorwatch listen`` runs there with reject
rules; small socket programs in the client and server namespaces report what
their kernel sockets saw (the first error, and when), so each case asserts
that BOTH endpoints got ECONNRESET within 1 s of the trigger, while a benign
transfer running alongside completes byte-exact.

The switch is configured the way an injecting sensor needs it: the port the
sensor sends on (the mirror port itself, or a dedicated one) forwards what
comes in but never learns MAC addresses (the forged frames carry the
endpoints' MACs) and is never flooded to; with a tagged mirror it is a trunk
whose 802.1Q tag the switch removes before forwarding to the access ports.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import struct
import subprocess
import time
from ipaddress import ip_address
from itertools import pairwise
from pathlib import Path

import pytest

pytestmark = [pytest.mark.privileged, pytest.mark.slow]  # a namespace lab and seconds of traffic per case

RULES = """\
reject tcp any any -> any 8080 (msg:"kill test: forbidden request"; flow:established,to_server; content:"FORBIDDEN"; sid:4000001; rev:1;)
reject tcp any 8080 -> any any (msg:"kill test: bad server reply"; flow:established,to_client; content:"SRVBAD"; sid:4000002; rev:1;)
rejectsrc tcp any any -> any 8080 (msg:"kill test: reset the requester only"; flow:established,to_server; content:"SRCONLY"; sid:4000003; rev:1;)
"""

# Both peers: read until the socket errs or ends, for at most `timeout` seconds (a peer may be streaming);
# what happened, as the kernel reported it, and the bytes read meanwhile.
PEER_COMMON = r"""
import errno, json, random, socket, sys, time
def read_until_error(c, timeout):
    deadline, n = time.monotonic() + timeout, 0
    try:
        while time.monotonic() < deadline:
            c.settimeout(max(0.01, deadline - time.monotonic()))
            k = len(c.recv(65536))
            if not k:
                return "EOF", n
            n += k
    except socket.timeout:
        pass
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno)), n
    return "timeout", n
def wait_error(c, timeout):
    return read_until_error(c, timeout)[0]
"""

# Server: one thread per connection; the client's first line chooses the behaviour.
# Prints one JSON line per connection: what its socket saw and when.
PEER_SERVER = PEER_COMMON + r"""
import threading
out = threading.Lock()
def report(**kw):
    with out:
        sys.stdout.write(json.dumps(kw) + "\n"); sys.stdout.flush()
def blob(n):
    return random.Random(n).randbytes(n)
def serve(c, peer):
    f = c.makefile("rb")
    mode, *arg = f.readline().decode().split()
    res, t_trig, sent = None, None, 0
    if mode == "idle":
        res = wait_error(c, 4)
    elif mode == "bulk":
        chunk = b"b" * 16384
        try:
            while True:
                c.sendall(chunk); sent += len(chunk)
                time.sleep(0.002)
        except OSError as e:
            res = errno.errorcode.get(e.errno, str(e.errno))
    elif mode == "stream":  # paced at arg[0] bytes/s by the kernel (SO_MAX_PACING_RATE): MSS segments evenly spread
        c.setsockopt(socket.SOL_SOCKET, 47, int(arg[0]))
        chunk = b"s" * 65536
        try:
            while True:
                c.sendall(chunk); sent += len(chunk)
        except OSError as e:
            res = errno.errorcode.get(e.errno, str(e.errno))
    elif mode == "srvpat":
        f.readline()
        t_trig = time.time()
        c.sendall(b"reply with SRVBAD inside\n")
        res = wait_error(c, 4)
    elif mode == "lossy":  # a segment the sensor sees but the client never gets (dropped after the mirror)
        c.sendall(b"LOST" + b"l" * 200)
        res = wait_error(c, 4)
    elif mode == "benign":
        data = blob(int(arg[0]))
        for i in range(0, len(data), 65536):
            c.sendall(data[i:i + 65536]); time.sleep(0.04)
        res = wait_error(c, 6)
    report(peer=peer[1], mode=mode, result=res, t=time.time(), t_trigger=t_trig, sent=sent)
    c.close()
srv = socket.create_server(("::", 8080), family=socket.AF_INET6, dualstack_ipv6=True, backlog=64)
while True:
    c, a = srv.accept()
    threading.Thread(target=serve, args=(c, a), daemon=True).start()
"""

STREAM_RATE = 8_000_000  # bytes/s of the server's paced stream ("stream" mode)

# Client: runs one case and prints one JSON line (its local port, result, times).
PEER_CLIENT = PEER_COMMON + f"STREAM_RATE = {STREAM_RATE}\n" + r"""
host, mode = sys.argv[1], sys.argv[2]
c = socket.create_connection((host, 8080), timeout=5)
port = c.getsockname()[1]
t_trig, res, got = None, None, 0
wait = float(sys.argv[3]) if len(sys.argv) > 3 else 3.0
if mode == "idle":
    c.sendall(b"idle\n"); time.sleep(0.2)
    t_trig = time.time()
    c.sendall(b"GET /FORBIDDEN HTTP/1.1\r\n\r\n")
    res = wait_error(c, wait)
elif mode == "bulk":
    c.sendall(b"bulk\n")
    while got < 3_000_000:
        got += len(c.recv(65536))
    t_trig = time.time()
    c.sendall(b"now FORBIDDEN while you stream\n")
    res, n = read_until_error(c, wait); got += n
elif mode == "stream":  # the server streams, paced; this side sends the rejectsrc trigger while it does
    c.sendall(b"stream %d\n" % STREAM_RATE)
    while got < 3_000_000:
        got += len(c.recv(65536))
    t_trig = time.time()
    c.sendall(b"now SRCONLY while you stream\n")
    res, n = read_until_error(c, wait); got += n
elif mode == "lossy":
    c.sendall(b"lossy\n"); time.sleep(0.3)
    t_trig = time.time()
    c.sendall(b"GET /FORBIDDEN HTTP/1.1\r\n\r\n")
    res = wait_error(c, wait)
elif mode == "srvpat":
    c.sendall(b"srvpat\n"); time.sleep(0.2)
    c.sendall(b"go\n")
    res = wait_error(c, wait)
elif mode == "benign":
    n = int(sys.argv[3])
    c.sendall(b"benign %d\n" % n)
    buf = bytearray()
    c.settimeout(10)
    try:
        while len(buf) < n:
            d = c.recv(65536)
            if not d:
                break
            buf += d
        res = "ok" if bytes(buf) == random.Random(n).randbytes(n) else "corrupt"
    except OSError as e:
        res = errno.errorcode.get(e.errno, str(e.errno))
    got = len(buf)
print(json.dumps({"port": port, "mode": mode, "result": res, "t": time.time(), "t_trigger": t_trig, "got": got}))
c.close()
"""

BENIGN_BYTES = 1_500_000


# -- switch configuration for injection -----------------------------------------------------

def _sh(*cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r


def injection_port(lab, port: str) -> None:
    """Let ``port`` of the lab switch take frames from the sensor: bridged, never learning, never flooded."""
    if port == "mon":
        _sh("ip", "-n", lab.switch, "link", "set", "mon", "master", "br0")
    _sh("ip", "-n", lab.switch, "link", "set", "dev", port, "type", "bridge_slave",
        "learning", "off", "flood", "off", "mcast_flood", "off", "bcast_flood", "off")


def lose_after_mirror(lab, marker: bytes = b"LOST") -> None:
    """Drop IPv4 TCP segments whose payload starts with ``marker`` on their way to the client.

    The mirror copies them first (ingress of the server's port), so the sensor
    sees bytes the client never receives: its RCV.NXT stays behind what the
    sensor believes, and a first RST is in-window but not exact (RFC 5961).
    Payload offset 52 = IPv4 header 20 + TCP header with timestamps 32.
    """
    value = int.from_bytes(marker[:4], "big")
    # no gact here: 'drop' is a redirect into a veth whose peer is down
    _sh("ip", "-n", lab.switch, "link", "add", "bh0", "type", "veth", "peer", "name", "bh1")
    _sh("ip", "-n", lab.switch, "link", "set", "bh0", "up")
    _sh("tc", "-n", lab.switch, "qdisc", "add", "dev", "cport", "root", "handle", "1:", "htb")
    _sh("tc", "-n", lab.switch, "filter", "add", "dev", "cport", "parent", "1:", "protocol", "ip", "u32",
        "match", "u32", f"0x{value:08x}", "0xffffffff", "at", "52", "action", "mirred", "egress", "redirect",
        "dev", "bh0")


def _vlan_pop_prog() -> bytes:
    """tc classifier: bpf_skb_vlan_pop(skb); return TC_ACT_OK (a trunk port untagging into access ports)."""
    from netlab import _insn

    return b"".join([_insn(0x85, imm=19), _insn(0xB7, 0, imm=0), _insn(0x95)])


def trunk_port(lab, port: str) -> None:
    """Tagged frames the sensor sends on ``port`` lose their tag before the bridge forwards them."""
    from netlab import _BPF_OBJ_PIN, _BPF_PROG_LOAD, _BPF_PROG_TYPE_SCHED_CLS, _bpf

    pin = f"{lab._bpffs}/vlanpop_{port}"
    code = _vlan_pop_prog()
    insns = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(b"GPL")
    attr = struct.pack("<IIQQIIQI", _BPF_PROG_TYPE_SCHED_CLS, len(code) // 8, ctypes.addressof(insns),
                       ctypes.addressof(lic), 0, 0, 0, 0)
    fd = _bpf(_BPF_PROG_LOAD, attr)
    path = ctypes.create_string_buffer(pin.encode())
    try:
        _bpf(_BPF_OBJ_PIN, struct.pack("<QII", ctypes.addressof(path), fd, 0))
    finally:
        os.close(fd)
    _sh("tc", "-n", lab.switch, "qdisc", "add", "dev", port, "ingress")
    _sh("tc", "-n", lab.switch, "filter", "add", "dev", port, "parent", "ffff:", "protocol", "all",
        "bpf", "object-pinned", pin, "da")


# -- the sensor ---------------------------------------------------------------------------------

class Sensor:
    """``mirrorwatch listen`` in the sensor namespace; output files under ``tmp``."""

    def __init__(self, lab, tmp: Path, name: str, *args: str):
        self.lab = lab
        self.eve = tmp / f"{name}-eve.json"
        self.out = open(tmp / f"{name}.out", "w+")
        self.err_path = tmp / f"{name}.err"
        self.err = open(self.err_path, "w+")
        rules = tmp / "kill.rules"
        rules.write_text(RULES)
        self.proc = lab.mirrorwatch("listen", lab.monitor, "-r", str(rules), "--eve", str(self.eve), "--no-table",
                                    "--set", "capture.stats-interval=0", *args,
                                    stdout=self.out, stderr=self.err)
        deadline = time.monotonic() + 30
        while "listening on" not in self.err_path.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"mirrorwatch did not start: {self.err_path.read_text()[-800:]}")
            time.sleep(0.05)
        time.sleep(0.3)  # the capture thread starts right after the banner

    def stop(self) -> list[dict]:
        code = self.lab.stop(self.proc, signal.SIGTERM)
        err = self.err_path.read_text()
        assert code == 0, f"mirrorwatch exited {code}: {err[-800:]}"
        assert "Traceback" not in err, err[-2000:]
        return [json.loads(line) for line in self.eve.read_text().splitlines()]


class Peers:
    """The socket programs: one server for the module, one client per case."""

    def __init__(self, lab, tmp: Path):
        self.lab = lab
        self.server_out = tmp / "server.jsonl"
        self._f = open(self.server_out, "w")
        self.server = lab.python(lab.server, PEER_SERVER, stdout=self._f, stderr=subprocess.STDOUT)
        lab.wait_port(lab.server, 8080)

    def client(self, host: str, mode: str, *args: str) -> subprocess.Popen:
        return self.lab.python(self.lab.client, PEER_CLIENT, host, mode, *args)

    @staticmethod
    def result(p: subprocess.Popen, timeout: float = 20) -> dict:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err.decode()[-800:]
        return json.loads(out)

    def server_side(self, port: int, timeout: float = 8) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.server_out.read_text().splitlines():
                if line.startswith("{"):
                    rec = json.loads(line)
                    if rec["peer"] == port:
                        return rec
            time.sleep(0.05)
        raise AssertionError(f"server reported nothing for client port {port}: {self.server_out.read_text()[-500:]}")


def run_case(peers: Peers, host: str, mode: str, *args: str) -> tuple[dict, dict, dict]:
    """One case with a benign transfer alongside: (client result, server result, benign result)."""
    benign = peers.client(host, "benign", str(BENIGN_BYTES))
    time.sleep(0.3)
    c = peers.result(peers.client(host, mode, *args))
    s = peers.server_side(c["port"])
    b = peers.result(benign)
    bs = peers.server_side(b["port"])
    return c, s, {"client": b, "server": bs}


def assert_killed(c: dict, s: dict, benign: dict, *, trigger: float | None = None) -> None:
    t0 = trigger if trigger is not None else c["t_trigger"]
    assert c["result"] == "ECONNRESET", c
    assert s["result"] == "ECONNRESET", s
    assert c["t"] - t0 <= 1.0, f"client reset {c['t'] - t0:.3f}s after the trigger"
    assert s["t"] - t0 <= 1.0, f"server reset {s['t'] - t0:.3f}s after the trigger"
    assert benign["client"]["result"] == "ok" and benign["client"]["got"] == BENIGN_BYTES, benign
    assert benign["server"]["result"] == "EOF", benign  # closed cleanly by the client, never reset


def kills_for(eve: list[dict], port: int) -> list[dict]:
    return [e for e in eve if e["event_type"] == "kill" and port in (e.get("src_port"), e.get("dest_port"))]


# -- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from conftest import netns_available

    why = netns_available()
    if why:
        from conftest import needs_privilege

        needs_privilege(why)
    from netlab import NetLab

    tmp = tmp_path_factory.mktemp("killlab")
    with NetLab(mirror_inject=True) as lab:  # what enters the inject port is mirrored too
        injection_port(lab, "mon")
        injection_port(lab, "iport")
        lose_after_mirror(lab)
        lab.tmp = tmp
        lab.peers = Peers(lab, tmp)
        yield lab


# -- the cases ----------------------------------------------------------------------------------

def test_kill_on_the_capture_interface(privileged, lab):
    """Injection on the mirror port itself: client pattern (idle), bulk stream, server pattern, IPv6."""
    peers = lab.peers
    sensor = Sensor(lab, lab.tmp, "capture-iface")
    try:
        idle = run_case(peers, lab.SERVER4, "idle")
        bulk = run_case(peers, lab.SERVER4, "bulk")
        srv = run_case(peers, lab.SERVER4, "srvpat")
        v6 = run_case(peers, lab.SERVER6, "idle")
        lossy = run_case(peers, lab.SERVER4, "lossy")
    finally:
        eve = sensor.stop()
    assert_killed(*idle)
    c, s, b = bulk
    assert_killed(c, s, b)
    assert c["got"] > 3_000_000 and s["sent"] > c["got"] - 16384 * 4  # the server kept streaming to the end
    c, s, b = srv
    assert_killed(c, s, b, trigger=s["t_trigger"])
    assert_killed(*v6)

    # what the operator sees: blocked alerts with Suricata's verdict, kill records, killed flows
    alerts = [e for e in eve if e["event_type"] == "alert"]
    for case, sid in ((idle, 4000001), (bulk, 4000001), (srv, 4000002), (v6, 4000001)):
        port = case[0]["port"]
        mine = [a for a in alerts if port in (a["src_port"], a["dest_port"])]
        assert mine and all(a["alert"]["signature_id"] == sid for a in mine)
        assert mine[0]["alert"]["action"] == "blocked"
        assert mine[0]["verdict"] == {"action": "alert", "reject-target": "both", "reject": ["tcp-reset"]}
        kills = kills_for(eve, port)
        assert kills and kills[0]["kill"]["trigger"] == f"sid:{sid}"
        assert {s["direction"] for s in kills[0]["kill"]["segments"]} == {"to_server", "to_client"}
        assert all(s["tcp_flags"] == "RA" for k in kills for s in k["kill"]["segments"])
        flows = [e for e in eve if e["event_type"] == "flow" and port in (e.get("src_port"), e.get("dest_port"))]
        assert flows and flows[0]["flow"]["killed"] == f"sid:{sid} reject"
    # the client missed 204 bytes the sensor saw: its challenge ACK told us its RCV.NXT, answered at once
    assert_killed(*lossy)
    kills = kills_for(eve, lossy[0]["port"])
    assert [k["kill"]["trigger"] for k in kills][:2] == ["sid:4000001", "challenge-ack"]
    first_to_client = [s for s in kills[0]["kill"]["segments"] if s["direction"] == "to_client"][0]
    (answer,) = kills[1]["kill"]["segments"]
    assert answer["direction"] == "to_client" and answer["seq"] == (first_to_client["seq"] - 204) % 2**32
    v6kill = kills_for(eve, v6[0]["port"])[0]
    assert v6kill["src_ip"] == ip_address(lab.CLIENT6).exploded  # EVE writes IPv6 in full, as Suricata
    for b in (idle[2], bulk[2], srv[2], v6[2]):
        assert not kills_for(eve, b["client"]["port"])  # the benign transfers were never touched
    stats = [e for e in eve if e["event_type"] == "stats"][-1]["stats"]["kill"]
    assert stats["send_errors"] == 0 and stats["frames_sent"] == stats["frames"] >= 8
    assert stats["iface"] == lab.monitor
    # the capture interface shows our own frames going out: recognised, not tracked as the endpoints'
    assert stats["own_frames_seen"] >= stats["frames_sent"]


def test_kill_through_a_dedicated_inject_interface(privileged, lab):
    kill_pcap = lab.tmp / "inject-iface-kills.pcap"
    sensor = Sensor(lab, lab.tmp, "inject-iface", "--inject-iface", lab.inject_iface, "--kill-pcap", str(kill_pcap))
    try:
        case = run_case(lab.peers, lab.SERVER4, "idle")
    finally:
        eve = sensor.stop()
    assert_killed(*case)
    stats = [e for e in eve if e["event_type"] == "stats"][-1]["stats"]["kill"]
    assert stats["iface"] == lab.inject_iface and stats["frames_sent"] >= 2 and stats["send_errors"] == 0
    assert stats["frames_written"] == stats["frames_sent"]  # --kill-pcap records what went out
    assert kill_pcap.stat().st_size == 24 + stats["frames_written"] * (16 + 54)
    # the switch mirrors the inject port's traffic back to the sensor: recognised, not tracked
    assert stats["own_frames_seen"] >= stats["frames_sent"]


def test_dry_run_resets_nothing(privileged, lab):
    sensor = Sensor(lab, lab.tmp, "dry-run", "--dry-run")
    try:
        benign = lab.peers.client(lab.SERVER4, "benign", str(BENIGN_BYTES))
        c = lab.peers.result(lab.peers.client(lab.SERVER4, "idle", "1.5"))
        b = lab.peers.result(benign)
    finally:
        eve = sensor.stop()
    assert c["result"] == "timeout"  # still connected 1.5 s after the trigger
    assert b["result"] == "ok"
    s = lab.peers.server_side(c["port"])
    assert s["result"] == "EOF"  # the client closed it normally afterwards
    kills = kills_for(eve, c["port"])
    assert kills and all(k["kill"]["dry_run"] for k in kills)
    alert = [a for a in eve if a["event_type"] == "alert" and a["src_port"] == c["port"]][0]
    assert alert["alert"]["action"] == "allowed" and alert["verdict"]["reject"] == []
    stats = [e for e in eve if e["event_type"] == "stats"][-1]["stats"]["kill"]
    assert stats["dry_run"] is True and "frames_sent" not in stats  # no socket was even opened
    out = sensor.out
    out.seek(0)
    assert "would send: RA" in out.read()


def test_kill_with_a_vlan_tagged_mirror(privileged, tmp_path):
    from netlab import NetLab

    with NetLab(vlan=42) as lab:
        injection_port(lab, "mon")
        trunk_port(lab, "mon")
        peers = Peers(lab, tmp_path)
        sensor = Sensor(lab, tmp_path, "vlan")
        try:
            case = run_case(peers, lab.SERVER4, "idle")
        finally:
            eve = sensor.stop()
    assert_killed(*case)
    kill = kills_for(eve, case[0]["port"])[0]
    assert all(s["vlan"] == [42] for s in kill["kill"]["segments"])
    assert kill.get("vlan") in (None, [42])


def test_kill_when_the_endpoints_offload_checksums(privileged, tmp_path):
    """Client and server offload their checksums, so the mirror carries partial ones, and the sensor
    runs with default flags (-k auto): the very first session is killed while the sample is taken,
    and checks are then turned off with one console line."""
    from netlab import NetLab

    with NetLab(csum_offload=True, mirror_inject=True) as lab:
        injection_port(lab, "mon")
        peers = Peers(lab, tmp_path)
        sensor = Sensor(lab, tmp_path, "offload")
        try:
            first = run_case(peers, lab.SERVER4, "idle")
            bulk = run_case(peers, lab.SERVER4, "bulk")
        finally:
            eve = sensor.stop()
    assert_killed(*first)
    assert_killed(*bulk)
    assert kills_for(eve, first[0]["port"])[0]["kill"]["trigger"] == "sid:4000001"
    assert [e for e in eve if e["event_type"] == "stats"][-1]["stats"]["decoder"]["checksum"]["auto_disabled"] == 1
    said = [line for line in sensor.err_path.read_text().splitlines() if "checksum checks off" in line]
    assert len(said) == 1, said


def test_kill_with_fin_closes_both_sides(privileged, lab):
    """--kill-with fin: each endpoint reads end-of-stream (a FIN at its exact RCV.NXT) instead of a reset."""
    sensor = Sensor(lab, lab.tmp, "fin", "--kill-with", "fin")
    try:
        c, s, b = run_case(lab.peers, lab.SERVER4, "idle")
    finally:
        eve = sensor.stop()
    assert (c["result"], s["result"]) == ("EOF", "EOF")
    assert c["t"] - c["t_trigger"] <= 1.0 and s["t"] - c["t_trigger"] <= 1.0
    assert b["client"]["result"] == "ok"
    kill = kills_for(eve, c["port"])[0]
    assert {seg["tcp_flags"] for seg in kill["kill"]["segments"]} == {"FA"}
    alert = [a for a in eve if a["event_type"] == "alert" and a["src_port"] == c["port"]][0]
    assert alert["verdict"]["reject"] == ["tcp-fin"]


def test_rejectsrc_resets_the_receiver_of_a_stream(privileged, lab):
    """rejectsrc from a client the server streams to (8 MB/s in evenly paced MSS segments): only the client is
    reset, within 1 s, by a burst carrying its RCV.NXT as it is when the burst lands (the next expected byte and
    the next segment boundaries); the benign transfers alongside are never touched."""
    sensor = Sensor(lab, lab.tmp, "rejectsrc-stream")
    try:
        cases = [run_case(lab.peers, lab.SERVER4, "stream") for _ in range(3)]
    finally:
        eve = sensor.stop()
    for c, s, b in cases:
        assert c["result"] == "ECONNRESET" and c["t"] - c["t_trigger"] <= 1.0, c
        assert c["got"] > 3_000_000
        # the server is not ours to reset: the client's kernel refuses its next segments
        assert s["result"] in ("ECONNRESET", "EPIPE"), s
        kills = kills_for(eve, c["port"])
        assert kills[0]["kill"]["trigger"] == "sid:4000003"
        assert {seg["direction"] for k in kills for seg in k["kill"]["segments"]} == {"to_client"}
        assert b["client"]["result"] == "ok" and b["client"]["got"] == BENIGN_BYTES, b
        assert b["server"]["result"] == "EOF" and not kills_for(eve, b["client"]["port"])
        alert = [a for a in eve if a["event_type"] == "alert" and a["src_port"] == c["port"]][0]
        assert alert["verdict"] == {"action": "alert", "reject-target": "to_client", "reject": ["tcp-reset"]}
    # each first burst: the server's next byte, then RSTs one segment size apart, from the next boundary or,
    # when the sensor lagged, from a later one (where the stream is by now)
    for c, _s, _b in cases:
        first = kills_for(eve, c["port"])[0]["kill"]["segments"]
        seqs = [seg["seq"] for seg in first]
        steps = {(b - a) % 2**32 for a, b in pairwise(seqs[1:])}
        assert len(seqs) > 2 and len(steps) == 1, first
        step = steps.pop()
        assert step >= 536 and (seqs[1] - seqs[0]) % 2**32 % step == 0, first
    stats = [e for e in eve if e["event_type"] == "stats"][-1]["stats"]["kill"]
    assert stats["send_errors"] == 0 and stats["predicted_frames"] > 0


def test_kill_in_immediate_mode_when_the_mirror_offloads_are_off(privileged, lab):
    """Offloads off on the mirror port: capture.immediate=auto hands every frame over at once;
    kills on an idle session, under bulk transfer and after a loss behind the mirror all land."""
    from test_live_immediate import set_offloads

    set_offloads(lab, False)
    try:
        sensor = Sensor(lab, lab.tmp, "immediate")
        try:
            idle = run_case(lab.peers, lab.SERVER4, "idle")
            bulk = run_case(lab.peers, lab.SERVER4, "bulk")
            lossy = run_case(lab.peers, lab.SERVER4, "lossy")
        finally:
            eve = sensor.stop()
    finally:
        set_offloads(lab, True)
    listening = next(ln for ln in sensor.err_path.read_text().splitlines() if "listening on" in ln)
    assert "immediate mode" in listening and "read-timeout" not in listening, listening
    for case in (idle, bulk, lossy):
        assert_killed(*case)
    assert [k["kill"]["trigger"] for k in kills_for(eve, lossy[0]["port"])][:2] == ["sid:4000001", "challenge-ack"]
    stats = [e for e in eve if e["event_type"] == "stats"][-1]["stats"]
    assert stats["kill"]["send_errors"] == 0 and stats["capture"]["drops"] == 0
