"""The loop shared by replay and listen: source -> ``Engine.process`` -> sinks.

``Pipeline`` owns one engine and its sinks (injector first, then EVE,
fast.log, console, stream dumper, summary, and whatever the caller adds, such
as the live table).  Every sink has ``handle(event)``, ``flush()``,
``close()`` and ``reopen()``, and says with ``route(cls)`` what takes each
event type (``sinks.base.Sink``).  Dispatch costs one truth test per frame
when the core returns no events, which is almost always; an event goes only
to the sinks that take its type, in the sinks' order.

``replay(pipeline, paths)`` drives it from pcap files through libpcap's own
loop (``capture.run_headers``), or at recorded pace when asked.  The live loop
(``cli.listener.Listener``) drives the same pipeline from the capture thread.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import time
from pathlib import Path

from mirrorwatch.core.engine import Engine
from mirrorwatch.core.events import EVENT_TYPES, Stats
from mirrorwatch.core.settings import Settings


class PipelineError(Exception):
    """Something the operator must fix before a run can start (one line)."""


def bundled_signatures() -> Path:
    """The bundled ``signatures/`` directory, from a checkout or an installed package.

    Order: ``$MIRRORWATCH_SIGNATURES``, the checkout next to this package
    (editable installs, running from source), then the data directory pip
    installs ``share/mirrorwatch/signatures`` into.
    """
    candidates = []
    env = os.environ.get("MIRRORWATCH_SIGNATURES")
    if env:
        candidates.append(Path(env))
    candidates.append(Path(__file__).resolve().parents[2] / "signatures")  # mirrorwatch/cli/pipeline.py
    for base in {sys.prefix, sysconfig.get_path("data")}:
        candidates.append(Path(base) / "share" / "mirrorwatch" / "signatures")
    for c in candidates:
        if c.is_dir() and any(c.glob("*.rules")):
            return c
    raise PipelineError("bundled signatures not found (reinstall mirrorwatch, or pass --rules PATH)")


def fold_detect_skips(ruleset, detector) -> None:
    """Rules the detect room could not compile count as skipped, with its reason, like parse
    errors: what the operator is told loaded is what runs."""
    from mirrorwatch.rules.lazy import without

    if not detector.skipped:
        return
    ruleset.rules = without(ruleset.rules, {id(rule) for rule, _ in detector.skipped})
    ruleset.skipped.extend((r.file, r.line, r.sid, reason) for r, reason in detector.skipped)


def load_ruleset(paths, settings: Settings, classification=None, progress=None):
    """Load rule files/dirs; a path that does not exist or cannot be read is a PipelineError.

    Rules that fail to parse are skipped (see ``RuleSet.skipped``); the good
    rules of the same file still load.  ``progress(done, total)``: bytes of
    rule text parsed so far (``rules.load_rules``).
    """
    from mirrorwatch.rules.ruleset_cache import load_rules_cached

    paths = [str(p) for p in paths]
    for p in paths:
        if not os.path.exists(p):
            raise PipelineError(f"{p}: no such rule file or directory")
    if classification is None:
        default = bundled_classification()
        classification = str(default) if default is not None else None
    rs = load_rules_cached(paths, settings, classification, progress, _say_cache)
    if rs.errors:
        raise PipelineError(rs.errors[0] + (f" (and {len(rs.errors) - 1} more)" if len(rs.errors) > 1 else ""))
    return rs


def _say_cache(line: str) -> None:
    """The rule cache's one line (an entry rebuilt, a directory it cannot use)."""
    print(f"mirrorwatch: {line}", file=sys.stderr, flush=True)


def bundled_classification() -> Path | None:
    try:
        p = bundled_signatures() / "classification.config"
    except PipelineError:
        return None
    return p if p.is_file() else None


