"""TLS: record layer, hellos, certificates, JA3/JA3S/JA4 and EVE, against real stacks.

Handshakes are made by OpenSSL (Python's ssl module over memory BIOs) with
certificates from ``openssl req -x509``; tshark (JA3, JA3S, SNI, hello
fields) and the openssl CLI (subject, issuer, serial, fingerprint, dates)
are the oracles (applayer_oracles), on those handshakes and on every TLS
flow of the corpus; JA4 is recomputed from tshark's hello fields.
"""

from __future__ import annotations

import ssl
import subprocess
from functools import cache
from pathlib import Path

import pytest
from applayer_corpus import TO_CLIENT, TO_SERVER, require_tshark, write_tcp_pcap
from applayer_oracles import (
    cert_oracle,
    corpus_with,
    dissect,
    for_each,
    ja4_oracle,
    openssl,
    tshark_hello_oracle,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from mirrorwatch.core.applayer.tls import TlsState, eve_ready, eve_record, version_name
from mirrorwatch.core.applayer.tls_record import RECORD_MAX_LEN
from mirrorwatch.core.applayer.x509 import INVALID_NAME, format_name, parse_certificate

SUBJECT = "/C=US/O=Google Inc/CN=www.google.com"
SNI = "www.example.org"
@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    if subprocess.run(["openssl", "version"], capture_output=True, check=False).returncode:
        pytest.skip("openssl CLI is not installed")
    out = tmp_path_factory.mktemp("pki")
    made = {}
    for name, subject, serial in (("server", SUBJECT, "0x00ff0102"),
                                  ("client", "/O=Client Org/CN=client+serialNumber=42", "7")):
        key, cert = out / f"{name}.key", out / f"{name}.pem"
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "30", "-subj", subject,
                "-multivalue-rdn", "-set_serial", serial)
        made[name], made[name + "_key"] = cert, key
        der = out / f"{name}.der"
        openssl("x509", "-in", str(cert), "-outform", "DER", "-out", str(der))
        made[name + "_der"] = der
    return made


