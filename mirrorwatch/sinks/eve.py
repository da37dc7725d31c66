"""EVE JSON writer: one JSON object per line, with Suricata's field names.

Alerts carry the packet's own addresses (Suricata's orientation for alerts)
plus a ``flow`` object oriented client -> server; flow events are oriented
client -> server.  The final ``stats`` event carries every engine counter.
As Suricata's, every record ends with ``host`` (the sensor name) and, from a
live capture, every record but stats carries ``in_iface``.  The lines go to a
file (``FileSink``) or to any transport with the same four methods
(``sinks.redis.RedisOutput``).
"""

from __future__ import annotations

import base64
import sys
import time

from mirrorwatch.core.events import (
    Alert,
    AppTx,
    BypassSwitch,
    DecodeAnomaly,
    FlowEmergency,
    FlowEnded,
    Kill,
    Stats,
    TaggedPacket,
)
from mirrorwatch.sinks.base import Sink
from mirrorwatch.sinks.caps import emergency_record
from mirrorwatch.sinks.eve_app import APP_TYPES, alert_record, app_events
from mirrorwatch.sinks.eve_dns import DEFAULT_VERSION as DNS_DEFAULT_VERSION
from mirrorwatch.sinks.eve_flow import PORT_PROTOS, flow_record, ip_version, json_dumps
from mirrorwatch.sinks.fmt import (
    ICMP_PROTOS,
    iso_time,
    log_addr,
    metadata_dict,
    packet_fields,
    proto_name,
    segment_dict,
)
from mirrorwatch.sinks.inline import bypass_record

DEFAULT_TYPES = ("alert", "flow", "stats", "kill", "http", "dns", "tls", "ssh", "fileinfo", "engine", "anomaly")
# every event_type written: tagged packets are "packet" records of the alert type (Suricata's alert
# logger writes them, its option tagged-packets, on by default)
EVENT_TYPES = (*DEFAULT_TYPES, "packet")
# Suricata's PktSrcToString for the two sources a record here can come from
PKT_SRC_WIRE = "wire/pcap"
PKT_SRC_FLOW_TIMEOUT = "stream (flow timeout)"


class OutputError(OSError):
    """An output file cannot be opened or written (one line for the user)."""


def open_text(path: str):
    """Open an output path for appending text ('-' = stdout), with a one-line error."""
    if path == "-":
        return sys.stdout
    try:
        return open(path, "a", encoding="utf-8", buffering=1 << 16)
    except OSError as e:
        raise OutputError(f"cannot open output file {path}: {e.strerror or e}") from None


class FileSink:
    """Buffered text sink with Suricata-style reopen (log rotation) and flush."""

    def __init__(self, path: str, line_buffered: bool = False):
        self.path = path
        self.line_buffered = line_buffered
        self.fp = open_text(path)

    def write(self, line: str) -> None:
        self.fp.write(line)
        if self.line_buffered:
            self.fp.flush()

    def flush(self) -> None:
        try:
            self.fp.flush()
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        self.flush()
        if self.fp is not sys.stdout:
            self.fp.close()

    def reopen(self) -> None:
        """After logrotate moved the file away: continue in a fresh file at the same path."""
        if self.fp is sys.stdout:
            return
        self.close()
        self.fp = open_text(self.path)


_VERDICT_ALERT = {"action": "alert"}  # Suricata 9 logs the verdict of every alert; IDS: 'alert'


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


