"""A switch with a mirror (SPAN) port, built from network namespaces, for live tests.

Topology (namespace names are unique per run: ``mw<pid>x<n>-client`` ...)::

    client ns                  switch ns                        server ns
    eth0 198.51.100.1/24 ─── cport ─┐            ┌─ sport ─── eth0 198.51.100.2/24
         2001:db8::1/64             └─ br0 (bridge)┘                 2001:db8::2/64
                                     │        │
          ingress of cport and sport │        │ iport (inject=True)
          mirrored (tc u32 + mirred) │        │
                                    mon       │
                                     │        │
    sensor ns                       mon0      inj0   <- a second sensor link into the
    (no addresses; capture here)                        bridge, for injecting RST/FIN

- Everything the client and the server send enters the bridge on ``cport`` /
  ``sport``; an ingress qdisc on each port copies every frame to ``mon``
  (``tc filter ... u32 match u32 0 0 action mirred egress mirror dev mon``),
  whose peer ``mon0`` is in the sensor namespace.  Each frame is seen once on
  the mirror, as on a switch SPAN of the client and server ports (rx).
- ``vlan=ID``: the mirror copies carry an 802.1Q tag with VLAN ID (a tiny eBPF
  classifier does vlan_push + clone_redirect + vlan_pop, because this kernel
  has neither act_vlan nor 8021q).  The sensor sees tagged frames on ``mon0``.
- ``inject=True``: the sensor also gets ``inj0``, a port of the bridge, to send
  forged frames to client and server.  ``mirror_inject=True`` also mirrors
  what enters through it (the sensor then sees its own RSTs, as a SPAN of the
  destination port's tx would).
- Client and server have TSO/GSO and tx checksum offload switched off, so the
  mirror carries wire-sized frames with correct checksums, as a real switch
  port would; IPv6 addresses use ``nodad`` and are usable at once.
  ``csum_offload=True`` leaves tx checksum offload on: what they send reaches
  the mirror with partial (pseudo-header only) TCP/UDP checksums, as a host
  capturing its own or bridged traffic sees it.

API::

    from netlab import NetLab        # tests/ is on sys.path under pytest
    with NetLab(vlan=None, inject=False) as lab:      # teardown guaranteed
        lab.client, lab.server, lab.sensor, lab.switch  # namespace names
        lab.monitor                                  # "mon0" (in lab.sensor)
        lab.inject_iface                             # "inj0" or None
        lab.CLIENT4, lab.SERVER4, lab.CLIENT6, lab.SERVER6
        lab.run(lab.client, "ping", "-c1", lab.SERVER4)   # CompletedProcess (check=True)
        p = lab.popen(lab.server, "python3", "-c", code)  # Popen, killed at teardown
        p = lab.python(lab.server, code, *argv)           # same, with the venv python
        p = lab.mirrorwatch("listen", lab.monitor, "--eve", path, ...)  # in the sensor ns
        lab.wait_port(lab.server, 8080)                   # until something listens
        lab.mac(lab.client)                               # "aa:bb:..." of client eth0
        lab.serve_tcp(8080, reply=b"...")                 # dual-stack server in lab.server
        lab.tcp_request(lab.SERVER6, 8080, b"GET / ...")  # -> reply bytes (hold=, background=)
        lab.udp_send(lab.SERVER4, 5353, b"...")
        lab.stop(p)                                       # SIGTERM, wait, SIGKILL if needed

Processes started through the lab run in their own session (process group) and
are killed at teardown, even when the test fails; the namespaces (and so
every link in them) are deleted.  ``cleanup_stale()`` removes namespaces left
by runs that were killed before their teardown.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable  # the interpreter running the tests (the project's virtualenv under make test)

_seq = itertools.count(1)
_NS_RE = re.compile(r"^mw(\d+)x\d+-(client|server|switch|sensor)$")


class NetLabError(RuntimeError):
    """The lab could not be built (missing privilege or kernel feature)."""


def _sh(*cmd: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise NetLabError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    return r


def cleanup_stale(pattern: re.Pattern = _NS_RE) -> None:
    """Delete lab namespaces (named as ``pattern`` matches) whose creating process is gone."""
    r = _sh("ip", "netns", "list", check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = pattern.match(name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            _sh("ip", "netns", "del", name, check=False)


# -- eBPF VLAN-tagging mirror (no act_vlan / 8021q in the test kernel) ------------

_SYS_BPF = 321  # x86_64
_BPF_PROG_LOAD, _BPF_OBJ_PIN = 5, 6
_BPF_PROG_TYPE_SCHED_CLS = 3
_ETH_P_8021Q_BE = 0x0081  # htons(0x8100) as the helper expects it


def _insn(op: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", op, (src << 4) | dst, off, imm)


def _vlan_mirror_prog(ifindex: int, vid: int) -> bytes:
    """skb_vlan_push(vid); clone_redirect(mon, egress); skb_vlan_pop; return TC_ACT_OK."""
    mov_reg, mov_imm, call, exit_ = 0xBF, 0xB7, 0x85, 0x95
    return b"".join([
        _insn(mov_reg, 6, 1),
        _insn(mov_reg, 1, 6), _insn(mov_imm, 2, imm=_ETH_P_8021Q_BE), _insn(mov_imm, 3, imm=vid), _insn(call, imm=18),
        _insn(mov_reg, 1, 6), _insn(mov_imm, 2, imm=ifindex), _insn(mov_imm, 3, imm=0), _insn(call, imm=13),
        _insn(mov_reg, 1, 6), _insn(call, imm=19),
        _insn(mov_imm, 0, imm=0), _insn(exit_),
    ])


def _bpf(cmd: int, attr: bytes) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(attr.ljust(144, b"\0"), 144)
    r = libc.syscall(_SYS_BPF, cmd, buf, 144)
    if r < 0:
        raise NetLabError(f"bpf({cmd}) failed: {os.strerror(ctypes.get_errno())}")
    return r


def _load_vlan_mirror(ifindex: int, vid: int, pin_path: str) -> None:
    code = _vlan_mirror_prog(ifindex, vid)
    insns = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(16384)
    attr = struct.pack("<IIQQIIQI", _BPF_PROG_TYPE_SCHED_CLS, len(code) // 8, ctypes.addressof(insns),
                       ctypes.addressof(lic), 1, len(log), ctypes.addressof(log), 0)
    try:
        fd = _bpf(_BPF_PROG_LOAD, attr)
    except NetLabError as e:
        raise NetLabError(f"{e}: {log.value.decode(errors='replace')[:300]}") from None
    path = ctypes.create_string_buffer(pin_path.encode())
    try:
        _bpf(_BPF_OBJ_PIN, struct.pack("<QII", ctypes.addressof(path), fd, 0))
    finally:
        os.close(fd)


# -- offloads off (no ethtool binary here: the legacy ethtool ioctls) ---------------

_OFFLOAD_OFF = r"""
import fcntl, socket, struct, array, sys
SIOCETHTOOL = 0x8946
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for cmd in (0x17, 0x1f, 0x24, 0x2c):   # STXCSUM, STSO, SGSO, SGRO
    if cmd == 0x17 and "keep-csum" in sys.argv[2:]:
        continue
    val = array.array("I", [cmd, 0])
    ifr = struct.pack("16sP", sys.argv[1].encode(), val.buffer_info()[0])
    try:
        fcntl.ioctl(s, SIOCETHTOOL, ifr)
    except OSError:
        pass
