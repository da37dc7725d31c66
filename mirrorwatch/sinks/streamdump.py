"""``--dump-streams DIR``: each direction's reassembled bytes in a file, named as tcpflow names them.

File names follow tcpflow 1.6's default template ``%A.%a-%B.%b%V%v%C%c``:
sender address and port, then receiver address and port; IPv4 octets
zero-padded to three digits, ports to five, IPv6 addresses in their
compressed text form (``2001:db8::1.04321``); a VLAN-tagged session gets
``--<vlan id>`` (outermost tag); the second and later sessions on the same
addresses, ports and VLAN get ``c1``, ``c2``...  Example:
``010.000.000.001.01234-198.051.100.002.00080``.

Bytes are written at their stream offset (offset 0 = first byte after the
SYN, or the first byte seen for a session picked up midstream), so a gap the
reassembler skipped becomes a hole of zero bytes in the file, as tcpflow's
positioned writes leave it.  The dumper is a ``reassembly`` observer: it
receives every settled byte exactly once, independent of what detection
trims, and costs nothing when not attached.

Wiring (replay and listen): ``dumper = StreamDumper(dir)``;
``engine.flows.on_new_stream = dumper.on_new_stream``; after the last
packet ``engine.finish()`` (it flushes every stream), then ``dumper.close()``.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from ipaddress import IPv6Address


def addr_text(a: bytes) -> str:
    """tcpflow's address text: zero-padded IPv4 octets, compressed IPv6."""
    if len(a) == 4:
        return "%03d.%03d.%03d.%03d" % tuple(a)
    return str(IPv6Address(a))


def flow_file_name(src: bytes, sport: int, dst: bytes, dport: int, vlan: int | None = None) -> str:
    """tcpflow's ``%A.%a-%B.%b%V%v`` (the ``%C%c`` connection count is added by the dumper)."""
    name = f"{addr_text(src)}.{sport:05d}-{addr_text(dst)}.{dport:05d}"
    if vlan is not None:
        name += f"--{vlan}"
    return name


class StreamDumper:
    """Writes each reassembled direction to ``directory``; see the module docstring."""

    def __init__(self, directory: str, max_open: int = 64):
        os.makedirs(directory, exist_ok=True)
        self.dir = directory
        self.max_open = max(1, max_open)
        self._names: dict = {}  # stream -> file name
        self._seen: dict = {}  # base file name -> sessions seen so far (tcpflow's connection count)
        self._open: OrderedDict = OrderedDict()  # file name -> open file, least recently used first
        self._created: set = set()
        self.files = 0
        self.bytes = 0
        self.errors = 0
        self.last_error: str | None = None

    # -- FlowTable hook -------------------------------------------------------
    def on_new_stream(self, flow, direction: int, stream) -> None:
        """Attach to a stream the flow table just created (``FlowTable.on_new_stream``)."""
        vlan = flow.vlan_id[0] if flow.vlan_id else None
        if direction == 0:
            base = flow_file_name(flow.client, flow.cport, flow.server, flow.sport, vlan)
        else:
            base = flow_file_name(flow.server, flow.sport, flow.client, flow.cport, vlan)
        count = self._seen.get(base, 0)
        self._seen[base] = count + 1
        name = base + f"c{count}" if count else base
        self._names[stream] = name
        stream.observer = self

    # -- reassembly observer ---------------------------------------------------
    def data(self, stream, offset: int, data: bytes) -> None:
        if not data:
            return
        name = self._names.get(stream)
        if name is None:
            return
        fh = self._file(name)
        if fh is None:
            return
        try:
            fh.seek(offset)
            fh.write(data)
            self.bytes += len(data)
        except OSError as e:
            self._error(name, e)

    def gap(self, stream, offset: int, length: int) -> None:
        """Nothing to write: later data lands at its own offset, leaving a zero-filled hole."""

    def end(self, stream) -> None:
        name = self._names.pop(stream, None)
        if name is not None:
            fh = self._open.pop(name, None)
            if fh is not None:
                fh.close()
            stream.observer = None

    def close(self) -> None:
        for fh in self._open.values():
            try:
                fh.close()
            except OSError:
                pass
        self._open.clear()

    def counters(self) -> dict:
        return {"files": self.files, "bytes": self.bytes, "errors": self.errors}

    # -- files ----------------------------------------------------------------
    def _file(self, name: str):
        fh = self._open.get(name)
        if fh is not None:
            self._open.move_to_end(name)
            return fh
        path = os.path.join(self.dir, name)
        try:
            if name in self._created:
                fh = open(path, "r+b")
            else:
                fh = open(path, "wb")
                self._created.add(name)
                self.files += 1
        except OSError as e:
            self._error(name, e)
            return None
        self._open[name] = fh
        if len(self._open) > self.max_open:
            _, old = self._open.popitem(last=False)
            old.close()
        return fh

    def _error(self, name: str, e: OSError) -> None:
        self.errors += 1
        self.last_error = f"cannot write stream file {os.path.join(self.dir, name)}: {e.strerror or e}"
