"""The compiled build (Cython, pure-Python mode) against the interpreted one: the same files, the same output.

``mirrorwatch.COMPILED`` lists the modules the build compiles; ``MIRRORWATCH_PURE=1``
runs the very same ``.py`` files interpreted.  Here:

- a build that compiled them runs them compiled (and a pure install is said so, skipped);
- ``MIRRORWATCH_PURE=1`` runs every one of them interpreted;
- every attribute a compiled record's ``.py`` assigns is declared in its ``.pxd`` (a compiled
  record has no room for an undeclared one: the interpreted build would accept it, the
  compiled one raise AttributeError);
- corpus captures replayed by both builds give byte-identical EVE output (the stats event's
  ``uptime`` and the forged segments' random IP ids aside).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import mirrorwatch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PKG = ROOT / "mirrorwatch"
CORPUS = Path(os.environ.get("MIRRORWATCH_CORPUS", ROOT.parent / "shared" / "corpus"))
NDPI = CORPUS / "bench" / "ndpi-mixed-ethernet.pcap"
NDPI_PACKETS = 20_000
SV = CORPUS / "suricata-verify"
# suricata-verify cases that between them take most per-packet paths: midstream pickup, gaps,
# overlaps, flowbits, thresholds, HTTP/DNS/TLS, split handshake, TCP Fast Open, IPv6 fragments, tunnels
SV_CASES = (
    "alert-testmyids-midstream", "eve-payload-05-tcp-data-gap", "eve-overlap-payload-02-policy-oldlinux",
    "detect-flowbits", "threshold/threshold-rule-flow-backoff-single-flow", "http-async", "dns/bug-990",
    "tls/tls-bypass-missing-event", "tcp-split-handshake-01-4whs", "tcp-fastopen-03",
    "ipv6-evasion/ipv6-malformed-fragments-30", "defrag/bug-6942-6887-defrag-eth-ip-gre-ppp-ip-udp-data",
)
TIMEOUT_S = 600

sys.path.insert(0, str(HERE))
import suricata_verify as sv  # noqa: E402


def _compiled_build() -> None:
    """Skip unless the build compiled the modules (a pure install has nothing to compare)."""
    if not any(mirrorwatch.built().values()):
        pytest.skip("installed without compiling (MIRRORWATCH_PURE=1 at install, or no Cython at build time)")


def _modules_in(env_pure: str) -> dict:
    code = "import json, mirrorwatch; print(json.dumps(mirrorwatch.compiled()))"
    env = dict(os.environ, MIRRORWATCH_PURE=env_pure)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


# -- which build runs -------------------------------------------------------------------


def test_a_compiled_build_runs_compiled():
    _compiled_build()
    on_disk = mirrorwatch.built()
    assert all(on_disk.values()), f"the build compiled only some modules: {on_disk}"
    runs = _modules_in("0")
    assert all(runs.values()), f"compiled modules on disk but not loaded: {runs}"


def test_pure_runs_every_module_interpreted():
    runs = _modules_in("1")
    assert set(runs) == set(mirrorwatch.COMPILED)
    assert not any(runs.values()), runs


def test_version_says_which_build_runs():
    env = dict(os.environ, MIRRORWATCH_PURE="1")
    p = subprocess.run([sys.executable, "-m", "mirrorwatch", "--version"], capture_output=True, text=True,
                       env=env, timeout=120, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert "build: interpreted (MIRRORWATCH_PURE is set)" in p.stdout


def test_an_edited_source_runs_interpreted(tmp_path):
    """A source newer than its compiled module (an edit not rebuilt) makes the whole package interpreted."""
    _compiled_build()
    copy = tmp_path / "mirrorwatch"
    subprocess.run(["cp", "-a", str(PKG), str(copy)], check=True)
    name = mirrorwatch.COMPILED[0]
    src = copy.joinpath(*name.split(".")[1:]).with_suffix(".py")
    if not src.exists():
        src = copy.joinpath(*name.split(".")[1:], "__init__.py")
    later = max(f.stat().st_mtime for f in src.parent.glob(src.stem + ".*.so")) + 60
    os.utime(src, (later, later))
    code = "import json, mirrorwatch; print(json.dumps([mirrorwatch.PURE_REASON, mirrorwatch.compiled()]))"
    env = dict(os.environ, MIRRORWATCH_PURE="0", PYTHONPATH=str(tmp_path))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                       cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    reason, runs = json.loads(p.stdout)
    assert "changed after it was compiled" in reason and not any(runs.values())


# -- the .pxd files declare what the .py files assign -----------------------------------------


_PXD_CLASS = re.compile(r"^cdef class (\w+)(?:\((\w+)\))?:")
_PXD_FIELD = re.compile(r"^\s+cdef (?!class)(?:public |readonly )?([^=(]+)$")


def _pxd_classes() -> dict[str, tuple[set, str | None]]:
    """Every cdef class of the package's .pxd files -> (declared attribute names, base class name)."""
    out: dict[str, tuple[set, str | None]] = {}
    for pxd in PKG.rglob("*.pxd"):
        current = None
        for line in pxd.read_text().splitlines():
            m = _PXD_CLASS.match(line)
            if m:
                current = m.group(1)
                out[current] = (set(), m.group(2))
                continue
            if line and not line[0].isspace():
                current = None
            m = _PXD_FIELD.match(line)
            if current is not None and m:
                chunks = [c.strip() for c in m.group(1).split("#")[0].split(",")]
                out[current][0].update([chunks[0].split()[-1], *chunks[1:]])
    return out


