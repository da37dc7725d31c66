"""HTTP files and their EVE fileinfo records, as Suricata tracks and logs them.

Unit tests feed HttpState directly; the corpus test replays every capture of
the suricata-verify cases that carry HTTP (``applayer_oracles.replay_eve``: one replay per
capture and session, shared with test_applayer_oracle) and compares the sizes of the files
logged with the objects tshark exports (``--export-objects http``) of the messages
Suricata tracks files for (responses; requests only for POST and PUT).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from applayer_corpus import SV_TESTS, require_tshark
from applayer_oracles import corpus_with, for_each, replay_eve

from mirrorwatch.core.applayer.common import TO_CLIENT, TO_SERVER
from mirrorwatch.core.applayer.http import HttpState
from mirrorwatch.core.applayer.http.files import disposition_filename, uri_path
from mirrorwatch.sinks.eve_file import file_events
from tests.test_http_parser import run

BODY = b"<html>hello</html>"


def request(method: bytes = b"GET", uri: bytes = b"/a/b.html", body: bytes = b"", headers: bytes = b"") -> bytes:
    length = b"Content-Length: %d\r\n" % len(body) if body or method in (b"POST", b"PUT") else b""
    return method + b" " + uri + b" HTTP/1.1\r\nHost: h.example\r\n" + headers + length + b"\r\n" + body


def response(body: bytes = BODY, headers: bytes = b"Content-Type: text/html\r\n", chunked: bool = False) -> bytes:
    if chunked:
        framed = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7]) for i in range(0, len(body), 7))
        return b"HTTP/1.1 200 OK\r\n" + headers + b"Transfer-Encoding: chunked\r\n\r\n" + framed + b"0\r\n\r\n"
    return b"HTTP/1.1 200 OK\r\n" + headers + b"Content-Length: %d\r\n\r\n" % len(body) + body


def files(state: HttpState) -> list[tuple]:
    return [(tx.tx_id, d, f.name, f.size, f.state, f.gaps) for tx in state.txs
            for d, f in ((TO_SERVER, tx.request_file), (TO_CLIENT, tx.response_file)) if f is not None]


# --- which bodies are files, and their names ---------------------------------------

def test_response_body_is_a_file_named_by_the_normalised_uri_path():
    state = run((TO_SERVER, request(uri=b"/x/../a/%62.html?q=1")), (TO_CLIENT, response()))
    assert files(state) == [(0, TO_CLIENT, b"/a/b.html", len(BODY), "CLOSED", False)]


def test_content_disposition_names_the_file():
    headers = b'Content-Disposition: attachment; filename="report; final.pdf"; size=3\r\n'
    state = run((TO_SERVER, request()), (TO_CLIENT, response(headers=headers)))
    assert files(state)[0][2] == b"report; final.pdf"


@pytest.mark.parametrize("value, name", [
    (b"attachment; filename=a.exe", b"a.exe"),
    (b"  inline;FileName=\"b c.txt\"", b"b c.txt"),
    (b"attachment", None),
    (b"attachment; filename=", None),
    (b"", None),
])
def test_disposition_filename(value, name):
    assert disposition_filename(value) == name


def test_uri_path_without_a_uri_is_empty():
    assert (uri_path(None), uri_path(b"http://h.example/p/q?x"), uri_path(b"?x")) == (b"", b"/p/q", b"")


def test_request_bodies_are_files_for_post_and_put_only():
    state = run((TO_SERVER, request(b"POST", b"/up", b"k=v")), (TO_CLIENT, response(b"")),
                (TO_SERVER, request(b"PUT", b"/f.bin", b"data")), (TO_CLIENT, response(b"")),
                (TO_SERVER, request(b"GET", b"/g", b"body")), (TO_CLIENT, response(b"")),
                (TO_SERVER, request(b"POST", b"/m", b"--b\r\n\r\nx\r\n--b--\r\n",
                                    b"Content-Type: multipart/form-data; boundary=b\r\n")),
                (TO_CLIENT, response(b"")))
    assert files(state) == [(0, TO_SERVER, b"/up", 3, "CLOSED", False),
                            (1, TO_SERVER, b"/f.bin", 4, "CLOSED", False)]


def test_empty_body_is_no_file():
    assert files(run((TO_SERVER, request(b"HEAD")), (TO_CLIENT, response(b"")))) == []


# --- sizes, states, gaps ------------------------------------------------------------

def test_size_is_the_decoded_body_beyond_the_inspection_limit():
    big = bytes(range(256)) * 2400  # 600 KB: past the response-body-limit, within the bomb limit
    packed = gzip.compress(big)
    headers = b"Content-Type: application/octet-stream\r\nContent-Encoding: gzip\r\n"
    state = run((TO_SERVER, request()), (TO_CLIENT, response(packed, headers, chunked=True)))
    tx = state.txs[0]
    assert tx.response_body_len > len(packed) and len(tx.response_body) < len(big)
    assert files(state) == [(0, TO_CLIENT, b"/a/b.html", len(big), "CLOSED", False)]


def test_size_stops_at_the_decompression_bomb_limit():
    """libhtp stops inflating at its bomb limit, and Suricata's file gets what it inflated."""
    state = HttpState()
    huge = gzip.compress(bytes(3 * state.config.compression_bomb_limit))
    headers = b"Content-Type: application/octet-stream\r\nContent-Encoding: gzip\r\n"
    state = run((TO_SERVER, request()), (TO_CLIENT, response(huge, headers)))
    assert files(state)[0][3:5] == (state.config.compression_bomb_limit, "CLOSED")


