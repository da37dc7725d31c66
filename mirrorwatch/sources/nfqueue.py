"""Netfilter queue (nfnetlink_queue) client on the standard library: the bound queue socket.

The messages are built and read by ``sources.nfnetlink`` (pure functions,
compiled); this module is the socket around them, and the kernel's /proc
counters of the queues.

Kernel facts relied on: one netlink datagram carries one packet message
(netlink_recvmsg hands over one skb per call, so ``recv_datagrams`` reads up
to ``batch_max`` datagrams per call, non-blocking after the first); a batch
verdict covers every held packet whose id is not *after* the given one in
32-bit wrapping order (``id_after``: 0xFFFFFFFF releases nothing, /proc's
``id_sequence`` releases all); a verdict for an id no longer held answers
ENOENT on the socket (counted, never raised); closing the last descriptor of
the socket unbinds and the kernel DROPS what it still holds.
"""

from __future__ import annotations

import errno
import os
import select
import socket
from collections import deque
from typing import NamedTuple, Self

from mirrorwatch.sources.nfnetlink import (
    NETLINK_NETFILTER,
    NF_ACCEPT,
    NF_DROP,
    NF_REPEAT,
    NFQA_CFG_F_FAIL_OPEN,
    NFQA_CFG_F_GSO,
    QueuedPacket,
    build_bind,
    build_unbind,
    build_verdict,
    build_verdict_batch,
    id_after,
    parse_datagram,
    parse_messages,
    verdict_code,
)

SOL_NETLINK = 270
NETLINK_CAP_ACK = 10             # error answers do not echo the whole request back
SO_RCVBUFFORCE = 33

# -- settings (defaults) ----------------------------------------------------------
DEFAULT_QUEUE_MAXLEN = 4096      # inline.queue-maxlen: packets the kernel holds for us
DEFAULT_COPY_RANGE = 0xFFFF      # inline.copy-range: bytes of each packet copied (kernel caps at 65531)
DEFAULT_RCVBUF = 8 << 20         # inline.rcvbuf: socket receive buffer, bytes
DEFAULT_BATCH_MAX = 64           # inline.recv-batch: datagrams (one packet message each) read per recv_datagrams()
DEFAULT_RECV_TIMEOUT = 0.05      # s a recv_datagrams() waits for the first packet
ACK_TIMEOUT = 2.0                # s to wait for the kernel's answer to the bind
RECV_BUFFER = 0x10000 + 4096     # one message: a 64 KiB payload plus headers
PROC_QUEUE_PATH = "/proc/net/netfilter/nfnetlink_queue"


class NfQueueError(RuntimeError):
    """The queue could not be bound; the message is one actionable line."""


class QueueStats(NamedTuple):
    """One line of /proc/net/netfilter/nfnetlink_queue."""
    queue_num: int
    portid: int
    total: int             # packets held, waiting for a verdict
    copy_mode: int
    copy_range: int
    dropped: int           # queue full without fail-open
    user_dropped: int      # netlink socket full without fail-open
    id_sequence: int       # the last packet id given out


def parse_queue_stats(text: str) -> dict[int, QueueStats]:
    """/proc/net/netfilter/nfnetlink_queue: queue number -> its counters (bad lines skipped)."""
    queues = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < len(QueueStats._fields) or not all(f.isdigit() for f in fields[:8]):
            continue
        stats = QueueStats(*(int(f) for f in fields[:8]))
        queues[stats.queue_num] = stats
    return queues


def kernel_queue_stats(queue_num: int, path: str = PROC_QUEUE_PATH) -> QueueStats | None:
    """The kernel's counters of ``queue_num`` in this network namespace, None when it is not bound."""
    try:
        with open(path, encoding="ascii") as f:
            return parse_queue_stats(f.read()).get(queue_num)
    except OSError:
        return None


def release_held(fd: int, queue_num: int, path: str = PROC_QUEUE_PATH) -> int:
    """Accept every packet the kernel holds on ``queue_num`` through the bound socket ``fd``.

    Used by whoever holds (a duplicate of) the engine's socket when the engine
    cannot answer.  Returns how many packets were held; the kernel's ENOENT
    answer (nothing left by then) lands on the socket and is harmless.
    """
    stats = kernel_queue_stats(queue_num, path)
    if stats is None or stats.total == 0:
        return 0
    os.write(fd, build_verdict_batch(queue_num, stats.id_sequence, NF_ACCEPT))
    return stats.total


CAP_NET_ADMIN, CAP_NET_RAW = 12, 13   # bits of the capability sets (linux/capability.h)


