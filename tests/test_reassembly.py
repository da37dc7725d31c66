"""One direction of a TCP stream: order, overlaps (per policy), gaps, depth, limits.

The property tests compare the reassembler with an independent reference model
of the overlap policies (a byte map with the policy written as a table of start
and end relations, the way the Snort/Suricata documentation states it).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from mirrorwatch.core.reassembly.context import M32, ReassemblyContext
from mirrorwatch.core.reassembly.stream import Stream
from mirrorwatch.core.settings import OVERLAP_POLICIES, Settings


def ctx(**over):
    base = {"stream.reassembly.gap-wait-bytes": "16mb", "stream.reassembly.gap-wait-segments": 100000,
            "stream.reassembly.max-ooo-segments": 100000, "stream.reassembly.max-ooo-bytes": "16mb"}
    base.update(over)
    return ReassemblyContext(Settings(base))


class Recorder:
    """Observer that rebuilds the settled byte stream (holes as zeros) and logs gaps."""

    def __init__(self):
        self.out = bytearray()
        self.gaps = []
        self.ended = 0

    def data(self, stream, offset, data):
        assert offset >= len(self.out), "settled bytes must arrive once, in order"
        self.out += b"\0" * (offset - len(self.out)) + data

    def gap(self, stream, offset, length):
        self.gaps.append((offset, length))

    def end(self, stream):
        self.ended += 1


def content(s: Stream) -> bytes:
    assert s.end == s.buf_base + len(s.buf)
    return bytes(s.buf)


# -- reference model ----------------------------------------------------------
# new segment wins over an old (list) segment?  Key: (start relation, end relation)
# of the new segment to the old one; 'b' before, 's' same, 'a' after.
_NEW_WINS = {
    "first": set(),
    "vista": set(),
    "last": {(a, b) for a in "bsa" for b in "bsa"},
    "bsd": {("b", "b"), ("b", "s"), ("b", "a")},
    "windows": {("b", "b"), ("b", "s"), ("b", "a")},
    "linux": {("b", "b"), ("b", "s"), ("b", "a"), ("s", "a")},
    "old-linux": {("b", "b"), ("b", "s"), ("b", "a"), ("s", "s"), ("s", "a")},
    "solaris": {("b", "s"), ("b", "a"), ("s", "s"), ("s", "a"), ("a", "a")},
}


def _rel(x, y):
    return "b" if x < y else ("s" if x == y else "a")


def reference(policy: str, segments, acks=None) -> bytes:
    """Bytes a receiver with ``policy`` reads; ``acks[i]`` (optional) is the offset the
    receiver acknowledges after segment i: bytes before it are final from then on."""
    val: dict[int, int] = {}
    seen: list[tuple[int, int]] = []
    frozen = 0
    for k, (s, data) in enumerate(segments):
        e = s + len(data)
        for i, b in enumerate(data):
            p = s + i
            if p < frozen:
                continue
            if p not in val:
                val[p] = b
                continue
            olds = [(ls, le) for ls, le in seen if ls <= p < le]
            if all((_rel(s, ls), _rel(e, le)) in _NEW_WINS[policy] for ls, le in olds):
                val[p] = b
        if (s, e) not in seen:
            seen.append((s, e))
        if acks is not None:
            frozen = max(frozen, acks[k])
    out = bytearray()
    while len(out) in val:
        out.append(val[len(out)])
    return bytes(out)


def feed(stream: Stream, isn: int, segments):
    for off, data in segments:
        stream.add((isn + off) & M32, data)


# -- unit tests ----------------------------------------------------------------
def test_in_order_fast_path_and_wraparound():
    isn = M32 - 5  # crosses 2**32 inside the stream
    s = Stream(ctx(), isn)
    feed(s, isn, [(0, b"abcd"), (4, b"efgh"), (8, b"ijkl")])
    assert content(s) == b"abcdefghijkl"
    assert s.nxt == (isn + 12) & M32 and s.epoch == 0 and s.missed_bytes == 0


def test_out_of_order_is_held_then_released():
    s = Stream(ctx(), 1000)
    s.add(1004, b"efgh")
    s.add(1008, b"ijkl")
    assert s.end == 0 and content(s) == b""
    s.add(1000, b"abcd")
    assert content(s) == b"abcdefghijkl"


def test_max_regions_counts_out_of_order_data_as_suricatas_streaming_buffer():
    """util-streaming-buffer.c: data within REGION_GAP of a region joins it, farther data opens one;
    the flow record's ``ts_max_regions``/``tc_max_regions`` report the most there were."""
    from mirrorwatch.core.reassembly.overlap import REGION_GAP

    s = Stream(ctx(), 0)
    s.add(0, b"abcd")
    s.add(100, b"x" * 10)  # out of order, close: the same region
    assert s.max_regions == 1
    s.add(4 + REGION_GAP + 1000, b"far")  # beyond the gap from everything held: a second region
    s.add(4 + 3 * REGION_GAP, b"farther")  # a third
    assert s.max_regions == 3
    s.add(4 + REGION_GAP + 1003, b"near the second")  # joins the second: no new one
    assert s.max_regions == 3
    s.add(4, b"y" * 96)  # the hole before the first chunk fills: regions merge, the most stays
    assert s.max_regions == 3
    s.flush()  # the session ends: every byte held is settled, gaps skipped
    assert s.max_regions == 3 and s.closed_out


