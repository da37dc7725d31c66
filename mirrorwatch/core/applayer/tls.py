"""TLS over one TCP flow: the session transaction and Suricata's EVE tls record.

The record layer (tls_record) hands ClientHello, ServerHello and Certificate
messages to ``TlsState``, which fills the flow's single transaction (as
Suricata, one transaction per flow): versions, SNI, JA3/JA3S/JA4, the
server's certificate chain and its first certificate's fields. Encrypted
data is followed and counted, not parsed. A record header Suricata rejects
makes the parser give up (``failed``); a gap inside a record that is skipped
anyway is absorbed, any other gap stops that direction.
"""

from __future__ import annotations


from mirrorwatch.core.applayer import ja
from mirrorwatch.core.applayer.common import (
    PROGRESS_BODY,
    PROGRESS_COMPLETE,
    PROGRESS_HEADERS,
    PROGRESS_NONE,
    TO_CLIENT,
    TO_SERVER,
    TxTracker,
    string_from_bytes,
)
from mirrorwatch.core.applayer.tls_messages import (
    SSL_VERSION_2,
    TLS_VERSION_12,
    TLS_VERSION_13,
    Hello,
    parse_certificate_message,
    parse_hello,
)
from mirrorwatch.core.applayer.tls_record import (
    DEFAULT_MAX_HANDSHAKE_LEN,
    DirectionReader,
    RecordError,
    TlsStats,
)
from mirrorwatch.core.applayer.x509 import CertInfo

HS_CLIENT_HELLO = 1
HS_SERVER_HELLO = 2
HS_CERTIFICATE = 11

# Progress of each side on the common scale: its hello is read (SNI, JA3, JA4 / JA3S),
# its certificate is read, and complete once nothing more is in cleartext (the side
# encrypts: ChangeCipherSpec or application data; or it closed, or was given up).
# Both sides complete is Suricata's "handshake done", when it logs the session.
TLS_PROGRESS_HELLO = PROGRESS_HEADERS
TLS_PROGRESS_CERT = PROGRESS_BODY

# SSLVersionToString (app-layer-ssl.c).
VERSION_NAMES = {
    0x0000: "UNDETERMINED", SSL_VERSION_2: "SSLv2", 0x0300: "SSLv3", 0x0301: "TLSv1",
    0x0302: "TLS 1.1", TLS_VERSION_12: "TLS 1.2", TLS_VERSION_13: "TLS 1.3",
    0x7F01: "TLS 1.3 draft-<16", 0xFB14: "TLS 1.3 draft-20-fb", 0xFB15: "TLS 1.3 draft-21-fb",
    0xFB16: "TLS 1.3 draft-22-fb", 0xFB17: "TLS 1.3 draft-23-fb", 0xFB1A: "TLS 1.3 draft-26-fb",
    **{0x7F00 + n: f"TLS 1.3 draft-{n}" for n in range(16, 29)},
}


def version_name(version: int) -> str:
    return VERSION_NAMES.get(version, f"0x{version:04x}")


class TlsTransaction:
    """The TLS session of one flow as the rules and EVE see it."""

    __slots__ = (
        "certs",
        "client_cert",
        "client_certs",
        "client_hello",
        "client_version",
        "ja3_hash",
        "ja3_string",
        "ja3s_hash",
        "ja3s_string",
        "ja4",
        "log_without_cert",
        "progress_tc",
        "progress_ts",
        "server_cert",
        "server_hello",
        "session_resumed",
        "sni",
        "tx_id",
        "version_num",
    )

    def __init__(self) -> None:
        self.tx_id = 0
        self.progress_ts = PROGRESS_NONE
        self.progress_tc = PROGRESS_NONE
        self.client_version = 0
        self.version_num = 0
        self.client_hello: Hello | None = None
        self.server_hello: Hello | None = None
        self.sni: bytes | None = None
        self.ja3_string: bytes | None = None
        self.ja3_hash: bytes | None = None
        self.ja3s_string: bytes | None = None
        self.ja3s_hash: bytes | None = None
        self.ja4: bytes | None = None
        self.certs: list[bytes] = []
        self.server_cert: CertInfo | None = None
        self.client_certs: list[bytes] = []
        self.client_cert: CertInfo | None = None
        self.session_resumed = False
        self.log_without_cert = False

    @property
    def version(self) -> str:
        """The server side's version as Suricata names it ("TLS 1.2", "TLSv1", ...)."""
        return version_name(self.version_num)

    def _cert_buffer(self, name: str) -> bytes | None:
        return None if self.server_cert is None else getattr(self.server_cert, name).encode()

    @property
    def subject(self) -> bytes | None:
        return self._cert_buffer("subject")

    @property
    def issuer(self) -> bytes | None:
        return self._cert_buffer("issuer")

    @property
    def serial(self) -> bytes | None:
        return self._cert_buffer("serial")

    @property
    def fingerprint(self) -> bytes | None:
        return self._cert_buffer("fingerprint")

    @property
    def notbefore(self) -> str | None:
        return None if self.server_cert is None else self.server_cert.notbefore

    @property
    def notafter(self) -> str | None:
        return None if self.server_cert is None else self.server_cert.notafter


