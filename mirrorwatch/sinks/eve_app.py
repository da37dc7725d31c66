"""EVE records of the application layer: the http, dns and tls events, and their objects in alerts.

Each protocol module of ``core.applayer`` builds its record with Suricata's field
names (``eve_record``); this module only decides which records a transaction
gives: one ``http`` event per transaction, one ``tls`` event per session once
its handshake was seen, a ``dns`` query event per question and one answer event
per response (Suricata's version 2 format).
"""

from __future__ import annotations

from mirrorwatch.core.applayer import dns, ssh, tls
from mirrorwatch.core.applayer.common import TO_CLIENT, TO_SERVER
from mirrorwatch.core.applayer.http import logger as http_log

APP_TYPES = ("http", "dns", "tls", "ssh")


def _http(tx, extended: bool) -> list[dict]:
    return [http_log.eve_record(tx, extended=extended)]  # Suricata's default eve-log: extended http


def _tls(tx, extended: bool) -> list[dict]:
    return [tls.eve_record(tx)] if tls.eve_ready(tx) else []


def _dns(tx, extended: bool) -> list[dict]:
    out = []
    for i in range(max(1, len(tx.queries or ()))):
        q = dns.eve_record(tx, TO_SERVER, i)
        if q is not None:
            out.append(q)
    a = dns.eve_record(tx, TO_CLIENT)
    if a is not None:
        out.append(a)
    return out


def _ssh(tx, extended: bool) -> list[dict]:
    rec = ssh.eve_record(tx)
    return [rec] if rec else []


RECORDS = {"http": _http, "tls": _tls, "dns": _dns, "ssh": _ssh}


def tx_records(proto: str, tx, extended: bool = True) -> list[dict]:
    """The EVE objects of one finished transaction (empty for a protocol without records)."""
    fn = RECORDS.get(proto)
    return fn(tx, extended) if fn is not None else []


def alert_record(proto: str, tx) -> dict | None:
    """The protocol object an alert on ``tx`` carries (Suricata adds it to app-layer alerts)."""
    if proto == "dns":  # Suricata's AlertJsonDns: the query records and the answer
        obj: dict = {}
        queries = [q for i in range(len(tx.queries or ())) if (q := dns.eve_record(tx, TO_SERVER, i)) is not None]
        if queries:
            obj["query"] = queries
        answer = dns.eve_record(tx, TO_CLIENT)
        if answer is not None:
            obj["answer"] = answer
        return obj or None
    fn = RECORDS.get(proto)
    if fn is None:
        return None
    if proto == "tls":
        return tls.eve_record(tx)
    if proto == "ssh":
        return ssh.eve_record(tx)
    recs = fn(tx, True)
    return recs[0] if recs else None
