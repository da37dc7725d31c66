"""Every bound and tunable of the engine, by name, with its default.

Names follow Suricata's suricata.yaml where one exists (``stream.midstream``,
``flow-timeouts.tcp.established``), so ``--set KEY=VALUE`` lines copied from a
Suricata command line mean the same thing here.  The table below is the single
source for ``--help``, ``mirrorwatch settings`` and the ``stats`` event.

Values are parsed once at start-up into a flat dict; the hot path reads plain
attributes copied out of it by each room, never this module.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from typing import Any, Callable


class SettingError(ValueError):
    """A ``--set`` line that names no setting or carries a bad value."""


class UnknownSetting(SettingError):
    """A key that names no setting; the message suggests the closest name."""

    def __init__(self, key: str):
        name = key.rsplit(".", 1)[-1]  # a rule variable keeps its name: vars.adress-groups.X -> vars.address-groups.X
        candidates = [*SETTINGS_BY_KEY, *(prefix + name for prefix in VAR_PREFIXES)]
        close = difflib.get_close_matches(key, candidates, n=1, cutoff=SUGGEST_CUTOFF)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        super().__init__(f"unknown setting {key!r}{hint} (see 'mirrorwatch settings' for the list)")
        self.key = key


_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmg]?)(i?b)?\s*$", re.I)
_SIZE_MULT = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _scaled(text: str | int, pattern: re.Pattern, mult: dict, what: str, example: str) -> int:
    """A number with a unit letter (``pattern``: number, unit) times the unit's multiplier."""
    if isinstance(text, int):
        return text
    m = pattern.match(str(text))
    if not m:
        raise SettingError(f"not a {what}: {text!r} (use e.g. {example})")
    return int(m.group(1)) * mult[m.group(2).lower()]


def parse_size(text: str | int) -> int:
    """'1mb' -> 1048576; plain integers pass through (Suricata size syntax)."""
    return _scaled(text, _SIZE_RE, _SIZE_MULT, "size", "65536, 64kb, 1mb, 2gb")


def parse_bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    t = str(text).strip().lower()
    if t in ("1", "yes", "true", "on", "enable", "enabled"):
        return True
    if t in ("0", "no", "false", "off", "disable", "disabled"):
        return False
    raise SettingError(f"not a boolean: {text!r} (use yes/no)")


def parse_int(text: str | int) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise SettingError(f"not an integer: {text!r}") from None


def parse_float(text: str | float) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise SettingError(f"not a number: {text!r}") from None


_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$", re.I)
_DURATION_MULT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | int) -> int:
    """'7d' -> 604800 seconds; also s, m, h or plain seconds (Suricata's time syntax)."""
    return _scaled(text, _DURATION_RE, _DURATION_MULT, "duration", "3600, 90m, 12h, 7d")


MARK_BITS = 32


def parse_mark(text: str | int) -> int:
    """A netfilter mark bit mask: '0x40000000' or a decimal integer, non-zero, 32 bits."""
    try:
        v = text if isinstance(text, int) else int(str(text).strip(), 0)
    except ValueError:
        raise SettingError(f"not a mark: {text!r} (use e.g. 0x40000000)") from None
    if not 0 < v < 1 << MARK_BITS:
        raise SettingError(f"a mark must be a non-zero 32-bit value, got {text!r}")
    return v


FILE_HASHES = ("md5", "sha1", "sha256")  # Suricata's force-hash algorithms


def parse_hashes(value: str | list | tuple) -> list[str]:
    """A list of file hash algorithms: a YAML list or the text ``[md5, sha256]`` / ``md5,sha1``."""
    items = value if isinstance(value, (list, tuple)) else str(value).strip().strip("[]").split(",")
    names = list(dict.fromkeys(str(v).strip().lower() for v in items if str(v).strip()))
    for name in names:
        if name not in FILE_HASHES:
            raise SettingError(f"{name!r} is not one of {', '.join(FILE_HASHES)}")
    return names


parse_hashes.__name__ = "list of " + "|".join(FILE_HASHES)