"""

# GRO on for argv[1] (ETHTOOL_SGRO): a veth has NAPI, and so a receive thread of its own, only with GRO or XDP
_GRO_ON = r"""
import array, fcntl, socket, struct, sys
val = array.array("I", [0x2c, 1])
fcntl.ioctl(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), 0x8946,
            struct.pack("16sP", sys.argv[1].encode(), val.buffer_info()[0]))
"""

NAPI_PRIORITY = 50  # SCHED_FIFO priority of RoutedLab.endpoint_threads' kthreads: that of threaded IRQ handlers


def _napi_threads() -> set[int]:
    """The kernel threads polling a device named eth0 (threaded NAPI: ``napi/eth0-<napi id>``)."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/comm").read_text().startswith("napi/eth0-"):
                found.add(int(pid))
        except OSError:  # ended meanwhile
            continue
    return found


# connect to a closed port until refused: the SYN went through and the RST came back
_REACH = r"""
import socket, sys, time
deadline = time.monotonic() + float(sys.argv[3])
for host in sys.argv[1:3]:
    while True:
        try:
            socket.create_connection((host, 9), timeout=0.5).close()
            break
        except ConnectionRefusedError:
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
"""


# a dual-stack TCP server: per connection, read the request (until a blank line, or
# until the peer stops sending for 0.3 s), answer with argv[2], close its side (FIN)
_TCP_SERVER = r"""
import socket, sys, threading
port, reply = int(sys.argv[1]), sys.argv[2].encode("latin-1").decode("unicode_escape").encode("latin-1")
srv = socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=64)
def serve(c):
    with c:
        c.settimeout(0.3)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        try:
            c.sendall(reply)
            c.shutdown(socket.SHUT_WR)   # HTTP/1.0 style: the server's FIN ends the reply
            c.settimeout(30)
            while c.recv(65536):   # until the client closes its side
                pass
        except OSError:
            pass
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

# one TCP exchange from the client: send argv[3], read the reply, hold argv[4] seconds, close
_TCP_CLIENT = r"""
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
data = sys.argv[3].encode("latin-1").decode("unicode_escape").encode("latin-1")
c = socket.create_connection((host, port), timeout=10)
c.sendall(data)
got = b""
c.settimeout(float(sys.argv[5]))
try:
    while True:
        chunk = c.recv(65536)
        if not chunk:
            break
        got += chunk
        if float(sys.argv[4]) > 0:
            break
