"""The EVE ``http`` object of a transaction, named as Suricata's
output-json-http.c names its fields."""

from __future__ import annotations

from mirrorwatch.core.applayer.common import string_from_bytes
from mirrorwatch.core.applayer.http.transaction import Headers, HttpTx

# Suricata's MAX_SIZE_HEADER_NAME / MAX_SIZE_HEADER_VALUE less the C string's NUL.
MAX_HEADER_NAME = 255
MAX_HEADER_VALUE = 2047
DUMP_REQUEST = "request"
DUMP_RESPONSE = "response"
DUMP_BOTH = "both"
_DUMPS = {
    None: (),
    DUMP_REQUEST: (("request_headers", True),),
    DUMP_RESPONSE: (("response_headers", False),),
    DUMP_BOTH: (("request_headers", True), ("response_headers", False)),
}


def eve_record(tx: HttpTx, *, extended: bool = False, dump_headers: str | None = None) -> dict:
    """EVE ``http`` fields of ``tx``.

    ``extended`` adds what Suricata's ``extended: yes`` logs; ``dump_headers``
    is Suricata's ``dump-all-headers`` (None, "request", "response", "both").
    """
    record: dict = {}
    _basic(record, tx)
    if extended:
        _extended(record, tx)
    for key, request in _DUMPS[dump_headers]:
        headers = _header_list(tx.request_headers if request else tx.response_headers)
        if headers:
            record[key] = headers
    return record


def _basic(record: dict, tx: HttpTx) -> None:
    if tx.host is not None:
        record["hostname"] = string_from_bytes(tx.host)
    if tx.port is not None:
        record["http_port"] = tx.port
    if tx.uri_raw is not None:
        record["url"] = string_from_bytes(tx.uri_raw)
    user_agent = tx.request_header(b"user-agent")
    if user_agent is not None:
        record["http_user_agent"] = string_from_bytes(user_agent)
    xff = tx.request_header(b"x-forwarded-for")
    if xff is not None:
        record["xff"] = string_from_bytes(xff)
    content_type = tx.response_header(b"content-type")
    if content_type is not None:
        record["http_content_type"] = string_from_bytes(content_type.split(b";", 1)[0])


def _extended(record: dict, tx: HttpTx) -> None:
    referer = tx.request_header(b"referer")
    if referer is not None:
        record["http_refer"] = string_from_bytes(referer)
    if tx.method is not None:
        record["http_method"] = string_from_bytes(tx.method)
    if tx.protocol is not None:
        record["protocol"] = string_from_bytes(tx.protocol)
    if tx.status_code is not None:
        record["status"] = tx.status_code
    elif tx.status is not None:
        record["status_string"] = string_from_bytes(tx.status)
    location = tx.response_header(b"location")
    if location is not None:
        record["redirect"] = string_from_bytes(location)
    record["length"] = tx.response_body_len


def _header_list(headers: Headers) -> list[dict]:
    return [{"name": string_from_bytes(name[:MAX_HEADER_NAME]),
             "value": string_from_bytes(value[:MAX_HEADER_VALUE])}
            for name, value in headers]