# Suricata's exception policy values (core.flows.exceptions)
EXCEPTION_POLICIES = ("auto", "ignore", "pass-flow", "bypass", "drop-flow", "drop-packet", "pass-packet", "reject",
                      "rejectboth")


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        t = str(text).strip().lower()
        if t not in allowed:
            raise SettingError(f"{text!r} is not one of {', '.join(allowed)}")
        return t

    parse.__name__ = "one of " + "|".join(allowed)
    return parse


# the environment variable that replaces the rule cache directory's default (a test run's own
# directory, a packaging sandbox); -c and --set still win over it
CACHE_DIR_ENV = "MIRRORWATCH_CACHE_DIR"
DEFAULT_CACHE_DIR = "/var/lib/mirrorwatch/cache/sgh"


@dataclass(frozen=True)
class Setting:
    key: str
    default: Any
    parse: Callable[[Any], Any]
    help: str


OVERLAP_POLICIES = ("first", "last", "bsd", "linux", "old-linux", "windows", "solaris", "vista")

# fmt: off
SETTINGS: tuple[Setting, ...] = (
    # flow table (flows room)
    Setting("flow.max-sessions", 100_000, parse_int, "most sessions tracked at once; a new session beyond it ends the least valuable one (emergency mode)"),
    Setting("flow-timeouts.default.new", 30, parse_float, "seconds an unanswered non-TCP/UDP/ICMP session lives"),
    Setting("flow-timeouts.default.established", 300, parse_float, "seconds an idle two-way session of another protocol lives"),
    Setting("flow-timeouts.tcp.new", 60, parse_float, "seconds a TCP session lives before its handshake completes"),
    Setting("flow-timeouts.tcp.established", 600, parse_float, "seconds an idle established TCP session lives"),
    Setting("flow-timeouts.tcp.closed", 60, parse_float, "seconds a closed/reset TCP session lingers (late packets)"),
    Setting("flow-timeouts.udp.new", 30, parse_float, "seconds a one-way UDP session lives"),
    Setting("flow-timeouts.udp.established", 300, parse_float, "seconds an idle two-way UDP session lives"),
    Setting("flow-timeouts.icmp.new", 30, parse_float, "seconds a one-way ICMP session lives"),
    Setting("flow-timeouts.icmp.established", 300, parse_float, "seconds an idle two-way ICMP session lives"),
    Setting("autofp-scheduler", "balanced", _choice("balanced", "hash", "ippair"), "replay --workers: which worker keeps a session: balanced = a session's symmetric flow hash names a bucket, given on its first frame to the worker given the least work so far (an estimate of frames, bytes and new sessions) and kept while active (idle for twice the longest flow timeout: given afresh); hash = the hash alone, as Suricata's default; ippair = the hash of the address pair only. Live capture leaves it to the kernel's fanout hash"),
    Setting("flow.timeout-check-interval", 1.0, parse_float, "packet-time seconds between sweeps for timed-out sessions"),
    Setting("flow.memcap", 256 * 1024 * 1024, parse_size, "bytes of session records (with their streams' fixed part) at once; a new session beyond it ends the least valuable one (emergency mode), as Suricata's flow.memcap"),
    Setting("flow.emergency-recovery", 30, parse_int, "percent of flow.max-sessions and flow.memcap that must be free again before emergency mode ends"),
    Setting("flow-timeouts.default.emergency-new", 10, parse_float, "emergency mode: seconds an unanswered session of another protocol lives"),
    Setting("flow-timeouts.default.emergency-established", 100, parse_float, "emergency mode: seconds an idle two-way session of another protocol lives"),
    Setting("flow-timeouts.tcp.emergency-new", 5, parse_float, "emergency mode: seconds a TCP session lives before its handshake completes"),
    Setting("flow-timeouts.tcp.emergency-established", 100, parse_float, "emergency mode: seconds an idle established TCP session lives"),
    Setting("flow-timeouts.tcp.emergency-closed", 10, parse_float, "emergency mode: seconds a closed/reset TCP session lingers"),
    Setting("flow-timeouts.udp.emergency-new", 10, parse_float, "emergency mode: seconds a one-way UDP session lives"),
    Setting("flow-timeouts.udp.emergency-established", 100, parse_float, "emergency mode: seconds an idle two-way UDP session lives"),
    Setting("flow-timeouts.icmp.emergency-new", 10, parse_float, "emergency mode: seconds a one-way ICMP session lives"),
    Setting("flow-timeouts.icmp.emergency-established", 100, parse_float, "emergency mode: seconds an idle two-way ICMP session lives"),
    # TCP stream (flows + reassembly rooms)
    Setting("stream.midstream", False, parse_bool, "pick up TCP sessions whose handshake was not seen (on for 'listen')"),
    Setting("exception-policy", "auto", _choice(*EXCEPTION_POLICIES), "what a session that meets an exception gets (the master switch, Suricata's): ignore, pass-flow (no more rule inspection), bypass (nothing more of it is tracked or inspected), drop-flow/drop-packet/reject/rejectboth (inline only; ignore in IDS mode), auto (drop-flow inline while stream.midstream is off, else ignore); for the midstream target only here: memcaps and app-layer errors have mirrorwatch's own bounds"),
    Setting("stream.midstream-policy", "", _choice("", *EXCEPTION_POLICIES), "the exception policy of a TCP session whose handshake was not seen (empty: exception-policy's); with stream.midstream on only ignore and pass-flow are valid, as Suricata's"),
    Setting("stream.async-oneside", False, parse_bool, "reassemble and inspect TCP sessions seen in one direction only"),
    Setting("stream.inline", False, parse_bool, "inspect each packet's new in-order stream bytes on arrival instead of settled chunks (on for 'listen', so kills fire on the trigger packet)"),
    Setting("stream.reassembly.depth", 1024 * 1024, parse_size, "bytes per direction that are inspected (0 = unlimited); tracking goes on beyond"),
    Setting("stream.reassembly.policy", "bsd", _choice(*OVERLAP_POLICIES), "how overlapping TCP segments with different bytes are resolved"),
    Setting("stream.reassembly.memcap", 256 * 1024 * 1024, parse_size, "bytes of stream data buffered across all streams (kept for inspection and out of order); beyond it the least recently active sessions give theirs up first"),
    Setting("stream.reassembly.max-ooo-bytes", 1024 * 1024, parse_size, "bytes of out-of-order data buffered per direction"),
    Setting("stream.reassembly.max-ooo-segments", 2048, parse_int, "out-of-order segments buffered per direction"),
    Setting("stream.reassembly.unacked-max", 1024 * 1024, parse_size, "in-order bytes per direction kept open to overlap policies until the receiver ACKs them"),
    Setting("stream.reassembly.unacked-max-segments", 4096, parse_int, "in-order segments per direction kept open to overlap policies until the receiver ACKs them"),
    Setting("stream.reassembly.gap-wait-bytes", 64 * 1024, parse_size, "one-sided streams (receiver's ACKs not seen): out-of-order bytes past a hole before it is declared a gap and skipped"),
    Setting("stream.reassembly.gap-wait-segments", 64, parse_int, "one-sided streams (receiver's ACKs not seen): out-of-order segments past a hole before it is declared a gap and skipped"),
    Setting("stream.dump-max-gap", 4096, parse_size, "--dump-streams: most zero bytes written for one gap in a stream (0 = none); the rest of a longer gap is left out of the file and counted"),
    Setting("stream.dump-max-bytes", 1024 * 1024 * 1024, parse_size, "--dump-streams: bytes written to all stream files together; beyond it nothing more is written (said once, and counted)"),
    # fragments (decode room)
    Setting("defrag.max-frags", 65_535, parse_int, "IP fragments buffered at once across all datagrams"),
    Setting("defrag.memcap", 32 * 1024 * 1024, parse_size, "bytes of IP fragments buffered at once"),
    Setting("defrag.timeout", 60, parse_float, "seconds an incomplete fragmented datagram is kept"),
    Setting("decoder.max-layers", 16, parse_int, "most encapsulation layers (VLAN tags, MPLS labels, tunnels, IPv6 extension headers) decoded in one frame"),
    Setting("decoder.vxlan.ports", "4789", str, "UDP destination ports decoded as VXLAN (comma-separated; empty = off), as Suricata's decoder.vxlan.ports"),
    Setting("decoder.geneve.ports", "6081", str, "UDP destination ports decoded as Geneve (comma-separated; empty = off), as Suricata's decoder.geneve.ports"),
    Setting("decoder.teredo.ports", "3544", str, "UDP ports (either side) decoded as Teredo IPv6-in-UDP when the payload is an exact IPv6 packet (empty = off), as Suricata's decoder.teredo.ports"),
    # detection (detect room)
    Setting("app-layer.protocols.http.libhtp.default-config.request-body-limit", 100 * 1024, parse_size, "bytes of each HTTP request body kept for inspection (0 = unlimited)"),
    Setting("app-layer.protocols.http.libhtp.default-config.response-body-limit", 100 * 1024, parse_size, "bytes of each HTTP response body kept for inspection (0 = unlimited)"),
    Setting("app-layer.protocols.http.libhtp.default-config.compression-bomb-limit", 1024 * 1024, parse_size, "bytes one gzip/deflate HTTP body may decompress to; beyond it decompression stops and a bomb is counted"),
    Setting("app-layer.protocols.http.libhtp.default-config.response-body-decompress-layer-limit", 2, parse_int, "Content-Encoding layers of an HTTP body that are decompressed"),
    Setting("app-layer.protocols.http.libhtp.default-config.max-tx", 512, parse_int, "HTTP transactions held per flow (0 = unlimited); beyond it the flow's requests are no longer parsed (counted)"),
    Setting("app-layer.protocols.http.libhtp.default-config.headers-limit", 1024, parse_int, "header fields kept per HTTP message (0 = unlimited)"),
    Setting("app-layer.memcap", 64 * 1024 * 1024, parse_size, "bytes the application layer keeps across all flows (detection's first bytes, parser buffers, transactions, bodies, TLS handshakes); beyond it detection gives up (failed) or the flow's parser stops, counted (app_layer.memcap). A mirrorwatch key: Suricata caps each protocol on its own"),
    Setting("app-layer.protocols.http.memcap", 0, parse_size, "bytes HTTP keeps across all flows, within app-layer.memcap (0 = only that cap, Suricata's default); beyond it a flow's HTTP parser stops, counted (app_layer.http.memcap)"),
    Setting("app-layer.protocols.dns.global-memcap", 16 * 1024 * 1024, parse_size, "bytes DNS keeps across all flows (messages of transactions not yet logged), within app-layer.memcap; beyond it a flow's DNS parser stops, counted (app_layer.dns.memcap_global)"),
    Setting("app-layer.protocols.http.flow-memcap", 256 * 1024, parse_size, "bytes one HTTP flow may buffer (unfinished header blocks, kept bodies); beyond it data is truncated and counted"),
    Setting("detect.packet-alert-max", 15, parse_int, "most alerts raised for one packet (Suricata's packet-alert-max)"),
    Setting("detect.guess-applayer-tx", False, parse_bool, "a packet or stream alert carries the transaction of its direction when that is the flow's only live one (its app-layer record and tx_id, tx_guessed: true), as Suricata's"),
    Setting("detect.stream-tx-log-limit", 4, parse_int, "packet or stream alerts that may carry one guessed transaction (detect.guess-applayer-tx)"),
    Setting("detect.tag.max-hosts", 4096, parse_int, "hosts holding tags (tag:host) at once; past it the host tagged longest ago loses its tags, counted (tag.hosts_dropped). A mirrorwatch key: Suricata bounds its host table by host.memcap"),
    Setting("host.memcap", 32 * 1024 * 1024, parse_size, "bytes of the host table of xbits (track ip_src/ip_dst) and hostbits, each host with live bits counted as Suricata's Host record (160 bytes); a new host beyond it prunes expired bits, then evicts the oldest host, counted (xbits.host_evicted), as Suricata's host.memcap (its suricata.yaml's 32 MiB)"),
    Setting("ippair.memcap", 16 * 1024 * 1024, parse_size, "bytes of the IP pair table of xbits (track ip_pair), each pair with live bits counted as Suricata's IPPair record (192 bytes); a new pair beyond it prunes expired bits, then evicts the oldest pair, counted (xbits.ippair_evicted), as Suricata's ippair.memcap"),
    Setting("detect.flowint.max-per-flow", 64, parse_int, "flowint variables one flow holds; a rule that would set one more does not, counted (flowint.refused). A mirrorwatch key: Suricata allocates flow variables without a bound (a flow only holds the names its rules write)"),
    Setting("detect.threshold-entries", 100_000, parse_int, "threshold/detection_filter counters kept at once (by_src/by_dst/by_both/by_rule)"),
    Setting("detect.sgh-mpm-caching", True, parse_bool, "keep compiled hyperscan databases in detect.sgh-mpm-caching-path and load them instead of compiling (Suricata 8's key); entries are authenticated, a bad one is rebuilt"),
    Setting("detect.sgh-mpm-caching-path", os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR, str, f"directory of the rule cache (made 0700; one writable by other users, read-only or missing is no cache); ${CACHE_DIR_ENV} replaces this default. Suricata's default is /var/lib/suricata/cache/sgh"),
    Setting("detect.sgh-mpm-caching-max-age", 7 * 86400, parse_duration, "cache entries unused this long are removed (seconds, or 12h, 7d; 0 = never), as Suricata 8"),
    Setting("detect.rule-set-caching", True, parse_bool, "also keep the parsed rule set in the cache directory, keyed by the rule files' bytes, rule variables, classification, pcre settings, version and build. A mirrorwatch key: Suricata caches only hyperscan databases"),
    Setting("detect.tx-scan-cache-bytes", 65536, parse_int, "per transaction buffer's literal database, the bytes of buffers (each up to 4 KiB) whose scan result it remembers for later transactions and progress steps: bytes seen before (a repeated method, host, header block) are not scanned again; full, it starts over; 0 = every ready buffer scanned at each inspection. A mirrorwatch key"),
    Setting("detect.inspection-recursion-limit", 3000, parse_int, "payload keyword evaluations per rule and buffer before giving up (Suricata's inspection-recursion-limit)"),
    Setting("pcre.match-limit", 3500, parse_int, "backtracking steps one pcre search may take (rules with the O flag; others keep Suricata's built-in 3500); reaching it is a no-match, counted"),
    Setting("pcre.match-limit-recursion", 1500, parse_int, "backtracking depth of one pcre search (rules with the O flag; others keep Suricata's built-in 1500)"),
    Setting("stream.reassembly.toserver-chunk-size", 2560, parse_size, "settled client bytes gathered before stream inspection (IDS mode; closing sessions are inspected at once)"),
    Setting("stream.reassembly.toclient-chunk-size", 2560, parse_size, "settled server bytes gathered before stream inspection (IDS mode)"),
    Setting("detect.checksum-auto-sample", 32, parse_int, "checksummed TCP/UDP packets -k auto samples before it decides whether checksums are offloaded (no packet is judged by its checksum until then)"),
    # live capture (capture room)
    Setting("capture.queue-size", 65_536, parse_int, "frames buffered between the capture thread and the engine; overflow is counted as drops"),
    Setting("capture.tick-interval", 0.25, parse_float, "wall-clock seconds between timeout ticks when idle in live mode"),
    Setting("capture.read-timeout", 0.001, parse_float, "seconds libpcap may hold captured frames before handing them over when immediate mode is off (kills wait up to this long; 1 ms costs ~12% more CPU per frame than 10 ms at moderate rates, no capacity)"),
    Setting("capture.immediate", "auto", _choice("auto", "true", "false"), "libpcap immediate mode: each frame handed over at once (kills leave sooner); its ring has one slot per frame, 64 KiB each when the interface has offloads on, so auto = on only when offloads are off and the ring holds >= 4096 frames; true falls back to capture.read-timeout, with a warning, if it cannot be enabled safely"),
    Setting("capture.stats-interval", 8.0, parse_float, "seconds between stats records in live mode (EVE stats event; stats line when not on a terminal); 0 = off"),
    # kill / inject (inject room)
    Setting("inject.max-per-second", 5000, parse_int, "global cap on injected frames per second (a kill's first burst is some 2 x inject.rst-burst frames of ~60 bytes: 5000/s lets about 150 kills a second go out whole, at most ~2.5 Mbit/s)"),
    Setting("inject.first-shot-reserve", 0.5, parse_float, "share of inject.max-per-second that follow-up bursts (answers, chases) leave to the first bursts of new kills"),
    Setting("inject.lag-spread", 0.25, parse_float, "live: a burst's predicted segments are centred where the streaming peer is by now (its rate times the sensor's lag behind the packet), spread on each side by this share of that advance plus inject.rst-burst"),
    Setting("inject.max-lag", 1.0, parse_float, "live: seconds behind a packet beyond which a burst answering it carries its exact segments alone (a stream's position predicted that far ahead would not land; forging it would put the sensor further behind); counted as kill.lag_exceeded"),
    Setting("inject.rst-burst", 16, parse_int, "segments in a kill's first burst toward a receiving endpoint: its exact RCV.NXT and the segment boundaries predicted after it"),
    Setting("inject.chase-bursts", 6, parse_int, "bursts per response (inject.response-window) that chase a killed session's streaming peer (a guess from its data); more are counted, not sent"),
    Setting("inject.answer-bursts", 8, parse_int, "bursts per response (inject.response-window) that answer a killed endpoint's own exact RCV.NXT (challenge ACKs, re-fires); more are counted, not sent"),
    Setting("inject.max-responses", 5, parse_int, "responses (re-fire bursts, grouped by inject.response-window) per killed session while it keeps talking"),
    Setting("inject.min-interval", 0.0, parse_float, "seconds between re-fire bursts for one session"),
    Setting("inject.response-window", 0.5, parse_float, "seconds after a kill response's first burst during which answers (to in-flight segments, or to a sensor's backlog) count as the same response"),
    Setting("inject.own-frame-memory", 4096, parse_int, "recently injected frames remembered to recognise them when the mirror shows them back"),
    # inline mode (sources/nfqueue.py, inline/, core/inline.py)
    Setting("stream.bypass", False, parse_bool, "inline: a TCP session whose stream reached stream.reassembly.depth in either direction is passed by the kernel without queueing it (the bypass mark; counted); on for 'inline'"),
    Setting("nfq.fail-open", True, parse_bool, "inline: when the queue is full or the engine cannot take packets, the kernel accepts them uninspected (counted) instead of dropping them; off = --fail-closed"),
    Setting("nfq.batchcount", 20, parse_int, "inline: most accepted packets answered by one batch verdict (a run of accepts is also answered before any other verdict and at the end of each read)"),
    Setting("nfq.bypass-mark", 0x2000_0000, parse_mark, "inline: packet/connection mark bit of a flow the kernel passes without queueing (pass rules, stream depth)"),
    Setting("inline.drop-mark", 0x4000_0000, parse_mark, "inline: packet/connection mark bit of a flow the kernel drops (drop and reject rules), also after the engine is gone"),
    Setting("inline.injected-mark", 0x1000_0000, parse_mark, "inline: mark of the RST/FIN segments the engine sends; the firewall accepts them before its queue"),
    Setting("inline.queue-maxlen", 4096, parse_int, "inline: packets the kernel holds per queue waiting for a verdict; beyond it fail-open accepts (counted), fail-closed drops"),
    Setting("inline.rcvbuf", 8 * 1024 * 1024, parse_size, "inline: netlink socket receive buffer per queue; when full, fail-open accepts (counted), fail-closed drops"),
    Setting("inline.recv-batch", 64, parse_int, "inline: queued packets read per wake-up before their verdicts go out"),
    Setting("inline.watchdog-timeout", 0.2, parse_float, "inline: seconds without the engine's heartbeat before the watchdog switches to bypass and releases the packets it holds"),
    Setting("inline.watchdog-recovery", 1.0, parse_float, "inline: seconds of steady heartbeat before the watchdog switches back to inline (no flapping)"),
    Setting("capture.sched-slice", 100, parse_int, "listen and inline: time slice in µs the sensor asks of the kernel's fair scheduler (Linux 6.12+, 100..100000; 0 = the kernel's): a short one lets a captured or queued packet wake the engine at once on busy cores (sooner kills and verdicts), at the same CPU share"),
    Setting("inline.watchdog-poll", 0.01, parse_float, "inline: seconds between two looks of the watchdog at the heartbeat"),
    Setting("inline.reset-memory", 16_384, parse_int, "inline: blocked TCP sessions remembered so that a clean stop resets them at both ends before its firewall rules go; the oldest are forgotten first (counted)"),
    # EVE into Redis (sinks/redis.py); a redis:// URL's own stream-maxlen/stream-trim-exact/batch-size win
    Setting("eve-log.files.force-hash", [], parse_hashes, "hashes computed over every HTTP file and written in its EVE fileinfo record (md5, sha1 when the file is CLOSED; sha256 also when TRUNCATED without gaps), as Suricata's outputs.eve-log.types.files.force-hash"),
    Setting("eve-log.ipv6-compress", False, parse_bool, "write IPv6 addresses in EVE compressed (2001:db8::1) instead of in full, every group four digits (2001:0db8:0000:0000:0000:0000:0000:0001), as Suricata's outputs.eve-log.ipv6-compress (Suricata 9; before it Suricata always wrote them in full, and fast.log still does); an eve-log output of -c may set its own, which --set overrides"),
    Setting("eve-log.flow.exception-policy", False, parse_bool, "flow records list the exception policies applied to the session (exception_policy: target and policy), as Suricata's outputs.eve-log.types.flow.exception-policy"),
    Setting("eve-log.anomaly.types.decode", False, parse_bool, "write an EVE anomaly record (type decode) for each decoder event a packet raised (truncated or malformed headers: decoder.ipv4.trunc_pkt...), as Suricata's outputs.eve-log.types.anomaly.types.decode (off by default, as Suricata's)"),
    Setting("eve-log.dns.version", "2", _choice("2", "3"), "format of EVE dns records: 2 (one 'query' record per question, one 'answer' record per response) or 3 (Suricata 8's default: one 'request'/'response' record per message), as Suricata's outputs.eve-log.types.dns.version"),
    Setting("eve-log.redis.stream-maxlen", 100_000, parse_int, "stream mode: entries the stream keeps (XADD MAXLEN; 0 = unbounded), as Suricata's redis.stream-maxlen"),
    Setting("eve-log.redis.stream-trim-exact", False, parse_bool, "stream mode: trim to exactly stream-maxlen (MAXLEN =) instead of Redis' cheaper approximate trim (MAXLEN ~)"),
    Setting("eve-log.redis.pipelining.batch-size", 256, parse_int, "records sent to Redis per round trip (one multi-value push in list mode, a pipeline otherwise)"),
    Setting("eve-log.redis.buffer-size", 65_536, parse_int, "records held in memory while Redis is slow or unreachable; beyond it the oldest are dropped (counted and reported)"),
    Setting("eve-log.redis.send-interval", 0.05, parse_float, "seconds a record may wait for its batch to fill before it is sent anyway (the latency bound when traffic is light)"),
    Setting("eve-log.redis.reconnect-interval", 1.0, parse_float, "seconds between attempts to reach Redis again (Suricata: once per second)"),
    Setting("eve-log.redis.timeout", 2.0, parse_float, "seconds a connection attempt or a round trip to Redis may take before the server counts as unreachable"),
    Setting("eve-log.redis.drain-timeout", 5.0, parse_float, "seconds the end of a run keeps trying to deliver buffered records before counting them as lost"),
)
# fmt: on

