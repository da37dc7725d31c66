"""Link-layer decoders count every frame they are given under Suricata's counter names
(decoder.chdlc, decoder.null, decoder.sll, decoder.sll2), truncated frames included."""

from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import IP, TCP

from mirrorwatch.core.decode.decoder import Decoder
from mirrorwatch.core.decode.numbers import (
    LINKTYPE_C_HDLC,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_NULL,
)
from mirrorwatch.core.settings import Settings

IPV4 = bytes(IP(src="192.0.2.1", dst="192.0.2.2") / TCP(sport=1234, dport=80, flags="S"))
CHDLC = b"\x0f\x00\x08\x00"  # unicast address, control, EtherType IPv4
NULL = struct.pack("=I", 2)  # AF_INET in the capturing host's order
SLL = struct.pack("!HHH8sH", 0, 1, 6, b"\x02\x00\x00\x00\x00\x01\x00\x00", 0x0800)
SLL2 = struct.pack("!HHIHBB8s", 0x0800, 0, 1, 1, 0, 6, b"\x02\x00\x00\x00\x00\x01\x00\x00")


@pytest.mark.parametrize(("linktype", "header", "counter"), [
    (LINKTYPE_C_HDLC, CHDLC, "chdlc"), (LINKTYPE_NULL, NULL, "null"),
    (LINKTYPE_LINUX_SLL, SLL, "sll"), (LINKTYPE_LINUX_SLL2, SLL2, "sll2")])
def test_link_decoder_counts_each_frame_it_is_given(linktype, header, counter):
    d = Decoder(Settings({}), checksum_mode="none")
    for n in range(3):
        p = d.decode(1.0 + n, linktype, header + IPV4, n + 1)
        assert p is not None and p.ipv == 4 and p.dport == 80
    p = d.decode(5.0, linktype, header[:2], 4)  # truncated: an error, still counted
    # Suricata names an event for a truncated header of these but SLL2
    assert p is None if counter == "sll2" else p.invalid == "truncated_" + counter and len(p.events) == 1
    c = d.counters()
    assert c["decoder." + counter] == 4 and c["decoder.ipv4"] == 3
    assert c["decoder.truncated_" + counter] == 1
