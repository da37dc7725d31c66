"""The application-layer vocabulary of the rule language, as tables.

- ``APP_PROTOCOLS``: header protocols with application-layer support here
  (Suricata name -> canonical name, transports); ``OTHER_APP_PROTOCOLS`` are
  Suricata's others (reported as ``unsupported protocol``).
- ``BUFFERS``: sticky buffers by canonical Suricata keyword name, with the
  application protocol they belong to and the direction(s) they exist in;
  ``STICKY``: every keyword spelling (``http.uri``, ``http_accept``,
  ``dns_query``...) -> canonical name; ``MODIFIERS``: the legacy content
  modifiers (``content:"x"; http_uri;``) -> canonical name.
- ``TRANSFORMS``: transform keywords that take no value; ``xor`` takes a key.

Directions: 'to_server', 'to_client' or 'both' (Suricata registers the
buffer's inspection engines for those directions).  Suricata derives a rule's
direction from its buffers and refuses a rule that mixes a to_server-only and
a to_client-only buffer, or whose flow direction contradicts them.
"""

from __future__ import annotations

from dataclasses import dataclass

# Suricata protocol name in the header -> (canonical name, transports)
APP_PROTOCOLS: dict[str, tuple[str, tuple[str, ...]]] = {
    "http": ("http", ("tcp",)),
    "http1": ("http", ("tcp",)),
    "dns": ("dns", ("tcp", "udp")),
    "tls": ("tls", ("tcp",)),
    "ssl": ("tls", ("tcp",)),
    "ssh": ("ssh", ("tcp",)),
    "smtp": ("smtp", ("tcp",)),
    "ftp": ("ftp", ("tcp",)),
    "smb": ("smb", ("tcp",)),
    "dcerpc": ("dcerpc", ("tcp", "udp")),
}
# Suricata's other application-layer protocol names (no support here)
OTHER_APP_PROTOCOLS = frozenset((
    "http2", "ftp-data", "imap", "pop3", "enip", "cip", "dnp3", "modbus", "nfs", "ntp", "tftp", "ikev2",
    "ike", "krb5", "dhcp", "snmp", "sip", "rfb", "mqtt", "rdp", "quic", "pgsql", "telnet", "websocket",
    "ldap", "bittorrent-dht", "template", "http-any", "doh2", "msn", "irc", "jabber", "nntp", "mdns",
    "ssdp", "smtp-starttls", "sctp", "arp", "ppp",
))
# names app-layer-protocol accepts besides the protocols
APP_PROTO_STATES = frozenset(("unknown", "failed"))

TS, TC, BOTH = "to_server", "to_client", "both"


@dataclass(frozen=True)
class Buffer:
    name: str  # canonical keyword name, e.g. 'http.uri'
    app_proto: str | None  # None: several protocols (file.data)
    direction: str  # TS | TC | BOTH


def _table(*rows: tuple[str, str | None, str, tuple[str, ...]]) -> tuple[dict, dict]:
    buffers: dict[str, Buffer] = {}
    sticky: dict[str, str] = {}
    for name, proto, direction, aliases in rows:
        buffers[name] = Buffer(name, proto, direction)
        for spelling in (name,) + aliases:
            sticky[spelling] = name
    return buffers, sticky


BUFFERS, STICKY = _table(
    # name, app proto, direction, other sticky spellings (Suricata aliases)
    ("http.uri", "http", TS, ("http.uri.normalized",)),
    ("http.uri.raw", "http", TS, ()),
    ("http.method", "http", TS, ()),
    ("http.host", "http", TS, ()),
    ("http.host.raw", "http", TS, ()),
    ("http.user_agent", "http", TS, ()),
    ("http.header", "http", BOTH, ()),
    ("http.header.raw", "http", BOTH, ()),
    ("http.header_names", "http", BOTH, ("http_header_names",)),
    ("http.cookie", "http", BOTH, ()),
    ("http.referer", "http", TS, ("http_referer",)),
    ("http.content_type", "http", BOTH, ("http_content_type",)),
    ("http.content_len", "http", BOTH, ("http_content_len",)),
    ("http.accept", "http", TS, ("http_accept",)),
    ("http.accept_enc", "http", TS, ("http_accept_enc",)),
    ("http.accept_lang", "http", TS, ("http_accept_lang",)),
    ("http.connection", "http", BOTH, ("http_connection",)),
    ("http.start", "http", BOTH, ("http_start",)),
    ("http.request_line", "http", TS, ("http_request_line",)),
    ("http.response_line", "http", TC, ("http_response_line",)),
    ("http.protocol", "http", BOTH, ("http_protocol",)),
    ("http.request_body", "http", TS, ()),
    ("http.response_body", "http", TC, ()),
    ("http.stat_code", "http", TC, ()),
    ("http.stat_msg", "http", TC, ()),
    ("http.server", "http", TC, ()),
    ("http.location", "http", TC, ()),
    ("file.data", None, BOTH, ("file_data",)),
    ("dns.query", "dns", TS, ("dns_query",)),
    ("tls.sni", "tls", TS, ("tls_sni",)),
    ("tls.cert_subject", "tls", BOTH, ("tls_cert_subject",)),
    ("tls.cert_issuer", "tls", BOTH, ("tls_cert_issuer",)),
    ("tls.cert_serial", "tls", BOTH, ("tls_cert_serial",)),
    ("tls.cert_fingerprint", "tls", BOTH, ("tls_cert_fingerprint",)),
    ("tls.certs", "tls", BOTH, ()),
    ("ja3.hash", "tls", TS, ("ja3_hash",)),
    ("ja3.string", "tls", TS, ("ja3_string",)),
    ("ja3s.hash", "tls", TC, ()),
    ("ja3s.string", "tls", TC, ()),
    ("ja4.hash", "tls", TS, ("ja4_hash",)),
    ("ssh.proto", "ssh", BOTH, ("ssh_proto",)),
    ("ssh.software", "ssh", BOTH, ("ssh_software",)),
)

# legacy content modifiers: they move the preceding content into the buffer
MODIFIERS = {
    "http_uri": "http.uri", "http_raw_uri": "http.uri.raw", "http_method": "http.method",
    "http_host": "http.host", "http_raw_host": "http.host.raw", "http_user_agent": "http.user_agent",
    "http_header": "http.header", "http_raw_header": "http.header.raw", "http_cookie": "http.cookie",
    "http_client_body": "http.request_body", "http_server_body": "http.response_body",
    "http_stat_code": "http.stat_code", "http_stat_msg": "http.stat_msg",
}

# one Suricata list under two names: http.response_body (and http_server_body)
# inspect Suricata's "file_data" list
SAME_LIST = {"http.response_body": "file.data"}


def same_list(a: str | None, b: str | None) -> bool:
    return SAME_LIST.get(a, a) == SAME_LIST.get(b, b)


# protocols whose parsers hand files to file.data (Suricata's file-capable parsers)
FILE_PROTOCOLS = frozenset(("http", "smtp", "smb", "ftp"))

# transforms without a value (Suricata's transform keywords); 'xor' takes a hex key
TRANSFORMS = frozenset((
    "dotprefix", "to_lowercase", "to_uppercase", "strip_whitespace", "compress_whitespace", "url_decode",
    "to_md5", "to_sha1", "to_sha256", "header_lowercase", "strip_pseudo_headers",
))
XOR_TRANSFORM = "xor"