def test_flush_happens_once_the_end_is_told_once():
    s = Stream(ctx(), 0)
    rec = Recorder()
    s.observer = rec
    s.add(0, b"abcd", True)
    s.flush()
    s.flush()
    assert rec.ended == 1 and bytes(rec.out) == b"abcd"


def test_retransmission_and_partial_overlap_of_same_bytes():
    s = Stream(ctx(), 0)
    feed(s, 0, [(0, b"abcdef"), (0, b"abcdef"), (3, b"defghi"), (2, b"cd"), (9, b"jk")])
    assert content(s) == b"abcdefghijk"


def test_ack_settles_and_trim_keeps_tentative_bytes():
    s = Stream(ctx(), 0)
    rec = Recorder()
    s.observer = rec
    s.add(0, b"0123456789")
    assert s.final == 0 and rec.out == b""
    s.ack(4)
    assert s.final == 4 and rec.out == b"0123"
    s.trim(10)  # detect is done, but bytes 4.. may still be rewritten by the policy
    assert s.buf_base == 4 and content(s) == b"456789"
    s.ack(10)
    s.trim(10)
    assert rec.out == b"0123456789" and s.buf_base == 10 and content(s) == b""


def test_one_sided_stream_settles_at_once():
    s = Stream(ctx(), 0, settle_now=True)
    rec = Recorder()
    s.observer = rec
    s.add(0, b"hello")
    assert s.final == 5 and rec.out == b"hello"


@pytest.mark.parametrize("policy", OVERLAP_POLICIES)
def test_policy_rewrites_only_unacked_bytes(policy):
    s = Stream(ctx(**{"stream.reassembly.policy": policy}), 0)
    s.add(0, b"GOOD")
    s.add(0, b"EVIL")  # same start, same end, before the ACK
    want = b"EVIL" if policy in ("last", "old-linux", "solaris") else b"GOOD"
    assert content(s) == want
    s.ack(4)
    s.add(0, b"XXXX")  # after the ACK the bytes are settled for every policy
    assert content(s) == want


def test_visible_receiver_hole_waits_for_retransmission_not_gap_wait():
    s = Stream(ctx(**{"stream.reassembly.gap-wait-segments": 3}), 0)
    s.add(0, b"aaaa")
    for i in range(10):  # far more than gap-wait behind the hole: the receiver's ACKs will tell
        s.add(10 + 4 * i, b"bbbb")
    s.ack(4)
    assert s.missed_bytes == 0 and s.end == 4
    s.add(4, b"retran")  # the retransmission fills the hole
    assert content(s) == b"aaaaretran" + b"bbbb" * 10 and s.epoch == 0


def test_gap_skipped_after_gap_wait_and_counted():
    s = Stream(ctx(**{"stream.reassembly.gap-wait-segments": 3}), 0, settle_now=True)  # receiver not visible
    rec = Recorder()
    s.observer = rec
    s.add(0, b"aaaa")
    s.add(10, b"bbbb")
    s.add(14, b"cccc")
    assert s.epoch == 0 and s.end == 4
    s.add(18, b"dddd")  # third segment behind the hole: the hole [4, 10) is declared lost
    assert s.missed_bytes == 6 and s.epoch == 1
    assert s.buf_base == 10 and content(s) == b"bbbbccccdddd"
    s.add(4, b"late!!")  # the lost bytes turn up after all: too late, ignored
    s.add(22, b"eeee")
    assert content(s) == b"bbbbccccddddeeee" and s.missed_bytes == 6
    s.flush()
    assert rec.gaps == [(4, 6)] and rec.out == b"aaaa" + b"\0" * 6 + b"bbbbccccddddeeee"