class EveWriter(Sink):
    """Writes alert, flow, stats (and kill) events as EVE JSON lines.

    ``types`` selects the event types written; ``payload`` adds the base64
    ``payload`` and ``payload_printable`` of the packet (or stream chunk) that
    matched.  The lines go to ``output`` (write/flush/close/reopen), by default
    a ``FileSink`` at ``path``.  ``host`` (the sensor name) and ``in_iface``
    (the capture interface) are added to every record when given.
    ``anomaly_decode`` (Suricata's ``anomaly.types.decode``, off by default, as
    Suricata's) writes an ``anomaly`` record for each decoder event of a packet.
    """

    def __init__(self, path: str = "-", types=DEFAULT_TYPES, payload: bool = False, line_buffered: bool = False,
                 *, output=None, host: str | None = None, in_iface: str | None = None,
                 dns_version: int = DNS_DEFAULT_VERSION, ipv6_compress: bool = False, log_eps: bool = False,
                 anomaly_decode: bool = False):
        self.out = output if output is not None else FileSink(path, line_buffered)
        self.ipv6_compress = ipv6_compress  # Suricata 9's outputs.eve-log.ipv6-compress (else IPv6 in full)
        self.log_eps = log_eps  # flow records list the exception policies applied (types.flow.exception-policy)
        self.write = self.out.write
        self.host = host
        self.in_iface = in_iface
        # Suricata adds the capture interface to packet/flow records and the sensor name last
        self._last_fields = {k: v for k, v in (("in_iface", in_iface), ("host", host)) if v is not None}
        self._last_fields_stats = {k: v for k, v in self._last_fields.items() if k != "in_iface"}
        last = json_dumps(self._last_fields)  # a flow record's end: its last fields, brace and newline
        self._flow_tail = ("," + last[1:] if self._last_fields else "}") + "\n"
        self.dns_version = dns_version  # Suricata's outputs.eve-log.types.dns.version (3, or 2)
        self.types = frozenset(types)
        self.payload = payload
        self.started = time.monotonic()
        self._alert_objs: dict = {}  # (id(rule), action) -> rendered "alert" object
        handlers = {Alert: self.alert, FlowEnded: self.flow, Stats: self.stats, Kill: self.kill, AppTx: self.app,
                    FlowEmergency: self.engine, BypassSwitch: self.bypass, TaggedPacket: self.tagged,
                    DecodeAnomaly: self.anomaly}
        names = {Alert: ("alert",), FlowEnded: ("flow",), Stats: ("stats",), Kill: ("kill",), AppTx: APP_TYPES,
                 FlowEmergency: ("engine",), BypassSwitch: ("engine",), TaggedPacket: ("alert",),
                 DecodeAnomaly: ("anomaly",) if anomaly_decode else ()}
        self._dispatch = {cls: fn for cls, fn in handlers.items() if self.types.intersection(names[cls])}

    def handle(self, event) -> None:
        fn = self._dispatch.get(type(event))
        if fn is not None:
            fn(event)

    def route(self, cls):
        return self._dispatch.get(cls)  # straight to the record's writer

    def flush(self) -> None:
        self.out.flush()

    def close(self) -> None:
        self.out.close()

    def reopen(self) -> None:
        self.out.reopen()

    def _emit(self, ev: dict) -> None:
        """One record out, with its last fields (capture interface, sensor name)."""
        ev.update(self._last_fields if ev["event_type"] != "stats" else self._last_fields_stats)
        self.write(json_dumps(ev) + "\n")

    # -- alert --------------------------------------------------------------
    def _alert_obj(self, rule, action: str) -> dict:
        key = (id(rule), action)
        obj = self._alert_objs.get(key)
        if obj is None:
            obj = {
                "action": action,
                "gid": rule.gid,
                "signature_id": rule.sid,
                "rev": rule.rev,
                "signature": rule.msg,
                "category": rule.category or "",
                "severity": rule.priority,
            }
            md = metadata_dict(rule.metadata)
            if md:
                obj["metadata"] = md
            self._alert_objs[key] = obj
        return obj

    def alert(self, a: Alert) -> None:
        pkt, flow = a.pkt, a.flow
        # detect's flow-end inspection rides on a pseudo packet, as Suricata's
        ev = _packet_header(pkt, flow, "alert", PKT_SRC_FLOW_TIMEOUT if a.kind == "flow-timeout" else PKT_SRC_WIRE,
                            self.ipv6_compress)
        if pkt.src_mac:
            ev["ether"] = {"src_mac": _mac(pkt.src_mac), "dest_mac": _mac(pkt.dst_mac)}
        ev["alert"] = self._alert_obj(a.rule, a.action)
        if pkt.tunnel:
            ev["tunnel"] = _tunnel_obj(pkt, self.ipv6_compress)
        ev["verdict"] = a.verdict if a.verdict is not None else _VERDICT_ALERT
        if a.to_server is not None:
            ev["direction"] = "to_server" if a.to_server else "to_client"
        if flow is not None:
            fo = _flow_counts(flow)
            fo["src_ip"] = log_addr(flow.client, self.ipv6_compress)
            fo["dest_ip"] = log_addr(flow.server, self.ipv6_compress)
            if flow.proto in PORT_PROTOS:
                fo["src_port"] = flow.cport
                fo["dest_port"] = flow.sport
            ev["flow"] = fo
        app = flow.app.proto if flow is not None and flow.app is not None else None
        if app is not None:
            ev["app_proto"] = app
            if a.tx is not None:
                ev["tx_id"] = a.tx.tx_id
                if a.tx_guessed:
                    ev["tx_guessed"] = True
                obj = alert_record(app, a.tx)
                if obj:
                    ev[app] = obj
        ev["stream"] = 1 if a.stream else 0
        if self.payload and a.payload:
            data = bytes(a.payload)
            ev["payload"] = base64.b64encode(data).decode("ascii")
            ev["payload_printable"] = "".join(chr(b) if 32 <= b < 127 else "." for b in data)
        if self.payload and pkt.frame:
            packet_fields(ev, pkt)
        self._emit(ev)

    def tagged(self, t: TaggedPacket) -> None:
        """A tagged packet: Suricata's "packet" record (CreateEveHeader, then EvePacket)."""
        ev = _packet_header(t.pkt, t.flow, "packet", PKT_SRC_WIRE, self.ipv6_compress)
        packet_fields(ev, t.pkt)
        self._emit(ev)

    def anomaly(self, e: DecodeAnomaly) -> None:
        """Suricata's anomaly records of type decode (output-json-anomaly.c): one per event of the packet."""
        pkt = e.pkt
        for event in pkt.events:
            ev = _packet_header(pkt, None, "anomaly", PKT_SRC_WIRE, self.ipv6_compress)
            ev["anomaly"] = {"type": "decode", "event": event}
            self._emit(ev)

    # -- flow ---------------------------------------------------------------
    def flow(self, e: FlowEnded) -> None:
        """Suricata's flow record, from its template (``eve_flow``): the same text ``_emit`` would make."""
        self.write(flow_record(e.flow, e.reason, self._flow_tail, self.ipv6_compress, self.log_eps))

    # -- application layer -----------------------------------------------------
    def app(self, e: AppTx) -> None:
        """One finished transaction: its http / dns / tls records and its files' fileinfo records."""
        f = e.flow
        for event_type, to_server, body in app_events(e.proto, e.tx, self.types, self.dns_version):
            ev: dict = {"timestamp": iso_time(e.ts), "flow_id": f.flow_id}
            if e.pcap_cnt:
                ev["pcap_cnt"] = e.pcap_cnt
            ev["event_type"] = event_type
            if f.vlan_id:
                ev["vlan"] = list(f.vlan_id)
            if to_server:
                _endpoints(ev, f.proto, f.client, f.cport, f.server, f.sport, self.ipv6_compress)
            else:
                _endpoints(ev, f.proto, f.server, f.sport, f.client, f.cport, self.ipv6_compress)
            ev["ip_v"] = ip_version(f.client)
            ev["pkt_src"] = PKT_SRC_WIRE if e.pcap_cnt else PKT_SRC_FLOW_TIMEOUT
            ev.update(body)
            self._emit(ev)

    # -- stats / kill -------------------------------------------------------
    def stats(self, s: Stats) -> None:
        body = {"uptime": int(time.monotonic() - self.started)}
        for section, value in s.counters.items():
            body[section] = nest_counters(section, value) if isinstance(value, dict) else value
        ev = {"timestamp": iso_time(s.ts), "event_type": "stats", "stats": body}
        self._emit(ev)

    def engine(self, e: FlowEmergency) -> None:
        """The flow table entered or left emergency mode (Suricata logs it as an engine notice)."""
        self._emit({"timestamp": iso_time(e.ts), "event_type": "engine", "engine": emergency_record(e)})

    def bypass(self, e: BypassSwitch) -> None:
        """Inline mode: the bypass switch turned (an engine notice too)."""
        self._emit({"timestamp": iso_time(e.ts), "event_type": "engine", "engine": bypass_record(e)})

    def kill(self, k: Kill) -> None:
        f = k.flow
        ev: dict = {"timestamp": iso_time(k.ts), "flow_id": f.flow_id}
        if k.pcap_cnt:
            ev["pcap_cnt"] = k.pcap_cnt
        ev["event_type"] = "kill"
        _endpoints(ev, f.proto, f.client, f.cport, f.server, f.sport, self.ipv6_compress)
        ev["kill"] = {
            "trigger": str(k.trigger),
            "frames": len(k.frames),
            "dry_run": bool(k.dry_run),
            "segments": [segment_dict(seg, self.ipv6_compress) for seg in k.frames],
        }
        self._emit(ev)