def handshake(pki, version: ssl.TLSVersion, client_cert: bool = False,
              server_version: ssl.TLSVersion | None = None) -> list[tuple[int, bytes]]:
    """The bytes of a real OpenSSL handshake (and one request/response), in delivery order;
    ``server_version``: the server's highest version when it is not the client's."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(pki["server"], pki["server_key"])
    server.maximum_version = server_version or version
    server.set_alpn_protocols(["h2"])
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    client.maximum_version = version
    client.set_alpn_protocols(["h2", "http/1.1"])
    if client_cert:
        server.verify_mode = ssl.CERT_REQUIRED
        server.load_verify_locations(pki["client"])
        client.load_cert_chain(pki["client"], pki["client_key"])
    bios = [ssl.MemoryBIO() for _ in range(4)]
    ends = (client.wrap_bio(bios[0], bios[1], server_hostname=SNI),
            server.wrap_bio(bios[2], bios[3], server_side=True))
    events = []
    for _ in range(8):
        for end in ends:
            try:
                end.do_handshake()
                end.write(b"ping")
            except ssl.SSLWantReadError:
                pass
        for direction, out, into in ((TO_SERVER, bios[1], bios[2]), (TO_CLIENT, bios[3], bios[0])):
            data = out.read()
            if data:
                events.append((direction, data))
                into.write(data)
    return events


def run(events, state=None) -> TlsState:
    state = state or TlsState()
    for direction, data in events:
        state.feed(direction, data)
    return state


# --- real handshakes -------------------------------------------------------------

def test_tls12_handshake_against_tshark_and_openssl(pki, tmp_path):
    events = handshake(pki, ssl.TLSVersion.TLSv1_2)
    state = run(events)
    tx = state.tx
    der = pki["server_der"].read_bytes()
    assert not state.failed and tx.certs == [der] and tx.sni == SNI.encode()
    assert tx.version == "TLS 1.2" and eve_ready(tx)
    record = eve_record(tx)
    oracle = cert_oracle(der)
    assert {k: record[k] for k in oracle} == oracle
    assert oracle["subject"] == "C=US, O=Google Inc, CN=www.google.com"
    assert oracle["serial"] == "00:FF:01:02"
    require_tshark()
    theirs = tshark_hello_oracle(write_tcp_pcap(tmp_path / "tls12.pcap", events, 443))[0]
    assert theirs["sni"] == record["sni"]
    assert theirs["ja3"] == (record["ja3"]["string"], record["ja3"]["hash"])
    assert theirs["ja3s"] == (record["ja3s"]["string"], record["ja3s"]["hash"])
    assert list(record) == ["subject", "issuerdn", "serial", "fingerprint", "sni", "version",
                            "notbefore", "notafter", "ja3", "ja3s", "ja4"]
    # both sides encrypt after their ChangeCipherSpec: Suricata's "handshake done"
    assert (tx.progress_ts, tx.progress_tc) == (4, 4)
    assert state.pop_done() == [] and state.updated() == [tx] and state.pop_done() == [tx]


def test_tls13_handshake_has_no_cleartext_certificate(pki, tmp_path):
    events = handshake(pki, ssl.TLSVersion.TLSv1_3)
    state = run(events)
    tx = state.tx
    assert tx.version == "TLS 1.3" and tx.certs == [] and tx.log_without_cert and eve_ready(tx)
    assert tx.ja3s_string.startswith(b"771,") and tx.ja4.startswith(b"t13d")
    record = eve_record(tx)
    assert "subject" not in record and record["version"] == "TLS 1.3"
    assert state.stats.encrypted_records > 0
    require_tshark()
    theirs = tshark_hello_oracle(write_tcp_pcap(tmp_path / "tls13.pcap", events, 443))[0]
    assert theirs["ja3s"] == (record["ja3s"]["string"], record["ja3s"]["hash"])
    assert version_name(theirs["version"]) == "TLS 1.3"


def test_client_certificate_is_logged_under_client(pki):
    tx = run(handshake(pki, ssl.TLSVersion.TLSv1_2, client_cert=True)).tx
    assert tx.client_certs == [pki["client_der"].read_bytes()]
    client = eve_record(tx)["client"]
    oracle = cert_oracle(pki["client_der"].read_bytes())
    assert client == {k: oracle[k] for k in ("subject", "issuerdn", "fingerprint", "serial",
                                             "notbefore", "notafter")}
    assert client["subject"] == "O=Client Org, serialNumber=42 + CN=client"  # DER sorts the SET


def _rerecord(stream: bytes, size: int) -> bytes:
    """The same handshake bytes cut into records of at most ``size`` bytes."""
    out, pos = bytearray(), 0
    while pos < len(stream):
        ctype, version = stream[pos], stream[pos + 1:pos + 3]
        length = int.from_bytes(stream[pos + 3:pos + 5], "big")
        body = stream[pos + 5:pos + 5 + length]
        pieces = [body[i:i + size] for i in range(0, len(body), size)] if ctype == 22 else [body]
        for piece in pieces:
            out += bytes([ctype]) + version + len(piece).to_bytes(2, "big") + piece
        pos += 5 + length
    return bytes(out)


def _summary(tx) -> tuple:
    return (tx.sni, tx.ja3_string, tx.ja3_hash, tx.ja3s_string, tx.ja4, tx.certs, tx.subject,
            tx.issuer, tx.serial, tx.fingerprint, tx.version, tx.progress_ts, tx.progress_tc)


def test_handshake_messages_spanning_records(pki):
    events = handshake(pki, ssl.TLSVersion.TLSv1_2)
    split = [(d, _rerecord(b, 7)) for d, b in events[:2]] + events[2:]
    assert _summary(run(split).tx) == _summary(run(events).tx)


@pytest.fixture(scope="module")
def tls12_events(pki) -> list[tuple[int, bytes]]:
    return handshake(pki, ssl.TLSVersion.TLSv1_2, client_cert=True)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_segmentation_does_not_change_the_session(tls12_events, data):
    events = tls12_events
    whole = run(events)
    pieces = []
    for direction, chunk in events:
        cuts = sorted(data.draw(st.lists(st.integers(0, len(chunk)), max_size=12)))
        pieces += [(direction, chunk[a:b]) for a, b in zip([0, *cuts], [*cuts, len(chunk)])]
    assert _summary(run(pieces).tx) == _summary(whole.tx)


# --- record layer limits and errors --------------------------------------------

def test_handshake_message_over_the_limit_is_skipped(pki):
    state = run(handshake(pki, ssl.TLSVersion.TLSv1_2), TlsState(max_handshake_len=300))
    assert state.tx.certs == [] and state.stats.memcap_hits == 1  # the ~450-byte Certificate
    assert state.tx.ja3_hash and state.tx.ja3s_hash and not state.failed


@pytest.mark.parametrize("header", [b"\x16\x03\x03\x00\x00", b"\x16\x09\x09\x00\x10",
                                    b"\x16\x03\x03" + (RECORD_MAX_LEN + 1).to_bytes(2, "big"),
                                    b"\x19\x03\x03\x00\x10"])
def test_bad_record_headers_make_the_parser_give_up(header):
    state = TlsState()
    state.feed(TO_SERVER, header + b"\x00" * 16)
    state.feed(TO_CLIENT, b"\x16\x03\x03\x00\x10")
    assert state.failed and state.stats.parse_errors == 1 and state.stats.records == 1


def test_unknown_record_type_is_skipped_after_tls10():
    state = TlsState()
    state.feed(TO_CLIENT, b"\x15\x03\x01\x00\x02\x02\x28" + b"\x19\x03\x01\x00\x01\x00"
               + b"\x15\x03\x01\x00\x02\x02\x28")
    assert not state.failed and state.stats.records == 3 and state.tx.version == "TLSv1"


def test_gap_inside_application_data_is_absorbed(pki):
    events = handshake(pki, ssl.TLSVersion.TLSv1_2)
    state = run(events)
    state.feed(TO_CLIENT, b"\x17\x03\x03\x01\x00" + b"\x00" * 16)
    state.gap(TO_CLIENT, 200)
    state.feed(TO_CLIENT, b"\x00" * 40 + b"\x15\x03\x03\x00\x02\x01\x00")
    assert not state.failed and state.stats.gaps == 1
    state.gap(TO_CLIENT, 10)
    state.feed(TO_CLIENT, b"\xff" * 10)
    assert not state.failed


def test_gap_in_the_handshake_stops_that_direction(pki):
    events = handshake(pki, ssl.TLSVersion.TLSv1_2)
    state = TlsState()
    state.feed(TO_SERVER, events[0][1])
    state.feed(TO_CLIENT, events[1][1][:100])
    state.gap(TO_CLIENT, 50)
    state.feed(TO_CLIENT, events[1][1][150:])
    assert state.tx.certs == [] and state.tx.sni == SNI.encode() and not state.failed


def test_sslv2_record_sets_the_version():
    state = TlsState()
    hello = b"\x01\x00\x02\x00\x03\x00\x00\x00\x10" + b"\x00\x00\x04" + b"\x11" * 16
    state.feed(TO_SERVER, bytes([0x80, len(hello)]) + hello)
    state.feed(TO_CLIENT, bytes([0x80, 3]) + b"\x04\x00\x01")
    assert state.tx.version == "SSLv2" and not state.failed


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=700), st.lists(st.integers(1, 80), max_size=8))
def test_random_bytes_never_raise(blob, sizes):
    for prefix in (b"", b"\x16\x03\x01" + len(blob).to_bytes(2, "big") + b"\x01"):
        state = TlsState()
        pos = 0
        data = prefix + blob
        for size in sizes + [len(data)]:
            state.feed(TO_SERVER, data[pos:pos + size])
            state.feed(TO_CLIENT, data[pos:pos + size])
            pos += size
        state.gap(TO_SERVER, 3)
        state.close(TO_CLIENT)
        eve_record(state.tx)
    parse_certificate(blob)


# --- X.509 names ------------------------------------------------------------------

def _der(tag: int, content: bytes) -> bytes:
    assert len(content) < 128
    return bytes([tag, len(content)]) + content


def _name(*rdns: list[tuple[bytes, int, bytes]]) -> bytes:
    return b"".join(_der(0x31, b"".join(_der(0x30, _der(0x06, oid) + _der(tag, value))
                                        for oid, tag, value in rdn)) for rdn in rdns)


def test_name_formatting_follows_x509_parser():
    cn, email, unknown = b"\x55\x04\x03", b"\x2a\x86\x48\x86\xf7\x0d\x01\x09\x01", b"\x2a\x03\x04"
    name = _name([(cn, 0x0C, b"caf\xc3\xa9"), (unknown, 0x13, b"x")], [(email, 0x16, b"a@b.c")],
                 [(cn, 0x1E, "Ω".encode("utf-16-be"))], [(cn, 0x1C, b"\x00\x00\x00A")])
    assert format_name(name, 0, len(name)) == "CN=café + OID(1.2.3.4)=x, Email=a@b.c, CN=Ω, CN=00000041"
    bad = _name([(cn, 0x14, b"\xe9t\xe9")])
    assert format_name(bad, 0, len(bad)) == INVALID_NAME


# --- the corpus against tshark and openssl -------------------------------------------

def _tls_start(events) -> list:
    """Deliveries from the first TLS record of each direction (after STARTTLS, CONNECT...)."""
    started, out = set(), []
    for kind, direction, data in events:
        if direction not in started and kind == "data" and data[:2] in (b"\x16\x03", b"\x15\x03"):
            started.add(direction)
        if direction in started:
            out.append((kind, direction, data))
    return out


@cache
def tls_pcaps():
    require_tshark()
    return tuple(corpus_with({"tls"}))


@pytest.mark.slow
def test_corpus_sessions_match_tshark_and_openssl():
    checked, reasons = 0, {}
    certs_seen: dict[bytes, dict] = {}
    for pcap, seen in for_each(tls_pcaps(), dissect):
        oracle, ja4s, streams = tshark_hello_oracle(pcap), ja4_oracle(pcap), seen.streams
        for index, want in oracle.items():
            if index not in streams:  # tunnelled frames: the helper leaves them out
                continue
            events = streams[index].events
            if events and events[0][2][:2] not in (b"\x16\x03", b"\x15\x03"):
                reasons["TLS after another protocol: fed from its first record"] = \
                    reasons.get("TLS after another protocol: fed from its first record", 0) + 1
            state = TlsState()
            for kind, direction, data in _tls_start(events):
                getattr(state, "feed" if kind == "data" else "gap")(direction, data)
            tx = state.tx
            checked += 1
            problems = _session_problems(tx, want, ja4s.get(index))
            for problem in problems:
                reasons[problem] = reasons.get(problem, 0) + 1
            assert all(p.startswith(EXPLAINED) for p in problems), (pcap.name, index, problems)
            if tx.certs and tx.server_cert is not None:
                certs_seen.setdefault(tx.certs[0], eve_record(tx))
    for der, record in certs_seen.items():
        oracle = cert_oracle(der)
        assert {k: record[k] for k in oracle if k in record} == {
            k: v for k, v in oracle.items() if k in record}, oracle
    assert checked > 500 and len(certs_seen) > 50
    print(f"{checked} TLS sessions, {len(certs_seen)} certificates; reasons: {reasons}")


EXPLAINED = ("malformed ClientHello", "TLS after another protocol", "TLS inside another")


def _session_problems(tx, want: dict, ja4: str | None) -> list[str]:
    problems = []
    if "ja3" in want:
        if tx.ja3_hash is None:
            if tx.client_hello is None and want["ja3"] != ("", ""):
                problems.append("TLS inside another protocol's framing (OpenVPN, PROXY header): "
                                "no segment starts with a TLS record")
            elif tx.client_hello is not None and not tx.client_hello.complete:
                problems.append("malformed ClientHello: no JA3 (Suricata computes no hash either)")
        elif (tx.ja3_string.decode(), tx.ja3_hash.decode()) != want["ja3"] or \
                (tx.sni or b"").decode("latin-1") != want["sni"]:
            problems.append("ClientHello fields differ")
        elif ja4 is not None and tx.ja4.decode() != ja4:
            problems.append("JA4 differs")
    if "ja3s" in want and tx.ja3s_hash is not None:
        if (tx.ja3s_string.decode(), tx.ja3s_hash.decode()) != want["ja3s"]:
            problems.append("ServerHello fields differ")
        if version_name(want["version"]) != tx.version and tx.version_num != 0x7F01:
            problems.append("version differs")
    return problems