SETTINGS_BY_KEY = {s.key: s for s in SETTINGS}
VAR_PREFIXES = ("vars.address-groups.", "vars.port-groups.")
HOST_OS_PREFIX = "host-os-policy."  # host-os-policy.<flavour>=[networks] (Suricata's host-os-policy)
SUGGEST_CUTOFF = 0.75  # difflib similarity from which a misspelt key gets a "did you mean"

# Suricata's default address and port groups (suricata.yaml "vars").
DEFAULT_ADDRESS_GROUPS = {
    "HOME_NET": "[192.168.0.0/16,10.0.0.0/8,172.16.0.0/12]",
    "EXTERNAL_NET": "!$HOME_NET",
    "HTTP_SERVERS": "$HOME_NET",
    "SMTP_SERVERS": "$HOME_NET",
    "SQL_SERVERS": "$HOME_NET",
    "DNS_SERVERS": "$HOME_NET",
    "TELNET_SERVERS": "$HOME_NET",
    "AIM_SERVERS": "$EXTERNAL_NET",
    "DC_SERVERS": "$HOME_NET",
    "DNP3_SERVER": "$HOME_NET",
    "DNP3_CLIENT": "$HOME_NET",
    "MODBUS_CLIENT": "$HOME_NET",
    "MODBUS_SERVER": "$HOME_NET",
    "ENIP_CLIENT": "$HOME_NET",
    "ENIP_SERVER": "$HOME_NET",
}
DEFAULT_PORT_GROUPS = {
    "HTTP_PORTS": "80",
    "SHELLCODE_PORTS": "!80",
    "ORACLE_PORTS": "1521",
    "SSH_PORTS": "22",
    "DNP3_PORTS": "20000",
    "MODBUS_PORTS": "502",
    "FILE_DATA_PORTS": "[$HTTP_PORTS,110,143]",
    "FTP_PORTS": "21",
    "GENEVE_PORTS": "6081",
    "VXLAN_PORTS": "4789",
    "TEREDO_PORTS": "3544",
    "SIP_PORTS": "[5060,5061]",
}


