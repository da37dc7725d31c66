"""EVE flow records, formatted from a template (a flood ends a session, so writes a record, per packet).

The record is Suricata's (output-json-flow.c): the header, the endpoints
oriented client -> server with ``ip_v`` before ``proto``, ``app_proto``, the
``flow`` object (counters, start, end, age, state, reason, alerted, killed)
and, for TCP, the ``tcp`` object (flags, their names, state, gaps, missed
bytes).  The text is exactly what ``json_dumps`` makes of the same record as
a dict, built without the dict: the constant parts are pre-encoded in the
templates, numbers need no escaping, addresses and timestamps are ASCII made
here, and the few strings from small vocabularies (state, reason, protocol
names, the usual ``tcp`` objects) are encoded once each and remembered.
"""

from __future__ import annotations

import json

from mirrorwatch.core.decode.packet import PROTO_TCP
from mirrorwatch.core.flows.flow import Flow
from mirrorwatch.sinks.fmt import iso_time, log_addr, proto_name

# events are trees of fresh dicts and lists: no cycle check needed
json_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, check_circular=False).encode

PORT_PROTOS = (6, 17, 132)  # TCP, UDP, SCTP
PROTO_ICMP, PROTO_ICMPV6 = 1, 58


def _both_ways(pairs: tuple) -> dict:
    return {**dict(pairs), **{b: a for a, b in pairs}}


# Suricata's ICMPv4GetCounterpart / ICMPv6GetCounterpart: the type that answers a type (both ways)
ICMPV4_COUNTERPART = _both_ways(((8, 0), (13, 14), (15, 16), (10, 9), (17, 18)))
ICMPV6_COUNTERPART = _both_ways(((128, 129), (135, 136), (133, 134), (130, 131), (139, 140), (144, 145),
                                 (146, 147), (148, 149), (151, 152), (157, 158)))
IPV4, IPV6 = 4, 6
IPV6_ADDR_LEN = 16
ENCODED_MAX = 4096  # distinct texts remembered per vocabulary before the memo starts over
# TCP flag bits in Suricata's EVE order.
TCP_FLAG_NAMES = (
    (0x02, "syn"), (0x01, "fin"), (0x04, "rst"), (0x08, "psh"),
    (0x10, "ack"), (0x20, "urg"), (0x40, "ecn"), (0x80, "cwr"),
)

_BOOL = ("false", "true")


class _Encoded(dict):
    """JSON text of values from a small vocabulary, made by ``make`` once per value (a dict: a hit
    is one lookup); starts over past ``ENCODED_MAX`` values, so odd input cannot grow it."""

    __slots__ = ("make",)

    def __init__(self, make):
        super().__init__()
        self.make = make

    def __missing__(self, key):
        if len(self) >= ENCODED_MAX:
            self.clear()
        text = self[key] = self.make(key)
        return text


def ip_version(address: bytes) -> int:
    """4 or 6, from a flow's packed address (Suricata's FLOW_IS_IPV4 / FLOW_IS_IPV6)."""
    return IPV6 if len(address) == IPV6_ADDR_LEN else IPV4


def tcp_obj(flags, flags_ts, flags_tc, tcp_state, regions=(1, 1), missed=(0, 0)) -> dict:
    """Suricata's ``tcp`` object of a flow record; ``regions``: the most regions each side's buffer had
    (to server, to client: ``Stream.max_regions``); ``missed``: bytes skipped at gaps."""
    flags = flags or 0
    tcp: dict = {
        "tcp_flags": f"{flags:02x}",
        "tcp_flags_ts": f"{(flags_ts or 0):02x}",
        "tcp_flags_tc": f"{(flags_tc or 0):02x}",
    }
    for bit, name in TCP_FLAG_NAMES:
        if flags & bit:
            tcp[name] = True
    if tcp_state:
        tcp["state"] = tcp_state
    # Suricata's STREAMTCP_STREAM_FLAG_HAS_GAP per side (server side first, as it writes them)
    for i, name in ((1, "tc_gap"), (0, "ts_gap")):
        if missed[i]:
            tcp[name] = True
    if tcp_state:  # a TCP session (Suricata: ssn)
        tcp["ts_max_regions"], tcp["tc_max_regions"] = regions
    for i, name in ((0, "missed_bytes_ts"), (1, "missed_bytes_tc")):
        if missed[i]:
            tcp[name] = missed[i]
    return tcp


_strings = _Encoded(json_dumps)  # state, reason, app_proto, killed
_protos = _Encoded(lambda proto: json_dumps(proto_name(proto)))
_tcp_gapless = _Encoded(lambda key: ',"tcp":' + json_dumps(tcp_obj(*key)))


def _missed_bytes(st) -> int:
    return getattr(st, "missed_bytes", 0) or 0  # no stream (None): nothing missed