def test_ack_beyond_hole_proves_loss():
    s = Stream(ctx(), 0)
    s.add(0, b"abc")
    s.add(10, b"xyz")
    assert s.missed_bytes == 0
    s.ack(13)  # the receiver has everything up to 13: [3, 10) was sent and we missed it
    assert s.missed_bytes == 7 and s.epoch == 1 and content(s) == b"xyz"


def test_ack_before_data_then_gap_skipped_when_data_arrives():
    s = Stream(ctx(), 0)
    s.add(0, b"abc")
    s.ack(8)
    s.add(8, b"after")
    assert s.missed_bytes == 5 and content(s) == b"after"


def test_flush_delivers_everything_and_counts_trailing_loss():
    s = Stream(ctx(), 0)
    rec = Recorder()
    s.observer = rec
    s.add(0, b"abc")
    s.add(5, b"fg")
    s.add(9, b"", fin=True)  # FIN at offset 9: bytes 7, 8 never seen
    s.flush()
    assert s.missed_bytes == 2 + 2 and s.epoch == 2
    assert rec.out == b"abc\0\0fg" and rec.gaps == [(3, 2), (7, 2)] and rec.ended == 1


def test_depth_stops_buffering_but_tracking_goes_on():
    s = Stream(ctx(**{"stream.reassembly.depth": 10}), 0)
    rec = Recorder()
    s.observer = rec
    s.add(0, b"0123456")
    s.add(7, b"789abc")
    assert s.depth_reached and content(s) == b"0123456789" and s.end == 10
    s.add(13, b"def")
    assert s.off == 16 and s.end == 10 and s.nxt == 16
    s.flush()
    assert rec.out == b"0123456789abcdef"


def test_per_stream_ooo_limits_skip_oldest_hole():
    s = Stream(ctx(**{"stream.reassembly.max-ooo-segments": 4}), 0)
    for i in range(6):
        s.add(100 + 10 * i, b"x" * 5)  # six segments behind a hole, each followed by a hole
    assert len(s._ooo) <= 4 and s.missed_bytes > 0
    assert s._ctx.stats["ooo_limit_skips"] >= 1


def test_global_memcap_flushes_oldest_stream_first():
    c = ctx(**{"stream.reassembly.memcap": 1000})
    old = Stream(c, 0)
    new = Stream(c, 0)
    old.add(100, b"o" * 600)
    new.add(100, b"n" * 600)  # 1200 bytes held > memcap: the oldest holder gives way
    # it skips its hole, and the bytes that moved in order go too (settled first: observers got them)
    assert old.missed_bytes == 100 and old.end == 700 and content(old) == b"" and not old._ooo
    assert new.missed_bytes == 0 and new._ooo and c.ooo_bytes == 600 and c.buf_bytes == 0
    assert c.stats["memcap_skips"] == 1 and c.stats["memcap_released_bytes"] == 600
    new.detach()
    assert c.ooo_bytes == 0 and not c.ooo_streams


def test_memory_stays_bounded_under_random_garbage():
    c = ctx(**{"stream.reassembly.memcap": 64 * 1024, "stream.reassembly.max-ooo-bytes": 16 * 1024,
               "stream.reassembly.max-ooo-segments": 64, "stream.reassembly.depth": 32 * 1024})
    rng = random.Random(7)
    streams = [Stream(c, rng.getrandbits(32)) for _ in range(8)]
    for _ in range(4000):
        s = rng.choice(streams)
        s.add(rng.getrandbits(32), rng.randbytes(rng.randint(0, 1400)), fin=rng.random() < 0.01)
        if rng.random() < 0.2:
            s.ack(rng.getrandbits(32))
        assert c.ooo_bytes <= 64 * 1024 + 1400
        assert all(len(x._ooo) <= 64 and x._ooo_bytes <= 16 * 1024 + 1400 for x in streams)
        assert all(len(x.buf) <= 32 * 1024 for x in streams)
        assert c.buf_bytes == sum(len(x.buf) for x in streams)
        if rng.random() < 0.05:
            s.trim(rng.randint(0, s.end))
    for s in streams:
        s.flush()
        s.detach()
        s.trim(s.end)  # after detach the shared accounting is no longer touched
    assert c.ooo_bytes == 0 and c.buf_bytes == 0


