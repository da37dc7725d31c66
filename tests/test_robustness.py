"""Every capture under corpus/robustness through capture + decode.

The bar: no exception escapes, a file that cannot be used gives one line
(``CaptureError``) naming it, damage after some packets keeps those packets and
is a one-line warning, and the decoder's counters add up:
packets = decoded + errors + held fragments, and the per-reason counts add up
to errors + invalid (valid IP, malformed transport: returned flagged).  Each frame is also decoded cut
short at a few lengths, which reaches the truncation checks of every layer.
"""

from __future__ import annotations

import pytest

from mirrorwatch.sources.pcapfile import CaptureError, run
from mirrorwatch.core.decode.decoder import Decoder
from mirrorwatch.core.settings import Settings

SKIP_SUFFIXES = {".json", ".md", ".txt", ".tsv"}


def robustness_files(corpus):
    root = corpus / "robustness"
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix not in SKIP_SUFFIXES)


def test_every_robustness_capture(corpus):
    files = robustness_files(corpus)
    assert len(files) > 100
    refused, read, total = [], 0, 0
    for path in files:
        for mode in ("all", "auto"):
            d = Decoder(Settings(), mode)
            cut = Decoder(Settings(), "all")
            got = {"pkt": 0, "none": 0}
            n = [0]

            def cb(ts, lt, frame, wl):
                n[0] += 1
                errors = d.errors
                p = d.decode(ts, lt, frame, n[0])
                # a frame that failed still comes out as a packet carrying its decoder events (an error)
                got["pkt" if p is not None and d.errors == errors else "none"] += 1
                assert p is None or d.errors == errors or (p.invalid and p.events), (path, n[0])
                if mode == "all":
                    for k in (1, 14, 20, 34, 40, 54, 60):
                        if k < len(frame):
                            cut.decode(ts, lt, frame[:k], n[0])
                    cut.decode(ts, lt, frame + b"\xff\xff\xff", n[0])

            try:
                st = run([path], cb)
            except CaptureError as e:
                msg = str(e)
                assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
                assert "cannot read" in msg or "unsupported link type" in msg, msg
                refused.append(path)
                break
            for w in st.warnings:
                assert w.startswith(f"{path}: ") and "\n" not in w
            for dec in (d, cut):
                c = dec.counters()
                assert not [k for k in c if "internal_error" in k], (path, c)
                assert c["decoder.pkts"] == c["decoder.decoded"] + c["decoder.errors"] + c["defrag.fragments_held"]
                assert sum(v for k, v in c.items() if k.startswith("decoder.") and k not in _NOT_REASONS
                           and k in dec_reasons(dec)) == c["decoder.errors"] + c["decoder.invalid"]
            c = d.counters()
            assert c["decoder.pkts"] == n[0] == st.packets
            assert got["pkt"] == c["decoder.decoded"]
            assert got["none"] == c["decoder.errors"] + c["defrag.fragments_held"]
            total += n[0]
        else:
            read += 1
    assert read > len(files) // 2
    assert total > 5000


_NOT_REASONS = {"decoder.pkts", "decoder.decoded", "decoder.errors"}


def dec_reasons(d: Decoder) -> set[str]:
    return {"decoder." + k for k in d.errs}


