"""Session records made by hand for the sinks' tests: a real ``Flow`` (the compiled build's sinks
read it as a C struct), every field set as ``FlowTable`` sets it for a new TCP session, then the
test's own values."""

from __future__ import annotations

from mirrorwatch.core.flows.flow import Flow

_NEW_TCP = {
    "flow_id": 1, "key": None, "proto": 6, "ipv": 4, "client": b"\0" * 4, "server": b"\0" * 4, "cport": 0,
    "sport": 0, "vlan_id": (), "start": 0.0, "last_ts": 0.0, "state": "new", "tcp_state": "none",
    "tcp_flags_ts": 0, "tcp_flags_tc": 0, "alerted": False, "kill_dry_run": False, "end_reason": None,
    "det": None, "app": None, "kill": None, "lo_client": True, "tclass": 0, "bucket": None, "ended": False,
    "reasm": False, "synack_pending": None, "split": False, "rst_prev": None, "rst_by": None,
    "rst_exact": False, "rst_talk": 0, "midstream": False, "no_inspection": False, "table": None,
    "eps": (), "action": None, "bypassed": False, "icmp_type": -1, "icmp_code": -1,
}
_PAIRS = ("pkts", "bytes", "seg_len")  # per-direction counts, [0, 0]
_OPTIONAL_PAIRS = ("l2", "ttl", "streams", "next_seq", "last_ack", "win", "wscale", "isn", "fin_seq", "sseq")


def make_flow(**fields) -> Flow:
    """A new TCP session's record with ``fields`` set on it (``killed`` through its setter)."""
    f = Flow()
    for name, value in _NEW_TCP.items():
        setattr(f, name, value)
    for name in _PAIRS:
        setattr(f, name, [0, 0])
    for name in _OPTIONAL_PAIRS:
        setattr(f, name, [None, None])
    f.killed = None
    for name, value in fields.items():
        setattr(f, name, value)
    return f