def effective_capabilities() -> int | None:
    """This process's effective capability set (/proc/self/status CapEff), None when unreadable."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _has_net_admin() -> bool:
    """CAP_NET_ADMIN in this process's effective set."""
    caps = effective_capabilities()
    return bool(caps >> CAP_NET_ADMIN & 1) if caps is not None else os.geteuid() == 0


def bind_error(queue_num: int, err: int, proc_path: str = PROC_QUEUE_PATH) -> str:
    """The one-line explanation of a refused bind (``err`` is the kernel's errno)."""
    if err == errno.EPERM:
        if not _has_net_admin():
            return f"binding NFQUEUE {queue_num} needs CAP_NET_ADMIN: run mirrorwatch as root"
        owner = kernel_queue_stats(queue_num, proc_path)
        who = f" (netlink port {owner.portid})" if owner else ""
        return (f"NFQUEUE {queue_num} is already bound by another process{who}: "
                f"stop it or choose another queue number")
    if not os.path.exists(proc_path):
        return (f"the kernel has no nfnetlink_queue (CONFIG_NETFILTER_NETLINK_QUEUE): "
                f"cannot bind NFQUEUE {queue_num}: {os.strerror(err)}")
    return f"binding NFQUEUE {queue_num} failed: {os.strerror(err)}"


