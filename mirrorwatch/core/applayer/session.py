"""The application layer of each flow: protocol detection by content, then the protocol's parser.

Theory of operation
-------------------
``AppLayer`` is one per engine; ``flow.app`` (an ``AppFlow``) one per flow that
carried data.

- TCP: when the flows room starts a stream direction, ``on_new_stream`` puts an
  ``AppObserver`` on it (chained to the observer already there).  The reassembly
  room hands it the direction's settled in-order bytes, its gaps and its end.
  Until the protocol is known, the bytes go to ``detect_proto.ProtoDetect``,
  which keeps them once (bounded by its own give-up limit); once one direction
  names a protocol, its parser (``PARSERS``) is made and the kept bytes of both
  directions are replayed into it.  ``failed`` means detection gave up; the flow
  keeps being tracked and inspected by transport rules.
- UDP: ``udp`` probes the first datagram of each direction, as Suricata: the
  protocol one names gets the datagrams (DNS's datagram parser); a flow that
  neither names is ``failed`` (a shared record, nothing per flow).
- Transactions: the parser keeps them; detect asks ``parser.updated()`` what to
  inspect; after inspection the engine calls ``logged`` for the transactions
  complete in both directions (EVE http/dns/tls records), and ``flow_end`` for
  what is left when the flow goes.
- A parser that raises is a bug, never a stop: the direction is given up,
  counted (``parser_errors``), and the flow goes on.

Memory: every byte the layer keeps for a flow (detection's kept bytes, a
parser's buffers, its transactions' headers, bodies and messages, TLS
handshake buffers) is charged to ``MemAccount``s: the global
``app-layer.memcap`` (a mirrorwatch key: Suricata caps each protocol on its
own) and, under it, Suricata's per-protocol ``app-layer.protocols.http.memcap``
and ``app-layer.protocols.dns.global-memcap``.  Before bytes go in, they must
fit (a parser can grow by what it is fed, plus at most one body's decompressed
output); after the call, the parser's ``memuse`` is charged.  When they do not
fit the allocation is refused, as Suricata's HTPMalloc refuses: counted on the
full account (``memcap``), detection stops with ``failed``, or the flow's parser
stops in both directions (what it holds stays charged until it goes).  A
flow's bytes are released when its transactions are logged and when it ends
(``flow_end``: timeout, eviction, shutdown).
"""

from __future__ import annotations

from mirrorwatch.core.applayer import dns, ssh, tls
from mirrorwatch.core.applayer.common import TO_CLIENT, TO_SERVER, MemAccount
from mirrorwatch.core.applayer.detect_proto import ProtoDetect, probe_udp
from mirrorwatch.core.applayer.http.config import HttpConfig
from mirrorwatch.core.applayer.http.state import HttpState

FAILED = "failed"
BOTH_DIRECTIONS = (1 << TO_SERVER) | (1 << TO_CLIENT)  # ``AppFlow.given_up``: every direction stopped
_FEED, _PARSE, _GAP, _CLOSE = 0, 1, 2, 3  # the parser calls of ``_call``: those before _GAP bring bytes in

# protocol -> parser of a TCP flow (detected protocols without one are only named: smtp, ftp, ...)
PARSERS = {"http": HttpState, "tls": tls.TlsState, "dns": dns.DnsTcpState, "ssh": ssh.SshState}
UDP_PARSERS = {"dns": dns.DnsUdpState}
_HTP = "app-layer.protocols.http.libhtp.default-config."
# protocol -> (setting of its own cap under app-layer.memcap, name of its refusal counter)
PROTO_CAPS = {"http": ("app-layer.protocols.http.memcap", "memcap"),
              "dns": ("app-layer.protocols.dns.global-memcap", "memcap_global")}


def http_config(settings, file_hashes: bool = True) -> HttpConfig:
    """The HTTP parser's limits from the settings (Suricata's libhtp default-config keys);
    ``file_hashes`` False: no file is hashed, whatever ``eve-log.files.force-hash`` says."""
    return HttpConfig(request_body_limit=settings[_HTP + "request-body-limit"],
                      response_body_limit=settings[_HTP + "response-body-limit"],
                      compression_bomb_limit=settings[_HTP + "compression-bomb-limit"],
                      decompress_layer_limit=settings[_HTP + "response-body-decompress-layer-limit"],
                      max_tx=settings[_HTP + "max-tx"], max_headers=settings[_HTP + "headers-limit"],
                      flow_memcap=settings["app-layer.protocols.http.flow-memcap"],
                      file_hashes=settings["eve-log.files.force-hash"] if file_hashes else ())


