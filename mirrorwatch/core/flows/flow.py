"""The session record: one ``Flow`` per bidirectional session.

Index 0 of every per-direction pair means "towards the server" (Suricata's
toserver), 1 "towards the client".  TCP per-direction values: ``next_seq``
(after the highest segment seen), ``last_ack`` and ``win`` (the last ACK and
window field sent), ``wscale`` (the window scale its SYN announced, None
before), ``seg_len`` (payload bytes of its latest data segment).  Other rooms read these fields (they are
the contract); the flows room alone writes them, except ``det`` (detect),
``app`` (applayer), ``kill``, ``killed`` and ``no_inspection`` (the killer) and ``alerted``.

``no_inspection`` (Suricata's ``FLOW_NOPACKET_INSPECTION``): the killer reset
the session, or an exception policy bypassed it (``stop_inspection``); its TCP
state is still tracked, but it has no streams any more and gets none, and the
engine neither reassembles, parses nor inspects its packets.  ``eps``: the
exception policies applied to the session, (target, policy) pairs in
Suricata's names (``core.flows.exceptions``); ``action``: Suricata's flow action, None, "pass"
(pass-flow: no more rule inspection; the first to set it wins) or "drop";
``bypassed``: an exception policy bypassed it (flow record state "bypassed").

A Flow is small and flat: lists of two for per-direction values, no stream
or detection state until data arrives.  It holds no reference back to
anything that outlives it except its table, so it is freed by reference
counting the moment the table lets it go (``__weakref__`` lets tests prove
that).
"""

from __future__ import annotations

# timeout classes (index into a protocol's (new, established, closed) timeouts)
T_NEW, T_ESTABLISHED, T_CLOSED = 0, 1, 2


def really_killed(f) -> bool:
    """The killer reset the session (in dry-run it goes on: it is only marked)."""
    return f.killed is not None and not f.kill_dry_run


class Flow:
    """One bidirectional session (see the module docstring)."""

    __slots__ = (
        "flow_id", "key", "proto", "ipv", "client", "server", "cport", "sport", "vlan_id",
        "start", "last_ts", "pkts", "bytes", "state", "tcp_state", "tcp_flags_ts", "tcp_flags_tc", "streams",
        "alerted", "_killed", "kill_dry_run", "no_inspection", "end_reason", "det", "app", "kill",
        "l2", "ttl", "next_seq", "last_ack", "win", "wscale", "seg_len",
        # internals of the flows room
        "lo_client", "tclass", "bucket", "ended", "isn", "fin_seq", "sseq",
        "reasm", "synack_pending", "split", "rst_prev", "rst_by", "rst_exact", "rst_talk", "midstream", "table",
        # exception policies (core.flows.exceptions): targets applied, the flow's action, bypassed
        "eps", "action", "bypassed",
        # ICMP: the type and code of the session's first packet (-1 for other protocols)
        "icmp_type", "icmp_code",
        "lru_older", "lru_newer",
        "__weakref__",
    )

    @property
    def tcp_flags(self) -> int:
        """TCP flags seen in either direction (EVE tcp.tcp_flags)."""
        return self.tcp_flags_ts | self.tcp_flags_tc

    @property
    def killed(self):
        """None, or why mirrorwatch killed the session (set by the killer)."""
        return self._killed

    @killed.setter
    def killed(self, reason) -> None:
        self.mark_killed(reason)

    def mark_killed(self, reason, dry_run: bool = False) -> None:
        """The killer ended the session (``reason``: why); in dry-run (``kill_dry_run``) it is only
        marked and goes on."""
        self._killed = f"{reason} (dry-run)" if dry_run and reason is not None else reason
        self.kill_dry_run = dry_run
        if reason is not None and self.table is not None:
            self.table._on_kill(self)

    def stop_inspection(self) -> None:
        """Nothing inspects the session any more (see the module docstring): its streams deliver what they
        hold and go, none is made again."""
        self.no_inspection = True
        if self.table is not None:
            self.table.stop_streams(self)

    def __repr__(self) -> str:
        from ipaddress import ip_address

        c = ip_address(self.client) if self.client else "?"
        s = ip_address(self.server) if self.server else "?"
        return f"<Flow {self.flow_id} {self.proto} {c}:{self.cport} -> {s}:{self.sport} {self.tcp_state or self.state}>"

    def window_edge(self, d: int):
        """The sequence number just past what direction d's receiver allowed: its last ACK plus
        its last advertised window, scaled (unscaled when its SYN was not seen); None when the
        receiver has not sent an ACK yet."""
        r = 1 - d
        ack = self.last_ack[r]
        w = self.win[r]
        if ack is None or w is None:
            return None
        return (ack + (w << (self.wscale[r] or 0))) & 0xFFFFFFFF

    @property
    def age(self) -> int:
        """Suricata's flow.age: whole seconds of the last packet minus those of the first."""
        return int(self.last_ts) - int(self.start)