class Pipeline:
    """One engine and its sinks; see the module docstring."""

    def __init__(self, engine: Engine, sinks=(), *, ruleset=None, settings: Settings | None = None,
                 classification=None):
        from mirrorwatch.sinks.summary import Summary

        self.engine = engine
        self.settings = settings if settings is not None else engine.settings
        self.ruleset = ruleset
        self.classification = classification
        self.summary = Summary()
        self.sinks: list = [*sinks, self.summary]
        self._routes: dict = {}  # event type -> what takes it, in the sinks' order
        self._rebind()
        self.started = time.perf_counter()
        self.started_cpu = time.process_time()
        self.finished: float | None = None
        self.finished_cpu: float | None = None
        self.stats: Stats | None = None
        self.stream_dumper = None  # --dump-streams: a reassembly observer, closed with the sinks
        # --workers: in a worker, Stats go to the coordinator (which merges them) and the outputs
        # are the coordinator's; in the coordinator, the workers' CPU and a line about them
        self._divert_stats = None
        self.workers_cpu = 0.0
        self.notes: list[str] = []

    # -- building -------------------------------------------------------------
    @classmethod
    def build(cls, settings: Settings, *, rule_paths=(), eve=(), fast: str | None = None,
              checksum_mode: str = "auto", console_alerts: bool = True, classification=None, killer=None,
              kill_sinks=(), dump_streams: str | None = None, line_buffered: bool = False,
              host: str | None = None, in_iface: str | None = None, rules_progress=None) -> "Pipeline":
        """Load rules, make the engine and the standard sinks; PipelineError on anything unusable.

        ``eve``: the EVE outputs (``cli.config.EveSpec``: a path or a redis:// URL, types, payload);
        ``host``/``in_iface``: the sensor name and capture interface every EVE record carries;
        ``rules_progress``: as ``load_ruleset``'s ``progress``.
        """
        from mirrorwatch.sinks.caps import EmergencyNotices
        from mirrorwatch.sinks.console import ConsoleAlerts
        from mirrorwatch.sinks.eve import OutputError
        from mirrorwatch.sinks.eve_file import FILEINFO
        from mirrorwatch.sinks.fastlog import FastLogWriter
        from mirrorwatch.sinks.redis import RedisURLError

        paths = list(rule_paths) or [str(bundled_signatures())]
        ruleset = load_ruleset(paths, settings, classification, rules_progress)
        if checksum_mode not in ("auto", "all", "none"):
            raise PipelineError(f"checksum mode must be auto, all or none, got {checksum_mode!r}")
        engine = Engine(settings, ruleset, checksum_mode=checksum_mode, killer=killer)
        if not any(FILEINFO in spec.types for spec in eve):
            engine.applayer.no_file_hashes()  # hashes are written in fileinfo records only
        fold_detect_skips(ruleset, engine.detector)
        sinks: list = list(kill_sinks)  # the injector first: least latency for kills
        try:
            dumper = _stream_dumper(dump_streams, engine) if dump_streams else None
            for spec in eve:
                sinks.append(_eve_writer(spec, settings, host, in_iface, line_buffered))
            if fast:
                sinks.append(FastLogWriter(fast, line_buffered=line_buffered))
        except (OutputError, PipelineError, RedisURLError) as e:
            for s in sinks:
                s.close()
            raise PipelineError(str(e)) from None
        if console_alerts:
            sinks.append(ConsoleAlerts(sys.stderr if any(spec.target == "-" for spec in eve) else sys.stdout))
        sinks.append(EmergencyNotices())  # flow emergency mode entered/over: one stderr line each
        pipe = cls(engine, sinks, ruleset=ruleset, settings=settings, classification=classification)
        if ruleset.cache is not None:
            pipe.notes.append(ruleset.cache.summary())
        if dumper is not None:
            pipe.stream_dumper = dumper
        return pipe

    def add_sink(self, sink) -> None:
        """Add a sink before the summary (e.g. the live table)."""
        self.sinks.insert(len(self.sinks) - 1, sink)
        self._rebind()

    def _rebind(self) -> None:
        """Route each event type to the sinks that take it (the dict is updated in place: the
        frame callbacks made before a sink was added see it too)."""
        routes = {}
        for cls in EVENT_TYPES:
            takers = (_route(s, cls) for s in self.sinks)
            routes[cls] = tuple(t for t in takers if t is not None)
        self._routes.clear()
        self._routes.update(routes)

    def _takers(self, event) -> tuple:
        """What takes ``event``: its type's route; an event of another type goes to every sink's handle."""
        takers = self._routes.get(type(event))
        return takers if takers is not None else tuple(s.handle for s in self.sinks)

    @property
    def rule_count(self) -> int:
        return len(self.ruleset.rules) if self.ruleset is not None else 0

    # -- events -----------------------------------------------------------------
    def dispatch(self, events) -> None:
        divert = self._divert_stats
        for e in events:
            if divert is not None and type(e) is Stats:
                divert(e)
                continue
            for h in self._takers(e):
                h(e)

    def detach_outputs(self, stats_to) -> None:
        """In a worker process: ``stats_to(Stats)`` takes the stats, and reopening is the coordinator's job."""
        self._divert_stats = stats_to

    def frame_callback(self):
        """``cb(ts, linktype, frame, wirelen)`` for ``capture.run``: process, then dispatch if anything came out."""
        process = self.engine.process
        routes = self._routes
        takers = self._takers

        def cb(ts, linktype, frame, wirelen):
            events = process(ts, linktype, frame, wirelen)
            if events:
                for e in events:
                    hs = routes.get(type(e))
                    for h in (hs if hs is not None else takers(e)):
                        h(e)

        return cb

    def header_callback(self, linktype: int):
        """The ``FrameSink`` for ``capture.run_headers``: compiled, the reader calls it and it calls the
        engine as C (no Python frame per packet unless events came out); the engine counts frames and
        bytes."""
        from mirrorwatch.core.decode.ownframes import AllFrames

        routes = self._routes
        takers = self._takers

        def emit(events):
            for e in events:
                hs = routes.get(type(e))
                for h in (hs if hs is not None else takers(e)):
                    h(e)

        return AllFrames(self.engine, linktype, emit)

    def delivered(self) -> tuple[int, int]:
        """(frames, bytes) the engine has taken so far: ``capture.run_headers``' counters."""
        return self.engine.pcap_cnt, self.engine.bytes

    def finish(self, capture_counters: dict | None = None) -> Stats | None:
        """End of input: flush every session, write final stats, flush the outputs.

        ``capture_counters`` (live: frames received, queue and kernel drops) join
        the final stats' ``capture`` object; the EVE outputs' delivery counters
        (Redis) join as ``eve``.
        """
        events = self.engine.finish()
        for e in events:
            if type(e) is Stats:
                if capture_counters:
                    e.counters.setdefault("capture", {}).update(capture_counters)
                if self.stream_dumper is not None:
                    e.counters["streamdump"] = self.stream_dumper.counters()
                e.counters.update(self.output_counters())
                self.stats = e
        decoder_errs = getattr(self.engine.decoder, "errs", None)
        if isinstance(decoder_errs, dict):
            self.summary.decode_reasons = dict(decoder_errs)
        self.dispatch(events)
        self.finished = time.perf_counter()
        self.finished_cpu = time.process_time()
        self.flush()
        return self.stats

    # -- outputs ------------------------------------------------------------------
    def flush(self) -> None:
        for s in self.sinks:
            s.flush()

    def close(self) -> None:
        for s in self.sinks:
            s.close()
        if self.stream_dumper is not None:
            self.stream_dumper.close()

    def _transports(self) -> list:
        """The EVE outputs that account for their delivery (Redis)."""
        return [out for out in (getattr(s, "out", None) for s in self.sinks) if hasattr(out, "counters")]

    def output_counters(self) -> dict:
        """``{"eve": {"redis": {sent, buffered, dropped, refused, lost, unheard, reconnects}}}`` summed over the
        Redis outputs, for the stats; empty without one."""
        total: dict = {}
        for out in self._transports():
            for k, v in out.counters().items():
                total[k] = total.get(k, 0) + v
        return {"eve": {"redis": total}} if total else {}

    def output_warnings(self) -> list[str]:
        """After ``close``: one line per output that did not deliver everything."""
        return [w for w in (out.warning() for out in self._transports()) if w]

    def records_lost(self) -> int:
        """After ``close``: EVE records an output could not deliver (counted in its warning line)."""
        return sum(out.undelivered() for out in self._transports())

    def reopen_outputs(self) -> None:
        """SIGHUP / logrotate: every file sink continues in a fresh file at its path."""
        if self._divert_stats is not None:  # a worker: the coordinator owns the files
            return
        for s in self.sinks:
            s.reopen()

    def reload_rules(self, paths) -> str | None:
        """Swap in freshly loaded rules; returns an error line (old rules kept) or None."""
        try:
            rs = load_ruleset(paths, self.settings, self.classification)
        except PipelineError as e:
            return f"rules not reloaded: {e}"
        return self.swap_rules(rs, paths)

    def swap_rules(self, rs, paths, detector=None) -> str | None:
        """Swap in a rule set loaded elsewhere (listen parses and compiles it in a thread: ``detector``,
        from ``Engine.build_detector``); as ``reload_rules``."""
        if not rs.rules and self.rule_count:
            return f"rules not reloaded: no rule loaded from {', '.join(map(str, paths))} ({len(rs.skipped)} skipped)"
        self.engine.reload_rules(rs, detector)
        fold_detect_skips(rs, self.engine.detector)
        self.ruleset = rs
        return None

    # -- report -------------------------------------------------------------------
    def elapsed(self) -> float:
        end = self.finished if self.finished is not None else time.perf_counter()
        return max(end - self.started, 1e-9)

    def cpu_time(self) -> float:
        """CPU seconds this process (and its workers) spent on the run (the figure that holds on a busy machine)."""
        end = self.finished_cpu if self.finished_cpu is not None else time.process_time()
        return max(end - self.started_cpu, 0.0) + self.workers_cpu

    def print_summary(self, console, show_table: bool = True) -> None:
        if self.summary.counters == {} and self.stats is not None:
            self.summary.counters = self.stats.counters
        self.summary.render(console, self.elapsed(), show_table=show_table, cpu=self.cpu_time())
        for line in self.notes:
            console.print(line, highlight=False)