class Settings:
    """Parsed settings: ``settings['stream.midstream']``; variables in ``address_groups``/``port_groups``.

    An unknown key is an ``UnknownSetting`` error (the command line tells a
    Suricata key mirrorwatch does not implement from a misspelling:
    ``cli.suricata_keys``).
    """

    def __init__(self, overrides: dict[str, Any] | None = None):
        self.values: dict[str, Any] = {s.key: s.default for s in SETTINGS}
        self.address_groups: dict[str, str] = dict(DEFAULT_ADDRESS_GROUPS)
        self.port_groups: dict[str, str] = dict(DEFAULT_PORT_GROUPS)
        self.host_os: dict[str, str] = {}  # host-os-policy flavour -> networks
        for k, v in (overrides or {}).items():
            self.set(k, v)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        key = key.strip()
        if key.startswith("vars.address-groups."):
            self.address_groups[key[len("vars.address-groups."):]] = str(value).strip()
            return
        if key.startswith("vars.port-groups."):
            self.port_groups[key[len("vars.port-groups."):]] = str(value).strip()
            return
        if key.startswith(HOST_OS_PREFIX):  # a YAML list or the --set text '[net, net]'
            nets = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
            self._set_host_os(key[len(HOST_OS_PREFIX):], nets)
            return
        s = SETTINGS_BY_KEY.get(key)
        if s is None:
            raise UnknownSetting(key)
        try:
            self.values[key] = s.parse(value)
        except SettingError as e:
            raise SettingError(f"{key}: {e}") from None

    def _set_host_os(self, flavour: str, networks: str) -> None:
        from mirrorwatch.core.reassembly.policy import HostOsPolicy, HostOsPolicyError

        try:
            HostOsPolicy({flavour: networks})  # checked now: a bad entry is a bad command line
        except HostOsPolicyError as e:
            raise SettingError(f"{HOST_OS_PREFIX}{flavour}: {e}") from None
        self.host_os[flavour] = networks.strip()

    def apply(self, assignment: str) -> None:
        """Apply one ``KEY=VALUE`` string (the ``--set`` syntax)."""
        if "=" not in assignment:
            raise SettingError(f"--set expects KEY=VALUE, got {assignment!r}")
        key, value = assignment.split("=", 1)
        self.set(key, value)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.values)


def help_text() -> str:
    """One line per setting, for --help epilogs and ``mirrorwatch settings``."""
    width = max(len(s.key) for s in SETTINGS)
    lines = [f"{s.key:<{width}}  {s.default!s:>10}  {s.help}" for s in SETTINGS]
    lines.append(f"{'vars.address-groups.NAME':<{width}}  {'':>10}  rule address variable, e.g. HOME_NET=[10.0.0.0/8]")
    lines.append(f"{'vars.port-groups.NAME':<{width}}  {'':>10}  rule port variable, e.g. HTTP_PORTS=[80,8080]")
    lines.append(f"{HOST_OS_PREFIX + 'FLAVOUR':<{width}}  {'':>10}  overlap policy of the hosts in these networks "
                 "(windows, linux, bsd, solaris, vista, ...), e.g. host-os-policy.windows=[10.0.0.0/8]")
    return "\n".join(lines)