def test_a_cut_body_is_truncated_and_an_open_one_too():
    cut = run((TO_SERVER, request()), (TO_CLIENT, response()[:-5]))
    assert files(cut)[0][3:5] == (len(BODY) - 5, "TRUNCATED")
    open_ = run((TO_SERVER, request()), (TO_CLIENT, response()[:-5]), close=False)
    assert files(open_)[0][4] == "OPEN"
    [(_, record)] = file_events("http", open_.txs[0])
    assert record["fileinfo"]["state"] == "TRUNCATED"


def test_close_delimited_body_is_closed():
    raw = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + BODY
    assert files(run((TO_SERVER, request()), (TO_CLIENT, raw)))[0][3:5] == (len(BODY), "CLOSED")


def test_gap_in_the_body_is_flagged():
    whole = response()
    state = HttpState()
    state.feed(TO_SERVER, request())
    state.feed(TO_CLIENT, whole[:-10])
    state.gap(TO_CLIENT, 4)
    state.feed(TO_CLIENT, whole[-6:])
    assert files(state)[0][4:] == ("CLOSED", True)


# --- EVE ---------------------------------------------------------------------------

def test_fileinfo_record_fields():
    state = run((TO_SERVER, request(headers=b"User-Agent: ua\r\nReferer: http://r.example/\r\n")),
                (TO_CLIENT, response()))
    [(to_server, record)] = file_events("http", state.txs[0])
    assert not to_server
    assert record == {
        "http": {"hostname": "h.example", "url": "/a/b.html", "http_user_agent": "ua",
                 "http_content_type": "text/html", "http_refer": "http://r.example/", "http_method": "GET",
                 "protocol": "HTTP/1.1", "status": 200, "length": len(BODY)},
        "app_proto": "http",
        "fileinfo": {"filename": "/a/b.html", "gaps": False, "state": "CLOSED", "stored": False,
                     "size": len(BODY), "tx_id": 0}}
    assert file_events("dns", state.txs[0]) == []


def _replay(pcap: Path, out: Path, types: str) -> list[dict]:
    eve = out / f"{pcap.parent.name}.json"  # EVE output appends: one file per capture
    subprocess.run([sys.executable, "-m", "mirrorwatch", "replay", "-k", "none", "--set", "stream.midstream=true",
                    "--set", "stream.async-oneside=true", "--eve", str(eve), "--eve-types", types, str(pcap)],
                   check=True, capture_output=True)
    return [json.loads(line) for line in eve.read_text().splitlines()]


def test_eve_types_accepts_fileinfo_and_orients_the_record(tmp_path, corpus):
    pcap = next((SV_TESTS / "http-not09-file").glob("*.pcap"))
    records = _replay(pcap, tmp_path, "fileinfo")
    assert [r["event_type"] for r in records] == ["fileinfo"]
    [r] = records
    assert (r["src_port"], r["fileinfo"]["size"], r["fileinfo"]["state"]) == (80, 166, "CLOSED")


# --- real captures against tshark ---------------------------------------------------------

# tshark exports every body; Suricata tracks responses, and request bodies of POST and PUT only
TSHARK_FILE_FRAMES = 'http.response || http.request.method == "POST" || http.request.method == "PUT"'


def _tshark_sizes(pcap: Path) -> Counter:
    """Sizes of the bodies tshark exports from the messages Suricata tracks files for."""
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(["tshark", "-n", "-r", str(pcap), "-2", "-R", TSHARK_FILE_FRAMES, "-q",
                        "--export-objects", f"http,{folder}"], check=True, capture_output=True)
        return Counter(size for name in os.listdir(folder) if (size := os.path.getsize(Path(folder) / name)))


@pytest.mark.slow
def test_file_sizes_agree_with_tshark_objects():
    require_tshark()
    agree = total = 0
    differences = {}
    # the bench merges repeat 5-tuples across captures
    pcaps = [pcap for pcap in corpus_with({"http"}) if "suricata-verify" in pcap.parts]
    for pcap, records, theirs in for_each(pcaps, replay_eve, _tshark_sizes):
        ours = Counter(r["fileinfo"]["size"] for r in records if r["event_type"] == "fileinfo" and r["fileinfo"]["size"])
        total += sum(theirs.values())
        agree += sum((ours & theirs).values())
        if ours != theirs:
            differences[pcap.parent.name] = (dict(ours - theirs), dict(theirs - ours))
    print(f"{agree}/{total} tshark objects matched by size; differences: {differences}")
    assert total > 20 and agree >= 0.95 * total, differences