@pytest.mark.parametrize("name", ["not-a-capture", "gzip", "zstd"])
def test_non_capture_files_are_one_line_errors(tmp_path, name):
    import gzip

    p = tmp_path / f"{name}.pcap"
    if name == "gzip":
        p.write_bytes(gzip.compress(b"\xd4\xc3\xb2\xa1" + b"\0" * 100))
    elif name == "zstd":
        p.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 40)
    else:
        p.write_text("GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(CaptureError) as e:
        run([p], lambda *a: None)
    assert str(e.value).startswith(f"{p}: cannot read: ") and "\n" not in str(e.value)


def test_mutated_real_frames_never_break_the_decoder(corpus):
    """Frames from the mixed bench capture with random bytes overwritten (seeded),
    through every link type the decoder knows: only counted outcomes, never an
    internal error, and the counters still add up."""
    import random

    from mirrorwatch.core.decode.link import SUPPORTED_LINKTYPES

    frames = []

    def cb(ts, lt, frame, wl):
        if len(frames) < 10000:
            frames.append(frame)

    run([corpus / "bench" / "ndpi-mixed-ethernet.pcap"], cb)
    rng = random.Random(1234)
    d = Decoder(Settings({"defrag.max-frags": 64}), "all")
    n = 0
    for i, f in enumerate(frames):
        for lt in (1, rng.choice(sorted(SUPPORTED_LINKTYPES))):
            b = bytearray(f)
            for _ in range(rng.randint(1, 6)):
                if b:
                    b[rng.randrange(len(b))] = rng.randrange(256)
            if rng.random() < 0.3 and b:
                del b[rng.randrange(len(b)):]
            n += 1
            d.decode(float(i), lt, bytes(b), n)
    c = d.counters()
    assert not [k for k in c if "internal_error" in k], c
    assert c["decoder.pkts"] == n == c["decoder.decoded"] + c["decoder.errors"] + c["defrag.fragments_held"]
    assert c["decoder.errors"] > 0 and c["decoder.decoded"] > n // 4


# run in a process of its own: a collection there walks the engine's objects, not the whole test
# session's heap (21 s inside the suite against 2-3 s alone)
_NO_CYCLES = r"""
import gc, sys
from pathlib import Path

from mirrorwatch.cli.pipeline import bundled_signatures, load_ruleset
from mirrorwatch.core.engine import Engine
from mirrorwatch.core.kill import Killer
from mirrorwatch.core.settings import Settings
from mirrorwatch.sources.pcapfile import PcapFiles

root, corpus = Path(sys.argv[1]), Path(sys.argv[2])
pcaps = [root / "pcaps" / "demo.pcap", corpus / "bench" / "http-tests-merged.pcap",
         *sorted((corpus / "reassembly").rglob("*.pcap"))[:20]]
# a first pass warms what a process makes once (imports done on first use, caches): not the engine's
for path in pcaps[:2]:
    s = Settings()
    eng = Engine(s, load_ruleset([bundled_signatures()], s), killer=Killer(settings=s))
    for ts, lt, frame, wl in PcapFiles([path]):
        eng.process(ts, lt, frame, wl)
    eng.finish()
    del eng
gc.collect()
gc.disable()
for n, path in enumerate(pcaps):
    s = Settings({"flow.max-sessions": 64, "stream.inline": "true" if n % 2 else "false"})
    eng = Engine(s, load_ruleset([bundled_signatures()], s), killer=Killer(settings=s))
    new_rules = load_ruleset([bundled_signatures()], s)
    gc.collect()  # start-up's garbage (rule parsing) is not what is measured
    for i, (ts, lt, frame, wl) in enumerate(PcapFiles([path])):
        eng.process(ts, lt, frame, wl)
        if i == 50:
            eng.reload_rules(new_rules)
    eng.finish()
    garbage = gc.collect()  # the engine is alive: its own wiring is not garbage
    print(path.name, garbage)
    del eng
    gc.collect()
"""


def test_the_engine_makes_no_reference_cycles(corpus):
    """``cli.collector.tune_gc`` freezes what survives each young collection, which is sound only if
    sessions, streams and their detection and kill state never form reference cycles (they
    must be freed by reference counting alone).  Replays real and crafted captures (alerts,
    kills, gaps, evictions, a rule reload) with the collector off: no cyclic garbage."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    p = subprocess.run([sys.executable, "-c", _NO_CYCLES, str(root), str(corpus)], capture_output=True, text=True,
                       cwd=root, timeout=600, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    counts = dict(line.rsplit(" ", 1) for line in p.stdout.splitlines())
    assert len(counts) == 22, p.stdout
    cyclic = {name: n for name, n in counts.items() if n != "0"}
    assert not cyclic, f"objects in reference cycles: {cyclic}"