def _regions(st) -> int:
    return getattr(st, "max_regions", 1) or 1  # no stream (None): Suricata's buffer starts with one


def _tcp_part(f: Flow) -> str:
    """``,"tcp":{...}``: the usual ones (no gap) remembered by flags, state and regions."""
    streams = getattr(f, "streams", None) or (None, None)
    s0 = streams[0]
    s1 = streams[1] if len(streams) > 1 else None
    key = (f.tcp_flags, f.tcp_flags_ts, f.tcp_flags_tc, f.tcp_state, (_regions(s0), _regions(s1)))
    missed = (_missed_bytes(s0), _missed_bytes(s1))
    if missed[0] or missed[1]:
        return ',"tcp":' + json_dumps(tcp_obj(*key, missed))
    return _tcp_gapless[key]


def _icmp_types(f: Flow) -> str:
    """An ICMP session's types, as Suricata's flow record has them: the first packet's type and code, and
    once the other side answered, the type that answers it (its counterpart, code 0)."""
    t = f.icmp_type if f.icmp_type >= 0 else 0
    out = f',"icmp_type":{t},"icmp_code":{f.icmp_code if f.icmp_code >= 0 else 0}'
    if f.pkts[1]:
        answer = (ICMPV6_COUNTERPART if f.proto == PROTO_ICMPV6 else ICMPV4_COUNTERPART).get(t, 0)
        out += f',"response_icmp_type":{answer},"response_icmp_code":0'
    return out


def _flow_tail(f: Flow, log_eps: bool) -> str:
    """The flow object's fields after ``alerted``, as Suricata's EveFlowLogJSON: ``action`` (pass or
    drop), the exception policies applied (``log_eps``: outputs.eve-log.types.flow.exception-policy),
    then ours: ``killed``."""
    out = ""
    if f.action is not None:
        out = ',"action":' + _strings[f.action]
    if log_eps and f.eps:
        out += ',"exception_policy":' + json_dumps([{"target": t, "policy": p} for t, p in f.eps])
    killed = f.killed
    if killed:
        out += ',"killed":' + json_dumps(killed)
    return out


def flow_record(f: Flow, reason: str, tail: str, ipv6_compress: bool = False, log_eps: bool = False) -> str:
    """The EVE line of flow ``f`` ended for ``reason``, ending with ``tail`` (the record's last fields,
    its closing brace and newline); IPv6 addresses in full unless ``ipv6_compress``; the exception
    policies applied to it when ``log_eps``."""
    t0, t1 = f.start, f.last_ts
    start = iso_time(t0)  # the record's time and the flow's start
    if t1 > t0:
        end = iso_time(t1)
    else:
        t1, end = t0, start
    proto, client = f.proto, f.client
    src, dest = log_addr(client, ipv6_compress), log_addr(f.server, ipv6_compress)
    if proto in PORT_PROTOS:
        endpoints = (f',"src_ip":"{src}","src_port":{f.cport},"dest_ip":"{dest}",'
                     f'"dest_port":{f.sport},"ip_v":{ip_version(client)},"proto":{_protos[proto]}')
    else:
        endpoints = f',"src_ip":"{src}","dest_ip":"{dest}","ip_v":{ip_version(client)},' \
                    f'"proto":{_protos[proto]}'
        if proto == PROTO_ICMP or proto == PROTO_ICMPV6:
            endpoints += _icmp_types(f)
    vlan = f.vlan_id
    if vlan:
        endpoints = ',"vlan":' + json_dumps(list(vlan)) + endpoints
    app = f.app
    if app is not None and app.proto is not None:
        endpoints += ',"app_proto":' + _strings[app.proto]
    last = (_flow_tail(f, log_eps) if f.action is not None or f.eps or f.killed else "") + "}"
    state = f.state
    if f.bypassed:  # an exception policy bypassed it (Suricata: FLOW_STATE_LOCAL_BYPASSED)
        state = "bypassed"
        endpoints_state = '"bypass":"local",'
    else:
        endpoints_state = ""
    if proto == PROTO_TCP:
        last += _tcp_part(f)
    pkts, octets = f.pkts, f.bytes
    age = int(t1) - int(t0)
    return (f'{{"timestamp":"{start}","flow_id":{f.flow_id},"event_type":"flow"{endpoints}'
            f',"flow":{{"pkts_toserver":{pkts[0]},"pkts_toclient":{pkts[1]},"bytes_toserver":{octets[0]},'
            f'"bytes_toclient":{octets[1]},"start":"{start}","end":"{end}","age":{age},{endpoints_state}'
            f'"state":{_strings[state]},"reason":{_strings[reason]},"alerted":{_BOOL[bool(f.alerted)]}'
            f'{last}{tail}')
