"""The in-place savefile reader reads exactly what libpcap reads and says what libpcap says.

The oracle is libpcap itself (``PcapFiles``, pcapy's ``next``): every classic
pcap file of the corpus, then hand-made files for each rule libpcap applies
(byte order, nanoseconds, snapshot cuts, impossible lengths, truncation
anywhere), with Hypothesis cutting and corrupting real captures.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mirrorwatch.core.decode.ownframes import FrameSink
from mirrorwatch.sources.pcapfile import PcapFiles, run, run_headers
from mirrorwatch.sources.savefile import open_savefile

# the tests that read it take the `corpus` fixture, which skips them when it is absent
CORPUS = Path(os.environ.get("MIRRORWATCH_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus"))
SUPPORTED = {0, 1, 12, 113, 276}
SMALL = CORPUS / "suricata-verify" / "tests" / "bug-130" / "input.pcap"
MAX_SNAPLEN = 262144  # libpcap's max_snaplen_for_dlt


class Frames(FrameSink):
    """What a reader delivered: (ts, wirelen, data) of each frame."""

    def __init__(self):
        self.got = []

    def frame(self, ts, wirelen, data):
        self.got.append((ts, wirelen, bytes(data)))


def by_savefile(path) -> tuple[list, str | None]:
    """Frames and the damage message through the in-place reader (None: it does not take the file)."""
    sf = open_savefile(path, SUPPORTED)
    assert sf is not None, f"{path}: not taken in place"
    sink = Frames()
    try:
        sf.loop(sink)
        err = None
    except Exception as e:  # noqa: BLE001 - compared with libpcap's words below
        err = str(e)
    finally:
        sf.close()
    return sink.got, err


def by_libpcap(path) -> tuple[list, str | None]:
    pf = PcapFiles([path], SUPPORTED)
    got = [(ts, wl, bytes(data)) for ts, _lt, data, wl in pf]
    err = pf.stats.warnings[0].split(": ", 2)[2] if pf.stats.warnings else None
    return got, err


def same_as_libpcap(path) -> int:
    mine, lib = by_savefile(path), by_libpcap(path)
    assert mine[1] == lib[1]
    assert len(mine[0]) == len(lib[0])
    assert mine[0] == lib[0]
    return len(mine[0])


def classic_pcaps() -> list[Path]:
    out = []
    for p in sorted(CORPUS.rglob("*.pcap")):
        with open(p, "rb") as f:
            head = f.read(24)
        if len(head) == 24 and head[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
                                             b"\xa1\xb2\x3c\x4d") and head[4:8] in (b"\x02\x00\x04\x00",
                                                                                   b"\x00\x02\x00\x04"):
            lt = struct.unpack("<I" if head[0] == 0xd4 or head[0] == 0x4d else ">I", head[20:24])[0] & 0x03FFFFFF
            if lt in (0, 1, 101, 113, 276):
                out.append(p)
    return out


def pcap(records, *, big=False, nsec=False, snaplen=65535, linktype=1, version=(2, 4)) -> bytes:
    """A classic pcap file: ``records`` are (sec, frac, caplen, wirelen, data)."""
    e = ">" if big else "<"
    magic = 0xA1B23C4D if nsec else 0xA1B2C3D4
    out = [struct.pack(e + "IHHiIII", magic, version[0], version[1], 0, 0, snaplen, linktype)]
    for sec, frac, caplen, wirelen, data in records:
        out.append(struct.pack(e + "iiII", sec, frac, caplen, wirelen) + data)
    return b"".join(out)


def frame(n: int) -> bytes:
    return bytes(range(256)) * (n // 256) + bytes(range(n % 256))


def test_every_classic_capture_of_the_corpus_reads_as_libpcap_reads_it(corpus):
    paths = classic_pcaps()
    assert len(paths) > 100
    frames = sum(same_as_libpcap(p) for p in paths)
    assert frames > 100_000


def test_the_bench_capture_and_a_small_one_read_alike(corpus):
    assert same_as_libpcap(SMALL) > 0
    assert same_as_libpcap(CORPUS / "bench" / "ndpi-mixed-ethernet.pcap") == 100_129


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("nsec", [False, True])
def test_byte_order_and_nanoseconds(tmp_path, big, nsec):
    recs = [(1_700_000_000, 999_999_999 if nsec else 999_999, 60, 60, frame(60)),
            (1_700_000_001, 1 if nsec else 0, 1514, 1514, frame(1514)),
            (-5, 12_345, 0, 90, b""),  # signed in the host's order, unsigned swapped; an empty frame
            (5, -5, 10, 10, frame(10)), (5, -(1 << 31), 10, 10, frame(10)),
            (2_000_000_000, 500_500, 40, 9000, frame(40))]
    p = tmp_path / "x.pcap"
    p.write_bytes(pcap(recs, big=big, nsec=nsec))
    assert same_as_libpcap(p) == 6
    got, _ = by_savefile(p)
    assert got[0][0] == 1_700_000_000 + 999_999 * 1e-6  # nanoseconds scale down to microseconds
    assert got[5][1] == 9000


@pytest.mark.parametrize("snaplen", [0, 100, MAX_SNAPLEN, MAX_SNAPLEN + 1, -1])
def test_records_longer_than_the_snapshot_are_cut_as_libpcap_cuts_them(tmp_path, snaplen):
    recs = [(1, 0, 60, 60, frame(60)), (2, 0, 3000, 3000, frame(3000)), (3, 0, 70, 70, frame(70))]
    p = tmp_path / "snap.pcap"
    p.write_bytes(pcap(recs, snaplen=snaplen & 0xFFFFFFFF))
    assert same_as_libpcap(p) == 3


@pytest.mark.parametrize("caplen", [MAX_SNAPLEN + 1, 0xFFFFFFFF])
def test_an_impossible_length_is_damage_in_libpcap_s_words(tmp_path, caplen):
    p = tmp_path / "big.pcap"
    p.write_bytes(pcap([(1, 0, 60, 60, frame(60)), (2, 0, caplen, 60, frame(60))]))
    got, err = by_savefile(p)
    assert len(got) == 1 and err.startswith("invalid packet capture length")
    assert same_as_libpcap(p) == 1


def test_truncation_at_every_byte_of_the_last_records(tmp_path, corpus):
    data = SMALL.read_bytes()
    p = tmp_path / "cut.pcap"
    for cut in range(len(data) - 200, len(data)):
        p.write_bytes(data[:cut])
        same_as_libpcap(p)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(24, 4000), at=st.integers(0, 4000), value=st.binary(min_size=4, max_size=4))
def test_cut_and_corrupted_captures_read_alike(tmp_path, cut, at, value, corpus):
    data = bytearray(SMALL.read_bytes()[:24 + cut])
    at = 24 + at % max(1, len(data) - 24)
    data[at:at + 4] = value
    p = tmp_path / "fuzz.pcap"
    p.write_bytes(bytes(data[:len(data)]))
    same_as_libpcap(p)


def test_a_record_over_the_reading_block_boundary(tmp_path):
    # records of every size around the 1 MiB block, so some straddle it whatever the sizes before
    recs = [(i, i, n, n, frame(n)) for i, n in enumerate([65535, 65535, 1, 3000] * 40)]
    p = tmp_path / "blocks.pcap"
    p.write_bytes(pcap(recs, snaplen=262144))
    assert same_as_libpcap(p) == 160


def test_what_libpcap_reads_instead(tmp_path, corpus):
    recs = [(1, 0, 60, 60, frame(60))]
    old = tmp_path / "v23.pcap"
    old.write_bytes(pcap(recs, version=(2, 3)))
    pcapng = next(p for p in sorted((CORPUS / "robustness").rglob("*.pcapng"))
                  if by_libpcap(p)[0] and by_libpcap(p)[1] is None)
    for path in (old, pcapng, tmp_path / "missing.pcap"):
        assert open_savefile(path, SUPPORTED) is None
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # a writer, so opening it for reading does not block
    try:
        assert open_savefile(fifo, SUPPORTED) is None
    finally:
        os.close(fd)
    # and replay's source still reads them (libpcap's loop calls the sink with its header)
    got = []
    run([old, pcapng], lambda ts, lt, data, wl: got.append(wl))
    assert got[0] == 60 and len(got) == 1 + len(by_libpcap(pcapng)[0])


def test_run_headers_counts_and_reports_damage_as_before(tmp_path, corpus):
    p = tmp_path / "cut.pcap"
    data = SMALL.read_bytes()
    p.write_bytes(data[:-7])
    n = len(by_libpcap(p)[0])
    sink = Frames()
    st = run_headers([p], lambda lt: sink, lambda: (len(sink.got), sum(w for _, w, _ in sink.got)))
    assert st.packets == n == len(sink.got)
    assert st.warnings == [f"{p}: damaged after packet {n}: truncated dump file; tried to read "
                           f"{by_libpcap(p)[1].split('read ')[1]}"]


def test_a_sink_that_raises_stops_the_reading(corpus):
    class Stop(FrameSink):
        def __init__(self):
            self.n = 0

        def frame(self, ts, wirelen, data):
            self.n += 1
            if self.n == 3:
                raise KeyboardInterrupt

    sink = Stop()
    with pytest.raises(KeyboardInterrupt):
        run_headers([SMALL], lambda lt: sink, lambda: (sink.n, 0))
    assert sink.n == 3
