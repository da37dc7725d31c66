"""The application layer of each flow: protocol detection by content, then the protocol's parser.

Theory of operation
-------------------
``AppLayer`` is one per engine; ``flow.app`` (an ``AppFlow``) one per flow that
carried data.

- TCP: when the flows room starts a stream direction, ``on_new_stream`` puts an
  ``AppObserver`` on it (chained to the observer already there).  The reassembly
  room hands it the direction's settled in-order bytes, its gaps and its end.
  Until the protocol is known, the bytes go to ``detect_proto.ProtoDetect`` and
  are kept (bounded by the detector's own give-up limit); once one direction
  names a protocol, its parser (``PARSERS``) is made and the kept bytes of both
  directions are replayed into it.  ``failed`` means detection gave up; the flow
  keeps being tracked and inspected by transport rules.
- UDP: ``udp`` probes each payload of a flow until the protocol is known, then
  hands datagrams to the protocol's datagram parser (DNS).
- Transactions: the parser keeps them; detect asks ``parser.updated()`` what to
  inspect; after inspection the engine calls ``logged`` for the transactions
  complete in both directions (EVE http/dns/tls records), and ``flow_end`` for
  what is left when the flow goes.
- A parser that raises is a bug, never a stop: the direction is given up,
  counted (``parser_errors``), and the flow goes on.
"""

from __future__ import annotations

from mirrorwatch.core.applayer import dns, ssh, tls
from mirrorwatch.core.applayer.common import TO_CLIENT, TO_SERVER
from mirrorwatch.core.applayer.detect_proto import ProtoDetect, probe_udp
from mirrorwatch.core.applayer.http.config import HttpConfig
from mirrorwatch.core.applayer.http.state import HttpState

FAILED = "failed"

# protocol -> parser of a TCP flow (detected protocols without one are only named: smtp, ftp, ...)
PARSERS = {"http": HttpState, "tls": tls.TlsState, "dns": dns.DnsTcpState, "ssh": ssh.SshState}
UDP_PARSERS = {"dns": dns.DnsUdpState}
_HTP = "app-layer.protocols.http.libhtp.default-config."


def http_config(settings) -> HttpConfig:
    """The HTTP parser's limits from the settings (Suricata's libhtp default-config keys)."""
    return HttpConfig(request_body_limit=settings[_HTP + "request-body-limit"],
                      response_body_limit=settings[_HTP + "response-body-limit"],
                      compression_bomb_limit=settings[_HTP + "compression-bomb-limit"],
                      decompress_layer_limit=settings[_HTP + "response-body-decompress-layer-limit"],
                      max_tx=settings[_HTP + "max-tx"], max_headers=settings[_HTP + "headers-limit"],
                      flow_memcap=settings["app-layer.protocols.http.flow-memcap"])


class AppFlow:
    """One flow's application layer: the protocol, its parser and the detection still under way."""

    __slots__ = ("proto", "parser", "probe", "kept", "given_up")

    def __init__(self) -> None:
        self.proto: str | None = None
        self.parser = None
        self.probe: ProtoDetect | None = None
        self.kept: list | None = [[], []]  # bytes seen per direction before the protocol was known
        self.given_up = [False, False]


class AppObserver:
    """Reassembly observer of one TCP direction: in-order bytes, gaps and the end to the app layer."""

    __slots__ = ("layer", "app", "d", "inner", "wants_data")

    def __init__(self, layer: AppLayer, app: AppFlow, d: int, inner) -> None:
        self.layer, self.app, self.d, self.inner = layer, app, d, inner
        self.wants_data = True

    def data(self, stream, offset: int, data) -> None:
        self.layer.stream_data(self.app, self.d, data)
        if self.inner is not None and getattr(self.inner, "wants_data", True):
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
        http = http_config(settings)
        self.factories["http"] = lambda: HttpState(http)
        self.c = dict.fromkeys(("flows", "failed", "parser_errors", "gaps", "txs_logged"), 0)
        self.by_proto: dict[str, int] = {}

    # -- TCP -----------------------------------------------------------------
    def on_new_stream(self, flow, d: int, stream) -> None:
        app = flow.app
        if app is None:
            app = flow.app = AppFlow()
            self.c["flows"] += 1
        stream.observer = AppObserver(self, app, d, stream.observer)

    def stream_data(self, app: AppFlow, d: int, data) -> None:
        if app.given_up[d]:
            return
        parser = app.parser
        if parser is not None:
            self._call(app, d, parser.feed, d, bytes(data))
            return
        if app.proto is not None:  # named but not parsed here (smtp, ftp, ...), or failed
            return
        if app.probe is None:
            app.probe = ProtoDetect()
        app.kept[d].append(bytes(data))
        found = app.probe.probe(d, bytes(data))
        if found is not None:
            self._detected(app, found)

    def stream_gap(self, app: AppFlow, d: int, length: int) -> None:
        self.c["gaps"] += 1
        if app.parser is not None and not app.given_up[d]:
            self._call(app, d, app.parser.gap, d, length)
        elif app.proto is None:
            self._detected(app, FAILED)  # detection needs the first bytes: a gap before them ends it

    def stream_end(self, app: AppFlow, d: int) -> None:
        if app.parser is not None and not app.given_up[d]:
            self._call(app, d, app.parser.close, d)

    def _detected(self, app: AppFlow, proto: str) -> None:
        app.proto = proto
        app.probe = None
        self.by_proto[proto] = self.by_proto.get(proto, 0) + 1
        if proto == FAILED:
            self.c["failed"] += 1
        kept, app.kept = app.kept, None
        factory = self.factories.get(proto)
        if factory is None:
            return
        app.parser = factory()
        for d in (TO_SERVER, TO_CLIENT):
            for chunk in kept[d]:
                if not app.given_up[d]:
                    self._call(app, d, app.parser.feed, d, chunk)

    def _call(self, app: AppFlow, d: int, fn, *args) -> None:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - a parser bug must not stop the engine
            self.c["parser_errors"] += 1
            app.given_up[d] = True

    # -- UDP -----------------------------------------------------------------
    def udp(self, flow, payload, d: int, sport: int, dport: int) -> None:
        """One UDP datagram of ``flow`` in direction ``d``."""
        app = flow.app
        if app is None:
            app = flow.app = AppFlow()
            app.kept = None
            self.c["flows"] += 1
        if app.proto is None:
            found = probe_udp(payload, sport, dport)
            if found is None:
                return
            app.proto = found
            self.by_proto[found] = self.by_proto.get(found, 0) + 1
            factory = UDP_PARSERS.get(found)
            app.parser = factory() if factory is not None else None
        if app.parser is not None and not app.given_up[d]:
            self._call(app, d, app.parser.parse, d, payload)

    # -- logging ---------------------------------------------------------------
    def logged(self, flow) -> list:
        """Transactions of ``flow`` complete in both directions, inspected: their EVE records are due."""
        app = flow.app
        if app is None or app.parser is None:
            return []
        done = app.parser.pop_done()
        self.c["txs_logged"] += len(done)
        return done

    def flow_end(self, flow) -> list:
        """The flow goes: every transaction still held is logged as it stands."""
        app = flow.app
        if app is None or app.parser is None:
            return []
        left = list(app.parser.txs)
        self.c["txs_logged"] += len(left)
        app.parser = None
        return left

    def counters(self) -> dict:
        out = dict(self.c)
        out["by_proto"] = dict(self.by_proto)
        return out
