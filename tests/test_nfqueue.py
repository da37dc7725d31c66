"""The nfnetlink_queue client: message layouts (no root), then real queues in a routed lab.

Kernel-side messages are built here with struct, independently of the
module's builders, following include/uapi/linux/netfilter/nfnetlink_queue.h.
"""

from __future__ import annotations

import errno
import json
import shutil
import socket
import struct
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirrorwatch.sources import nfnetlink as nl
from mirrorwatch.sources import nfqueue as nfq

# -- kernel-like messages ------------------------------------------------------------


def kattr(atype: int, data: bytes, pad: bool = True) -> bytes:
    raw = struct.pack("=HH", 4 + len(data), atype) + data
    return raw + b"\0" * (-len(raw) & 3) if pad else raw


def kpacket(packet_id: int, payload: bytes, *, hw: int = 0x0800, hook: int = 2, mark: int | None = None,
            indev: int | None = 3, outdev: int | None = 4, skb_info: int | None = None, cap_len: int | None = None,
            seq: int = 0, family: int = socket.AF_INET) -> bytes:
    """A NFQNL_MSG_PACKET as nfqnl_build_packet_message lays it out (payload last, unpadded)."""
    attrs = kattr(1, struct.pack("!IHB", packet_id, hw, hook))
    if indev is not None:
        attrs += kattr(5, struct.pack("!I", indev))
    if outdev is not None:
        attrs += kattr(6, struct.pack("!I", outdev))
    if mark is not None:
        attrs += kattr(3, struct.pack("!I", mark))
    if cap_len is not None:
        attrs += kattr(13, struct.pack("!I", cap_len))
    if skb_info is not None:
        attrs += kattr(14, struct.pack("!I", skb_info))
    attrs += kattr(10, payload, pad=False)
    body = struct.pack("!BBH", family, 0, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), (3 << 8) | 0, 0, seq, 0) + body


def kerror(err: int, seq: int) -> bytes:
    """NLMSG_ERROR with a capped echo of the request header (NETLINK_CAP_ACK)."""
    body = struct.pack("=i", -err) + struct.pack("=IHHII", 16, 0x301, 1, seq, 0)
    return struct.pack("=IHHII", 16 + len(body), 2, 0x100, seq, 0) + body


def pad4(msg: bytes) -> bytes:
    return msg + b"\0" * (-len(msg) & 3)


def attrs_of(msg: bytes) -> dict[int, bytes]:
    """A request's attributes by type (after nlmsghdr + nfgenmsg), checking padding on the way."""
    out, pos = {}, 20
    while pos < len(msg):
        alen, atype = struct.unpack_from("=HH", msg, pos)
        assert alen >= 4 and pos + alen <= len(msg)
        out[atype] = msg[pos + 4:pos + alen]
        pos += (alen + 3) & ~3
    assert pos == len(msg), "attributes end aligned at the message end"
    return out


# -- building requests ---------------------------------------------------------------------

def test_verdict_message_layout():
    msg = nl.build_verdict(7, 0x01020304, nl.NF_ACCEPT, mark=0x40000001, payload=b"\x45abcde", seq=9)
    length, mtype, flags, seq, pid = struct.unpack_from("=IHHII", msg)
    assert (length, mtype, flags, seq, pid) == (len(msg), (3 << 8) | 1, 1, 9, 0)
    assert struct.unpack_from("!BBH", msg, 16) == (socket.AF_UNSPEC, 0, 7)
    attrs = attrs_of(msg)
    assert struct.unpack("!II", attrs[2]) == (1, 0x01020304)
    assert struct.unpack("!I", attrs[3]) == (0x40000001,)
    assert attrs[10] == b"\x45abcde"


def test_verdict_batch_and_repeat():
    msg = nl.build_verdict_batch(65535, 4242, nl.verdict_code(True, repeat=True), mark=5)
    assert struct.unpack_from("=H", msg, 4)[0] == (3 << 8) | 3
    assert struct.unpack_from("!H", msg, 18)[0] == 65535
    attrs = attrs_of(msg)
    assert struct.unpack("!II", attrs[2]) == (nl.NF_REPEAT, 4242)
    assert struct.unpack("!I", attrs[3]) == (5,)
    assert nl.verdict_code(False) == nl.NF_DROP and nl.verdict_code(True) == nl.NF_ACCEPT
    with pytest.raises(ValueError):
        nl.verdict_code(False, repeat=True)


