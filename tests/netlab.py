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
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable

_seq = itertools.count(1)
_NS_RE = re.compile(r"^mw(\d+)x\d+-(client|server|switch|sensor)$")


class NetLabError(RuntimeError):
    """The lab could not be built (missing privilege or kernel feature)."""


def _sh(*cmd: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise NetLabError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    return r


def cleanup_stale() -> None:
    """Delete lab namespaces whose creating process is gone."""
    r = _sh("ip", "netns", "list", check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _NS_RE.match(name)
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
    val = array.array("I", [cmd, 0])
    ifr = struct.pack("16sP", sys.argv[1].encode(), val.buffer_info()[0])
    try:
        fcntl.ioctl(s, SIOCETHTOOL, ifr)
    except OSError:
        pass
"""


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

    def __init__(self, *, vlan: int | None = None, inject: bool = False, mirror_inject: bool = False):
        self.vlan = vlan
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
            self.run(ns, PYTHON, "-c", _OFFLOAD_OFF, "eth0")
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