except socket.timeout:
    pass
time.sleep(float(sys.argv[4]))
c.close()
sys.stdout.buffer.write(got)
"""


def _escape(data: bytes) -> str:
    return data.decode("latin-1").encode("unicode_escape").decode("ascii")


class NetLab:
    """Client and server joined by a bridge whose traffic is mirrored to a sensor namespace."""

    CLIENT4, SERVER4 = "198.51.100.1", "198.51.100.2"
    CLIENT6, SERVER6 = "2001:db8::1", "2001:db8::2"
    CLIENT_MAC, SERVER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"

    def __init__(self, *, vlan: int | None = None, inject: bool = False, mirror_inject: bool = False,
                 csum_offload: bool = False):
        self.vlan = vlan
        self.csum_offload = csum_offload  # client/server keep tx checksum offload: the mirror sees partial checksums
        self.inject = inject or mirror_inject
        self.mirror_inject = mirror_inject
        base = f"mw{os.getpid()}x{next(_seq)}"
        self.client, self.server = f"{base}-client", f"{base}-server"
        self.switch, self.sensor = f"{base}-switch", f"{base}-sensor"
        self.namespaces = (self.client, self.server, self.switch, self.sensor)
        self.monitor = "mon0"
        self.inject_iface = "inj0" if self.inject else None
        self._procs: list[subprocess.Popen] = []
        self._bpffs: str | None = None
        self._up = False

    # -- build / teardown -------------------------------------------------
    def __enter__(self) -> "NetLab":
        if os.geteuid() != 0:
            raise NetLabError("the network lab needs root")
        cleanup_stale()
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _build(self) -> None:
        self._up = True
        for ns in self.namespaces:
            _sh("ip", "netns", "add", ns)
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
        sw = self.switch
        for ns in (self.switch, self.sensor):  # no IPv6 chatter from the switch or the sensor
            self.run(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        _sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        # the kernel bridge waits forward_delay (15 s) in 'learning' before forwarding
        _sh("ip", "-n", sw, "link", "set", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0")
        for port, ns, addr4, addr6, mac in (("cport", self.client, self.CLIENT4, self.CLIENT6, self.CLIENT_MAC),
                                            ("sport", self.server, self.SERVER4, self.SERVER6, self.SERVER_MAC)):
            _sh("ip", "-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _sh("ip", "-n", sw, "link", "set", port, "master", "br0", "up")
            _sh("ip", "-n", ns, "link", "set", "eth0", "address", mac, "up")
            _sh("ip", "-n", ns, "addr", "add", f"{addr4}/24", "dev", "eth0")
            _sh("ip", "-n", ns, "addr", "add", f"{addr6}/64", "dev", "eth0", "nodad")
            self.run(ns, PYTHON, "-c", _OFFLOAD_OFF, "eth0", *(["keep-csum"] if self.csum_offload else []))
            _sh("ip", "-n", ns, "link", "set", "eth0", "gso_max_segs", "1", check=False)
        # the mirror (SPAN) link: mtu headroom for the 802.1Q tag
        _sh("ip", "-n", sw, "link", "add", "mon", "mtu", "9000", "type", "veth", "peer", "name", self.monitor,
            "netns", self.sensor, "mtu", "9000")
        _sh("ip", "-n", sw, "link", "set", "mon", "up")
        _sh("ip", "-n", self.sensor, "link", "set", self.monitor, "up")
        if self.inject:
            _sh("ip", "-n", sw, "link", "add", "iport", "type", "veth", "peer", "name", self.inject_iface,
                "netns", self.sensor)
            _sh("ip", "-n", sw, "link", "set", "iport", "master", "br0", "up")
            _sh("ip", "-n", self.sensor, "link", "set", self.inject_iface, "up")
        _sh("ip", "-n", sw, "link", "set", "br0", "up")
        sources = ["cport", "sport"] + (["iport"] if self.mirror_inject else [])
        if self.vlan is not None:
            self._mirror_tagged(sources)
        else:
            for port in sources:
                _sh("tc", "-n", sw, "qdisc", "add", "dev", port, "ingress")
                _sh("tc", "-n", sw, "filter", "add", "dev", port, "parent", "ffff:", "protocol", "all",
                    "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev", "mon")
        self._wait_forwarding()

    def _mirror_tagged(self, sources: list[str]) -> None:
        if not 1 <= int(self.vlan) <= 4094:
            raise NetLabError(f"vlan must be 1..4094, got {self.vlan}")
        info = json.loads(_sh("ip", "-n", self.switch, "-j", "link", "show", "mon").stdout)
        self._bpffs = tempfile.mkdtemp(prefix="mwbpf")
        _sh("mount", "-t", "bpf", "bpf", self._bpffs)
        pin = f"{self._bpffs}/vlanmirror"
        # the program resolves ifindex in the skb's namespace (the switch): load it from there
        self.run(self.switch, PYTHON, "-c",
                 "import sys; sys.path.insert(0, sys.argv[1]); import netlab; "
                 "netlab._load_vlan_mirror(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])",
                 str(Path(__file__).parent), str(info[0]["ifindex"]), str(self.vlan), pin)
        for port in sources:
            _sh("tc", "-n", self.switch, "qdisc", "add", "dev", port, "ingress")
            _sh("tc", "-n", self.switch, "filter", "add", "dev", port, "parent", "ffff:", "protocol", "all",
                "bpf", "object-pinned", pin, "da")

    def _wait_forwarding(self, timeout: float = 5.0) -> None:
        """Until the bridge forwards both ways (a TCP connect to a closed port is refused)."""
        r = self.run(self.client, PYTHON, "-c", _REACH, self.SERVER4, self.SERVER6, str(timeout), check=False)
        if r.returncode != 0:
            raise NetLabError(f"lab bridge does not forward: {r.stderr.strip()[-300:]}")

    def close(self) -> None:
        """Kill every process the lab started, delete the namespaces and the bpffs mount."""
        for p in self._procs:
            self._kill(p)
        self._procs.clear()
        if self._up:
            for ns in self.namespaces:
                _sh("ip", "netns", "del", ns, check=False)
            self._up = False
        if self._bpffs:
            _sh("umount", self._bpffs, check=False)
            shutil.rmtree(self._bpffs, ignore_errors=True)
            self._bpffs = None

    # -- running things in namespaces -------------------------------------------
    def run(self, ns: str, *cmd: str, check: bool = True, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
        """Run ``cmd`` in namespace ``ns`` to completion; raises on failure when ``check``."""
        r = subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=timeout, **kw)
        if check and r.returncode != 0:
            raise NetLabError(f"[{ns}] {' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
        return r

    def popen(self, ns: str, *cmd: str, **kw) -> subprocess.Popen:
        """Start ``cmd`` in ``ns`` in its own process group; killed at teardown."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        p = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], start_new_session=True, **kw)
        self._procs.append(p)
        return p

    def python(self, ns: str, code: str, *argv: str, **kw) -> subprocess.Popen:
        """Run a Python snippet (the venv interpreter) in ``ns``."""
        return self.popen(ns, PYTHON, "-c", code, *argv, **kw)

    def mirrorwatch(self, *args: str, ns: str | None = None, **kw) -> subprocess.Popen:
        """Start ``mirrorwatch ARGS`` in the sensor namespace (or ``ns``)."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.update(kw.pop("env", {}) or {})
        return self.popen(ns or self.sensor, PYTHON, "-m", "mirrorwatch", *args, env=env, **kw)

    def wait_port(self, ns: str, port: int, timeout: float = 10.0, proto: str = "tcp") -> None:
        """Until a socket listens on ``port`` in ``ns`` (ss)."""
        deadline = time.monotonic() + timeout
        flag = "-ltnH" if proto == "tcp" else "-lunH"
        while time.monotonic() < deadline:
            r = self.run(ns, "ss", flag, f"sport = :{port}", check=False)
            if r.stdout.strip():
                return
            time.sleep(0.05)
        raise NetLabError(f"nothing listens on {proto}/{port} in {ns} after {timeout}s")

    # -- traffic ----------------------------------------------------------------
    def serve_tcp(self, port: int, reply: bytes = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
                  ns: str | None = None) -> subprocess.Popen:
        """A dual-stack TCP server in the server namespace answering every connection with ``reply``."""
        ns = ns or self.server
        p = self.python(ns, _TCP_SERVER, str(port), _escape(reply))
        self.wait_port(ns, port)
        return p

    def tcp_request(self, host: str, port: int, data: bytes, *, hold: float = 0.0, read_timeout: float = 2.0,
                    ns: str | None = None, background: bool = False):
        """From the client namespace: connect, send ``data``, read the reply, stay open ``hold`` s, close.

        Returns the reply bytes, or the Popen when ``background``.
        """
        args = (_TCP_CLIENT, host, str(port), _escape(data), str(hold), str(read_timeout))
        if background:
            return self.python(ns or self.client, *args)
        r = subprocess.run(["ip", "netns", "exec", ns or self.client, PYTHON, "-c", *args], capture_output=True,
                           timeout=hold + read_timeout + 20)
        if r.returncode != 0:
            raise NetLabError(f"tcp_request to {host}:{port} failed: {r.stderr.decode(errors='replace')[-300:]}")
        return r.stdout

    def udp_send(self, host: str, port: int, data: bytes, ns: str | None = None) -> None:
        """One UDP datagram from the client namespace."""
        fam = "AF_INET6" if ":" in host else "AF_INET"
        self.run(ns or self.client, PYTHON, "-c",
                 f"import socket,sys; socket.socket(socket.{fam}, socket.SOCK_DGRAM).sendto("
                 f"sys.argv[1].encode('latin-1').decode('unicode_escape').encode('latin-1'), (sys.argv[2], {int(port)}))",
                 _escape(data), host)

    def mac(self, ns: str, iface: str = "eth0") -> str:
        info = json.loads(_sh("ip", "-n", ns, "-j", "link", "show", iface).stdout)
        return info[0]["address"]

    @staticmethod
    def _kill(p: subprocess.Popen, grace: float = 5.0) -> None:
        if p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(5)

    def stop(self, p: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send ``sig`` to the process (not its whole group) and wait; returns its exit code."""
        if p.poll() is None:
            # ``ip netns exec`` execs the command, so p.pid is the program itself
            os.kill(p.pid, sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill(p)
        return p.returncode


# -- a routed lab for inline (NFQUEUE) tests ----------------------------------------

_ROUTED_NS_RE = re.compile(r"^mw(\d+)r\d+-(client|router|server)$")

# a dual-stack sink: per connection, read to EOF; append JSON lines to argv[2]:
# {"event": "data", ..., "at" (epoch s)} while the connection is small (what arrived so far), then
# {"event": "close", "bytes", "sha256", "max_gap" (longest pause between reads, s), "at" (epoch s), ...}
_BULK_SERVER = r"""
import hashlib, itertools, json, socket, sys, threading, time
port, report = int(sys.argv[1]), sys.argv[2]
LIVE_LIMIT = 65536
srv = socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=64)
lock, ids = threading.Lock(), itertools.count(1)
def log(**kw):
    with lock, open(report, "a") as f:
        f.write(json.dumps(kw) + "\n")
def serve(c, peer, conn):
    h, n, head, gap, first, last, error = hashlib.sha256(), 0, b"", 0.0, None, None, None
    c.settimeout(60)
    try:
        while True:
            chunk = c.recv(262144)
            now = time.monotonic()
            if not chunk:
                break
            if last is not None:
                gap = max(gap, now - last)
            first, last = first or now, now
            n += len(chunk)
            h.update(chunk)
            if n <= LIVE_LIMIT:
                head += chunk
                log(event="data", conn=conn, peer=peer, bytes=n, head=head.decode("latin-1"), at=time.time())
        c.sendall(b"done")
    except OSError as e:
        error = str(e)
    c.close()
    log(event="close", conn=conn, peer=peer, bytes=n, sha256=h.hexdigest(), max_gap=round(gap, 4),
        duration=round((last or 0) - (first or 0), 4), error=error, at=time.time())
while True:
    c, addr = srv.accept()
    peer = addr[0][7:] if addr[0].startswith("::ffff:") else addr[0]
    threading.Thread(target=serve, args=(c, peer, next(ids)), daemon=True).start()
"""

# a client: argv[3] is JSON {"nbytes", "rate" (bytes/s, 0: as fast as possible), "seed"}
# or {"chunks": [[delay_s, "latin-1 text"], ...]}, and "source" (a local address, or null: the
# kernel's choice); then half-close and wait argv[4] s
# for the server's "done"; prints JSON {"sent", "sha256", "elapsed", "reply", "error"}
_BULK_CLIENT = r"""
import hashlib, json, random, socket, sys, time
host, port, spec, wait = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), float(sys.argv[4])
CHUNK = 65536
h, sent, reply, error = hashlib.sha256(), 0, b"", None
t0 = time.monotonic()
def chunks():
    if "chunks" in spec:
        for delay, text in spec["chunks"]:
            time.sleep(delay)
            yield text.encode("latin-1")
        return
    block = random.Random(spec.get("seed", 1)).randbytes(1 << 20)
    rate, left, offset = spec.get("rate", 0), spec["nbytes"], 0
    while left > 0:
        piece = block[offset % len(block):][:min(CHUNK, left)]
        if rate:
            lag = t0 + (sent + len(piece)) / rate - time.monotonic()
            if lag > 0:
                time.sleep(lag)
        yield piece
        offset, left = offset + len(piece), left - len(piece)
try:
    source = (spec["source"], 0) if spec.get("source") else None
    c = socket.create_connection((host, port), timeout=wait, source_address=source)
    for piece in chunks():
        c.sendall(piece)
        h.update(piece)
        sent += len(piece)
    c.shutdown(socket.SHUT_WR)
    while True:
        got = c.recv(65536)
        if not got:
            break
        reply += got
except OSError as e:
    error = str(e)
print(json.dumps(dict(sent=sent, sha256=h.hexdigest(), elapsed=round(time.monotonic() - t0, 4),
                      reply=reply.decode("latin-1"), error=error)))
"""


# a toy inline engine for the router namespace: argv[1] is JSON {"queue", "run_dir", "log",
# "watchdog" (bool), "drop" (a byte pattern: its packets get an NF_REPEAT verdict with the
# flow-drop mark), "remove_on_exit", "timeout", "recovery"}.  It installs the firewall, binds
# the queue, accepts runs of packets with batch verdicts, beats the watchdog's heartbeat each
# iteration; JSON lines to "log": ready, state changes, drops, and at exit its counters.
_INLINE_ENGINE = r"""
import json, signal, sys, time
from mirrorwatch.sources.nfqueue import NfQueue
from mirrorwatch.inline.firewall import Firewall, flow_drop_mark
from mirrorwatch.inline.watchdog import Watchdog
cfg = json.loads(sys.argv[1])
log = open(cfg["log"], "a", buffering=1)
def emit(**kw):
    log.write(json.dumps(kw) + "\n")
fw = Firewall(cfg.get("queue", 0), run_dir=cfg["run_dir"])
fw.install()
q = NfQueue(cfg.get("queue", 0))
wd = None
if cfg.get("watchdog"):
    wd = Watchdog(fw, [q], timeout=cfg.get("timeout", 0.2), recovery=cfg.get("recovery", 1.0))
    emit(event="state", **wd.start()._asdict())
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
pattern = cfg["drop"].encode("latin-1") if cfg.get("drop") else None
first = last = None
flags = dict(gso=0, csum_not_ready=0, truncated=0)
emit(event="ready", backend=fw.backend, pid=__import__("os").getpid())
while not stop:
    packets = q.recv_batch()
    if wd:
        wd.beat()
        for change in wd.events():
            emit(event="state", **change._asdict())
    if not packets:
        continue
    now = time.monotonic()
    first, last = first or now, now
    run_end = None
    for p in packets:
        flags["gso"] += p.gso
        flags["csum_not_ready"] += p.csum_not_ready
        flags["truncated"] += p.cap_len > len(p.payload)
        if pattern is not None and pattern in p.payload:
            if run_end is not None:
                q.verdict_batch(run_end, True)
                run_end = None
            q.verdict(p.packet_id, True, mark=flow_drop_mark(p.mark), repeat=True)
            emit(event="drop", packet_id=p.packet_id, hook=p.hook, hw_protocol=p.hw_protocol)
        else:
            run_end = p.packet_id
    if run_end is not None:
        q.verdict_batch(run_end, True)
if wd:
    wd.stop()
stats = q.stats()
stats.update(flags, outstanding=q.outstanding(), active_s=(last - first) if first else 0.0)
q.close()
if cfg.get("remove_on_exit", True):
    fw.remove()
emit(event="exit", **stats)
"""



class RoutedLab(NetLab):
    """Client and server in two subnets, joined by a router namespace that forwards IPv4 and IPv6.

    Topology (names ``mw<pid>r<n>-client`` ...)::

        client ns                    router ns                         server ns
        eth0 198.51.100.1/24 ─── c0 198.51.100.254   s0 203.0.113.254 ─── eth0 203.0.113.2/24
             2001:db8:1::1/64       2001:db8:1::fe      2001:db8:2::fe         2001:db8:2::2/64

    The router forwards (net.ipv4.ip_forward, net.ipv6.conf.all.forwarding):
    what it filters in its FORWARD chains is what an inline sensor sees.
    ``offload=False`` (default) switches TSO/GSO and tx checksum offload off on
    client and server, so the router handles wire-sized packets; ``True``
    leaves the veth defaults (GSO super-packets reach the router).

    Besides NetLab's helpers (run, popen, python, wait_port, stop, ...)::

        lab.router                                   # the router namespace
        lab.bulk_server(port, report_path)           # JSON lines per connection
        lab.bulk_send(lab.SERVER4, port, nbytes=..., rate=..., source=None)   # -> dict (or Popen)
        lab.send_chunks(lab.SERVER6, port, [(delay, b"..."), ...], wait=...)
        lab.inline_engine(log, run_dir, watchdog=True, drop="EVIL")   # toy engine in the router
        lab.endpoint_threads()                       # client and server receive in their own kthreads
        RoutedLab.reports(report_path)               # parsed JSON lines
    """

    CLIENT4, ROUTER4_CLIENT, ROUTER4_SERVER, SERVER4 = "198.51.100.1", "198.51.100.254", "203.0.113.254", "203.0.113.2"
    CLIENT6, ROUTER6_CLIENT, ROUTER6_SERVER, SERVER6 = "2001:db8:1::1", "2001:db8:1::fe", "2001:db8:2::fe", "2001:db8:2::2"

    def __init__(self, *, offload: bool = False):  # not NetLab.__init__: its names are a bridge lab's
        self.offload = offload
        base = f"mw{os.getpid()}r{next(_seq)}"
        self.client, self.router, self.server = f"{base}-client", f"{base}-router", f"{base}-server"
        self.namespaces = (self.client, self.router, self.server)
        self.switch = self.sensor = self.router
        self.vlan, self.inject, self.mirror_inject, self.inject_iface, self.monitor = None, False, False, None, None
        self._procs: list[subprocess.Popen] = []
        self._bpffs: str | None = None
        self._up = False

    def _build(self) -> None:
        cleanup_stale(_ROUTED_NS_RE)
        self._up = True
        for ns in self.namespaces:
            _sh("ip", "netns", "add", ns)
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
        rt = self.router
        self.run(rt, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        for port, ns, mine4, gw4, mine6, gw6, net4, net6 in (
                ("c0", self.client, self.CLIENT4, self.ROUTER4_CLIENT, self.CLIENT6, self.ROUTER6_CLIENT, 24, 64),
                ("s0", self.server, self.SERVER4, self.ROUTER4_SERVER, self.SERVER6, self.ROUTER6_SERVER, 24, 64)):
            _sh("ip", "-n", rt, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _sh("ip", "-n", rt, "addr", "add", f"{gw4}/{net4}", "dev", port)
            _sh("ip", "-n", rt, "addr", "add", f"{gw6}/{net6}", "dev", port, "nodad")
            _sh("ip", "-n", rt, "link", "set", port, "up")
            _sh("ip", "-n", ns, "addr", "add", f"{mine4}/{net4}", "dev", "eth0")
            _sh("ip", "-n", ns, "addr", "add", f"{mine6}/{net6}", "dev", "eth0", "nodad")
            _sh("ip", "-n", ns, "link", "set", "eth0", "up")
            _sh("ip", "-n", ns, "route", "add", "default", "via", gw4)
            _sh("ip", "-n", ns, "-6", "route", "add", "default", "via", gw6)
            if not self.offload:
                self.run(ns, PYTHON, "-c", _OFFLOAD_OFF, "eth0")
                self.run(rt, PYTHON, "-c", _OFFLOAD_OFF, port)
        self._wait_forwarding()

    def endpoint_threads(self) -> None:
        """Client and server receive in kernel threads of their own (threaded NAPI), as other machines would.

        A veth without NAPI delivers into the receiver's stack within the sender's transmit call, so the
        router's forwarding -- an inline sensor's verdict call -- would run, and be charged for, the
        endpoints' TCP receive.  A veth has NAPI once GRO is on; ``threaded`` then polls it in a kthread
        (``napi/eth0-N``).  GRO merges segments in the endpoints only, after the router.  The threads run
        SCHED_FIFO (``NAPI_PRIORITY``), as a NIC's interrupt work preempts ordinary tasks: behind other
        jobs' tasks they fell behind and the veth's 256-packet ring overflowed (drops, retransmissions).
        """
        before = _napi_threads()
        for ns in (self.client, self.server):
            self.run(ns, PYTHON, "-c", _GRO_ON, "eth0")
            self.run(ns, "sh", "-c", "echo 1 > /sys/class/net/eth0/threaded")
        for tid in _napi_threads() - before:  # made by the writes above
            os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(NAPI_PRIORITY))

    # -- traffic ----------------------------------------------------------------
    def bulk_server(self, port: int, report: str | Path) -> subprocess.Popen:
        """A dual-stack sink in the server namespace, reporting each connection to ``report``."""
        p = self.python(self.server, _BULK_SERVER, str(port), str(report))
        self.wait_port(self.server, port)
        return p

    def bulk_send(self, host: str, port: int, *, nbytes: int, rate: float = 0, seed: int = 1,
                  wait: float = 30.0, background: bool = False, source: str | None = None):
        """Send ``nbytes`` (deterministic bytes) from the client, at ``rate`` bytes/s (0: at once), from
        its address ``source`` (None: the kernel's choice)."""
        spec = json.dumps({"nbytes": nbytes, "rate": rate, "seed": seed, "source": source})
        return self._client(host, port, spec, wait, background)

    def send_chunks(self, host: str, port: int, chunks: list[tuple[float, bytes]], *, wait: float = 10.0,
                    background: bool = False, source: str | None = None):
        """Send each chunk after its delay (s) on one connection from the client (from ``source``)."""
        spec = json.dumps({"chunks": [[d, c.decode("latin-1")] for d, c in chunks], "source": source})
        return self._client(host, port, spec, wait, background)

    def _client(self, host: str, port: int, spec: str, wait: float, background: bool):
        args = (_BULK_CLIENT, host, str(port), spec, str(wait))
        if background:
            return self.python(self.client, *args)
        r = self.run(self.client, PYTHON, "-c", *args, timeout=wait + 120)
        return json.loads(r.stdout)

    def inline_engine(self, log: str | Path, run_dir: str | Path, **cfg) -> subprocess.Popen:
        """Start the toy inline engine in the router; returns once it logged "ready"."""
        cfg.update(log=str(log), run_dir=str(run_dir))
        p = self.python(self.router, _INLINE_ENGINE, json.dumps(cfg))
        deadline = time.monotonic() + 20
        while not any(e["event"] == "ready" for e in self.reports(log)):
            if p.poll() is not None or time.monotonic() > deadline:
                raise NetLabError(f"inline engine did not start: {p.stderr.read().decode(errors='replace')[-800:]}")
            time.sleep(0.02)
        return p

    @staticmethod
    def reports(path: str | Path) -> list[dict]:
        """The JSON lines a bulk server wrote so far."""
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]



# -- real servers, clients and captures for application-layer tests ------------------
#
#     p = capture(lab, lab.sensor, lab.monitor, path, "tcp port 443")  # tcpdump, once it listens
#     self_signed_cert(folder, "/C=XX/CN=name", serial=0x9C...)        # -> (cert.pem, key.pem)
#     tls_server(lab, 4433, cert, key)                                 # openssl s_server -www
#     tls_client(lab, lab.SERVER4, 4433, "name", "-tls1_2")            # openssl s_client's output
#     dns_server(lab, {"name.test": "192.0.2.1"})                      # dnsmasq, UDP and TCP 53

TOOL_WAIT = 10.0  # seconds a server or capture started here may take to be ready


def _wait_for_text(p: subprocess.Popen, path: Path, text: str, what: str, timeout: float = TOOL_WAIT) -> None:
    deadline = time.monotonic() + timeout
    while text not in (path.read_text(errors="replace") if path.exists() else ""):
        if p.poll() is not None or time.monotonic() > deadline:
            raise NetLabError(f"{what} not ready: {path.read_text(errors='replace')[-400:] if path.exists() else ''}")
        time.sleep(0.05)


def capture(lab: NetLab, ns: str, iface: str, path: str | Path, *bpf: str) -> subprocess.Popen:
    """tcpdump on ``iface`` in ``ns``, every frame written to ``path`` as it arrives (-U).

    Returns once tcpdump listens; ``lab.stop(p)`` (SIGTERM) makes it flush and close the file.
    """
    log = Path(f"{path}.log")
    with open(log, "w") as err:
        p = lab.popen(ns, "tcpdump", "-i", iface, "--immediate-mode", "-U", "-n", "-s", "0", "-w", str(path), *bpf,
                      stdout=subprocess.DEVNULL, stderr=err)
    _wait_for_text(p, log, "listening on", f"tcpdump on {iface} in {ns}")
    return p


def self_signed_cert(folder: str | Path, subject: str, serial: int, days: int = 30) -> tuple[Path, Path]:
    """A self-signed P-256 certificate made by ``openssl req``; returns (cert.pem, key.pem)."""
    cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
    _sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", str(days), "-subj", subject, "-set_serial", hex(serial))
    return cert, key


def tls_server(lab: NetLab, port: int, cert: str | Path, key: str | Path) -> subprocess.Popen:
    """``openssl s_server`` in the server namespace (TLS 1.2 and 1.3; -www answers a GET with a status page)."""
    p = lab.popen(lab.server, "openssl", "s_server", "-accept", str(port), "-cert", str(cert), "-key", str(key),
                  "-www", "-quiet", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    lab.wait_port(lab.server, port, timeout=TOOL_WAIT)
    return p


def tls_client(lab: NetLab, host: str, port: int, servername: str, *options: str) -> str:
    """One ``openssl s_client`` handshake from the client namespace with SNI ``servername``; its output.

    Its stdin is empty, so it closes (close_notify, FIN) once the handshake is done.
    """
    return lab.run(lab.client, "openssl", "s_client", "-connect", f"{host}:{port}", "-servername", servername,
                   *options, stdin=subprocess.DEVNULL).stdout


def dns_server(lab: NetLab, answers: dict[str, str], port: int = 53) -> subprocess.Popen:
    """dnsmasq in the server namespace on ``lab.SERVER4``, UDP and TCP: each name of ``answers`` gets its
    IPv4 address (TTL 0); nothing is read from the host's files and nothing is forwarded."""
    local = [f"--address=/{name}/{addr}" for name, addr in answers.items()]
    p = lab.popen(lab.server, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                  f"--listen-address={lab.SERVER4}", "--bind-interfaces", f"--port={port}", "--pid-file=", *local,
                  stdout=subprocess.DEVNULL)
    try:
        lab.wait_port(lab.server, port, timeout=TOOL_WAIT, proto="udp")
        lab.wait_port(lab.server, port, timeout=TOOL_WAIT)
    except NetLabError:
        lab.stop(p)
        raise NetLabError(f"dnsmasq did not start: {p.stderr.read().decode(errors='replace')[-400:]}") from None
    return p
