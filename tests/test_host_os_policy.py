"""Target-based reassembly (Suricata's host-os-policy): each stream is reassembled as its
receiving host would, by the most specific network that holds it."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from scapy.all import IP, TCP, rdpcap, wrpcap
from test_flows import run_pcap

from mirrorwatch.cli import main
from mirrorwatch.core.reassembly.policy import (
    BSD,
    LINUX,
    OLD_LINUX,
    SOLARIS,
    VISTA,
    WINDOWS,
    HostOsPolicy,
)
from mirrorwatch.core.settings import SettingError, Settings

OVERLAP_CAPTURES = ("eve-overlap-payload-01__tcp-overlap.pcap", "eve-overlap-payload-04-partial-overlap__tcp-overlap2.pcap")
SERVER_A, SERVER_B = "2.2.2.2", "3.3.3.3"  # the captures' server, and the copy's


def test_longest_prefix_wins_and_flavours_alias_suricatas():
    p = HostOsPolicy({"windows": "[10.0.0.0/8, 2001:db8::/32]", "linux": "10.1.0.0/16", "hpux11": "[10.1.2.3]",
                      "macos": "[192.168.0.0/16]", "bsd-right": "[172.16.0.0/12]"})
    assert p.lookup(bytes([10, 9, 9, 9])) == WINDOWS
    assert p.lookup(bytes([10, 1, 9, 9])) == LINUX
    assert p.lookup(bytes([10, 1, 2, 3])) == SOLARIS  # hpux11 behaves as solaris (stream-tcp-list.c)
    assert p.lookup(bytes([192, 168, 1, 1])) == BSD and p.lookup(bytes([172, 16, 0, 1])) == BSD
    assert p.lookup(bytes.fromhex("20010db8" + "00" * 12)) == WINDOWS
    assert p.lookup(bytes([11, 0, 0, 1])) is None and p.lookup(bytes(16)) is None


@pytest.mark.parametrize("key, value", [("host-os-policy.beos", "[10.0.0.0/8]"),
                                        ("host-os-policy.linux", "[10.0.0.300]")])
def test_bad_entries_are_setting_errors(key, value):
    with pytest.raises(SettingError, match=key):
        Settings({key: value})
    r = CliRunner().invoke(main, ["replay", "--set", f"{key}={value}", "x.pcap"])
    assert r.exit_code == 2 and key in r.output


def _two_hosts(corpus, tmp_path, name: str):
    """The capture, then the same session again toward another server (10 s later, another port)."""
    pkts = rdpcap(str(corpus / "reassembly" / "suricata-verify" / name))
    t0 = float(pkts[0].time)
    copies = []
    for p in pkts:
        q = p.copy()
        ip, tcp = q[IP], q[TCP]
        if ip.dst == SERVER_A:
            ip.dst, tcp.sport = SERVER_B, tcp.sport + 1
        else:
            ip.src, tcp.dport = SERVER_B, tcp.dport + 1
        del ip.chksum, tcp.chksum
        q.time = float(p.time) + 10.0
        copies.append(q)
    for p in pkts:
        p.time = float(p.time) - t0 + 1_700_000_000
    for q in copies:
        q.time = float(q.time) - t0 + 1_700_000_000
    out = tmp_path / f"two-hosts-{name}"
    wrpcap(str(out), list(pkts) + copies)
    return out


def _to_server_bytes(pcap, **settings) -> dict:
    _, flows, _ = run_pcap(pcap, **settings)
    return {".".join(map(str, f.server)): bytes(f.streams[0].buf) for f in flows}


@pytest.mark.parametrize("name", OVERLAP_CAPTURES)
def test_two_hosts_with_different_policies_in_one_capture(corpus, tmp_path, name):
    """Each server's stream is what the whole capture gives under that server's policy alone."""
    single = corpus / "reassembly" / "suricata-verify" / name
    alone = {p: _to_server_bytes(single, **{"stream.reassembly.policy": p})[SERVER_A]
             for p in ("first", "last", "bsd", "linux", "old-linux", "windows", "solaris", "vista")}
    pairs = [(a, b) for a in alone for b in alone if alone[a] != alone[b]]
    assert pairs, f"{name}: every policy gives the same bytes"
    pcap = _two_hosts(corpus, tmp_path, name)
    for a, b in pairs[:6]:
        got = _to_server_bytes(pcap, **{"stream.reassembly.policy": "first", f"host-os-policy.{a}": f"[{SERVER_A}]",
                                        f"host-os-policy.{b}": "[3.3.3.0/24]"})
        assert got == {SERVER_A: alone[a], SERVER_B: alone[b]}, (a, b)


def test_policy_is_the_receiving_hosts(corpus, tmp_path):
    """The client's network being listed changes nothing for the bytes it sends (the server
    receives them); GOOD/EVIL as suricata-verify expects for bsd and old-linux."""
    pcap = _two_hosts(corpus, tmp_path, OVERLAP_CAPTURES[0])
    got = _to_server_bytes(pcap, **{"host-os-policy.old-linux": "[3.3.3.3, 1.1.1.1]", "host-os-policy.bsd": "[2.2.2.2]"})
    assert got == {SERVER_A: b"GOOD", SERVER_B: b"EVIL"}
    got = _to_server_bytes(pcap, **{"host-os-policy.old-linux": "[1.1.1.0/24]"})  # only the client listed
    assert got == {SERVER_A: b"GOOD", SERVER_B: b"GOOD"}


def test_first_and_vista_hosts_settle_at_once():
    """A policy that never prefers new bytes keeps nothing open to overlaps, per host."""
    from mirrorwatch.core.reassembly.context import ReassemblyContext
    from mirrorwatch.core.reassembly.stream import Stream

    ctx = ReassemblyContext(Settings({"stream.reassembly.policy": "last"}))
    assert Stream(ctx, 0, policy=VISTA).settle_now and not Stream(ctx, 0, policy=OLD_LINUX).settle_now
