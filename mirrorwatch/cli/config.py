"""``-c suricata.yaml``: the parts of a Suricata configuration mirrorwatch has, and ``--set`` the Suricata way.

Read as Suricata reads it (``conf-yaml-loader.c``): YAML 1.1 (the ``%YAML 1.1``
header), ``include:`` (a file or a list of files, relative to the main file's
folder, merged into the mapping where it stands: later keys win) and
``key: !include FILE``, ``_`` in key names read as ``-`` (outside the address
and port groups).  What is taken:

- ``vars`` address-groups and port-groups; ``default-rule-path`` + ``rule-files``;
  ``classification-file``; ``sensor-name``;
- ``outputs``: each enabled ``eve-log`` (``filetype`` regular or redis with its
  ``redis`` server/port/mode/key/stream-maxlen/stream-trim-exact/pipelining;
  ``filename`` under ``default-log-dir``; ``types``, with alert's ``payload``;
  Suricata's ``drop`` records are mirrorwatch's ``kill`` records) and ``fast``;
- every key that is a mirrorwatch setting under its Suricata name (``stream``,
  ``flow``, ``flow-timeouts``, ``defrag``, ``detect``, ``decoder``...), and the
  Suricata keys mirrorwatch has under another name (``cli.suricata_keys.ALIASES``).

Every other key is collected in ``RunConfig.unused`` (a subtree nothing is
taken from is named by its root), for one warning line.  The command line wins:
the caller applies ``--set`` after the file, and ``-r``, ``--eve``, ``--fast``,
``--classification``, ``--sensor-name`` replace what the file says.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mirrorwatch.cli.suricata_keys import ALIASES, is_suricata_key
from mirrorwatch.core.settings import (
    HOST_OS_PREFIX,
    SETTINGS_BY_KEY,
    VAR_PREFIXES,
    SettingError,
    Settings,
    UnknownSetting,
    parse_bool,
)

INCLUDE_DEPTH = 8  # nested include files followed before giving up (Suricata's parser limit is its recursion limit)
INCLUDE_KEY = "include"
INCLUDE_TAG = "!include"
DEFAULT_LOG_DIR = "."  # where relative output file names go when the file names no default-log-dir
EVE_FILENAME = "eve.json"  # Suricata's DEFAULT_LOG_FILENAME
FAST_FILENAME = "fast.log"
# consumed by the loader itself, so never reported as unused
_STRUCTURAL = frozenset({"suricata-version", INCLUDE_KEY})
# Suricata's EVE record types that mirrorwatch writes under another name
EVE_TYPE_NAMES = {"drop": "kill", "files": "fileinfo"}
# options of a types entry that are settings (the setting's key by type and option)
_TYPE_SETTINGS = {("dns", "version"): "eve-log.dns.version", ("files", "force-hash"): "eve-log.files.force-hash",
                  ("flow", "exception-policy"): "eve-log.flow.exception-policy"}
# options one level further down a types entry that are settings (by type, group and option)
_TYPE_GROUP_SETTINGS = {("anomaly", "types", "decode"): "eve-log.anomaly.types.decode"}
_PAYLOAD_OPTIONS = ("payload", "payload-printable", "packet")
# defaults that changed with a Suricata major version: a configuration written for that version (its
# ``suricata-version``) gets them unless it sets them itself
_VERSION_DEFAULTS = ((8, "eve-log.dns.version", "3"),)  # Suricata 8 logs DNS in the v3 format


class ConfigError(Exception):
    """A configuration file that cannot be used (one line: file, where, what)."""


@dataclass(frozen=True)
class EveSpec:
    """One EVE output: a path ('-' = stdout) or a redis:// URL, its event types, payload or not, and its
    own ``ipv6-compress`` (None: the ``eve-log.ipv6-compress`` setting's)."""

    target: str
    types: tuple[str, ...]
    payload: bool = False
    ipv6_compress: bool | None = None


@dataclass
class RunConfig:
    """What a Suricata configuration gives a run besides its settings."""

    rule_paths: list[str] = field(default_factory=list)
    classification: str | None = None
    sensor_name: str | None = None
    eve: list[EveSpec] = field(default_factory=list)
    fast: str | None = None
    unused: list[str] = field(default_factory=list)


# -- keys -----------------------------------------------------------------------------------------------
def apply_key(settings: Settings, key: str, value) -> bool:
    """Set one Suricata-named key: True when mirrorwatch uses it, False for a Suricata key it does not
    implement; ``UnknownSetting`` (with the closest name) for anything else, ``SettingError`` for a bad value."""
    alias = ALIASES.get(key)
    if alias is not None:
        for k, v in alias(value, settings):
            settings.set(k, v)
        return True
    if key in SETTINGS_BY_KEY or key.startswith(VAR_PREFIXES) or key.startswith(HOST_OS_PREFIX):
        settings.set(key, value)
        return True
    if is_suricata_key(key):
        return False
    raise UnknownSetting(key)


# -- YAML ---------------------------------------------------------------------------------------------------
class _Include(str):
    """The file named by a ``!include`` tag, resolved after parsing."""


def _loader():
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor(INCLUDE_TAG, lambda loader, node: _Include(loader.construct_scalar(node)))
    return Loader


def load_yaml(path, depth: int = 0, under_vars: bool = False, base: Path | None = None) -> dict:
    """A Suricata YAML file as a dict, includes resolved; ConfigError with one line on any problem.

    ``under_vars``: the file is included under the address or port groups (names keep their ``_``);
    ``base``: the main file's folder, where Suricata looks for every relative include.
    """
    import yaml

    path = Path(path)
    if depth > INCLUDE_DEPTH:
        raise ConfigError(f"{path}: includes nested more than {INCLUDE_DEPTH} deep (an include loop?)")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a YAML text file ({e.reason})") from None
    try:
        tree = yaml.load(text, Loader=_loader())  # a SafeLoader with one extra tag
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {getattr(e, 'problem', None) or e}") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top, found a {type(tree).__name__}")
    return _resolve(tree, base or path.parent, depth, under_vars)


