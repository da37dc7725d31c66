"""When a transaction's EVE record comes out: once the transaction is complete and detect has
inspected it, whatever rules are loaded.  A DNS message is a transaction complete on its own
packet (Suricata 8 and later), so the query is logged on the query and the answer on the answer."""

from __future__ import annotations

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP

from mirrorwatch.core.engine import Engine
from mirrorwatch.core.events import AppTx
from mirrorwatch.core.settings import Settings
from tests.test_detect import CLI, ETH, SRV, rules_of

NAME = "evil.example.org"
QUERY = ETH() / IP(src=CLI, dst=SRV) / UDP(sport=40053, dport=53) / DNS(id=7, rd=1, qd=DNSQR(qname=NAME))
ANSWER = ETH() / IP(src=SRV, dst=CLI) / UDP(sport=53, dport=40053) / DNS(
    id=7, qr=1, rd=1, ra=1, qd=DNSQR(qname=NAME), an=DNSRR(rrname=NAME, rdata="192.0.2.9"))
DNS_RULE = 'alert dns any any -> any any (msg:"q"; dns.query; content:"evil"; sid:1;)'
HTTP_RULE = 'alert http any any -> any any (msg:"u"; http.uri; content:"/x"; sid:2;)'


def logged_per_packet(rules: str) -> list:
    """(proto, tx_id, pcap_cnt, type of message) of the AppTx events each packet brings."""
    s = Settings({})
    eng = Engine(s, rules_of(rules, s) if rules else [], checksum_mode="none")
    return [[(e.proto, e.tx.tx_id, e.pcap_cnt, e.tx.request is not None)
             for e in eng.process(ts, 1, bytes(pkt)) if isinstance(e, AppTx)]
            for ts, pkt in ((1.0, QUERY), (1.1, ANSWER))]


@pytest.mark.parametrize("rules", ["", DNS_RULE, HTTP_RULE], ids=["no-rules", "dns-rule", "http-rule-only"])
def test_each_dns_message_is_logged_on_its_own_packet(rules):
    assert logged_per_packet(rules) == [[("dns", 0, 1, True)], [("dns", 1, 2, False)]]
