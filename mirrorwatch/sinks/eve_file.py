"""EVE ``fileinfo`` records of HTTP files, as Suricata's output-json-file.c writes them.

One record per file a transaction tracked (``core.applayer.http.files``): the
``http`` object of its transaction (EveHttpAddMetadata: the basic and extended
fields), ``app_proto``, then ``fileinfo``. A request body's record goes client
to server, a response body's server to client. Suricata's default
configuration neither hashes files (``force-hash``) nor stores them, so no
``md5``/``sha1``/``sha256`` and ``stored`` is false; a file still open when
its transaction is logged was cut, and is TRUNCATED.
"""

from __future__ import annotations

from mirrorwatch.core.applayer.common import string_from_bytes
from mirrorwatch.core.applayer.http import logger as http_log
from mirrorwatch.core.applayer.http.files import STATE_OPEN, STATE_TRUNCATED

FILEINFO = "fileinfo"
HTTP = "http"


def fileinfo_object(file, tx_id: int) -> dict:
    """The ``fileinfo`` object of one file (EveFileInfo)."""
    state = STATE_TRUNCATED if file.state == STATE_OPEN else file.state
    return {"filename": string_from_bytes(file.name), "gaps": file.gaps, "state": state,
            "stored": False, "size": file.size, "tx_id": tx_id}


def file_events(proto: str, tx) -> list[tuple[bool, dict]]:
    """(toward the server, the record's fields after its header) of each file of ``tx``."""
    if proto != HTTP:
        return []
    files = [(to_server, f) for to_server, f in ((True, tx.request_file), (False, tx.response_file))
             if f is not None]
    if not files:
        return []
    http = http_log.eve_record(tx, extended=True)
    return [(to_server, {HTTP: http, "app_proto": proto, FILEINFO: fileinfo_object(f, tx.tx_id)})
            for to_server, f in files]