# -- property tests ------------------------------------------------------------
@st.composite
def cut_stream(draw, with_conflicts: bool):
    data = draw(st.binary(min_size=1, max_size=300))
    n = len(data)
    segs = []
    # a covering cut, then extra overlapping segments (same bytes, or different bytes)
    pos = 0
    while pos < n:
        k = draw(st.integers(1, max(1, min(40, n - pos))))
        segs.append((pos, data[pos:pos + k]))
        pos += k
    for _ in range(draw(st.integers(0, 8))):
        a = draw(st.integers(0, n - 1))
        b = draw(st.integers(a + 1, min(n, a + 60)))
        chunk = data[a:b]
        if with_conflicts and draw(st.booleans()):
            chunk = bytes((x + 1) & 0xFF for x in chunk)
        segs.append((a, chunk))
    order = draw(st.permutations(range(len(segs))))
    isn = draw(st.sampled_from([0, 1000, M32 - 50, M32 - 1, 1 << 31]))
    return data, [segs[i] for i in order], isn


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut_stream(with_conflicts=False), st.sampled_from(OVERLAP_POLICIES))
def test_property_identical_overlaps_reassemble_to_original(case, policy):
    data, segs, isn = case
    s = Stream(ctx(**{"stream.reassembly.policy": policy}), isn)
    feed(s, isn, segs)
    assert content(s) == data
    s.flush()
    assert content(s) == data and s.missed_bytes == 0 and s.epoch == 0


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut_stream(with_conflicts=True), st.sampled_from(OVERLAP_POLICIES))
def test_property_conflicting_overlaps_follow_policy(case, policy):
    data, segs, isn = case
    s = Stream(ctx(**{"stream.reassembly.policy": policy}), isn)
    feed(s, isn, segs)
    s.flush()
    assert content(s) == reference(policy, segs)


@hsettings(max_examples=150, deadline=None)
@given(cut_stream(with_conflicts=False), st.randoms(use_true_random=False))
def test_property_acks_and_observer_see_every_byte_once(case, rnd):
    data, segs, isn = case
    s = Stream(ctx(), isn)
    rec = Recorder()
    s.observer = rec
    have = set()
    for off, chunk in segs:
        s.add((isn + off) & M32, chunk)
        have.update(range(off, off + len(chunk)))
        contiguous = 0
        while contiguous in have:
            contiguous += 1
        if rnd.random() < 0.5:
            s.ack((isn + rnd.randint(0, contiguous)) & M32)  # a receiver acks what it has
        if rnd.random() < 0.3:
            s.trim(s.end)
    s.flush()
    assert bytes(rec.out) == data and rec.gaps == [] and rec.ended == 1


CLASSIC = {
    # new segment starting before the old one and covering it: bsd takes the new bytes
    ("bsd", (2, b"xxxxxx")): b"AAAAxxxx",  # vs AAAA it starts after: old bytes stay
    ("first", (2, b"xxxxxx")): b"AAAABBBB",
    ("last", (2, b"xxxxxx")): b"AAxxxxxx",
    # same start, longer: linux takes it, bsd does not
    ("linux", (4, b"yyyyyy")): b"AAAAyyyyyy",
    ("bsd", (4, b"yyyyyy")): b"AAAABBBByy",
    # same start and end: old-linux and solaris take it
    ("old-linux", (4, b"zzzz")): b"AAAAzzzz",
    ("solaris", (4, b"zzzz")): b"AAAAzzzz",
    ("windows", (4, b"zzzz")): b"AAAABBBB",
    # starts after, ends after: solaris takes the new bytes
    ("solaris", (6, b"wwww")): b"AAAABBwwww",
    ("linux", (6, b"wwww")): b"AAAABBBBww",
}