def nest_counters(section: str, counters: dict) -> dict:
    """Dotted counter names as Suricata's nested stats objects.

    In section ``decoder``, ``decoder.pkts`` becomes ``pkts`` and
    ``defrag.fragments`` becomes ``{"defrag": {"fragments": ...}}``, so
    ``jq .stats.decoder.pkts`` works as it does on Suricata's EVE.
    """
    out: dict = {}
    prefix = section + "."
    for key, value in counters.items():
        if isinstance(value, dict):
            value = nest_counters(key, value)
        key = key.removeprefix(prefix)
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            child = node.get(p)
            if not isinstance(child, dict):
                if child is not None:  # a plain counter already holds this name: keep the dotted key flat
                    node = None
                    break
                child = node[p] = {}
            node = child
        if node is None:
            out[key] = value
        else:
            node[leaf] = value
    return out


def _endpoints(ev: dict, proto: int, src: bytes, sport: int, dst: bytes, dport: int, ipv6_compress: bool,
               pkt=None) -> None:
    """src/dest address and port fields; ICMP carries type/code instead of ports (``ip_v``, after
    ``proto`` in packet and transaction records, is the caller's)."""
    has_ports = proto in PORT_PROTOS
    ev["src_ip"] = log_addr(src, ipv6_compress)
    if has_ports:
        ev["src_port"] = sport
    ev["dest_ip"] = log_addr(dst, ipv6_compress)
    if has_ports:
        ev["dest_port"] = dport
    ev["proto"] = proto_name(proto)
    if pkt is not None and proto in ICMP_PROTOS and pkt.icmp_type >= 0:
        ev["icmp_type"] = pkt.icmp_type
        ev["icmp_code"] = pkt.icmp_code


