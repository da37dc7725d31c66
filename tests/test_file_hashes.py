"""force-hash: md5/sha1/sha256 of HTTP files in EVE fileinfo records, as Suricata finalises them.

md5 and sha1 are written for a CLOSED file only, sha256 for a CLOSED or TRUNCATED one, none
for a file with gaps; the hashes are of the decoded bytes (de-chunked, decompressed), whatever
the inspection limits kept (output-json.c EveFileInfo, util-file.c FileCloseFilePtr).
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest

from mirrorwatch.cli.config import read_config
from mirrorwatch.core.applayer.common import TO_CLIENT, TO_SERVER
from mirrorwatch.core.applayer.http import HttpState
from mirrorwatch.core.applayer.http.config import HttpConfig
from mirrorwatch.core.settings import SettingError, Settings, parse_hashes
from mirrorwatch.sinks.eve_file import fileinfo_object
from tests.test_fileinfo import request, response
from tests.test_http_parser import run

BODY = b"<html>" + b"hashed file body " * 300 + b"</html>"
ALL = HttpConfig(file_hashes=("md5", "sha1", "sha256"), response_body_limit=100)


def digests(data: bytes) -> dict:
    return {name: hashlib.new(name, data).hexdigest() for name in ("md5", "sha1", "sha256")}


def record(state: HttpState) -> dict:
    (tx,) = state.txs
    return fileinfo_object(tx.response_file, tx.tx_id)


def test_closed_file_has_every_forced_hash_of_all_its_bytes_beyond_the_body_limit():
    info = record(run((TO_SERVER, request()), (TO_CLIENT, response(BODY)), config=ALL))
    assert info["state"] == "CLOSED" and info["size"] == len(BODY)
    assert {k: info[k] for k in ("md5", "sha1", "sha256")} == digests(BODY)
    assert list(info) == ["filename", "gaps", "state", "md5", "sha1", "sha256", "stored", "size", "tx_id"]


def test_hashes_are_of_the_decoded_bytes():
    headers = b"Content-Type: text/html\r\nContent-Encoding: gzip\r\n"
    chunked = run((TO_SERVER, request()), (TO_CLIENT, response(gzip.compress(BODY), headers=headers, chunked=True)),
                  config=ALL)
    assert record(chunked)["md5"] == digests(BODY)["md5"]


def test_only_the_forced_hashes_are_written():
    config = HttpConfig(file_hashes=("sha1",))
    info = record(run((TO_SERVER, request()), (TO_CLIENT, response(BODY)), config=config))
    assert info["sha1"] == digests(BODY)["sha1"] and "md5" not in info and "sha256" not in info
    assert "md5" not in record(run((TO_SERVER, request()), (TO_CLIENT, response(BODY))))


def test_truncated_file_has_sha256_only():
    cut = response(BODY)[:-50]
    state = run((TO_SERVER, request()), (TO_CLIENT, cut), config=ALL)
    info = record(state)
    assert info["state"] == "TRUNCATED" and "md5" not in info and "sha1" not in info
    body_seen = cut[cut.index(b"\r\n\r\n") + 4:]
    assert info["sha256"] == digests(body_seen)["sha256"] and info["size"] == len(body_seen)


def test_file_with_gaps_has_no_hash():
    head, body = response(BODY).split(b"\r\n\r\n", 1)
    state = HttpState(ALL)
    state.feed(TO_SERVER, request())
    state.feed(TO_CLIENT, head + b"\r\n\r\n" + body[:100])
    state.gap(TO_CLIENT, 200)
    state.feed(TO_CLIENT, body[300:])
    info = record(state)
    assert info["gaps"] is True and not {"md5", "sha1", "sha256"} & set(info)


@pytest.mark.parametrize(("text", "names"), [
    ("[md5]", ["md5"]), ("[MD5, sha256]", ["md5", "sha256"]), ("sha1,sha1", ["sha1"]), ("[]", []),
    (["sha256", "md5"], ["sha256", "md5"])])
def test_force_hash_setting_parses_suricata_lists(text, names):
    assert parse_hashes(text) == names
    assert Settings({"eve-log.files.force-hash": text})["eve-log.files.force-hash"] == names


def test_force_hash_refuses_an_unknown_algorithm():
    with pytest.raises(SettingError, match="'crc32' is not one of md5, sha1, sha256"):
        parse_hashes("[md5, crc32]")


def test_suricata_yaml_files_force_hash_is_read(tmp_path: Path):
    conf = tmp_path / "suricata.yaml"
    conf.write_text("%YAML 1.1\n---\noutputs:\n  - eve-log:\n      enabled: yes\n      types:\n"
                    "        - files:\n            force-hash: [md5, sha1]\n")
    settings = Settings({})
    read_config(conf, settings)
    assert settings["eve-log.files.force-hash"] == ["md5", "sha1"]


def _parser_hashes(tmp_path: Path, types: tuple[str, ...] | None) -> tuple:
    """The hashes the HTTP parsers of a pipeline compute, with one EVE output of ``types``
    (None: no EVE output)."""
    from mirrorwatch.cli.config import EveSpec
    from mirrorwatch.cli.pipeline import Pipeline

    eve = () if types is None else (EveSpec(str(tmp_path / "eve.json"), types),)
    pipe = Pipeline.build(Settings({"eve-log.files.force-hash": "[md5, sha256]"}), eve=eve,
                          console_alerts=False)
    try:
        return pipe.engine.applayer.factories["http"]().config.file_hashes
    finally:
        for sink in pipe.sinks:
            sink.close()


@pytest.mark.parametrize(("types", "hashes"), [
    (("http", "fileinfo"), ("md5", "sha256")), (("alert", "http"), ()), (None, ())])
def test_files_are_hashed_only_for_a_fileinfo_output(tmp_path: Path, types, hashes):
    """As Suricata's force-hash, a setting of its files output: without one, nothing is hashed."""
    assert _parser_hashes(tmp_path, types) == hashes