def test_bind_message_asks_ack_and_sets_everything():
    flags = nl.NFQA_CFG_F_FAIL_OPEN | nl.NFQA_CFG_F_GSO
    msg = nl.build_bind(3, maxlen=1000, copy_range=0xFFFF, flags=flags, seq=1)
    assert struct.unpack_from("=HH", msg, 4) == ((3 << 8) | 2, nl.NLM_F_REQUEST | nl.NLM_F_ACK)
    attrs = attrs_of(msg)
    assert attrs[1] == struct.pack("!BxH", nl.NFQNL_CFG_CMD_BIND, 0)
    assert attrs[2] == struct.pack("!IB", 0xFFFF, nl.NFQNL_COPY_PACKET)
    assert struct.unpack("!I", attrs[3]) == (1000,)
    assert struct.unpack("!I", attrs[5]) == (flags,)
    assert struct.unpack("!I", attrs[4])[0] & flags == flags


# -- parsing ----------------------------------------------------------------------------------

def test_parse_packet_fields():
    payload = bytes.fromhex("4500001c") + b"x" * 23            # odd length: unpadded last attribute
    msg = kpacket(17, payload, mark=0x20000000, skb_info=nl.NFQA_SKB_CSUMNOTREADY | nl.NFQA_SKB_GSO)
    packets, answers, bad = nl.parse_messages(msg)
    assert (answers, bad) == ([], 0)
    (p,) = packets
    assert p == nl.QueuedPacket(17, 0x0800, 2, payload, 0x20000000, 3, 4, True, True, len(payload))


def test_parse_several_messages_with_answers():
    buf = pad4(kpacket(1, b"\x45" * 21)) + kerror(errno.ENOENT, 5) + kerror(0, 6) + kpacket(
        2, b"\x60" * 40, hw=0x86DD, indev=None, outdev=None, cap_len=70000, family=socket.AF_INET6)
    packets, answers, bad = nl.parse_messages(buf)
    assert [p.packet_id for p in packets] == [1, 2] and bad == 0
    assert answers == [(errno.ENOENT, 5), (0, 6)]
    assert packets[1].indev == 0 and packets[1].cap_len == 70000 and packets[1].hw_protocol == 0x86DD
    assert not packets[0].gso and packets[0].cap_len == 21


def test_a_datagram_of_one_packet_message_reads_as_that_packet_and_anything_else_as_none():
    msg = kpacket(5, b"\x45" * 33, mark=7, skb_info=nl.NFQA_SKB_GSO)
    assert nl.parse_datagram(msg) == nl.parse_messages(msg)[0][0]
    assert nl.parse_datagram(msg).gso and nl.parse_datagram(msg).mark == 7
    for other in (pad4(msg) + kpacket(6, b"\x45" * 20), kerror(0, 1), msg[:-1], msg + b"\0" * 4, b""):
        assert nl.parse_datagram(other) is None, other


@pytest.mark.parametrize("damage", ["short_header", "length_past_end", "attr_past_end", "no_packet_hdr",
                                    "short_packet_hdr", "unknown_type"])
def test_malformed_messages_are_counted(damage):
    good = kpacket(9, b"\x45" * 20)
    bad = {
        "short_header": good[:10],
        "length_past_end": struct.pack("=I", len(good) + 8) + good[4:],
        "attr_past_end": good[:20] + struct.pack("=HH", 200, 1) + good[24:],
        "no_packet_hdr": struct.pack("=IHHII", 20, 0x300, 0, 0, 0) + struct.pack("!BBH", 2, 0, 0),
        "short_packet_hdr": struct.pack("=IHHII", 28, 0x300, 0, 0, 0) + struct.pack("!BBH", 2, 0, 0)
        + kattr(1, b"\0\0\0\1"),
        "unknown_type": struct.pack("=IHHII", 16, 0x999, 0, 0, 0),
    }[damage]
    packets, _, malformed = nl.parse_messages(pad4(good) + bad)
    assert [p.packet_id for p in packets] == [9] and malformed == (0 if damage == "short_header" else 1)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=0, max_value=400))