class TlsState:
    """Per-flow TLS parser with the stream interface (feed/gap/close/updated/pop_done)."""

    def __init__(self, max_handshake_len: int = DEFAULT_MAX_HANDSHAKE_LEN) -> None:
        self.stats = TlsStats()
        self.failed = False
        self.tx = TlsTransaction()
        self._tracker = TxTracker()
        self._tracker.next_id()
        self._tracker.add(self.tx)
        self.stats.txs = 1
        self._readers = tuple(
            DirectionReader(self.stats, max_handshake_len,
                            frozenset({HS_CLIENT_HELLO, HS_CERTIFICATE}) if d == TO_SERVER
                            else frozenset({HS_SERVER_HELLO, HS_CERTIFICATE}))
            for d in (TO_SERVER, TO_CLIENT))
        self._stopped = [False, False]

    @property
    def txs(self) -> list:
        return self._tracker.txs

    def updated(self) -> list:
        return self._tracker.updated()

    def pop_done(self) -> list:
        return self._tracker.pop_done()

    @property
    def memuse(self) -> int:
        """Bytes held: partial record headers and handshake messages, and the certificates kept."""
        held = sum(len(r.header) + len(r.hs) for r in self._readers)
        return held + sum(len(c) for c in self.tx.certs) + sum(len(c) for c in self.tx.client_certs)

    def feed(self, direction: int, data: bytes | memoryview) -> None:
        if self.failed or self._stopped[direction] or not data:
            return
        reader = self._readers[direction]
        try:
            reader.feed(memoryview(data))
        except RecordError:
            self.failed = True
            self.stats.parse_errors += 1
            self._advance(TO_SERVER, PROGRESS_COMPLETE)
            self._advance(TO_CLIENT, PROGRESS_COMPLETE)
        if reader.messages:
            messages, reader.messages = reader.messages, []
            for msg_type, body in messages:
                self._message(direction, msg_type, body)
        if reader.encrypted:
            # nothing past the first encrypted record is parsed (its handshake is over)
            self._stopped[direction] = True
            self._encrypted(direction)
        version = reader.version
        if version != (self.tx.client_version if direction == TO_SERVER else self.tx.version_num):
            if direction == TO_SERVER:
                self.tx.client_version = version
            else:
                self.tx.version_num = version
            self._tracker.touch(self.tx)

    def gap(self, direction: int, size: int) -> None:
        self.stats.gaps += 1
        if not self._readers[direction].skip_gap(size):
            self._stopped[direction] = True
            self._advance(direction, PROGRESS_COMPLETE)

    def close(self, direction: int) -> None:
        self._advance(direction, PROGRESS_COMPLETE)

    def _advance(self, direction: int, progress: int) -> None:
        """Raise one side's progress; a change is reported by ``updated``."""
        tx = self.tx
        current = tx.progress_ts if direction == TO_SERVER else tx.progress_tc
        if progress <= current:
            return
        if direction == TO_SERVER:
            tx.progress_ts = progress
        else:
            tx.progress_tc = progress
        self._tracker.touch(tx)

    def _encrypted(self, direction: int) -> None:
        self._advance(direction, PROGRESS_COMPLETE)

    def _message(self, direction: int, msg_type: int, body: bytes) -> None:
        if msg_type == HS_CERTIFICATE:
            self._certificate(direction, body)
            return
        hello = parse_hello(body, client=direction == TO_SERVER)
        reader = self._readers[direction]
        reader.hello_seen = True
        reader.version = hello.version or reader.version
        if direction == TO_SERVER:
            self._client_hello(hello)
        else:
            self._server_hello(hello)
        self._tracker.touch(self.tx)
        self._advance(direction, TLS_PROGRESS_HELLO)

    def _client_hello(self, hello: Hello) -> None:
        tx = self.tx
        if tx.client_hello is not None:
            return
        tx.client_hello = hello
        tx.sni = hello.sni
        tx.session_resumed = tx.session_resumed or hello.session_ticket
        ja3 = hello.ja3_string()
        if ja3 is not None:
            tx.ja3_string, tx.ja3_hash = ja3.encode(), ja.md5_hex(ja3).encode()
            tx.ja4 = hello.ja4().encode()

    def _server_hello(self, hello: Hello) -> None:
        tx = self.tx
        offered = tx.client_hello is not None and bool(tx.client_hello.supported_versions)
        selected = hello.supported_versions and hello.version > TLS_VERSION_12
        if hello.draft_layout or (offered and selected):
            tx.log_without_cert = True
        client_session = tx.client_hello.session_id if tx.client_hello else b""
        if hello.session_id and hello.session_id == client_session:
            tx.session_resumed = True
        if tx.server_hello is not None:
            return
        tx.server_hello = hello
        ja3s = hello.ja3_string()
        if ja3s is not None:
            tx.ja3s_string, tx.ja3s_hash = ja3s.encode(), ja.md5_hex(ja3s).encode()

    def _certificate(self, direction: int, body: bytes) -> None:
        tx = self.tx
        if direction == TO_CLIENT and not tx.certs:
            tx.certs, tx.server_cert = parse_certificate_message(body)
        elif direction == TO_SERVER and not tx.client_certs:
            tx.client_certs, tx.client_cert = parse_certificate_message(body)
        else:
            return
        self._tracker.touch(tx)
        self._advance(direction, TLS_PROGRESS_CERT)