def _route(sink, cls):
    """What of ``sink`` takes events of type ``cls`` (None: nothing); a sink without ``route`` takes all."""
    route = getattr(sink, "route", None)
    return route(cls) if route is not None else sink.handle


def _eve_writer(spec, settings: Settings, host: str | None, in_iface: str | None, line_buffered: bool):
    """An EVE writer onto a file or, for a redis:// target, onto Redis (limits from the eve-log.redis settings)."""
    from mirrorwatch.sinks.eve import EveWriter
    from mirrorwatch.sinks.redis import RedisOutput, is_redis_url, parse_redis_url

    output = None
    if is_redis_url(spec.target):
        output = RedisOutput(
            parse_redis_url(spec.target),
            batch_size=settings["eve-log.redis.pipelining.batch-size"],
            buffer_size=settings["eve-log.redis.buffer-size"],
            stream_maxlen=settings["eve-log.redis.stream-maxlen"],
            stream_trim_exact=settings["eve-log.redis.stream-trim-exact"],
            send_interval=settings["eve-log.redis.send-interval"],
            reconnect_interval=settings["eve-log.redis.reconnect-interval"],
            timeout=settings["eve-log.redis.timeout"],
            drain_timeout=settings["eve-log.redis.drain-timeout"])
    return EveWriter(spec.target, types=spec.types, payload=spec.payload, line_buffered=line_buffered,
                     output=output, host=host, in_iface=in_iface, dns_version=int(settings["eve-log.dns.version"]),
                     log_eps=bool(settings["eve-log.flow.exception-policy"]),
                     anomaly_decode=settings["eve-log.anomaly.types.decode"],
                     ipv6_compress=settings["eve-log.ipv6-compress"] if spec.ipv6_compress is None
                     else spec.ipv6_compress)