class NfQueue:
    """One bound netfilter queue: receive queued packets, give verdicts."""

    def __init__(self, queue_num: int, *, maxlen: int = DEFAULT_QUEUE_MAXLEN, fail_open: bool = True,
                 gso: bool = True, copy_range: int = DEFAULT_COPY_RANGE, rcvbuf: int = DEFAULT_RCVBUF,
                 batch_max: int = DEFAULT_BATCH_MAX, proc_path: str = PROC_QUEUE_PATH):
        if not 0 <= queue_num <= 0xFFFF:
            raise ValueError(f"queue number must be 0..65535, got {queue_num}")
        self.queue_num = queue_num
        self.batch_max = batch_max
        self._proc_path = proc_path
        self._stash: list[bytes] = []         # datagrams with packets read while waiting for an answer
        # received ids without a verdict, in arrival order (a reader that parses datagrams itself,
        # ``inline.verdicts``, appends each id before its verdict)
        self.pending: deque[int] = deque()
        self._answered: set[int] = set()      # ids answered one by one, still in pending
        self.counters = dict.fromkeys(("received", "accepted", "dropped", "repeated", "batch_verdicts",
                                       "enobufs", "kernel_errors", "malformed"), 0)
        try:
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        except OSError as e:
            raise NfQueueError(f"cannot open a netfilter netlink socket (CONFIG_NETFILTER_NETLINK?): "
                               f"{e.strerror}") from None
        try:
            self._configure_socket(rcvbuf)
            flags = (NFQA_CFG_F_FAIL_OPEN if fail_open else 0) | (NFQA_CFG_F_GSO if gso else 0)
            self._sock.send(build_bind(queue_num, maxlen=maxlen, copy_range=copy_range, flags=flags, seq=1))
            err = self._wait_answer(seq=1)
            if err:
                raise NfQueueError(bind_error(queue_num, err, proc_path))
        except BaseException:
            self._sock.close()
            raise
        self._poll = select.poll()
        self._poll.register(self._sock, select.POLLIN)

    def _configure_socket(self, rcvbuf: int) -> None:
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except OSError:   # without CAP_NET_ADMIN: capped by net.core.rmem_max
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self._sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        self._sock.bind((0, 0))

    def _wait_answer(self, seq: int) -> int:
        """The errno of the kernel's answer to request ``seq`` (0: ACK); packets read meanwhile are kept."""
        self._sock.settimeout(ACK_TIMEOUT)
        try:
            while True:
                data = self._sock.recv(RECV_BUFFER)
                packets, answers, _ = parse_messages(data)
                if packets:
                    self._stash.append(data)
                for err, answer_seq in answers:
                    if answer_seq == seq:
                        return err
        except TimeoutError:
            return errno.ETIMEDOUT
        finally:
            self._sock.settimeout(None)

    # -- receiving ------------------------------------------------------------------
    def recv_datagrams(self, timeout: float = DEFAULT_RECV_TIMEOUT) -> list[bytes]:
        """Up to ``batch_max`` of the kernel's datagrams, unread (``messages`` or ``nfnetlink.read_datagram``
        reads them); waits at most ``timeout`` s for the first one (0: does not wait, and does not poll
        either: for a caller that polled the socket itself)."""
        datagrams, self._stash = self._stash, []
        if not datagrams and timeout > 0 and not self._poll.poll(int(timeout * 1000)):
            return datagrams
        recv, limit = self._sock.recv, self.batch_max
        while len(datagrams) < limit:
            try:
                datagrams.append(recv(RECV_BUFFER, socket.MSG_DONTWAIT))
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                self.counters["enobufs"] += 1   # the kernel dropped messages (fail-open accepted them)
        return datagrams

    def messages(self, data: bytes) -> list[QueuedPacket]:
        """The packets of a datagram that is not one packet message (several, or the kernel's answers:
        errors counted; damage counted); the caller counts them received and appends them to ``pending``."""
        packets, answers, malformed = parse_messages(data)
        self.counters["malformed"] += malformed
        self.counters["kernel_errors"] += sum(1 for err, _ in answers if err)
        return packets

    def recv_batch(self, timeout: float = DEFAULT_RECV_TIMEOUT) -> list[QueuedPacket]:
        """The packets of ``recv_datagrams(timeout)``, received (their verdicts are due)."""
        packets: list[QueuedPacket] = []
        for data in self.recv_datagrams(timeout):
            pkt = parse_datagram(data)   # the kernel's one packet per datagram
            if pkt is not None:
                packets.append(pkt)
            else:
                packets += self.messages(data)
        self.counters["received"] += len(packets)
        self.pending.extend(p.packet_id for p in packets)
        return packets

    # -- verdicts -------------------------------------------------------------------
    def verdict(self, packet_id: int, accept: bool, mark: int | None = None, payload: bytes | None = None,
                repeat: bool = False) -> None:
        """Accept or drop one packet; ``repeat``: pass it through the hook again (NF_REPEAT), e.g. with a mark."""
        code = verdict_code(accept, repeat)
        self._sock.send(build_verdict(self.queue_num, packet_id, code, mark=mark, payload=payload))
        self.counters[_VERDICT_COUNTER[code]] += 1
        pending = self.pending
        if pending and pending[0] == packet_id:   # in order: nothing to remember
            pending.popleft()
            while pending and pending[0] in self._answered:
                self._answered.discard(pending.popleft())
        else:
            self._answered.add(packet_id)

    def verdict_batch(self, up_to_id: int, accept: bool, mark: int | None = None) -> None:
        """One verdict for every received packet not yet answered whose id is not after ``up_to_id``."""
        code = verdict_code(accept)
        self._sock.send(build_verdict_batch(self.queue_num, up_to_id, code, mark=mark))
        self.counters["batch_verdicts"] += 1
        self.counters[_VERDICT_COUNTER[code]] += self._retire(up_to_id)

    def _retire(self, up_to_id: int) -> int:
        pending, answered, covered = self.pending, self._answered, 0
        if not answered and pending and pending[-1] == up_to_id:   # the usual run: everything received so far
            covered = len(pending)
            pending.clear()
            return covered
        while pending and not id_after(pending[0], up_to_id):
            pid = pending.popleft()
            if pid in answered:
                answered.discard(pid)
            else:
                covered += 1
        return covered

    def outstanding(self) -> int:
        """Received packets still waiting for a verdict (a batch verdict retires them)."""
        return len(self.pending) - len(self._answered)

    # -- lifecycle ------------------------------------------------------------------
    def fileno(self) -> int:
        return self._sock.fileno()

    def stats(self) -> dict:
        """Own counters plus the kernel's (queue_total, queue_dropped, queue_user_dropped, id_sequence)."""
        out = dict(self.counters)
        kernel = kernel_queue_stats(self.queue_num, self._proc_path)
        if kernel is not None:
            out.update(queue_total=kernel.total, queue_dropped=kernel.dropped,
                       queue_user_dropped=kernel.user_dropped, id_sequence=kernel.id_sequence)
        return out

    def close(self) -> None:
        """Accept what the kernel still holds for us, then unbind (closing drops whatever is left)."""
        if self._sock.fileno() < 0:
            return
        try:
            release_held(self._sock.fileno(), self.queue_num, self._proc_path)
            self._sock.send(build_unbind(self.queue_num))
        except OSError:
            pass
        self._sock.close()

    def detach(self) -> None:
        """Close this process's descriptor only: the queue stays bound by another process holding a duplicate
        (after a fork, each worker keeps its own queue and detaches from the others)."""
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_VERDICT_COUNTER = {NF_ACCEPT: "accepted", NF_DROP: "dropped", NF_REPEAT: "repeated"}