@pytest.mark.parametrize("in_order", [True, False], ids=["in-order", "held-out-of-order"])
@pytest.mark.parametrize("policy,seg", list(CLASSIC), ids=[f"{p}-{o}" for p, (o, _) in CLASSIC])
def test_classic_overlap_cases(policy, seg, in_order):
    segs = [(0, b"AAAA"), (4, b"BBBB"), seg]
    want = CLASSIC[(policy, seg)]
    assert reference(policy, segs) == want
    s = Stream(ctx(**{"stream.reassembly.policy": policy}), 0)
    if in_order:
        feed(s, 0, segs)
        s.flush()
        assert content(s) == want
    else:  # everything waits behind a one-byte hole, filled last
        feed(s, 1, segs)
        s.add(0, b"-")
        s.flush()
        assert content(s) == b"-" + want


def test_unacked_bytes_are_bounded_without_acks():
    s = Stream(ctx(**{"stream.reassembly.unacked-max": 100, "stream.reassembly.depth": 0}), 0)
    rec = Recorder()
    s.observer = rec
    for i in range(50):
        s.add(i * 10, b"x" * 10)
    assert s.end - s.final <= 100 and len(s._bounds) <= 32 and len(rec.out) == s.final


def test_bogus_ack_far_ahead_is_ignored():
    s = Stream(ctx(), 0)
    s.add(0, b"abc")
    s.add(10, b"xyz")
    s.ack(2**31 - 5)
    assert s.missed_bytes == 0 and s.acked_hi == 0
    s.flush()
    assert s.missed_bytes == 7


def test_gap_only_observer_gets_no_data_copies():
    class GapsOnly:
        wants_data = False

        def __init__(self):
            self.gaps = []

        def data(self, stream, offset, data):
            raise AssertionError("data must not be delivered to a gaps-only observer")

        def gap(self, stream, offset, length):
            self.gaps.append((offset, length))

        def end(self, stream):
            pass

    s = Stream(ctx(), 0, settle_now=True)
    s.observer = g = GapsOnly()
    s.add(0, b"abc")
    s.add(5, b"def")
    s.ack(8)
    assert g.gaps == [(3, 2)] and content(s) == b"def"


def test_floods_of_tiny_or_overlapping_segments_stay_bounded():
    c = ctx(**{"stream.reassembly.unacked-max-segments": 100, "stream.reassembly.max-ooo-segments": 50,
               "stream.reassembly.depth": 0})
    s = Stream(c, 0)
    for i in range(5000):  # one byte at a time, never ACKed
        s.add(i, b"a")
    assert len(s._bounds) <= 101 and s.end == 5000
    t = Stream(c, 0)
    t.add(0, b"x" * 100)
    rng = random.Random(3)
    for _ in range(5000):  # distinct overlapping retransmissions inside the open bytes and beyond
        a = rng.randint(0, 150)
        t.add(a, b"x" * rng.randint(1, 50))
        assert len(t._bounds) <= 100 + 50 + 1 and len(t._ooo) <= 50


def test_policy_still_applies_to_data_held_after_a_gap():
    s = Stream(ctx(**{"stream.reassembly.policy": "bsd"}), 0, settle_now=True)
    s.add(0, b"aa")
    s.add(10, b"GOOD")  # behind a hole
    s.add(20, b"zz")    # behind another hole
    s._skip_gap(10, "")  # the first hole is declared lost; [20, 22) is still held
    s.add(20, b"XX")     # same start and end: bsd keeps the old bytes
    s.add(14, b"123456zz")
    s.flush()
    assert content(s).endswith(b"GOOD123456zz")


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut_stream(with_conflicts=True), st.sampled_from(OVERLAP_POLICIES), st.randoms(use_true_random=False))
def test_property_conflicting_overlaps_with_acks_follow_policy(case, policy, rnd):
    """ACKs interleaved: what the receiver acknowledged is final, the rest follows the policy."""
    data, segs, isn = case
    s = Stream(ctx(**{"stream.reassembly.policy": policy}), isn)
    have: set = set()
    acks = []
    for off, chunk in segs:
        s.add((isn + off) & M32, chunk)
        have.update(range(off, off + len(chunk)))
        contiguous = 0
        while contiguous in have:
            contiguous += 1
        a = rnd.randint(0, contiguous) if rnd.random() < 0.4 else 0
        acks.append(max([a] + acks[-1:]))
        if a:
            s.ack((isn + a) & M32)
    s.flush()
    assert content(s) == reference(policy, segs, acks)