def _stream_dumper(directory: str, engine: Engine):
    """The flows room's stream dumper, attached as the reassembly observer of every new stream."""
    from mirrorwatch.sinks.streamdump import StreamDumper

    try:
        dumper = StreamDumper(directory, max_gap=engine.settings["stream.dump-max-gap"],
                              max_bytes=engine.settings["stream.dump-max-bytes"])
    except OSError as e:
        raise PipelineError(f"{directory}: cannot write streams: {e.strerror or e}") from None
    engine.stream_hooks.append(dumper.on_new_stream)  # runs before detect's own hook, which wraps it
    return dumper


def replay(pipeline: Pipeline, paths, *, realtime: bool = False, speed: float = 1.0, on_refresh=None,
           refresh_interval: float = 0.25):
    """Feed pcap files through the pipeline; returns capture's ``CaptureStats``.

    Fast path: the capture's reader calls straight into ``engine.process``.  With
    ``realtime`` the frames are paced by their timestamps (divided by
    ``speed``); ``on_refresh(now)`` is called about every ``refresh_interval``
    wall seconds (live table).  Raises ``capture.CaptureError`` for unusable
    files before any frame is processed.
    """
    from mirrorwatch.sources import pcapfile as capture

    pipeline.started = time.perf_counter()
    pipeline.started_cpu = time.process_time()
    if not realtime and on_refresh is None:
        return capture.run_headers(paths, pipeline.header_callback, pipeline.delivered)
    cb = pipeline.frame_callback()
    source = capture.PcapFiles(paths)
    mono = time.monotonic
    next_refresh = mono()
    wall0 = None
    ts0 = 0.0
    n = 0
    for ts, linktype, frame, wirelen in source:
        if realtime:
            if wall0 is None:
                wall0, ts0 = mono(), ts
            due = wall0 + (ts - ts0) / speed
            while True:
                now = mono()
                wait = due - now
                if wait <= 0:
                    break
                if on_refresh is not None and now >= next_refresh:
                    on_refresh(now)
                    next_refresh = now + refresh_interval
                time.sleep(min(wait, refresh_interval))
        cb(ts, linktype, frame, wirelen)
        n += 1
        if on_refresh is not None and not n & 1023:
            now = mono()
            if now >= next_refresh:
                on_refresh(now)
                next_refresh = now + refresh_interval
    return source.stats