def test_parser_never_raises(data, cut):
    seed = kpacket(1, b"\x45" * 20) + kerror(2, 1)
    blob = (seed[:cut] + data) if cut % 2 else (data + seed)
    packets, _, malformed = nl.parse_messages(blob)
    assert all(isinstance(p, nl.QueuedPacket) for p in packets) and malformed >= 0
    one = nl.parse_datagram(blob)
    assert one is None or packets == [one]


def test_id_after_wraps_like_the_kernel():
    assert nl.id_after(5, 4) and not nl.id_after(4, 4) and not nl.id_after(3, 4)
    assert nl.id_after(1, 0xFFFFFFFF)          # a "huge" id is before small ids
    assert not nl.id_after(0xFFFFFFFF, 1 + 0xFFFFFFFF - 1)


def test_queue_stats_parsing():
    # seq_show: "%5u %6u %5u %1u %5u %5u %5u %8u %2d\n"
    text = ("    0  12345     7 2 65531     0     3     1234  1\n"
            "garbage line\n"
            "    4 999999     0 2 65531     1     0 4294967295  1\n")
    stats = nfq.parse_queue_stats(text)
    assert stats[0] == nfq.QueueStats(0, 12345, 7, 2, 65531, 0, 3, 1234)
    assert stats[4].id_sequence == 4294967295 and set(stats) == {0, 4}


def test_bind_error_lines(tmp_path, monkeypatch):
    proc = tmp_path / "nfnetlink_queue"
    proc.write_text("    5   4242     0 2 65531     0     0        9  1\n")
    monkeypatch.setattr(nfq, "_has_net_admin", lambda: True)
    assert nfq.bind_error(5, errno.EPERM, str(proc)) == (
        "NFQUEUE 5 is already bound by another process (netlink port 4242): stop it or choose another queue number")
    assert nfq.bind_error(5, errno.EINVAL, str(tmp_path / "absent")).startswith(
        "the kernel has no nfnetlink_queue (CONFIG_NETFILTER_NETLINK_QUEUE): cannot bind NFQUEUE 5")
    assert nfq.bind_error(5, errno.ENOMEM, str(proc)) == "binding NFQUEUE 5 failed: Cannot allocate memory"
    monkeypatch.setattr(nfq, "_has_net_admin", lambda: False)
    assert nfq.bind_error(5, errno.EPERM, str(proc)) == "binding NFQUEUE 5 needs CAP_NET_ADMIN: run mirrorwatch as root"


# -- real queues ------------------------------------------------------------------------------

PROBE = r"""
import json, sys, time
from mirrorwatch.sources.nfqueue import NfQueue, NfQueueError
q = NfQueue(int(sys.argv[1]))
try:
    NfQueue(int(sys.argv[1]))
    second = "bound twice"
except NfQueueError as e:
    second = str(e)
print(json.dumps({"event": "ready", "second": second}), flush=True)
got, deadline = [], time.monotonic() + 10
while len(got) < int(sys.argv[2]) and time.monotonic() < deadline:
    for p in q.recv_batch():
        got.append(p._asdict() | {"payload": p.payload.hex()})
        q.verdict(p.packet_id, True, mark=0x1234)
print(json.dumps({"event": "packets", "packets": got, "stats": q.stats(), "outstanding": q.outstanding()}), flush=True)
q.close()
"""


UDP_SINK = r"""
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", int(sys.argv[1])))
while True:
    s.recv(65536)
"""


@pytest.fixture
def routed(routed_lab):
    return routed_lab


def _queue_forward(lab, num: int = 0) -> None:
    for binary in ("iptables", "ip6tables"):
        lab.run(lab.router, binary, "-A", "FORWARD", "-j", "NFQUEUE", "--queue-num", str(num), "--queue-bypass")


def _ifindex(lab, ns: str, dev: str) -> int:
    return json.loads(lab.run(ns, "ip", "-j", "link", "show", dev).stdout)[0]["ifindex"]