def _packet_header(pkt, flow, event_type: str, pkt_src: str, ipv6_compress: bool) -> dict:
    """Suricata's CreateEveHeader for a packet record: time, flow id, number, type, addresses as the
    packet has them, ip_v, ICMP type/code and the packet's source."""
    ev: dict = {"timestamp": iso_time(pkt.ts)}
    if flow is not None:
        ev["flow_id"] = flow.flow_id
    if pkt.pcap_cnt:
        ev["pcap_cnt"] = pkt.pcap_cnt
    ev["event_type"] = event_type
    if pkt.vlan_id:
        ev["vlan"] = list(pkt.vlan_id)
    if pkt.ipv:  # a packet without IP (a decoder event below it) has no 5-tuple
        _endpoints(ev, pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport, ipv6_compress, pkt)
        ev["ip_v"] = pkt.ipv
    ev["pkt_src"] = pkt_src
    return ev


def _flow_counts(f) -> dict:
    """The counters an alert's ``flow`` object carries (a flow record's are ``eve_flow``'s template)."""
    pkts, octets = f.pkts, f.bytes
    return {
        "pkts_toserver": pkts[0],
        "pkts_toclient": pkts[1],
        "bytes_toserver": octets[0],
        "bytes_toclient": octets[1],
        "start": iso_time(f.start),
    }


def _tunnel_obj(pkt, ipv6_compress: bool) -> dict:
    """An alert's ``tunnel`` object (Suricata's AlertJsonTunnel): the outermost packet's addresses,
    ports (0 unless a UDP tunnel) and protocol, how many tunnels deep the alerting packet is, and
    the outer packet's number and source (the same frame)."""
    _ipv, src, dst, proto, sport, dport = pkt.tunnel[0]
    obj = {"src_ip": log_addr(src, ipv6_compress), "src_port": sport, "dest_ip": log_addr(dst, ipv6_compress),
           "dest_port": dport, "proto": proto_name(proto), "depth": len(pkt.tunnel)}
    if pkt.pcap_cnt:
        obj["pcap_cnt"] = pkt.pcap_cnt
    obj["pkt_src"] = PKT_SRC_WIRE
    return obj