def _resolve(node, base: Path, depth: int, under_vars: bool):
    """Includes merged, ``!include`` loaded, ``_`` read as ``-`` in key names (Suricata's mangling)."""
    if isinstance(node, _Include):
        return load_yaml(_relative(node, base), depth + 1, under_vars, base)
    if isinstance(node, list):
        return [_resolve(v, base, depth, under_vars) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict = {}
    for key, value in node.items():
        key = str(key)
        if key == INCLUDE_KEY:
            for name in value if isinstance(value, list) else [value]:
                if name is not None:
                    out.update(load_yaml(_relative(str(name), base), depth + 1, under_vars, base))
            continue
        if not under_vars:
            key = key.replace("_", "-")
        out.pop(key, None)  # a key defined again moves to where it is defined last, as Suricata's node does
        out[key] = _resolve(value, base, depth, under_vars or key in ("address-groups", "port-groups"))
    return out


def _relative(name: str, base: Path) -> Path:
    p = Path(name)
    return p if p.is_absolute() else base / p


# -- what is taken --------------------------------------------------------------------------------------------
class _Node:
    """A mapping being read: remembers which keys were taken, names the rest as unused."""

    def __init__(self, mapping, path: str):
        self.map = mapping if isinstance(mapping, dict) else {}
        self.path = path
        self.taken: set[str] = set()
        self.children: list[_Node] = []

    def get(self, key: str, default=None):
        self.taken.add(key)
        value = self.map.get(key)
        return default if value is None else value

    def child(self, key: str) -> _Node:
        self.taken.add(key)
        node = _Node(self.map.get(key), f"{self.path}.{key}")
        self.children.append(node)
        return node

    def unused(self) -> list[str]:
        names = [f"{self.path}.{k}" for k, v in self.map.items() if k not in self.taken and v is not None]
        for c in self.children:
            names.extend(c.unused())
        return names


@dataclass
class _Context:
    tree: dict
    run: RunConfig
    settings: Settings
    log_dir: str


def read_config(path, settings: Settings) -> RunConfig:
    """Apply a suricata.yaml's settings to ``settings``; what else it gives the run (ConfigError: one line)."""
    tree = load_yaml(path)
    ctx = _Context(tree, RunConfig(), settings, str(tree.get("default-log-dir") or DEFAULT_LOG_DIR))
    major = _major_version(tree.get("suricata-version"))
    for since, key, value in _VERSION_DEFAULTS:
        if major >= since:
            settings.set(key, value)
    unused: list[str] = []
    for key, value in tree.items():
        if key in _STRUCTURAL or value is None:
            continue
        handler = _TOP.get(key)
        try:
            unused.extend(handler(ctx, value) if handler is not None else _settings_tree(settings, key, value))
        except SettingError as e:
            raise ConfigError(f"{path}: {e}") from None
    ctx.run.unused = list(dict.fromkeys(unused))
    return ctx.run


def _major_version(value) -> int:
    """``suricata-version: "8.0"`` -> 8 (0 when absent or not a version)."""
    head = str(value or "").strip().split(".")[0]
    return int(head) if head.isdigit() else 0


def _settings_tree(settings: Settings, path: str, value) -> list[str]:
    """Every leaf as a Suricata-named key; returns the unused ones (a subtree with nothing used: its root)."""
    if isinstance(value, dict):
        # a subtree's 'enabled' switch last: 'enabled: false' wins over the keys beside it
        items = sorted(((k, v) for k, v in value.items() if v is not None), key=lambda kv: kv[0] == "enabled")
        unused = [u for k, v in items for u in _settings_tree(settings, f"{path}.{k}", v)]
        return [path] if items and unused == [f"{path}.{k}" for k, _ in items] else unused
    try:
        return [] if apply_key(settings, path, value) else [path]
    except UnknownSetting:
        return [path]


def _vars(ctx: _Context, value) -> list[str]:
    node = _Node(value, "vars")
    for group in ("address-groups", "port-groups"):
        child = node.child(group)
        for name in list(child.map):
            if child.get(name) is not None:
                ctx.settings.set(f"vars.{group}.{name}", child.get(name))
    return node.unused()


def _rule_files(ctx: _Context, value) -> list[str]:
    base = str(ctx.tree.get("default-rule-path") or "")
    names = [str(n) for n in (value if isinstance(value, list) else [value]) if n is not None]
    ctx.run.rule_paths = [n if os.path.isabs(n) or not base else os.path.join(base, n) for n in names]
    return []


def _classification(ctx: _Context, value) -> list[str]:
    ctx.run.classification = str(value)
    return []


def _sensor_name(ctx: _Context, value) -> list[str]:
    ctx.run.sensor_name = str(value)
    return []


def _read_elsewhere(ctx: _Context, value) -> list[str]:
    return []  # default-rule-path (with rule-files), default-log-dir (by every output)


def _outputs(ctx: _Context, value) -> list[str]:
    unused: list[str] = []
    for item in value if isinstance(value, list) else []:
        name, conf = _entry(item)
        reader = _OUTPUTS.get(name)
        node = _Node(conf, f"outputs.{name}")
        if not parse_bool(node.get("enabled", False)):
            continue  # switched off: nothing asked for
        if reader is None or not reader(ctx, node):
            unused.append(node.path)  # an output mirrorwatch does not write: named whole
            continue
        unused.extend(node.unused())
    return unused


def _entry(item) -> tuple[str, object]:
    """A list entry of ``outputs`` or ``types``: ``- name`` or ``- name: {options}``."""
    if isinstance(item, dict) and item:
        return next(iter(item.items()))
    return str(item), None


def _log_path(ctx: _Context, name: str) -> str:
    return name if name == "-" or os.path.isabs(name) else os.path.join(ctx.log_dir, name)


def _eve_log(ctx: _Context, node: _Node) -> bool:
    filetype = str(node.get("filetype", "regular"))
    if filetype not in ("regular", "file", "redis"):  # syslog, unix sockets, plugins: not written here
        return False
    if filetype == "redis":
        target = _redis_url(node.child("redis"))
    else:
        target = _log_path(ctx, str(node.get("filename", EVE_FILENAME)))
    if ctx.run.sensor_name is None and node.get("sensor-name") is not None:  # Suricata's deprecated place for it
        ctx.run.sensor_name = str(node.get("sensor-name"))
    compress = node.get("ipv6-compress")
    if compress is not None:  # Suricata sets it per output (a bad value: SettingError, one line)
        try:
            compress = parse_bool(compress)
        except SettingError as e:
            raise SettingError(f"{node.path}.ipv6-compress: {e}") from None
    types, payload, unused = _eve_types(ctx, node.get("types", []), f"{node.path}.types")
    node.children.append(_Leftover(unused))
    ctx.run.eve.append(EveSpec(target, types, payload, compress))
    return True


def _redis_url(node: _Node) -> str:
    from urllib.parse import quote, urlencode

    query = {"mode": node.get("mode", "list")}
    for key in ("stream-maxlen", "stream-trim-exact"):
        if node.get(key) is not None:
            query[key] = _yes_no(node.get(key))
    pipelining = node.child("pipelining")
    if parse_bool(pipelining.get("enabled", False)) and pipelining.get("batch-size") is not None:
        query["batch-size"] = pipelining.get("batch-size")
    password = node.get("password")
    auth = f"{quote(str(node.get('username', '')))}:{quote(str(password))}@" if password is not None else ""
    key = quote(str(node.get("key", "suricata")), safe="")
    return f"redis://{auth}{node.get('server', '127.0.0.1')}:{node.get('port', 6379)}/{key}?{urlencode(query)}"


def _yes_no(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _eve_types(ctx: _Context, items, path: str) -> tuple[tuple[str, ...], bool, list[str]]:
    """``types:`` entries -> (mirrorwatch's types, alert payload wanted, the unused entries and options)."""
    from mirrorwatch.sinks.eve import DEFAULT_TYPES

    types: list[str] = []
    payload = False
    unused: list[str] = []
    for item in items if isinstance(items, list) else []:
        name, opts = _entry(item)
        ours = EVE_TYPE_NAMES.get(name, name)
        sub = _Node(opts, f"{path}.{name}")
        if not parse_bool(sub.get("enabled", True)):
            continue  # switched off: nothing asked for
        if ours not in DEFAULT_TYPES:
            unused.append(sub.path)
            continue
        types.append(ours)
        if ours == "alert":
            payload = any(parse_bool(sub.get(opt, False)) for opt in _PAYLOAD_OPTIONS)
        for (kind, option), key in _TYPE_SETTINGS.items():
            if kind == name and sub.get(option) is not None:
                ctx.settings.set(key, sub.get(option))
        for (kind, group, option), key in _TYPE_GROUP_SETTINGS.items():
            value = sub.child(group).get(option) if kind == name else None
            if value is not None:
                ctx.settings.set(key, value)
        unused.extend(sub.unused())
    return tuple(dict.fromkeys(types)), payload, unused


def _fast(ctx: _Context, node: _Node) -> bool:
    if str(node.get("filetype", "regular")) not in ("regular", "file"):
        return False
    ctx.run.fast = _log_path(ctx, str(node.get("filename", FAST_FILENAME)))
    if not parse_bool(node.get("append", True)):  # mirrorwatch always appends: 'append: no' is not followed
        node.taken.discard("append")
    return True


class _Leftover:
    """Unused names found while reading a list (no mapping to remember them in)."""

    def __init__(self, names: list[str]):
        self.names = names

    def unused(self) -> list[str]:
        return self.names


_TOP = {
    "vars": _vars, "rule-files": _rule_files, "default-rule-path": _read_elsewhere,
    "default-log-dir": _read_elsewhere, "classification-file": _classification, "sensor-name": _sensor_name,
    "outputs": _outputs,
}
_OUTPUTS = {"eve-log": _eve_log, "fast": _fast}


def describe_unused(names: list[str]) -> str:
    """Unused keys for the warning line, siblings together: ``stream.{memcap,bypass}, app-layer``."""
    groups: dict[str, list[str]] = {}
    for name in names:
        parent, _, leaf = name.rpartition(".")
        groups.setdefault(parent, []).append(leaf)
    parts = []
    for parent, leaves in groups.items():
        if not parent:
            parts.extend(leaves)
        else:
            parts.append(f"{parent}.{leaves[0]}" if len(leaves) == 1 else f"{parent}.{{{','.join(leaves)}}}")
    return ", ".join(parts)