@pytest.mark.privileged
def test_queued_packet_fields_and_second_bind(routed, tmp_path):
    lab = routed
    lab.python(lab.server, UDP_SINK, "5000")   # no ICMP port unreachable coming back through the queue
    lab.wait_port(lab.server, 5000, proto="udp")
    _queue_forward(lab, 3)
    p = lab.popen(lab.router, __import__("netlab").PYTHON, "-c", PROBE, "3", "2", text=True)
    ready = json.loads(p.stdout.readline())
    assert "NFQUEUE 3 is already bound by another process" in ready["second"]
    lab.udp_send(lab.SERVER4, 5000, b"hello-v4")
    lab.udp_send(lab.SERVER6, 5000, b"hello-v6")
    out = json.loads(p.stdout.readline())
    p.wait(10)
    v4, v6 = out["packets"]
    c0, s0 = _ifindex(lab, lab.router, "c0"), _ifindex(lab, lab.router, "s0")
    assert (v4["hw_protocol"], v4["hook"], v4["indev"], v4["outdev"], v4["mark"]) == (0x0800, 2, c0, s0, 0)
    assert v4["payload"].startswith("45") and v4["payload"].endswith(b"hello-v4".hex())
    assert v6["hw_protocol"] == 0x86DD and v6["payload"].startswith("6")
    assert v6["payload"].endswith(b"hello-v6".hex())
    assert out["stats"]["received"] == out["stats"]["accepted"] == 2 and out["stats"]["queue_total"] == 0
    assert out["outstanding"] == 0


@pytest.mark.privileged
def test_bind_without_privilege_is_one_line(routed):
    r = routed.run(routed.router, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                   "--inh-caps=-all", "--bounding-set=-all", __import__("netlab").PYTHON, "-c",
                   "from mirrorwatch.sources.nfqueue import NfQueue, NfQueueError\n"
                   "try:\n    NfQueue(0)\nexcept NfQueueError as e:\n    print(e)", check=False)
    assert r.stdout.strip() == "binding NFQUEUE 0 needs CAP_NET_ADMIN: run mirrorwatch as root", r.stderr


@pytest.mark.privileged
@pytest.mark.slow
@pytest.mark.parametrize("offload", [False, True], ids=["wire-sized", "gso"])
def test_transfer_byte_exact_through_the_queue(privileged, tmp_path, offload):
    """An accept-everything loop (batch verdicts): several MB each way of IPv4 and IPv6 arrive intact."""
    import netlab
    if not shutil.which("iptables"):
        from conftest import needs_privilege
        needs_privilege("needs iptables (apt-get install iptables)")
    with netlab.RoutedLab(offload=offload) as lab:
        lab.bulk_server(8080, tmp_path / "srv")
        eng = lab.inline_engine(tmp_path / "eng", tmp_path / "run")
        hosts = (lab.SERVER4, lab.SERVER6)
        sent = [lab.bulk_send(host, 8080, nbytes=8_000_000, seed=i) for i, host in enumerate(hosts)]
        time.sleep(0.3)
        lab.stop(eng)
        closes = [r for r in lab.reports(tmp_path / "srv") if r["event"] == "close"]
        stats = next(e for e in lab.reports(tmp_path / "eng") if e["event"] == "exit")
    assert [s["error"] for s in sent] == [None, None]
    assert [(c["peer"], c["bytes"], c["sha256"]) for c in closes] == [
        (lab.CLIENT4, 8_000_000, sent[0]["sha256"]), (lab.CLIENT6, 8_000_000, sent[1]["sha256"])]
    assert stats["received"] > (100 if offload else 5000)
    assert stats["accepted"] == stats["received"] and stats["outstanding"] == 0
    assert stats["malformed"] == stats["dropped"] == stats["queue_total"] == 0
    if offload:   # GSO super-packets are queued whole (NFQA_CFG_F_GSO), their checksums not filled in yet
        assert stats["gso"] > 0 and stats["csum_not_ready"] >= stats["gso"]
    else:
        assert stats["gso"] == stats["csum_not_ready"] == 0
    assert stats["truncated"] == 0


NOOP_LOOP = r"""
import json, signal, sys, time
from mirrorwatch.sources.nfqueue import NfQueue
q = NfQueue(0)
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
print("ready", flush=True)
first = last = None
while not stop:
    packets = q.recv_batch()
    if packets:
        q.verdict_batch(packets[-1].packet_id, True)
        last = time.monotonic()
        first = first or last
print(json.dumps(dict(q.stats(), active_s=(last - first) if first else 0.0)), flush=True)
q.close()
"""


