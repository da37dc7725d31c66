"""The injector: frame bytes (checked by scapy, our decoder and tshark), the kill pcap, the raw socket."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys

import pytest
from scapy.all import IP, TCP, Dot1Q, Ether, IPv6

from mirrorwatch.core.decode.decoder import Decoder
from mirrorwatch.core.decode.packet import ACK, FIN, RST
from mirrorwatch.core.events import ForgedSegment, Kill
from mirrorwatch.core.settings import Settings
from mirrorwatch.sinks.fmt import segment_dict
from mirrorwatch.sinks.injector import (
    InjectError,
    KillLog,
    PcapKillWriter,
    RawInjector,
    build_frame,
    describe,
)

A4, B4 = ipaddress.ip_address("198.51.100.1").packed, ipaddress.ip_address("198.51.100.2").packed
A6, B6 = ipaddress.ip_address("2001:db8::1").packed, ipaddress.ip_address("2001:db8::2").packed
MAC1, MAC2 = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def seg4(**kw):
    args = dict(to_server=True, ipv=4, src=A4, dst=B4, sport=40000, dport=80, seq=0xFFFFFFF0, ack=12345,
                flags=RST | ACK, ttl=63, ip_id=0xBEEF, src_mac=MAC1, dst_mac=MAC2, vlans=())
    args.update(kw)
    return ForgedSegment(**args)


def seg6(**kw):
    args = dict(to_server=False, ipv=6, src=B6, dst=A6, sport=80, dport=40000, seq=7, ack=2**32 - 1,
                flags=RST | ACK, ttl=255, ip_id=0, src_mac=MAC2, dst_mac=MAC1, vlans=((0x8100, 0x2064), (0x8100, 7)))
    args.update(kw)
    return ForgedSegment(**args)


def test_ipv4_frame_fields_and_checksums():
    f = build_frame(seg4(vlans=((0x8100, 0x6000 | 42),)))
    e = Ether(f)
    assert (e.src, e.dst) == ("02:00:00:00:00:01", "02:00:00:00:00:02")
    assert e[Dot1Q].vlan == 42 and e[Dot1Q].prio == 3
    ip, tcp = e[IP], e[TCP]
    assert (ip.src, ip.dst, ip.ttl, ip.id, ip.len, str(ip.flags)) == ("198.51.100.1", "198.51.100.2", 63, 0xBEEF, 40, "DF")
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack, str(tcp.flags), tcp.window) == (40000, 80, 0xFFFFFFF0, 12345, "RA", 0)
    # scapy recomputes both checksums to the same values
    again = e.copy()
    del again[IP].chksum, again[TCP].chksum
    assert bytes(again) == f
    # and our own decoder accepts the frame with checksum verification on
    p = Decoder(Settings(), checksum_mode="all").decode(1.0, 1, f, 1)
    assert p.csum_ok is True and p.vlans == ((0x8100, 0x6000 | 42),) and p.flags == RST | ACK


def test_ipv6_frame_with_qinq_stack():
    f = build_frame(seg6())
    e = Ether(f)
    assert e.type == 0x8100 and [e.getlayer(Dot1Q, nb=1).vlan, e.getlayer(Dot1Q, nb=2).vlan] == [0x64, 7]
    ip6, tcp = e[IPv6], e[TCP]
    assert (ip6.src, ip6.dst, ip6.hlim, ip6.plen, ip6.nh) == ("2001:db8::2", "2001:db8::1", 255, 20, 6)
    assert (tcp.seq, tcp.ack) == (7, 2**32 - 1)
    again = e.copy()
    del again[TCP].chksum
    assert bytes(again) == f
    p = Decoder(Settings(), checksum_mode="all").decode(1.0, 1, f, 1)
    assert p.csum_ok is True and p.vlan_id == (0x64, 7)


def test_segment_values_are_wrapped_and_defaulted():
    s = seg4(seq=2**32 + 5, ack=-1, ttl=0, ip_id=0x12345, src_mac=b"", dst_mac=b"")
    assert (s.seq, s.ack, s.ttl, s.ip_id) == (5, 2**32 - 1, 64, 0x2345)
    f = build_frame(s)
    assert f[:12] == b"\0" * 12  # unknown MACs (raw-IP capture): zeros, the frame is still well formed
    d = segment_dict(s)
    assert d["tcp_flags"] == "RA" and d["src_ip"] == "198.51.100.1" and d["direction"] == "to_server"


def test_kill_pcap_read_back_by_tshark(tmp_path):
    if not shutil.which("tshark"):
        pytest.skip("tshark not installed")
    path = tmp_path / "kill.pcap"
    w = PcapKillWriter(str(path))
    w.handle(Kill(1700000000.25, None, [seg4(), seg4(to_server=False, src=B4, dst=A4, sport=80, dport=40000)], "sid:1"))
    w.handle(Kill(1700000001.5, None, [seg6(), seg6(flags=FIN | ACK)], "refire", dry_run=True))
    w.handle("not a kill")
    w.close()
    assert w.counters()["frames_written"] == 4
    r = subprocess.run(["tshark", "-r", str(path), "-n", "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
                        "-o", "tcp.relative_sequence_numbers:FALSE", "-T", "json",
                        "-e", "frame.time_epoch", "-e", "tcp.seq", "-e", "tcp.ack", "-e", "tcp.flags",
                        "-e", "tcp.checksum.status", "-e", "ip.checksum.status", "-e", "vlan.id", "-e", "ipv6.src"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = [p["_source"]["layers"] for p in json.loads(r.stdout)]
    assert len(rows) == 4
    assert [int(x["tcp.seq"][0]) for x in rows] == [0xFFFFFFF0, 0xFFFFFFF0, 7, 7]
    assert [int(x["tcp.ack"][0]) for x in rows] == [12345, 12345, 2**32 - 1, 2**32 - 1]
    assert [int(x["tcp.flags"][0], 16) for x in rows] == [0x14, 0x14, 0x14, 0x11]
    assert all(x["tcp.checksum.status"] == ["1"] for x in rows)  # 1 = Good
    assert [x.get("ip.checksum.status") for x in rows[:2]] == [["1"], ["1"]]
    assert rows[2]["vlan.id"] == ["100", "7"]
    assert float(rows[0]["frame.time_epoch"][0]) == pytest.approx(1700000000.25)


def test_describe_says_would_send_in_dry_run():
    line = describe(Kill(1.0, None, [seg4()], "sid:9", dry_run=True))
    assert line.startswith("kill (sid:9) would send: RA 198.51.100.1:40000->198.51.100.2:80 seq=4294967280")


def test_describe_tells_a_predicted_run_once():
    burst = [seg4(), *(seg4(seq=(0xFFFFFFF0 + 1448 * i) & 0xFFFFFFFF) for i in range(1, 6)), seg6()]
    assert describe(Kill(1.0, None, burst, "sid:9")) == (
        "kill (sid:9) sent: RA 198.51.100.1:40000->198.51.100.2:80 seq=4294967280 ack=12345 (+5 at every 1448); "
        "RA [2001:db8::2]:80->[2001:db8::1]:40000 seq=7 ack=4294967295")


def test_unopenable_outputs_are_one_line_errors(tmp_path):
    with pytest.raises(InjectError, match="cannot write kill pcap"):
        PcapKillWriter(str(tmp_path / "missing-dir" / "k.pcap"))
    if os.geteuid() == 0:
        with pytest.raises(InjectError, match="cannot inject on interface nosuchif0: no such interface"):
            RawInjector("nosuchif0")


@pytest.mark.slow
@pytest.mark.privileged
def test_raw_socket_frames_reach_the_wire(privileged, tmp_path):
    """Frames written on one end of a veth pair arrive byte-exact on the other end."""
    ns = f"mwinj{os.getpid()}"
    sh = lambda *c: subprocess.run(c, check=True, capture_output=True)  # noqa: E731
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "add", "a0", "type", "veth", "peer", "name", "b0")
        sh("ip", "-n", ns, "link", "set", "a0", "up")
        sh("ip", "-n", ns, "link", "set", "b0", "up")
        code = (
            "import socket,sys,json\n"
            "sys.path.insert(0, sys.argv[1])\n"
            "from mirrorwatch.sinks.injector import RawInjector, build_frame\n"
            "from mirrorwatch.core.events import ForgedSegment\n"
            "from mirrorwatch.core.events import Kill\n"
            "import tests.test_inject as t\n"
            "r = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)); r.bind(('b0', 0)); r.settimeout(2)\n"
            "inj = RawInjector('a0'); segs = [t.seg4(), t.seg6(vlans=())]\n"
            "inj.handle(Kill(0.0, None, segs, 'x')); inj.handle(Kill(0.0, None, segs, 'x', dry_run=True))\n"
            "got = []\n"
            "while len(got) < 2:\n"
            "    f = r.recv(2048)\n"
            "    if f in [build_frame(s) for s in segs]: got.append(f.hex())\n"
            "same = got == [build_frame(s).hex() for s in segs]\n"
            "import subprocess; subprocess.run(['ip', 'link', 'set', 'a0', 'down'], check=True)\n"
            "warned = []; inj.warn = warned.append\n"
            "inj.handle(Kill(0.0, None, segs, 'x'))\n"
            "print(json.dumps([same, inj.counters(), warned]))\n"
        )
        from conftest import ROOT

        r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code, str(ROOT)],
                           capture_output=True, text=True, timeout=30, cwd=str(ROOT))
        assert r.returncode == 0, r.stderr
        same, counters, warned = json.loads(r.stdout)
        assert same
        assert counters["frames_sent"] == 2 and counters["dry_run_frames"] == 2
        # the interface went down: both sends fail, are counted, and one warning line says so
        assert counters["send_errors"] == 2 and counters["send_error_kinds"] == {"ENETDOWN": 2}
        assert len(warned) == 1 and "a0" in warned[0] and "ENETDOWN" in warned[0]
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)



def test_kill_log_prints_first_bursts_only():
    import io

    out = io.StringIO()
    log = KillLog(out)
    log.handle(Kill(1.0, None, [seg4()], "sid:7"))
    log.handle(Kill(1.1, None, [seg4(seq=5)], "refire"))
    log.handle(Kill(1.2, None, [seg4(seq=6)], "challenge-ack"))
    assert out.getvalue().count("\n") == 1 and out.getvalue().startswith("kill (sid:7) sent: RA")