class AppFlow:
    """One flow's application layer: the protocol, its parser and the detection still under way."""

    __slots__ = ("proto", "parser", "probe", "given_up", "mem", "acct")

    def __init__(self) -> None:
        self.proto: str | None = None
        self.parser = None
        self.probe: ProtoDetect | None = None
        self.given_up = 0  # bit ``1 << d``: the parser no longer gets direction d
        self.mem = 0  # bytes charged for this flow (to ``acct``)
        self.acct: MemAccount | None = None  # the account they are charged to


class AppObserver:
    """Reassembly observer of one TCP direction: in-order bytes, gaps and the end to the app layer."""

    __slots__ = ("layer", "app", "d", "inner", "wants_data", "inner_wants_data")

    def __init__(self, layer: AppLayer, app: AppFlow, d: int, inner) -> None:
        self.layer, self.app, self.d, self.inner = layer, app, d, inner
        self.wants_data = True
        self.inner_wants_data = inner is not None and getattr(inner, "wants_data", True)

    def data(self, stream, offset: int, data) -> None:
        self.layer.stream_data(self.app, self.d, data)
        if self.inner_wants_data:
            self.inner.data(stream, offset, data)

    def gap(self, stream, offset: int, length: int) -> None:
        self.layer.stream_gap(self.app, self.d, length)
        if self.inner is not None:
            self.inner.gap(stream, offset, length)

    def end(self, stream) -> None:
        self.layer.stream_end(self.app, self.d)
        if self.inner is not None:
            self.inner.end(stream)


