"""Suricata's configuration vocabulary, as far as mirrorwatch needs it to tell three kinds of key apart.

- a mirrorwatch setting (``core.settings``: named as Suricata names it where Suricata has one);
- a Suricata key under another name here (``ALIASES``: ``packet-alert-max``, ``stats.interval``,
  ``decoder.vxlan.enabled``...), translated;
- a Suricata key mirrorwatch does not implement: accepted, with a note (``--set``) or named in the
  one warning line of ``-c`` -- every key of a section whose vocabulary is not listed here
  (``app-layer``, ``af-packet``, ``logging``...), and in the sections whose keys are listed
  (``stream``, ``flow``, ``detect``, ``pcre``...: ``SHARED_SECTION_KEYS``, the keys of Suricata 7
  and 8's ``suricata.yaml.in`` there) those keys.  A mirrorwatch setting is always found first,
  so the lists are Suricata's vocabulary, whatever mirrorwatch implements of it.

Anything else is a misspelling: ``core.settings`` answers "unknown setting" with the closest name.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

# every top-level key of Suricata 7 and 8's suricata.yaml.in (commented-out ones included)
SURICATA_SECTIONS = frozenset("""
    action-order af-packet af-xdp app-layer asn1-max-frames autofp-scheduler capture classification-file
    coredump daemon-directory datasets decoder default-log-dir default-packet-size default-reputation-path
    default-rule-path defrag detect dpdk engine-analysis exception-policy firewall flow flow-timeouts
    geoip-database heartbeat host host-mode host-os-policy include ipfw ippair legacy livedev logging luajit
    magic-file max-pending-packets mpm-algo napatech netmap nflog nfq outputs packet-alert-max pcap pcap-file
    pcre pfring pid-file plugins profiling reference-config-file reputation-categories-file reputation-files
    rule-files run-as runmode security sensor-name spm-algo stats stream suricata-version threading
    threshold-file umask unix-command vars vlan
""".split())

# the sections mirrorwatch shares with Suricata: Suricata's keys there
SHARED_SECTION_KEYS = tuple("""
    stream.memcap stream.memcap-policy stream.checksum-validation stream.prealloc-sessions
    stream.drop-invalid stream.max-syn-queued stream.max-synack-queued stream.bypass stream.liberal-timestamps
    stream.reassembly.memcap-policy stream.reassembly.randomize-chunk-size stream.reassembly.randomize-chunk-range
    stream.reassembly.raw stream.reassembly.segment-prealloc stream.reassembly.check-overlap-different-data
    stream.reassembly.max-regions stream.reassembly.urgent.*
    flow.memcap flow.memcap-policy flow.hash-size flow.prealloc flow.emergency-recovery flow.managers
    flow.recyclers flow.rate-tracking.*
    flow-timeouts.*.closed flow-timeouts.*.bypassed flow-timeouts.*.emergency-*
    defrag.memcap-policy defrag.hash-size defrag.trackers defrag.prealloc defrag.host-config*
    decoder.*.reserved-bits-check decoder.recursion-level.*
    detect.profile detect.custom-values.* detect.sgh-mpm-* detect.stream-tx-log-limit detect.guess-applayer-tx
    detect.delayed-detect detect.prefilter.* detect.grouping.* detect.thresholds.* detect.profiling.*
    detect.flowbits.*
    capture.disable-offloading capture.checksum-validation
    pcre.match-limit pcre.match-limit-recursion
    host.hash-size host.prealloc ippair.hash-size ippair.prealloc
    vars.*
""".split())
SHARED_SECTIONS = frozenset(k.split(".", 1)[0] for k in SHARED_SECTION_KEYS)

# Suricata keys that a command-line option covers: the note says which
OPTION_FOR = {
    "default-rule-path": "-r/--rules", "rule-files": "-r/--rules", "classification-file": "--classification",
    "outputs": "--eve/--fast", "default-log-dir": "--eve/--fast", "sensor-name": "--sensor-name",
}

_TUNNEL_ENABLED = ("decoder.vxlan.enabled", "decoder.geneve.enabled", "decoder.teredo.enabled")
_TUNNEL_PORTS = ("decoder.vxlan.ports", "decoder.geneve.ports", "decoder.teredo.ports")


def _off_when_disabled(key: str):
    def translate(value, settings) -> list[tuple[str, object]]:
        from mirrorwatch.core.settings import parse_bool

        return [] if parse_bool(value) else [(key.replace(".enabled", ".ports"), "")]

    return translate


def _ports(key: str):
    """``$VXLAN_PORTS`` (a port group), ``[4789, 8472]`` or ``4789``: the decoder's comma-separated list."""

    def translate(value, settings) -> list[tuple[str, object]]:
        text = str(value).strip()
        for _ in range(len(settings.port_groups) + 1):  # a group may name another group
            if not text.startswith("$"):
                break
            text = str(settings.port_groups.get(text[1:], text)).strip()
        return [(key, text.strip("[]").replace(" ", ""))]

    return translate


def _same_as(key: str):
    def translate(value, settings) -> list[tuple[str, object]]:
        return [(key, value)]

    return translate


def _unless_auto(key: str):
    """Suricata's ``auto`` (e.g. ``stream.inline: auto``: inline in IPS mode) keeps the command's own default."""

    def translate(value, settings) -> list[tuple[str, object]]:
        return [] if str(value).strip().lower() == "auto" else [(key, value)]

    return translate


PACKET_ALERT_MAX_RANGE = range(1, 256)  # Suricata's packet-alert-max: 1..255, else its default stays


def _packet_alert_max(value, settings) -> list[tuple[str, object]]:
    """Suricata's ``packet-alert-max``: a value outside 1..255 (``0`` included) leaves the default, as Suricata
    does ("Invalid value for packet-alert-max, default value set instead")."""
    from mirrorwatch.core.settings import parse_int

    return [("detect.packet-alert-max", value)] if parse_int(value) in PACKET_ALERT_MAX_RANGE else []


def _stats_enabled(value, settings) -> list[tuple[str, object]]:
    from mirrorwatch.core.settings import parse_bool

    return [] if parse_bool(value) else [("capture.stats-interval", 0)]


# Suricata key -> translate(value, settings) -> [(mirrorwatch setting, value)]
ALIASES = {
    "packet-alert-max": _packet_alert_max,
    "stats.interval": _same_as("capture.stats-interval"),
    "stats.enabled": _stats_enabled,
    "stream.inline": _unless_auto("stream.inline"),
    **{k: _off_when_disabled(k) for k in _TUNNEL_ENABLED},
    **{k: _ports(k) for k in _TUNNEL_PORTS},
}


def is_suricata_key(key: str) -> bool:
    """A key Suricata knows that mirrorwatch does not implement (under any name)."""
    section = key.split(".", 1)[0]
    if section not in SURICATA_SECTIONS:
        return False
    if section not in SHARED_SECTIONS:
        return True
    return any(fnmatchcase(key, pattern) for pattern in SHARED_SECTION_KEYS)


def note_for(key: str) -> str:
    """The one-line note for ``--set`` of a Suricata key mirrorwatch does not implement."""
    option = OPTION_FOR.get(key.split(".", 1)[0])
    hint = f"; mirrorwatch's {option} does this" if option else ""
    return f"--set {key}: a Suricata setting mirrorwatch does not implement, ignored{hint}"
