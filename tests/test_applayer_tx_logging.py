"""When a transaction's EVE record comes out: once the transaction is complete and detect has
inspected it (Suricata logs a DNS transaction on its answer), whatever rules are loaded."""

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


def logged_on_answer(rules: str) -> list:
    """The AppTx events the answer packet brings (the query came first)."""
    s = Settings({})
    eng = Engine(s, rules_of(rules, s) if rules else [], checksum_mode="none")
    eng.process(1.0, 1, bytes(QUERY))
    return [e for e in eng.process(1.1, 1, bytes(ANSWER)) if isinstance(e, AppTx)]


def test_a_dns_transaction_is_logged_on_its_answer_without_app_rules():
    got = logged_on_answer("")
    assert [(e.proto, e.tx.tx_id) for e in got] == [("dns", 0)]


@pytest.mark.parametrize("rules", [DNS_RULE, HTTP_RULE], ids=["dns-rule", "http-rule-only"])
def test_a_dns_transaction_is_logged_on_its_answer_with_app_rules(rules):
    got = logged_on_answer(rules)
    assert [(e.proto, e.tx.tx_id) for e in got] == [("dns", 0)]
