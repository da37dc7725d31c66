"""EVE records of the application layer: the http, dns and tls events, and their objects in alerts.

Each protocol module of ``core.applayer`` builds its record with Suricata's field
names (``eve_record``); this module only decides which records a transaction
gives: one ``http`` event per transaction, one ``tls`` event per session once
its handshake was seen, one ``dns`` event per message (``eve_dns``: Suricata's
version 3 format, or version 2's query event per question and answer event per
response), and one ``fileinfo`` event per file of an HTTP transaction (``eve_file``).
"""

from __future__ import annotations

from mirrorwatch.core.applayer import ssh, tls
from mirrorwatch.core.applayer.http import logger as http_log
from mirrorwatch.sinks import eve_dns
from mirrorwatch.sinks.eve_file import FILEINFO, file_events

APP_TYPES = ("http", "dns", "tls", "ssh", FILEINFO)


def _http(tx, extended: bool, dns_version: int) -> list[dict]:
    return [http_log.eve_record(tx, extended=extended)]  # Suricata's default eve-log: extended http


def _tls(tx, extended: bool, dns_version: int) -> list[dict]:
    return [tls.eve_record(tx)] if tls.eve_ready(tx) else []


def _dns(tx, extended: bool, dns_version: int) -> list[dict]:
    return eve_dns.event_objects(tx, dns_version)


def _ssh(tx, extended: bool, dns_version: int) -> list[dict]:
    rec = ssh.eve_record(tx)
    return [rec] if rec else []


RECORDS = {"http": _http, "tls": _tls, "dns": _dns, "ssh": _ssh}


def tx_records(proto: str, tx, extended: bool = True, dns_version: int = eve_dns.DEFAULT_VERSION) -> list[dict]:
    """The EVE objects of one finished transaction (empty for a protocol without records)."""
    fn = RECORDS.get(proto)
    return fn(tx, extended, dns_version) if fn is not None else []


def app_events(proto: str, tx, types, dns_version: int = eve_dns.DEFAULT_VERSION) -> list[tuple[str, bool, dict]]:
    """(event type, toward the server, the fields after the header) of each record a finished
    transaction gives for the event ``types`` selected: its protocol's records, then its files'."""
    out = []
    if proto in types:
        for obj in tx_records(proto, tx, dns_version=dns_version):
            body = {"tx_id": tx.tx_id} if proto == "http" else {}
            body[proto] = obj
            out.append((proto, True, body))
    if FILEINFO in types:
        out.extend((FILEINFO, to_server, body) for to_server, body in file_events(proto, tx))
    return out


def alert_record(proto: str, tx) -> dict | None:
    """The protocol object an alert on ``tx`` carries (Suricata adds it to app-layer alerts)."""
    if proto == "dns":
        return eve_dns.alert_object(tx)
    fn = RECORDS.get(proto)
    if fn is None:
        return None
    if proto == "tls":
        return tls.eve_record(tx)
    if proto == "ssh":
        return ssh.eve_record(tx)
    recs = fn(tx, True, eve_dns.DEFAULT_VERSION)
    return recs[0] if recs else None
