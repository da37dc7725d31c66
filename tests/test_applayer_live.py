"""The application layer on real traffic: real clients and servers in network namespaces, watched by
``mirrorwatch listen`` on the mirror port (tests/netlab.py), as an operator runs it.

- HTTP: curl against Python's http.server (a page and a 404) and against a small HTTP/1.1 server
  of this file that answers, on one kept-alive connection, a gzip-compressed body, a chunked body
  and a gzip-compressed chunked body (curl --compressed decodes them: the server is right);
- TLS: openssl s_server with a certificate made here by ``openssl req``, and openssl s_client
  with SNI (-servername), once in TLS 1.2 (the certificate is in clear) and once in TLS 1.3;
- DNS: dig against dnsmasq, over UDP and over TCP.

The rules pin each buffer's exact content (``bsize``), so an alert says what the buffer held;
markers that exist only once a body is de-chunked or decompressed prove both, and transport
rules on the same markers (which must stay silent) prove they are not on the wire.  The EVE
records are compared with what the clients report (curl's status and sizes, dig's id and
answer), with ``openssl x509`` on the certificate, and with tshark's dissection of a capture
of the same traffic (JA3, JA3S; JA4 computed here from tshark's ClientHello fields).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
import subprocess
from collections import Counter
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import needs_privilege, netns_available
from netlab import PYTHON, NetLab, capture, dns_server, self_signed_cert, tls_client, tls_server
from test_applayer_oracle import tshark_rows
from test_live import Listen

pytestmark = [pytest.mark.slow, pytest.mark.privileged]

TOOLS = {"curl": "curl", "openssl": "openssl", "dig": "bind9-dnsutils", "dnsmasq": "dnsmasq-base",
         "tcpdump": "tcpdump", "tshark": "tshark"}

WEB_HOST, TLS_HOST = "web.mirrorwatch.test", "tls.mirrorwatch.test"
EVIL_NAME, EVIL_ADDR = "evil.mirrorwatch.test", "192.0.2.66"
USER_AGENT = "MirrorwatchProbe/1.0"
PAGE_PORT, APP_PORT, TLS_PORT = 8000, 8081, 4433
PAGE = b"<html><body>mirrorwatch probe page</body></html>\n"
CERT_SUBJECT = "C=XX, O=Mirrorwatch Test, CN=" + TLS_HOST
CERT_SERIAL = 0x9C0FFEE0DDBA11AD  # top bit set: DER pads it with a 00 byte, which Suricata prints

# the app server's bodies: each marker is only readable once the body is decoded
GZIP_TEXT = b"<html>" + b"compressible filler " * 40 + b"MW-GZIP-MARKER" + b" more filler" * 20 + b"</html>"
CHUNKS = [b"first piece of the chunked body, MW-CHU", b"NK-MARKER, split across two chunks", b" and the end\n"]
GZCHUNK_TEXT = b"gzip inside chunks " * 30 + b"MW-GZCHUNK-MARKER" + b" trailing text" * 30
GZCHUNK_WIRE = gzip.compress(GZCHUNK_TEXT, mtime=0)
GZCHUNK_PIECE = 64  # bytes of each chunk of the gzip-compressed chunked body


def _routes() -> dict:
    """path -> {"headers": [[name, value]], "body": bytes} or {"headers": ..., "chunks": [bytes]}."""
    gz = gzip.compress(GZIP_TEXT, mtime=0)
    pieces = [GZCHUNK_WIRE[i:i + GZCHUNK_PIECE] for i in range(0, len(GZCHUNK_WIRE), GZCHUNK_PIECE)]
    return {
        "/gzip": {"headers": [["Content-Type", "text/html"], ["Content-Encoding", "gzip"]], "body": gz},
        "/chunked": {"headers": [["Content-Type", "text/plain"]], "chunks": CHUNKS},
        "/gzip-chunked": {"headers": [["Content-Type", "text/plain"], ["Content-Encoding", "gzip"]],
                          "chunks": pieces},
    }


# An HTTP/1.1 server (keep-alive) on argv[1]:argv[3]; argv[2] is the JSON of _routes() (bytes as
# latin-1): a body is sent with Content-Length, each of "chunks" framed as one chunk.
_APP_SERVER = r"""
import http.server, json, sys
routes = json.loads(sys.argv[2])
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        route = routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        self.send_response(200)
        for name, value in route["headers"]:
            self.send_header(name, value)
        if "chunks" in route:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in route["chunks"]:
                data = chunk.encode("latin-1")
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.write(b"0\r\n\r\n")
        else:
            body = route["body"].encode("latin-1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[3])), Handler).serve_forever()
"""


def _exact(buffer: str, text: str) -> str:
    """Rule options that match only when ``buffer`` holds exactly ``text``."""
    return f'{buffer}; content:"{text}"; bsize:{len(text)};'


def _rules(ja3_hash: str, fingerprint: str) -> dict[int, tuple[str, str]]:
    """sid -> (header, options)."""
    return {
        1: ("http", _exact("http.uri", "/index.html")),
        2: ("http", _exact("http.host", WEB_HOST)),
        3: ("http", _exact("http.user_agent", USER_AGENT)),
        4: ("http", "flow:to_client; " + _exact("http.stat_code", "404")),
        5: ("http", 'flow:to_client; file.data; content:"MW-GZIP-MARKER";'),
        6: ("http", 'flow:to_client; file.data; content:"MW-CHUNK-MARKER";'),
        7: ("http", 'flow:to_client; file.data; content:"MW-GZCHUNK-MARKER";'),
        8: ("tcp", 'content:"MW-GZIP-MARKER";'),  # silent: compressed on the wire
        9: ("tcp", 'content:"MW-CHUNK-MARKER";'),  # silent: cut by the chunk framing on the wire
        10: ("tcp", 'content:"MW-GZCHUNK-MARKER";'),
        11: ("dns", _exact("dns.query", EVIL_NAME)),
        12: ("tls", _exact("tls.sni", TLS_HOST)),
        13: ("tls", _exact("ja3.hash", ja3_hash)),
        14: ("tls", _exact("tls.cert_subject", CERT_SUBJECT)),
        15: ("tls", _exact("tls.cert_fingerprint", fingerprint)),
    }


# alerts per sid: one per transaction whose buffer holds the text (5 HTTP requests carry the
# host and user agent; DNS over UDP and TCP; TLS 1.2 and 1.3 carry the SNI; only the TLS 1.2
# handshake comes from the client whose JA3 the rule names, and only there is the certificate clear)
EXPECTED_ALERTS = {1: 1, 2: 5, 3: 5, 4: 1, 5: 1, 6: 1, 7: 1, 11: 2, 12: 2, 13: 1, 14: 1, 15: 1}


def _write_rules(path: Path, rules: dict[int, tuple[str, str]]) -> None:
    path.write_text("".join(f'alert {proto} any any -> any any (msg:"live {sid}"; {opts} sid:{sid}; rev:1;)\n'
                            for sid, (proto, opts) in rules.items()))


# -- oracles -----------------------------------------------------------------------

def openssl_cert(cert: Path) -> dict:
    """The certificate's fields as ``openssl x509`` prints them, in Suricata's EVE notation."""
    out = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-fingerprint", "-sha1", "-serial",
                          "-subject", "-issuer", "-dates", "-nameopt", "sep_comma_plus_space,sname"],
                         capture_output=True, text=True, check=True).stdout
    f = dict(line.split("=", 1) for line in out.splitlines())
    raw_serial = bytes.fromhex(f["serial"].rjust(len(f["serial"]) + len(f["serial"]) % 2, "0"))
    if raw_serial[0] & 0x80:  # DER INTEGER content: a 00 byte keeps it positive; Suricata prints the raw bytes
        raw_serial = b"\0" + raw_serial
    when = "%b %d %H:%M:%S %Y GMT"
    return {"subject": f["subject"], "issuerdn": f["issuer"],
            "serial": ":".join(f"{b:02X}" for b in raw_serial),
            "fingerprint": f["sha1 Fingerprint"].lower(),
            "notbefore": datetime.strptime(" ".join(f["notBefore"].split()), when).isoformat(),
            "notafter": datetime.strptime(" ".join(f["notAfter"].split()), when).isoformat()}


def tshark_fields(pcap: Path, display_filter: str, fields: list[str]) -> list[dict[str, list[str]]]:
    """Per frame tshark shows through ``display_filter``: {field: its values}."""
    return [dict(zip(fields, row, strict=True)) for row in tshark_rows(pcap, display_filter, fields)]


_HELLO = ["tcp.srcport", "tls.handshake.ja3", "tls.handshake.ja3_full", "tls.handshake.version",
          "tls.handshake.ciphersuite", "tls.handshake.extension.type", "tls.handshake.extensions.supported_version",
          "tls.handshake.sig_hash_alg", "tls.handshake.extensions_alpn_str", "tls.handshake.extensions_server_name"]
_HELLO_NUMBERS = _HELLO[3:8]
GREASE = {0x0A0A + 0x1010 * i for i in range(16)}
EXT_SNI, EXT_ALPN, EXT_SIGALGS_CERT = 0, 16, 50
JA4_VERSIONS = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3"}


def ja4_of(hello: dict[str, list[str]]) -> str:
    """FoxIO's JA4 of a ClientHello over TCP, from tshark's fields (tshark 4.0 has no JA4 of its own)."""
    ints = {k: [int(v, 0) for v in hello[k]] for k in _HELLO_NUMBERS}
    exts = [e for e in ints["tls.handshake.extension.type"] if e not in GREASE]
    # tshark lists signature_algorithms_cert's values in the same field: this oracle cannot tell them apart
    assert EXT_SIGALGS_CERT not in exts, "ClientHello with signature_algorithms_cert: extend the JA4 oracle"
    ciphers = [c for c in ints["tls.handshake.ciphersuite"] if c not in GREASE]
    versions = [v for v in ints["tls.handshake.extensions.supported_version"] if v not in GREASE]
    version = max(versions) if versions else ints["tls.handshake.version"][0]
    alpns = hello["tls.handshake.extensions_alpn_str"]
    alpn_code = alpns[0][0] + alpns[0][-1] if alpns else "00"  # openssl's ALPN values are alphanumeric at both ends
    sni = "d" if EXT_SNI in exts else "i"
    a = f"t{JA4_VERSIONS[version]}{sni}{len(ciphers):02d}{len(exts):02d}{alpn_code}"
    b = ",".join(f"{c:04x}" for c in sorted(ciphers))
    c = (",".join(f"{e:04x}" for e in sorted(e for e in exts if e not in (EXT_SNI, EXT_ALPN))) + "_"
         + ",".join(f"{s:04x}" for s in ints["tls.handshake.sig_hash_alg"] if s not in GREASE))
    return f"{a}_{hashlib.sha256(b.encode()).hexdigest()[:12]}_{hashlib.sha256(c.encode()).hexdigest()[:12]}"


def dig(lab: NetLab, *options: str) -> dict:
    """One dig query from the client; its message id and its answer records (name, ttl, type, data)."""
    out = lab.run(lab.client, "dig", f"@{lab.SERVER4}", EVIL_NAME, "A", "+tries=1", "+time=5", *options).stdout
    answers = re.search(r";; ANSWER SECTION:\n(.*?)\n\n", out, re.DOTALL)
    return {"id": int(re.search(r"status: NOERROR, id: (\d+)", out).group(1)),
            "answers": [line.split() for line in answers.group(1).splitlines()] if answers else []}


def curl(lab: NetLab, folder: Path, port: int, *paths: str, compressed: bool = False) -> list[tuple]:
    """curl from the client (one connection for all ``paths`` when the server keeps it alive);
    per path: (status, body bytes received, the body as curl wrote it: decoded with ``compressed``)."""
    outs = [folder / f"curl-{port}-{i}" for i in range(len(paths))]
    r = lab.run(lab.client, "curl", "-sS", "-A", USER_AGENT, "--resolve", f"{WEB_HOST}:{port}:{lab.SERVER4}",
                *(["--compressed"] if compressed else []), "-w", "%{http_code} %{size_download}\n",
                *[a for o in outs for a in ("-o", str(o))], *[f"http://{WEB_HOST}:{port}{p}" for p in paths])
    codes = [line.split() for line in r.stdout.splitlines()]
    return [(int(code), int(size), out.read_bytes()) for (code, size), out in zip(codes, outs, strict=True)]


# -- the scenario, run once for the module ---------------------------------------------

def _require_tools() -> None:
    missing = [f"{tool} (Debian package {pkg})" for tool, pkg in TOOLS.items()
               if not shutil.which(tool) and not Path("/usr/sbin", tool).exists()]
    if missing:
        pytest.fail(f"not installed: {', '.join(missing)}; `make test` installs them", pytrace=False)


def _preflight_ja3(lab: NetLab, tmp: Path) -> str:
    """The JA3 of the TLS 1.2 s_client below, by tshark, on a capture of one handshake before the run."""
    pcap = tmp / "preflight.pcap"
    cap = capture(lab, lab.client, "eth0", pcap, "tcp", "port", str(TLS_PORT))
    tls_client(lab, lab.SERVER4, TLS_PORT, TLS_HOST, "-tls1_2")
    lab.stop(cap)
    hashes = [h["tls.handshake.ja3"][0] for h in tshark_fields(pcap, "tls.handshake.type == 1", ["tls.handshake.ja3"])]
    assert len(hashes) == 1, hashes
    return hashes[0]


def _dns_answers(evs: list[dict], transport: str) -> list[dict]:
    return [e for e in evs if e["event_type"] == "dns" and e["dns"]["type"] == "response" and e["proto"] == transport]


def _tcp_records_in(evs: list[dict]) -> bool:
    """The records of the TCP sessions, the last of which are logged when the sessions end."""
    kinds = Counter(e["event_type"] for e in evs)
    return kinds["http"] >= 5 and kinds["tls"] >= 2 and bool(_dns_answers(evs, "TCP"))


def _traffic(lab: NetLab, folder: Path) -> SimpleNamespace:
    out = SimpleNamespace()
    out.page = curl(lab, folder, PAGE_PORT, "/index.html", "/missing.html")
    out.app = curl(lab, folder, APP_PORT, "/gzip", "/chunked", "/gzip-chunked", compressed=True)
    out.dns_udp = dig(lab)
    out.dns_tcp = dig(lab, "+tcp")
    out.tls12 = tls_client(lab, lab.SERVER4, TLS_PORT, TLS_HOST, "-tls1_2")
    out.tls13 = tls_client(lab, lab.SERVER4, TLS_PORT, TLS_HOST, "-tls1_3", "-alpn", "h2,http/1.1")
    return out


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    why = netns_available()
    if why:
        needs_privilege(why)
    _require_tools()
    tmp = tmp_path_factory.mktemp("applayer_live")
    www = tmp / "www"
    www.mkdir()
    (www / "index.html").write_bytes(PAGE)
    cert, key = self_signed_cert(tmp, "/C=XX/O=Mirrorwatch Test/CN=" + TLS_HOST, CERT_SERIAL)
    want_cert = openssl_cert(cert)
    with NetLab() as lab:
        lab.popen(lab.server, PYTHON, "-m", "http.server", "--bind", lab.SERVER4, "--directory", str(www),
                  str(PAGE_PORT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lab.python(lab.server, _APP_SERVER, lab.SERVER4, json.dumps(_routes(), default=lambda b: b.decode("latin-1")),
                   str(APP_PORT), stdout=subprocess.DEVNULL)
        tls_server(lab, TLS_PORT, cert, key)
        dns_server(lab, {EVIL_NAME: EVIL_ADDR})
        lab.wait_port(lab.server, PAGE_PORT)
        lab.wait_port(lab.server, APP_PORT)
        ja3 = _preflight_ja3(lab, tmp)
        rules = _rules(ja3, want_cert["fingerprint"])
        _write_rules(tmp / "live.rules", rules)
        pcap = tmp / "mirror.pcap"
        cap = capture(lab, lab.sensor, lab.monitor, pcap)
        # DNS records in Suricata 8's version 3 (one record per message, its queries and answers), the
        # format these checks read; the default version 2 is checked on the corpus (test_applayer_oracle)
        mw = Listen(lab, tmp, "--rules", str(tmp / "live.rules"), "--set", "eve-log.dns.version=3")
        out = _traffic(lab, tmp)
        before_stop = mw.wait_events(_tcp_records_in, timeout=30)
        assert mw.stop() == 0, mw.stderr()
        lab.stop(cap)
        events = mw.events()
    return SimpleNamespace(events=events, before_stop=before_stop, pcap=pcap, ja3=ja3, cert=want_cert, out=out,
                           rules=rules)


def _of(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["event_type"] == kind]


# -- what the sensor saw -----------------------------------------------------------------

def test_clients_got_what_the_servers_sent(live):
    """The traffic is what the assertions below assume (curl decoded the bodies itself)."""
    (page_status, page_size, page), (missing_status, _, _) = live.out.page
    assert (page_status, page_size, page, missing_status) == (200, len(PAGE), PAGE, 404)
    assert [(status, body) for status, _, body in live.out.app] == [
        (200, GZIP_TEXT), (200, b"".join(CHUNKS)), (200, GZCHUNK_TEXT)]
    assert b"MW-GZCHUNK-MARKER" not in GZCHUNK_WIRE and b"MW-GZIP-MARKER" not in _routes()["/gzip"]["body"]
    assert live.out.dns_udp["answers"] == [[EVIL_NAME + ".", "0", "IN", "A", EVIL_ADDR]]
    assert "Protocol  : TLSv1.2" in live.out.tls12 and "TLSv1.3" in live.out.tls13


def test_buffers_alert_once_per_transaction(live):
    alerts = _of(live.events, "alert")
    assert Counter(a["alert"]["signature_id"] for a in alerts) == Counter(EXPECTED_ALERTS)
    for a in alerts:
        proto = live.rules[a["alert"]["signature_id"]][0]
        assert a["app_proto"] == proto
        if proto == "http":
            assert a["http"]["hostname"] == WEB_HOST and a["http"]["http_user_agent"] == USER_AGENT
        elif proto == "tls":
            assert a["tls"]["sni"] == TLS_HOST
    # the three bodies of the kept-alive connection are three transactions of one flow
    app = sorted((a["tx_id"], a["alert"]["signature_id"]) for a in alerts if a["alert"]["signature_id"] in (5, 6, 7))
    assert app == [(0, 5), (1, 6), (2, 7)]
    assert len({(a["src_port"], a["dest_port"]) for a in alerts if a["alert"]["signature_id"] in (5, 6, 7)}) == 1


def test_dns_alerts_carry_suricatas_dns_object(live):
    """Suricata 8's alert "dns" object: the version 3 record of the message the rule matched (the query)."""
    for a in _of(live.events, "alert"):
        if a["app_proto"] == "dns":
            assert (a["dns"]["version"], a["dns"]["type"], a["dns"]["tx_id"]) == (3, "request", a["tx_id"])
            assert [(q["rrname"], q["rrtype"]) for q in a["dns"]["queries"]] == [(EVIL_NAME, "A")]


def test_http_records(live):
    recs = {(e["dest_port"], e["http"]["url"]): e for e in _of(live.events, "http")}
    assert sorted(recs) == sorted([(PAGE_PORT, "/index.html"), (PAGE_PORT, "/missing.html"),
                                   (APP_PORT, "/gzip"), (APP_PORT, "/chunked"), (APP_PORT, "/gzip-chunked")])
    for (port, url), e in recs.items():
        h = e["http"]
        assert (h["hostname"], h["http_port"], h["http_user_agent"], h["http_method"], h["protocol"]) == \
            (WEB_HOST, port, USER_AGENT, "GET", "HTTP/1.1"), h
        assert (e["src_ip"], e["dest_ip"]) == (NetLab.CLIENT4, NetLab.SERVER4)
    _, (missing_status, missing_size, _) = live.out.page
    # "length": the body's bytes as they came, de-chunked but not decompressed (libhtp's response_message_len)
    assert {u: (e["http"]["status"], e["http"].get("http_content_type")) for (_, u), e in recs.items()} == {
        "/index.html": (200, "text/html"), "/missing.html": (missing_status, "text/html"),
        "/gzip": (200, "text/html"), "/chunked": (200, "text/plain"), "/gzip-chunked": (200, "text/plain")}
    assert recs[(PAGE_PORT, "/index.html")]["http"]["length"] == len(PAGE)
    assert recs[(PAGE_PORT, "/missing.html")]["http"]["length"] == missing_size
    assert recs[(APP_PORT, "/gzip")]["http"]["length"] == len(_routes()["/gzip"]["body"])
    assert [recs[(APP_PORT, u)]["tx_id"] for u in ("/gzip", "/chunked", "/gzip-chunked")] == [0, 1, 2]


def test_dns_records(live):
    recs = _of(live.events, "dns")
    for client, transport in ((live.out.dns_udp, "UDP"), (live.out.dns_tcp, "TCP")):
        mine = [e for e in recs if e["dns"]["id"] == client["id"]]
        # one transaction per message, each logged when its own packet is seen (Suricata 8's EVE dns v3)
        assert [(e["dns"]["type"], e["dns"]["tx_id"]) for e in mine] == [("request", 0), ("response", 1)], \
            (transport, recs)
        assert mine[0]["timestamp"] <= mine[1]["timestamp"]
        query, answer = (e["dns"] for e in mine)
        assert [(q["rrname"], q["rrtype"]) for q in query["queries"]] == [(EVIL_NAME, "A")]
        assert [(q["rrname"], q["rrtype"]) for q in answer["queries"]] == [(EVIL_NAME, "A")]
        assert (query["rcode"], answer["rcode"], answer["qr"]) == ("NOERROR", "NOERROR", True)
        assert [[a["rrname"] + ".", str(a["ttl"]), "IN", a["rrtype"], a["rdata"]] for a in answer["answers"]] == \
            client["answers"]
        assert answer["grouped"] == {"A": [EVIL_ADDR]}
        assert {e["proto"] for e in mine} == {transport}


def test_tls_records_agree_with_openssl_and_tshark(live):
    recs = {e["src_port"]: e["tls"] for e in _of(live.events, "tls")}
    hellos = {int(h["tcp.srcport"][0]): h for h in tshark_fields(live.pcap, "tls.handshake.type == 1", _HELLO)}
    server_hellos = {int(h["tcp.dstport"][0]): h for h in tshark_fields(
        live.pcap, "tls.handshake.type == 2", ["tcp.dstport", "tls.handshake.ja3s", "tls.handshake.ja3s_full"])}
    assert sorted(recs) == sorted(hellos) == sorted(server_hellos) and len(recs) == 2
    versions = {}
    for port, t in recs.items():
        hello, shello = hellos[port], server_hellos[port]
        assert t["sni"] == hello["tls.handshake.extensions_server_name"][0] == TLS_HOST
        assert (t["ja3"]["hash"], t["ja3"]["string"]) == (hello["tls.handshake.ja3"][0],
                                                         hello["tls.handshake.ja3_full"][0])
        assert (t["ja3s"]["hash"], t["ja3s"]["string"]) == (shello["tls.handshake.ja3s"][0],
                                                           shello["tls.handshake.ja3s_full"][0])
        assert t["ja4"] == ja4_of(hello)
        versions[t["version"]] = t
    assert sorted(versions) == ["TLS 1.2", "TLS 1.3"]
    tls12, tls13 = versions["TLS 1.2"], versions["TLS 1.3"]
    assert {k: tls12[k] for k in live.cert} == live.cert
    assert tls12["ja3"]["hash"] == live.ja3  # the same client as the preflight's
    assert not set(live.cert) & set(tls13), "TLS 1.3 encrypts the certificate: no certificate fields"
    assert tls13["ja4"].startswith("t13d") and tls13["ja4"][8:10] == "h2"


def test_dns_over_udp_is_logged_when_seen(live):
    """Suricata logs each DNS message when it is seen; the UDP flow lives on (300 s) and must not hold it."""
    assert _dns_answers(live.before_stop, "UDP"), "the UDP answer was logged only when the sensor stopped"