def _assigned(cls: ast.ClassDef) -> set[str]:
    """Attributes a class's methods assign on ``self``, and its ``__slots__``."""
    names: set[str] = set()
    for node in ast.walk(cls):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets):
            names.update(ast.literal_eval(node.value))
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
        for t in targets:
            for el in (t.elts if isinstance(t, ast.Tuple) else [t]):
                if isinstance(el, ast.Attribute) and isinstance(el.value, ast.Name) and el.value.id == "self":
                    names.add(el.attr)
    return names


def test_every_attribute_a_compiled_record_assigns_is_declared():
    classes = _pxd_classes()
    assert classes, "no cdef class in any .pxd"
    missing = []
    for pxd in PKG.rglob("*.pxd"):
        py = pxd.with_suffix(".py")
        for node in ast.parse(py.read_text()).body:
            if not isinstance(node, ast.ClassDef) or node.name not in classes:
                continue
            declared, base = set(), node.name
            while base is not None:
                fields, base = classes[base]
                declared |= fields
            properties = {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
            for name in sorted(_assigned(node) - declared - properties):
                missing.append(f"{py.relative_to(ROOT)}: {node.name}.{name}")
    assert not missing, "assigned in the .py but not declared in its .pxd:\n" + "\n".join(missing)


# -- the two builds give the same output ---------------------------------------------------------


def _eve_lines(path: Path) -> list[bytes]:
    """EVE lines, byte for byte, except what differs between two runs of one build: the stats
    event's uptime (wall clock) and the forged segments' IP ids (random)."""
    out = []
    for line in path.read_bytes().splitlines():
        rec = json.loads(line)
        kind = rec.get("event_type")
        if kind == "stats":
            rec["stats"].pop("uptime", None)
        elif kind == "kill":
            for seg in rec["kill"].get("segments", ()):
                seg["ip_id"] = None
        else:
            out.append(line)
            continue
        out.append(json.dumps(rec, sort_keys=True).encode())
    return out


def _replay(out: Path, pure: str, pcaps: list, argv: list) -> list[bytes]:
    eve = out / f"eve-{pure}.json"
    env = dict(os.environ, MIRRORWATCH_PURE=pure)
    cmd = [sys.executable, "-m", "mirrorwatch", "replay", "-q", "--eve-payload", "--eve", str(eve),
           "--sensor-name", "differential", *argv, *map(str, pcaps)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=TIMEOUT_S, cwd=ROOT)
    assert p.returncode == 0, f"{' '.join(cmd)} (MIRRORWATCH_PURE={pure}):\n{p.stderr[-3000:]}"
    return _eve_lines(eve)


def _same_both_ways(tmp_path: Path, pcaps: list, argv: list) -> None:
    compiled = _replay(tmp_path, "0", pcaps, argv)
    interpreted = _replay(tmp_path, "1", pcaps, argv)
    assert len(compiled) > 1, "nothing was logged"
    for i, (a, b) in enumerate(zip(compiled, interpreted)):
        assert a == b, f"EVE line {i + 1} differs:\ncompiled:    {a[:2000]!r}\ninterpreted: {b[:2000]!r}"
    assert len(compiled) == len(interpreted)


@pytest.mark.slow
def test_ndpi_capture_same_both_ways(tmp_path):
    _compiled_build()
    if not NDPI.exists():
        pytest.skip(f"{NDPI} not found")
    from mirrorwatch.sources.pcapfile import PcapFiles, PcapWriter

    head = tmp_path / "ndpi-head.pcap"
    with PcapWriter(head) as w:
        for i, (ts, _lt, frame, wirelen) in enumerate(PcapFiles([NDPI])):
            if i == NDPI_PACKETS:
                break
            w.write(ts, frame, wirelen)
    _same_both_ways(tmp_path, [head], [])


@pytest.mark.slow
def test_demo_capture_same_both_ways(tmp_path):
    _compiled_build()
    _same_both_ways(tmp_path, [ROOT / "pcaps" / "demo.pcap"], ["--kill-pcap", str(tmp_path / "kills.pcap")])


@pytest.mark.slow
@pytest.mark.parametrize("name", SV_CASES)
def test_suricata_verify_case_same_both_ways(tmp_path, name):
    _compiled_build()
    if not SV.exists():
        pytest.skip(f"{SV} not found")
    case = next((c for c in sv.load_index() if c["name"] == name), None)
    assert case is not None, f"{name} is not in the corpus index"
    argv, _ = sv.cli_args(case)
    _same_both_ways(tmp_path, [SV / case["pcap"]], ["--rules", str(SV / case["rules"]), *argv])


@pytest.mark.slow
def test_reassembly_and_robustness_captures_same_both_ways(tmp_path):
    """The reassembly corpus (overlaps, gaps, wraparound, midstream) and every readable robustness
    capture (malformed frames, link types, tunnels, fragments) as one capture each."""
    _compiled_build()
    from mirrorwatch.sources.pcapfile import CaptureError, check_files

    for folder, argv in (("reassembly", ["--set", "stream.midstream=true"]), ("robustness", [])):
        index = CORPUS / folder / "index.json"
        if not index.exists():
            pytest.skip(f"{index} not found")
        readable = []
        for entry in json.loads(index.read_text())["files"]:
            path = CORPUS / folder / entry["file"]
            try:
                check_files([path])
            except CaptureError:
                continue  # unreadable or unsupported: the robustness tests cover the one-line error
            readable.append(path)
        assert readable
        out = tmp_path / folder
        out.mkdir()
        _same_both_ways(out, readable, argv)


def test_every_name_imported_from_a_compiled_module_is_there():
    """A compiled module keeps as Python attributes only what it defines: a name it imports and its
    .pxd makes C-level (a cimported type, a constant copied into a C variable) is not there, so
    every importer must take such a name from where it is defined."""
    import importlib

    _compiled_build()
    if not all(mirrorwatch.compiled().values()):
        pytest.skip(f"the interpreted build runs: {mirrorwatch.PURE_REASON}")
    compiled = set(mirrorwatch.COMPILED)
    missing = []
    for folder in ("mirrorwatch", "tests", "bench", "fuzz"):
        for py in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(py.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module in compiled and node.level == 0:
                    mod = importlib.import_module(node.module)
                    missing += [f"{py.relative_to(ROOT)}: {node.module}.{a.name}" for a in node.names
                                if not hasattr(mod, a.name)]
    assert not missing, "imported from a compiled module that does not define it:\n" + "\n".join(missing)


@given(data=st.binary(max_size=64), start=st.integers(-80, 80), stop=st.integers(-80, 80))
def test_take_is_a_slice_clamped_to_the_frame(data, start, stop):
    """``wire.take`` (compiled: a copy from the buffer's C pointer) gives what a slice of the
    frame gives, and never reads outside it, whatever the offsets."""
    from mirrorwatch.core.decode.wire import take

    assert take(data, start, stop) == data[max(start, 0):max(stop, 0)]


@given(data=st.binary(max_size=3000), cut=st.integers(0, 3000), kind=st.sampled_from((bytes, bytearray)))
def test_partial_is_the_reduced_sum_in_both_builds(data, cut, kind):
    """``checksum.partial`` returns the partial sum reduced below 0xFFFF, whichever way it is
    summed (compiled: 32-bit words in C for bytes; interpreted, or a bytearray: CPython's ints)."""
    from mirrorwatch.core.decode.checksum import partial

    cut = min(cut, len(data))
    assert partial(kind(data), cut, len(data)) == int.from_bytes(data[cut:], "little") % 0xFFFF
