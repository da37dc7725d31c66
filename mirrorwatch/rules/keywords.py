"""The keyword table: every keyword the parser evaluates, by family, in one dict.

``TABLE[name] = (handler, flags)``: ``handler(state, Value)`` fills the rule,
``flags`` (``rules.options``) say how the value is written.  Keywords of
Suricata or Snort that are not evaluated here are reported as ``unsupported
keyword 'x'``; any other word is ``unknown keyword 'x'``.
"""

from __future__ import annotations

from . import kw_app, kw_base64, kw_bytes, kw_events, kw_flow, kw_flowint, kw_meta, kw_payload, kw_xbits


def _merge(*families: dict) -> dict:
    table: dict = {}
    for family in families:
        clash = table.keys() & family.keys()
        if clash:
            raise RuntimeError(f"keywords defined twice: {sorted(clash)}")
        table.update(family)
    return table


TABLE = _merge(kw_meta.KEYWORDS, kw_payload.KEYWORDS, kw_bytes.KEYWORDS, kw_flow.KEYWORDS, kw_app.KEYWORDS,
               kw_events.KEYWORDS, kw_xbits.KEYWORDS, kw_flowint.KEYWORDS, kw_base64.KEYWORDS)

# Suricata / Snort 2 keywords not evaluated here (datasets, lua, flowvar,
# other protocols' buffers...): "unsupported keyword"
UNSUPPORTED = frozenset((
    "pkt_data_raw", "asn1", "flowvar", "pktvar",
    "ftpbounce", "app-layer-event", "app-layer-state", "engine-event",
    "stream-event", "dataset", "datarep", "iprep", "geoip", "lua", "luajit", "replace", "requires", "config",
    "bypass", "filestore", "filename", "fileext", "filemagic", "filemd5", "filesha1", "filesha256",
    "filesize", "rpc", "l3_proto", "ipv4-csum", "tcpv4-csum", "tcpv6-csum", "udpv4-csum", "udpv6-csum",
    "icmpv4-csum", "icmpv6-csum", "pcrexform", "luaxform", "from_base64", "subslice", "gunzip",
    "zlib_deflate", "domain", "tld", "entropy", "absent", "frame", "template", "tls_store",
    "dnp3_func", "dnp3_ind", "dnp3_obj", "dnp3_data", "modbus", "enip_command", "cip_service",
    "tls_cert_notbefore", "tls_cert_notafter", "ssh_protoversion", "ssh_softwareversion", "dce_iface",
    "dce_opnum", "dce_stub_data", "krb5_msg_type", "krb5_cname", "krb5_sname", "krb5_err_code",
    "nfs_procedure", "nfs_version", "alert",
    # Snort 2
    "resp", "react", "session", "logto", "activates", "activated_by", "count", "sd_pattern", "file_type",
    "appid", "protected_content", "hash", "length", "cvs", "sip_method", "sip_stat_code", "sip_header",
    "sip_body", "gtp_type", "gtp_info", "gtp_version", "modbus_func", "modbus_unit", "modbus_data",
    "service", "http_raw_cookie", "http_raw_status", "http_encode", "pkt_header",
))
# keyword families of other protocols and of newer buffers (names with a '.' too)
_UNSUPPORTED_PREFIXES = ("http", "tls", "ssl", "dns", "ssh", "smb", "dce", "krb5", "sip", "snmp", "mqtt", "rfb",
                         "quic", "ja3", "ja4", "ike", "nfs", "ftp", "file", "dnp3", "modbus", "enip", "cip",
                         "smtp", "pgsql", "rdp", "websocket", "ldap", "dhcp", "tftp", "gtp", "base64", "to_",
                         "email", "sdp", "bittorrent", "pop3", "imap")


def is_unsupported(name: str) -> bool:
    """A real (Suricata or Snort) keyword that this engine does not evaluate."""
    return name in UNSUPPORTED or "." in name or name.startswith(_UNSUPPORTED_PREFIXES)