# --- EVE -------------------------------------------------------------------

def _client_cert_fields(cert: CertInfo) -> dict:
    """JsonTlsLogClientCert's order."""
    return {"subject": cert.subject, "issuerdn": cert.issuer, "fingerprint": cert.fingerprint,
            "serial": cert.serial, "notbefore": cert.notbefore, "notafter": cert.notafter}


def eve_ready(tx: TlsTransaction) -> bool:
    """Suricata's JsonTlsLogger condition: a server certificate, or TLS 1.3 (no cleartext cert)."""
    return tx.server_cert is not None or tx.log_without_cert


def eve_record(tx: TlsTransaction) -> dict:
    """The EVE ``tls`` object in Suricata's extended format, field order kept."""
    out: dict = {}
    cert = tx.server_cert
    if cert is not None:
        out["subject"] = cert.subject
        out["issuerdn"] = cert.issuer
    elif tx.session_resumed and tx.server_hello is not None and not tx.log_without_cert:
        out["session_resumed"] = True
    if cert is not None:
        out["serial"] = cert.serial
        out["fingerprint"] = cert.fingerprint
    if tx.sni is not None:
        out["sni"] = string_from_bytes(tx.sni.split(b"\0", 1)[0])
    out["version"] = tx.version
    if cert is not None:
        out["notbefore"] = cert.notbefore
        out["notafter"] = cert.notafter
    if tx.ja3_hash is not None:
        out["ja3"] = {"hash": tx.ja3_hash.decode(), "string": tx.ja3_string.decode()}
    if tx.ja3s_hash is not None:
        out["ja3s"] = {"hash": tx.ja3s_hash.decode(), "string": tx.ja3s_string.decode()}
    if tx.ja4 is not None:
        out["ja4"] = tx.ja4.decode()
    if tx.client_cert is not None:
        out["client"] = _client_cert_fields(tx.client_cert)
    return out
