"""``--dump-streams``: file names and contents against tcpflow 1.6 on the same captures.

Every reassembly capture without conflicting overlaps (where tcpflow's "last
write wins" is not a reassembly policy anyone should match) must give the same
files as ``tcpflow -r X -o DIR``.  Known, deliberate differences are checked
for what they are, not skipped:

- tcpflow writes the Ethernet trailer (padding / FCS after the IP datagram) of
  a frame as if it were TCP payload; mirrorwatch uses the IP length.  Allowed
  only when the extra bytes in tcpflow's file are exactly one such trailer.
- tcpflow does not decode some encapsulations (PPPoE, ...): it then writes no
  file at all and reports 0 packets; mirrorwatch decodes them.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from scapy.all import IP, TCP, Dot1Q, Ether, IPv6, Raw, wrpcap
from test_flows import run_pcap
from test_reassembly_corpus import _cases

from mirrorwatch.sinks.streamdump import StreamDumper, addr_text, flow_file_name

pytestmark = pytest.mark.skipif(shutil.which("tcpflow") is None, reason="tcpflow not installed")


def tcpflow(pcap, out):
    subprocess.run(["tcpflow", "-r", str(pcap), "-o", str(out)], check=True, capture_output=True)
    report = (out / "report.xml").read_text() if (out / "report.xml").exists() else ""
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "report.xml"}
    m = re.search(r"<total_packets>(\d+)</total_packets>", report)
    return files, int(m.group(1)) if m else None


def dump(pcap, out, **settings):
    d = StreamDumper(str(out))
    run_pcap(pcap, on_new_stream=d.on_new_stream, **settings)
    d.close()
    assert d.errors == 0, d.last_error
    return {p.name: p.read_bytes() for p in out.iterdir()}


def trailers(pcap):
    """Bytes after the IP datagram in each frame (Ethernet padding, FCS...)."""
    out = set()

    def on_packet(p, f, to_server):
        end = p.ip_off + p.ip_len
        if p.linktype == 1 and not p.frag and len(p.frame) > end:
            out.add(bytes(p.frame[end:]))

    run_pcap(pcap, on_packet=on_packet)
    return out


@pytest.mark.slow
def test_names_follow_tcpflow(tmp_path):
    def conn(ip, sp, dp, isn_c, isn_s, req, resp, t0, vlan=None):
        def frame(to_server, **kw):
            l4 = TCP(sport=sp, dport=dp, **kw) if to_server else TCP(sport=dp, dport=sp, **kw)
            p = ip(to_server) / l4
            return Ether() / Dot1Q(vlan=vlan) / p if vlan else Ether() / p
        pk = [frame(True, flags="S", seq=isn_c), frame(False, flags="SA", seq=isn_s, ack=isn_c + 1),
              frame(True, flags="A", seq=isn_c + 1, ack=isn_s + 1),
              frame(True, flags="PA", seq=isn_c + 1, ack=isn_s + 1) / Raw(req),
              frame(False, flags="PA", seq=isn_s + 1, ack=isn_c + 1 + len(req)) / Raw(resp),
              frame(True, flags="FA", seq=isn_c + 1 + len(req), ack=isn_s + 1 + len(resp)),
              frame(False, flags="FA", seq=isn_s + 1 + len(resp), ack=isn_c + 2 + len(req)),
              frame(True, flags="A", seq=isn_c + 2 + len(req), ack=isn_s + 2 + len(resp))]
        for i, p in enumerate(pk):
            p.time = t0 + i * 0.01
        return pk

    def v4(to_server):
        a, b = ("198.51.100.1", "198.51.100.20") if to_server else ("198.51.100.20", "198.51.100.1")
        return IP(src=a, dst=b)

    def v6(to_server):
        a, b = ("2001:db8::1", "2001:db8::2:0:0:2") if to_server else ("2001:db8::2:0:0:2", "2001:db8::1")
        return IPv6(src=a, dst=b)

    pk = (conn(v4, 1234, 80, 1000, 5000, b"hello", b"world", 1.0)
          + conn(v4, 1234, 80, 9000, 7000, b"again", b"there", 2.0)  # same 5-tuple again: c1
          + conn(v4, 1234, 80, 19000, 17000, b"third", b"time!", 3.0)  # c2
          + conn(v6, 4321, 443, 1000, 5000, b"six", b"resp", 4.0)
          + conn(v4, 2222, 22, 1000, 5000, b"vlan", b"tagged", 5.0, vlan=42))
    pcap = tmp_path / "names.pcap"
    wrpcap(str(pcap), pk)
    (tmp_path / "tf").mkdir()
    want, _ = tcpflow(pcap, tmp_path / "tf")
    got = dump(pcap, tmp_path / "mw")
    assert got == want
    assert "198.051.100.001.01234-198.051.100.020.00080c2" in got and "2001:db8::1.04321-2001:db8::2:0:0:2.00443" in got
    assert got["198.051.100.020.00022-198.051.100.001.02222--42"] == b"tagged"


def test_name_helpers():
    assert addr_text(bytes([10, 0, 0, 1])) == "010.000.000.001"
    assert flow_file_name(bytes([10, 0, 0, 1]), 1234, bytes([198, 51, 100, 2]), 80) == \
        "010.000.000.001.01234-198.051.100.002.00080"


@pytest.mark.parametrize("entry", _cases(lambda e: not e["tcp_features(tshark-derived)"].get("overlap_with_different_bytes")))
def test_dump_streams_equals_tcpflow(corpus, tmp_path, entry):
    pcap = corpus / "reassembly" / entry["file"]
    (tmp_path / "tf").mkdir()
    want, tf_packets = tcpflow(pcap, tmp_path / "tf")
    # tcpflow follows every TCP session: compare with midstream pickup and one-sided streams on
    got = dump(pcap, tmp_path / "mw", **{"stream.midstream": True, "stream.async-oneside": True})
    if got == want:
        return
    if not want and tf_packets == 0:
        return  # tcpflow decoded nothing of this capture (encapsulation it does not know)
    pads = trailers(pcap)
    for name in sorted(set(want) | set(got)):
        ours, theirs = got.get(name, b""), want.get(name)
        assert theirs is not None, f"{name}: written by mirrorwatch, not by tcpflow"
        if ours == theirs:
            continue
        extra = theirs[len(ours):]
        assert theirs.startswith(ours) and extra in pads, (
            f"{name}: differs from tcpflow beyond an Ethernet trailer: ours {len(ours)} bytes, tcpflow {len(theirs)}")
