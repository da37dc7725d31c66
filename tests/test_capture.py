"""pcap / pcapng file source and the pcap writer, on real files."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from mirrorwatch.sources.pcapfile import CaptureError, PcapFiles, PcapWriter, check_files, open_pcap, run

HTTP = "bench/http-tests-merged.pcap"


def collect(paths):
    out = []
    st = run(paths, lambda ts, lt, f, wl: out.append((ts, lt, f, wl)))
    return out, st


def test_run_and_iterator_agree_and_chain_files(corpus):
    a = corpus / "suricata-verify/tests/tcp-fastopen-04/tfo.pcap"  # SLL
    b = corpus / HTTP
    frames, st = collect([a, b])
    it = PcapFiles([a, b])
    assert list(it) == frames
    assert st.files == 2 and st.packets == len(frames) and not st.warnings
    assert it.stats.packets == len(frames)
    assert {f[1] for f in frames} == {113, 1}
    assert frames[0][1] == 113 and frames[-1][1] == 1  # in the order given
    assert st.bytes == sum(f[3] for f in frames)


@pytest.mark.skipif(not shutil.which("tshark"), reason="tshark not installed")
def test_timestamps_and_lengths_match_tshark(corpus):
    path = corpus / HTTP
    frames, _ = collect([path])
    out = subprocess.run(["tshark", "-r", str(path), "-c", "300", "-T", "fields", "-e", "frame.time_epoch",
                          "-e", "frame.len", "-e", "frame.cap_len"], capture_output=True, text=True, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == 300
    for (ts, _, frame, wl), (t, flen, clen) in zip(frames, rows):
        assert abs(ts - float(t)) < 1e-6
        assert wl == int(flen) and len(frame) == int(clen)


def test_pcapng_both_byte_orders_are_read(corpus):
    read = {"le": 0, "be": 0}
    for p in sorted((corpus / "robustness" / "pcapng-test-generator").glob("output_*__basic__*.pcapng")):
        try:
            frames, _ = collect([p])
        except CaptureError:
            continue  # e.g. no interface description block: libpcap refuses it
        if frames:
            read[p.name.split("_")[1]] += 1
    assert read["le"] >= 1 and read["be"] >= 1, read


def test_missing_and_unreadable_files_are_one_line_errors(tmp_path, corpus):
    missing = tmp_path / "nope.pcap"
    with pytest.raises(CaptureError) as e:
        collect([missing])
    msg = str(e.value)
    assert msg == f"{missing}: cannot read: No such file or directory"
    text = tmp_path / "notes.pcap"
    text.write_text("this is not a capture\n")
    with pytest.raises(CaptureError, match=r"notes\.pcap: cannot read: .+"):
        collect([text])
    with pytest.raises(CaptureError, match="no capture file given"):
        check_files([])


def test_unsupported_link_type_is_refused_before_processing(tmp_path, corpus):
    bad = tmp_path / "radio.pcap"
    with PcapWriter(bad, linktype=127) as w:
        w.write(1.0, b"\0" * 30)
    seen = []
    with pytest.raises(CaptureError) as e:
        run([corpus / HTTP, bad], lambda *a: seen.append(a))
    assert str(e.value) == f"{bad}: unsupported link type 127 (IEEE802_11_RADIO)"
    assert seen == []  # the good first file was not processed either
    with pytest.raises(CaptureError):
        PcapFiles([bad])
    with pytest.raises(CaptureError, match="unsupported link type 127"):
        open_pcap(bad)


def test_truncated_last_record_keeps_earlier_packets(tmp_path, corpus):
    src = (corpus / HTTP).read_bytes()
    frames, _ = collect([corpus / HTTP])
    # cut in the middle of the 11th record's data
    off = 24
    for ts, lt, f, wl in frames[:10]:
        off += 16 + len(f)
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(src[:off + 16 + 5])
    got, st = collect([cut])
    assert [g[2] for g in got] == [f[2] for f in frames[:10]]
    assert len(st.warnings) == 1 and "cut.pcap" in st.warnings[0] and "\n" not in st.warnings[0]
    # the iterator behaves the same
    it = PcapFiles([cut])
    assert len(list(it)) == 10 and len(it.stats.warnings) == 1
    # a cut inside a record header: same
    cut.write_bytes(src[:off + 7])
    got, st = collect([cut])
    assert len(got) == 10


def test_callback_exception_propagates(corpus):
    def boom(*a):
        raise KeyError("stop")

    with pytest.raises(KeyError):
        run([corpus / HTTP], boom)


def test_writer_round_trip(tmp_path):
    path = tmp_path / "out.pcap"
    frames = [(1.5, b"\x01" * 60, 60), (2.000001, b"\x02" * 1514, 1514), (1700000000.25, b"\x03" * 10, 100)]
    with PcapWriter(path, linktype=1) as w:
        for ts, f, wl in frames:
            w.write(ts, f, wl)
    got, _ = collect([path])
    assert [(round(t, 6), lt, f, wl) for t, lt, f, wl in got] == [(round(t, 6), 1, f, wl) for t, f, wl in frames]
    if shutil.which("tshark"):
        out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.len"],
                             capture_output=True, text=True, check=True).stdout.split()
        assert out == ["60", "1514", "100"]


def test_writer_error_is_one_line(tmp_path):
    with pytest.raises(CaptureError, match="cannot write"):
        PcapWriter(tmp_path / "no" / "such" / "dir.pcap")
