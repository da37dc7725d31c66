"""EVE ``fileinfo`` records of HTTP files, as Suricata's output-json-file.c writes them.

One record per file a transaction tracked (``core.applayer.http.files``): the
``http`` object of its transaction (EveHttpAddMetadata: the basic and extended
fields), ``app_proto``, then ``fileinfo``. A request body's record goes client
to server, a response body's server to client. A file still open when its
transaction is logged was cut, and is TRUNCATED. Files are not stored
(``stored`` is false). Hashes are there with ``eve-log.files.force-hash``
(Suricata's ``force-hash``), as Suricata finalises them (util-file.c
FileCloseFilePtr): ``md5`` and ``sha1`` of a CLOSED file only, ``sha256`` of a
CLOSED or TRUNCATED one; none when the file has gaps (Suricata drops the hashes
of a file with gaps; its sha256 of the bytes around the gap is not computed here,
as nothing after a gap is decoded).
"""

from __future__ import annotations

from mirrorwatch.core.applayer.common import string_from_bytes
from mirrorwatch.core.applayer.http import logger as http_log
from mirrorwatch.core.applayer.http.files import (
    STATE_CLOSED,
    STATE_OPEN,
    STATE_TRUNCATED,
)

FILEINFO = "fileinfo"
HTTP = "http"


# hash -> the file states whose record carries it (EveFileInfo: md5, sha1 beside CLOSED; sha256 after)
HASH_STATES = {"md5": (STATE_CLOSED,), "sha1": (STATE_CLOSED,), "sha256": (STATE_CLOSED, STATE_TRUNCATED)}
HASH_ORDER = ("md5", "sha1", "sha256")


def fileinfo_object(file, tx_id: int) -> dict:
    """The ``fileinfo`` object of one file (EveFileInfo)."""
    state = STATE_TRUNCATED if file.state == STATE_OPEN else file.state
    info = {"filename": string_from_bytes(file.name), "gaps": file.gaps, "state": state}
    if file.hashers and not file.gaps:
        digests = {h.name: h for h in file.hashers}
        for name in HASH_ORDER:
            if name in digests and state in HASH_STATES[name]:
                info[name] = digests[name].hexdigest()
    info.update(stored=False, size=file.size, tx_id=tx_id)
    return info


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
