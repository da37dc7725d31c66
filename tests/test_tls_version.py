"""tls.version as Suricata's detect-tls-version.c: parsing and what each direction compares.

A to-server packet compares the client's version (its first valid supported_versions entry, else
the hello's), a to-client packet the server's, the negotiated one.  Names 1.0-1.3 fold a TLS 1.3
draft (0x7fxx) into 1.3; a raw 0xNNNN does not.  Checked on real OpenSSL handshakes (client and
server with different maximum versions, so the two sides differ) and on a TLS 1.3 capture of the
corpus, with tshark as the oracle of what each side said.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from collections import Counter

import pytest
from applayer_corpus import write_tcp_pcap
from conftest import CORPUS
from test_applayer_tls import handshake, pki  # noqa: F401 - pki: the fixture (certificates by the openssl CLI)

from mirrorwatch.core.settings import Settings
from mirrorwatch.rules import RuleContext, RuleError, parse_rule
from mirrorwatch.rules.model import AppCheck

TOR_TLS13 = CORPUS / "suricata-verify" / "tests" / "tls__tls-bypass-missing-event" / "tor_bl.pcap"


def check(option: str) -> AppCheck:
    return parse_rule(f"alert tls any any -> any any ({option} sid:1;)", RuleContext(Settings(), {}))[0].app_checks[0]


@pytest.mark.parametrize("text, version, mode", [
    ("1.0", 0x0301, ""), ("1.1", 0x0302, ""), ("1.2", 0x0303, ""), ("1.3", 0x0304, ""),
    ('"1.2"', 0x0303, ""),         # quotes are allowed around a name
    ("1.25", 0x0303, ""),          # Suricata compares the first three characters only
    ("0x0303", 0x0303, "raw"), ("0x7f1c", 0x7F1C, "raw"),
    ("0x03zz", 0x0003, "raw"),     # read as strtol does: its leading hex digits
])
def test_values_suricata_accepts(text, version, mode):
    c = check(f"tls.version:{text};")
    assert (c.keyword, c.value, c.mode) == ("tls.version", version, mode)


@pytest.mark.parametrize("text", ["2.0", "tls1.2", "0x303", "0x00303", '"0x0303"', "1.2,1.3", "1 2", "!1.2"])
def test_values_suricata_refuses(text):
    with pytest.raises(RuleError):
        check(f"tls.version:{text};")


RULES = {
    1: "tls.version:1.2;",                       # either side: the server's says 1.2
    2: "flow:to_client; tls.version:1.2;",       # the negotiated version
    3: "flow:to_server; tls.version:1.2;",       # the client offered 1.3 first
    4: "flow:to_server; tls.version:1.3;",
    5: "flow:to_client; tls.version:0x0303;",
    6: "tls.version:1.0;",
    7: "flow:to_client; tls.version:1.3;",
}


def alerts(tmp_path, pcap, rules: dict[int, str]) -> Counter:
    path = tmp_path / "tls.rules"
    path.write_text("".join(f'alert tls any any -> any any (msg:"v{sid}"; {body} sid:{sid};)\n'
                            for sid, body in rules.items()))
    eve = tmp_path / "eve.json"
    r = subprocess.run([sys.executable, "-m", "mirrorwatch", "replay", "-q", "-k", "none", "-r", str(path),
                        "--eve", str(eve), str(pcap)], check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in eve.read_text().splitlines()]
    return Counter(r["alert"]["signature_id"] for r in recs if r["event_type"] == "alert")


def hello_versions(pcap) -> list[tuple[str, str]]:
    """tshark: (hello type, the version it states: supported_versions' first entry, else the legacy one)."""
    out = subprocess.run(["tshark", "-r", str(pcap), "-Y", "tls.handshake.type == 1 || tls.handshake.type == 2",
                          "-T", "fields", "-e", "tls.handshake.type", "-e", "tls.handshake.version", "-e",
                          "tls.handshake.extensions.supported_version"], capture_output=True, text=True,
                         check=True).stdout
    rows = [line.split("\t") for line in out.splitlines() if line]
    # a frame with several handshake messages lists their types comma-separated: the hello's is first
    return [(t.split(",")[0], (sv.split(",")[0] if sv else legacy)) for t, legacy, sv in rows]


def test_each_direction_compares_its_own_side(pki, tmp_path):  # noqa: F811 - pki is the fixture
    pcap = write_tcp_pcap(tmp_path / "tls13-client-tls12-server.pcap",
                          handshake(pki, ssl.TLSVersion.TLSv1_3, server_version=ssl.TLSVersion.TLSv1_2), 443)
    assert sorted(hello_versions(pcap)) == [("1", "0x0304"), ("2", "0x0303")]
    assert alerts(tmp_path, pcap, RULES) == {1: 1, 2: 1, 4: 1, 5: 1}


def test_tls12_both_sides(pki, tmp_path):  # noqa: F811
    pcap = write_tcp_pcap(tmp_path / "tls12.pcap", handshake(pki, ssl.TLSVersion.TLSv1_2), 443)
    assert alerts(tmp_path, pcap, RULES) == {1: 1, 2: 1, 3: 1, 5: 1}


def test_corpus_tls13_sessions(tmp_path):
    if not TOR_TLS13.is_file():
        pytest.skip("corpus capture not present")
    hellos = hello_versions(TOR_TLS13)
    sessions = sum(1 for t, _ in hellos if t == "2")
    assert sessions and all(v == "0x0304" for _, v in hellos)  # both sides of every session say 1.3
    got = alerts(tmp_path, TOR_TLS13, {**RULES, 8: "tls.version:0x0304;", 9: "tls.version:1.3;"})
    assert got == {4: sessions, 7: sessions, 8: sessions, 9: sessions}
