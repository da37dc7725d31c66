"""detect/compile: the address and port matchers a compiled rule tests packets with."""

from __future__ import annotations

import ipaddress

from mirrorwatch.core.detect.compile import PORT_VALUES_MAX, AddrMatcher, PortMatcher, port_matcher
from mirrorwatch.rules.model import AddrSet, PortSet


def test_port_matcher_small_sets_large_ranges_and_exclusions():
    assert port_matcher(None) is None and port_matcher(PortSet(any=True, include=[(0, 65535)])) is None
    small = port_matcher(PortSet(include=[(80, 80), (8000, 8010)]))
    assert small.values is not None  # tested as a set of its ports
    assert [small.test(p) for p in (80, 81, 7999, 8000, 8010, 8011)] == [True, False, False, True, True, False]
    large = PortMatcher(PortSet(include=[(1024, 1024 + PORT_VALUES_MAX)]))
    assert large.values is None  # too many ports: tested by its ranges
    assert [large.test(p) for p in (1023, 1024, 1024 + PORT_VALUES_MAX, 1025 + PORT_VALUES_MAX)] == [
        False, True, True, False]
    excl = PortMatcher(PortSet(include=[(1, 100)], exclude=[(50, 60)]))
    assert excl.values is None
    assert [excl.test(p) for p in (0, 1, 49, 50, 60, 61, 100, 101)] == [False, True, True, False, False, True, True,
                                                                       False]
    # no included range: every port but the excluded ones
    only_excl = PortMatcher(PortSet(exclude=[(22, 22)]))
    assert only_excl.test(21) and not only_excl.test(22) and only_excl.test(65535)


def test_addr_matcher_ranges_both_families_and_its_cache():
    def packed(a: str) -> bytes:
        return ipaddress.ip_address(a).packed

    def num(a: str) -> int:
        return int(ipaddress.ip_address(a))

    aset = AddrSet(v4=[(num("10.0.0.0"), num("10.255.255.255")), (num("192.168.1.7"), num("192.168.1.7"))],
                   v6=[(num("2001:db8::"), num("2001:db8::ffff"))])
    m = AddrMatcher(aset)
    for a, want in (("10.1.2.3", True), ("9.255.255.255", False), ("11.0.0.0", False), ("192.168.1.7", True),
                    ("192.168.1.8", False), ("2001:db8::1", True), ("2001:db8::1:0", False), ("::1", False)):
        assert m.test(packed(a)) is want, a
        assert m.test(packed(a)) is want, a  # the second time from the cache
    assert len(m.cache) == 8
