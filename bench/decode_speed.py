#!/usr/bin/env python3
"""Decode-only throughput next to the libpcap floor, on one capture.

    .venv/bin/python bench/decode_speed.py [PCAP] [--repeat N]

Prints packets/s (CPU time, robust on a busy machine) for:
  floor       pcapy ``loop(0, cb)`` with a no-op callback: the cost of reading alone
  source      ``capture.run`` delivering (ts, linktype, frame, wirelen) to a no-op
              (libpcap's loop calling back into Python)
  iterator    ``capture.PcapFiles`` (a Python-level ``next()`` loop), same tuples
  decode -k none / auto / all
              ``capture.run`` + ``Decoder.decode`` for every frame
and the decoder's own cost per packet (decode minus source).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pcapy  # noqa: E402

from mirrorwatch.sources.pcapfile import PcapFiles, run  # noqa: E402
from mirrorwatch.core.decode.decoder import Decoder  # noqa: E402
from mirrorwatch.core.settings import Settings  # noqa: E402

DEFAULT = ROOT.parent / "shared" / "corpus" / "bench" / "ndpi-mixed-ethernet.pcap"


def cpu(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def floor(path: str) -> None:
    def cb(hdr, data):
        pass

    pcapy.open_offline(path).loop(0, cb)


def source(path: str) -> None:
    def cb(ts, lt, frame, wirelen):
        pass

    run([path], cb)


def iterator(path: str) -> None:
    for _ in PcapFiles([path]):
        pass


def decode(path: str, mode: str) -> Decoder:
    d = Decoder(Settings(), checksum_mode=mode)
    dec = d.decode
    n = [0]

    def cb(ts, lt, frame, wirelen):
        n[0] += 1
        dec(ts, lt, frame, n[0])

    run([path], cb)
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pcap", nargs="?", default=str(DEFAULT))
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs per line")
    a = ap.parse_args()
    path = a.pcap
    count = decode(path, "none").pkts
    print(f"{path}: {count:,} packets, best CPU time of {a.repeat}")
    best = {}
    rows = [("floor (pcapy loop, no-op)", lambda: floor(path)), ("source (capture.run, no-op)", lambda: source(path)),
            ("iterator (PcapFiles, next())", lambda: iterator(path))]
    rows += [(f"decode -k {m}", (lambda m=m: decode(path, m))) for m in ("none", "auto", "all")]
    for name, fn in rows:
        best[name] = min(cpu(fn) for _ in range(a.repeat))
        print(f"  {name:<30} {count / best[name]:>12,.0f} pkt/s   {best[name] / count * 1e6:6.2f} us/pkt")
    src = best["source (capture.run, no-op)"]
    for m in ("none", "auto", "all"):
        own = (best[f"decode -k {m}"] - src) / count * 1e6
        print(f"  decoder alone -k {m:<5}          {own:6.2f} us/pkt")


if __name__ == "__main__":
    main()
