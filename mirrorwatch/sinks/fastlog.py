"""fast.log writer: Suricata's one-line alert format, byte for byte.

    01/01/2024-12:00:00.123456  [**] [1:2000001:3] MSG [**] [Classification: CAT] [Priority: 1] {TCP} 10.0.0.1:1234 -> 10.0.0.2:80

A rule without classtype prints ``(null)`` as Suricata does; ICMP prints the
type and code where ports would be; a killed session's alert gets
Suricata's ``[wDrop] `` marker (a passive sensor cannot drop, it resets);
inline, where the packet was dropped (its verdict is ``drop``), ``[Drop] ``.
An alert on a packet without IP (a decode-event rule on a frame that failed below
the IP layer) shows the frame's first bytes in hex, as Suricata's.
"""

from __future__ import annotations

from mirrorwatch.core.events import Alert
from mirrorwatch.sinks.base import Sink
from mirrorwatch.sinks.eve import FileSink
from mirrorwatch.sinks.fmt import fast_time, log_addr, packet_ports, proto_name

RAW_PKT_BYTES = 32  # bytes of a non-IP packet a line shows (Suricata's AlertFastLogger)


def format_alert(a: Alert) -> str:
    """One fast.log line (with newline) for an alert."""
    pkt, rule = a.pkt, a.rule
    sp, dp = packet_ports(pkt)
    if a.action != "blocked":
        action = ""
    else:
        action = "[Drop] " if a.verdict is not None and a.verdict.get("action") == "drop" else "[wDrop] "
    category = rule.category or "(null)"
    head = (f"{fast_time(pkt.ts)}  {action}[**] [{rule.gid}:{rule.sid}:{rule.rev}] {rule.msg} [**] "
            f"[Classification: {category}] [Priority: {rule.priority}] ")
    if not pkt.ipv:  # Suricata's decoder-event line: the frame's first bytes instead of addresses
        raw = "".join(f"{b:02X} " for b in pkt.frame[:RAW_PKT_BYTES])
        tail = f" [pcap file packet: {pkt.pcap_cnt}]" if pkt.pcap_cnt else ""
        return f"{head}[**] [Raw pkt: {raw}]{tail}\n"
    return f"{head}{{{proto_name(pkt.proto)}}} {log_addr(pkt.src)}:{sp} -> {log_addr(pkt.dst)}:{dp}\n"


class FastLogWriter(FileSink, Sink):
    """Appends one fast.log line per alert; ignores every other event."""

    takes = (Alert,)

    def handle(self, event) -> None:
        if type(event) is Alert:
            self.write(format_alert(event))