@pytest.mark.privileged
@pytest.mark.slow
def test_noop_verdict_loop_throughput(routed, tmp_path):
    """Packets/s of a recv_batch + verdict_batch loop under a bulk TCP transfer (iperf3 when installed)."""
    import netlab
    lab = routed
    _queue_forward(lab, 0)
    loop = lab.popen(lab.router, netlab.PYTHON, "-c", NOOP_LOOP, text=True)
    assert loop.stdout.readline().strip() == "ready"
    if shutil.which("iperf3"):
        tool = "iperf3"
        lab.popen(lab.server, "iperf3", "-s", "-1", "-p", "5201")
        lab.wait_port(lab.server, 5201)
        r = lab.run(lab.client, "iperf3", "-c", lab.SERVER4, "-p", "5201", "-t", "3", "-J", timeout=60)
        goodput = json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"] / 8
    else:
        tool = "python bulk sender"
        lab.bulk_server(8080, tmp_path / "srv")
        sent = lab.bulk_send(lab.SERVER4, 8080, nbytes=200_000_000)
        goodput = sent["sent"] / sent["elapsed"]
    lab.stop(loop)
    stats = json.loads(loop.stdout.readline())
    pps = stats["received"] / stats["active_s"]
    print(f"\nno-op verdict loop ({tool}): {stats['received']} packets in {stats['active_s']:.2f} s = "
          f"{pps:,.0f} packets/s, {goodput / 1e6:.1f} MB/s goodput, {stats['batch_verdicts']} batch verdicts, "
          f"enobufs {stats['enobufs']}, kernel queue drops {stats['queue_dropped'] + stats['queue_user_dropped']}")
    assert stats["accepted"] == stats["received"] and stats["kernel_errors"] == 0
    assert pps > 10_000


HOLD_THEN_RELEASE = r"""
import json, os, time
from mirrorwatch.sources import nfnetlink as nl
from mirrorwatch.sources import nfqueue as nfq
q = nfq.NfQueue(0)
print("ready", flush=True)
held, deadline = [], time.monotonic() + 10
while len(held) < 3 and time.monotonic() < deadline:
    held += q.recv_batch()                       # no verdicts: the kernel keeps them
def total():
    time.sleep(0.05)
    return nfq.kernel_queue_stats(0).total
out = {"held": total()}
os.write(q.fileno(), nl.build_verdict_batch(0, 0xFFFFFFFF, nl.NF_ACCEPT))
out["after_huge_id"] = total()
out["answered"] = q.recv_batch(timeout=0.2) == [] and q.counters["kernel_errors"]   # ENOENT
out["released"] = nfq.release_held(q.fileno(), 0)
out["after_release"] = total()
q.verdict_batch(held[-1].packet_id, True)         # the engine's own, late verdict: answered ENOENT
out["late"] = q.recv_batch(timeout=0.2) == [] and q.counters["kernel_errors"]
print(json.dumps(out), flush=True)
q.close()
"""


@pytest.mark.privileged
def test_batch_verdict_bounds_the_kernel_way(routed):
    """A batch verdict with id 0xFFFFFFFF releases nothing (ids 1..3 are 'after' it in wrapping order);
    release_held (up to /proc's id_sequence) releases everything; a late verdict only earns ENOENT."""
    import netlab
    lab = routed
    lab.python(lab.server, UDP_SINK, "5000")
    lab.wait_port(lab.server, 5000, proto="udp")
    _queue_forward(lab, 0)
    p = lab.popen(lab.router, netlab.PYTHON, "-c", HOLD_THEN_RELEASE, text=True)
    assert p.stdout.readline().strip() == "ready"
    for k in range(3):
        lab.udp_send(lab.SERVER4 if k % 2 else lab.SERVER6, 5000, b"held %d" % k)
    out = json.loads(p.stdout.readline())
    assert (out["held"], out["after_huge_id"]) == (3, 3)
    assert out["answered"] == 1
    assert (out["released"], out["after_release"]) == (3, 0)
    assert out["late"] == 2
