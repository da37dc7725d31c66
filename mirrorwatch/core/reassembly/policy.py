"""Overlap policies: which bytes a receiving host keeps when TCP segments overlap.

``use_new`` is the whole rule (Suricata's DoHandleDataOverlap, IDS mode,
itself Snort stream5's target-based policies).  ``HostOsPolicy`` is
Suricata's ``host-os-policy``: networks mapped to the operating system of the
hosts in them, so each stream is reassembled as its receiving host would
(``--set host-os-policy.windows=[10.0.0.0/8,192.168.1.5]``); the most
specific network containing the address wins; hosts in none use
``stream.reassembly.policy``.
"""

from __future__ import annotations

import ipaddress

# Overlap policies (settings.OVERLAP_POLICIES); which one prefers the new
# segment's bytes over a list segment it overlaps is decided by ``use_new``.
FIRST, LAST, BSD, LINUX, OLD_LINUX, WINDOWS, SOLARIS, VISTA = range(8)
POLICY_CODES = {
    "first": FIRST, "last": LAST, "bsd": BSD, "linux": LINUX, "old-linux": OLD_LINUX,
    "windows": WINDOWS, "solaris": SOLARIS, "vista": VISTA,
}
# Suricata's host-os-policy flavours (util-host-os-info.c) and the policy each behaves as
# (stream-tcp-list.c groups hpux10/irix/macos/windows2k3 with bsd/windows, hpux11 with solaris;
# StreamTcpSetOSPolicy maps bsd-right to bsd and old-solaris to solaris)
HOST_OS_FLAVOURS = {
    **POLICY_CODES, "bsd-right": BSD, "old-solaris": SOLARIS, "hpux10": BSD, "hpux11": SOLARIS,
    "irix": BSD, "macos": BSD, "windows2k3": WINDOWS,
}
_NEW_IF_STARTS_BEFORE = frozenset((BSD, WINDOWS, OLD_LINUX, LINUX))


def use_new(policy: int, s: int, e: int, ls: int, le: int) -> bool:
    """Does new segment [s, e) win over the overlapping list segment [ls, le)?

    'last' always takes the new data, 'first' and 'vista' never do;
    bsd/windows take it when the new segment starts before the old one; linux
    also when it starts at the same place and ends beyond; old-linux and
    solaris when it starts at the same place and ends at or beyond; solaris
    also when it starts before and covers the old one to its end, or starts
    after and ends beyond it.
    """
    if policy == LAST:
        return True
    if s == ls:
        if e < le:
            return False
        if e > le and policy == LINUX:
            return True
        return policy == OLD_LINUX or policy == SOLARIS
    if s < ls:
        if e >= le and policy == SOLARIS:
            return True
        return policy in _NEW_IF_STARTS_BEFORE
    return e > le and policy == SOLARIS


class HostOsPolicyError(ValueError):
    """A host-os-policy entry that names no flavour or carries a bad network (one line)."""


def parse_networks(text: str) -> list:
    """'[10.0.0.0/8, 192.168.1.5, 2001:db8::/32]' (or one network without brackets) -> networks."""
    body = text.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    nets = []
    for item in (x.strip() for x in body.split(",")):
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise HostOsPolicyError(f"not a network: {item!r} (use e.g. [10.0.0.0/8,192.168.1.5])") from None
    return nets


class HostOsPolicy:
    """Address -> overlap policy code, longest prefix first; see the module docstring."""

    __slots__ = ("_by_len",)

    def __init__(self, flavours: dict[str, str]):
        # (version, prefix length) -> {network address as int: policy}, most specific first
        by_len: dict[tuple[int, int], dict[int, int]] = {}
        for flavour, text in flavours.items():
            code = HOST_OS_FLAVOURS.get(flavour)
            if code is None:
                raise HostOsPolicyError(f"unknown host-os-policy flavour {flavour!r} "
                                        f"(one of {', '.join(sorted(HOST_OS_FLAVOURS))})")
            for net in parse_networks(text):
                by_len.setdefault((net.version, net.prefixlen), {})[int(net.network_address)] = code
        self._by_len = sorted(((v, plen, table) for (v, plen), table in by_len.items()),
                              key=lambda t: -t[1])

    @classmethod
    def from_settings(cls, settings) -> "HostOsPolicy | None":
        """The map of ``settings.host_os`` (``host-os-policy.<flavour>`` entries), None when empty."""
        flavours = getattr(settings, "host_os", None)
        return cls(flavours) if flavours else None

    def lookup(self, addr: bytes) -> int | None:
        """The policy of the host at ``addr`` (4 or 16 packed bytes), None when no network holds it."""
        version = 4 if len(addr) == 4 else 6
        bits = 32 if version == 4 else 128
        value = int.from_bytes(addr, "big")
        for v, plen, table in self._by_len:
            if v == version:
                code = table.get(value >> (bits - plen) << (bits - plen))
                if code is not None:
                    return code
        return None

    def __bool__(self) -> bool:
        return bool(self._by_len)