class AppLayer:
    """The application layer of one engine: hooks for the flows room, counters for the stats."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.factories = dict(PARSERS)
        self._http_parsers(http_config(settings))
        self.c = dict.fromkeys(("flows", "failed", "parser_errors", "gaps", "txs_logged"), 0)
        self.by_proto: dict[str, int] = {}
        self.mem = MemAccount(settings["app-layer.memcap"])
        self.accounts = {proto: MemAccount(settings[key], self.mem) for proto, (key, _) in PROTO_CAPS.items()}

    def _http_parsers(self, config: HttpConfig) -> None:
        self.factories["http"] = lambda: HttpState(config)

    def no_file_hashes(self) -> None:
        """Nothing reads the files' hashes (no fileinfo output): none are computed, as Suricata
        hashes only for its files output's ``force-hash`` (or a rule's filemd5/filesha*,
        keywords not supported here).  Call before the first packet."""
        self._http_parsers(http_config(self.settings, file_hashes=False))

    # -- TCP -----------------------------------------------------------------
    def on_new_stream(self, flow, d: int, stream) -> None:
        app = flow.app
        if app is None:
            app = flow.app = AppFlow()
            self.c["flows"] += 1
        stream.observer = AppObserver(self, app, d, stream.observer)

    def stream_data(self, app: AppFlow, d: int, data) -> None:
        if app.given_up & (1 << d):
            return
        if app.parser is not None:
            self._call(app, d, _FEED, data, len(data), None)
            return
        if app.proto is not None:  # named but not parsed here (smtp, ftp, ...), or failed
            return
        if app.probe is None:
            app.probe = ProtoDetect()
            app.acct = self.mem
        if not self.mem.reserve(len(data)):  # no room to keep them: detection stops
            self._detected(app, FAILED)
            return
        app.mem += len(data)
        found = app.probe.probe(d, data)
        if found is not None:
            self._detected(app, found)

    def stream_gap(self, app: AppFlow, d: int, length: int) -> None:
        self.c["gaps"] += 1
        if app.parser is not None and not app.given_up & (1 << d):
            self._call(app, d, _GAP, None, length, None)
        elif app.proto is None:
            self._detected(app, FAILED)  # detection needs the first bytes: a gap before them ends it

    def stream_end(self, app: AppFlow, d: int) -> None:
        if app.parser is not None and not app.given_up & (1 << d):
            self._call(app, d, _CLOSE, None, 0, None)

    def _detected(self, app: AppFlow, proto: str) -> None:
        app.proto = proto
        probe, app.probe = app.probe, None
        _release(app)  # the kept bytes go with the probe (the parser charges what it keeps)
        self.by_proto[proto] = self.by_proto.get(proto, 0) + 1
        if proto == FAILED:
            self.c["failed"] += 1
        factory = self.factories.get(proto)
        if factory is None:
            return
        app.parser = factory()
        app.acct = self.accounts.get(proto, self.mem)
        if probe is None:
            return
        for d in (TO_SERVER, TO_CLIENT):
            kept = probe.kept(d)
            if kept and not app.given_up & (1 << d):
                self._call(app, d, _FEED, bytes(kept), len(kept), None)

    def _call(self, app: AppFlow, d: int, op: int, data, n: int, parsed) -> None:
        """One call into the flow's parser (``op``: ``_invoke``); the ``n`` bytes a feed or parse
        brings in must fit the caps first (else the parser stops in both directions), what it
        holds after is charged."""
        if op < _GAP and n and not app.acct.fits(n):
            app.given_up = BOTH_DIRECTIONS
            return
        try:
            _invoke(app.parser, op, d, data, n, parsed)
        except Exception:  # noqa: BLE001 - a parser bug must not stop the engine
            self.c["parser_errors"] += 1
            app.given_up |= 1 << d
        _charge(app)

    # -- UDP -----------------------------------------------------------------
    def udp(self, flow, payload, d: int, sport: int, dport: int) -> None:
        """One UDP datagram of ``flow`` in direction ``d``: a flow gets its application
        layer once a datagram names the protocol (until then it costs nothing)."""
        app = flow.app
        parsed = None  # the datagram as detection parsed it
        if app is None or (app.parser is None and app.proto == FAILED and not app.given_up & (1 << d)):
            # Suricata's AppLayerHandleUdp: one detection per direction; a flow that none names is "failed"
            # (the other direction still gets its one chance)
            found = probe_udp(payload, sport, dport)
            if found is None:
                if app is None:
                    self.c["failed"] += 1
                flow.app = _UDP_FAILED[(app.given_up if app is not None else 0) | (1 << d)]
                return
            proto, parsed = found
            app = flow.app = AppFlow()
            self.c["flows"] += 1
            app.proto = proto
            self.by_proto[proto] = self.by_proto.get(proto, 0) + 1
            factory = UDP_PARSERS.get(proto)
            app.parser = factory() if factory is not None else None
            app.acct = self.accounts.get(proto, self.mem)
        if app.parser is not None and not app.given_up & (1 << d):
            self._call(app, d, _PARSE, payload, len(payload), parsed)

    # -- logging ---------------------------------------------------------------
    def logged(self, flow) -> list:
        """Transactions of ``flow`` complete in both directions, inspected: their EVE records are due."""
        app = flow.app
        if app is None or app.parser is None:
            return []
        if type(app.parser) is HttpState:  # asked after every packet: HTTP's is a C call
            http = app.parser
            done = http.pop_done()
        else:
            done = app.parser.pop_done()
        if done:
            self.c["txs_logged"] += len(done)
            _charge(app)
        return done

    def flow_end(self, flow) -> list:
        """The flow goes: every transaction still held is logged as it stands, its bytes released."""
        app = flow.app
        if app is None:
            return []
        app.probe = None
        _release(app)
        if app.parser is None:
            return []
        left = list(app.parser.txs)
        self.c["txs_logged"] += len(left)
        app.parser = None
        return left

    def counters(self) -> dict:
        out = dict(self.c)
        out["by_proto"] = dict(self.by_proto)
        out.update(self.mem.counters())
        for proto, (_, hits) in PROTO_CAPS.items():
            out[proto] = self.accounts[proto].counters(hits)
        return out


def _udp_failed(tried: int) -> AppFlow:
    app = AppFlow()
    app.proto = FAILED
    app.given_up = tried
    return app


# UDP flows whose detection failed share these (no parser, nothing charged), by the directions tried
_UDP_FAILED = {1: _udp_failed(1), 2: _udp_failed(2), 3: _udp_failed(3)}


def _invoke(parser, op: int, d: int, data, n: int, parsed) -> None:
    """What ``_call`` asks of a parser: ``feed(d, data)``, ``parse(d, data, parsed)`` (UDP),
    ``gap(d, n)`` or ``close(d)``; HTTP's are C calls."""
    if type(parser) is HttpState:
        http = parser
        if op == _FEED:
            http.feed(d, data)
        elif op == _GAP:
            http.gap(d, n)
        else:
            http.close(d)
    elif op == _FEED:
        parser.feed(d, data)
    elif op == _PARSE:
        parser.parse(d, data, parsed)
    elif op == _GAP:
        parser.gap(d, n)
    else:
        parser.close(d)


def uninspected(app: AppFlow) -> None:
    """Nothing inspects the flow's transactions: they are handed out as detect would
    (``parser.updated()``), so they are logged once complete (HTTP's a C call)."""
    if type(app.parser) is HttpState:
        http = app.parser
        if http._dirty:  # (nothing changed: updated() would hand out nothing)
            http.updated()
    else:
        app.parser.updated()


def _charge(app: AppFlow) -> None:
    """Charge the parser's bytes held now, against what the flow was charged before."""
    if type(app.parser) is HttpState:  # after every call into a parser: HTTP's is a C call
        http = app.parser
        now = http.held_bytes()
    else:
        now = app.parser.memuse
    if now != app.mem:
        app.acct.add(now - app.mem)
        app.mem = now


def _release(app: AppFlow) -> None:
    if app.mem:
        app.acct.add(-app.mem)
        app.mem = 0
