"""The rule-set cache (``rules.cache``, ``rules.ruleset_cache``): same results, never a wrong entry.

- a hit gives the same alerts and EVE as a cold load (replays of corpus captures, ET Open);
- a changed rule file, rule variable, classification, pcre setting or mirrorwatch version is
  another key (a miss), never the old entry;
- a damaged, truncated, tampered or foreign entry (rule set, detector plan or hyperscan
  database), or one of the previous format, is rejected, said in one line, rebuilt and
  stored again; an authentic entry (or one rule in it) that names something other than the
  rule model is not unpickled;
- a cached rule set's rules are unpickled one by one, when first used, and read as the list;
- a directory that cannot be made, is writable by others or cannot be written is no cache;
- entries are written whole (no temporary file is left) with owner-only permissions.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import mirrorwatch
from mirrorwatch.core.detect import Detector
from mirrorwatch.core.settings import Settings
from mirrorwatch.rules import cache as cache_mod
from mirrorwatch.rules.lazy import LazyRules
from mirrorwatch.rules.ruleset_cache import load_rules_cached

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CORPUS = Path(os.environ.get("MIRRORWATCH_CORPUS", ROOT.parent / "shared" / "corpus"))
ET_OPEN = CORPUS / "rules" / "et-open"
HTTP_PCAP = CORPUS / "bench" / "http-tests-merged.pcap"
DEMO = ROOT / "pcaps" / "demo.pcap"
SIGNATURES = ROOT / "signatures"
RULES = """\
alert tcp $HOME_NET any -> any 80 (msg:"one"; flow:to_server; content:"GET"; http_method; sid:1; rev:1;)
alert tcp any any -> any any (msg:"two"; content:"evil"; nocase; pcre:"/ev(i)l/i"; classtype:trojan-activity; sid:2;)
alert udp any any -> any 53 (msg:"three"; content:"|01 00|"; depth:4; sid:3;)
"""


def _settings(cache: Path, **extra) -> Settings:
    s = Settings({"detect.sgh-mpm-caching-path": str(cache)})
    for k, v in extra.items():
        s.set(k, v)
    return s


def _load(rules, cache: Path, notes: list | None = None, **extra):
    return load_rules_cached([str(rules)], _settings(cache, **extra), notify=None if notes is None else notes.append)


def _entries(cache: Path, prefix: str) -> list[Path]:
    return sorted(cache.glob(prefix + "*" + cache_mod.SUFFIX))


def _same_rules(a, b) -> None:
    assert [r.raw for r in a.rules] == [r.raw for r in b.rules]
    assert a.rules == b.rules  # dataclass equality: every parsed field
    assert a.skipped == b.skipped and a.warnings == b.warnings and a.disabled == b.disabled


@pytest.fixture
def rules(tmp_path) -> Path:
    p = tmp_path / "local.rules"
    p.write_text(RULES)
    return p


def test_miss_then_hit_gives_the_same_rule_set(tmp_path, rules):
    cache = tmp_path / "cache"
    cold = _load(rules, cache)
    assert cold.cache.status == "miss" and cold.cache.stored == 1
    warm = _load(rules, cache)
    assert warm.cache.status == "hit"
    _same_rules(cold, warm)
    assert warm.rules[1].matches[-1].regex.search(b"xxEVIL") is not None  # a cached pcre still matches
    mode = stat.S_IMODE(cache.stat().st_mode)
    assert mode == 0o700
    for f in cache.iterdir():
        assert not f.name.startswith(cache_mod.TMP_PREFIX)
        assert stat.S_IMODE(f.stat().st_mode) == 0o600


@pytest.mark.parametrize("change", ["rule file", "variable", "pcre setting", "classification", "version", "build"])
def test_a_changed_input_is_another_entry(tmp_path, rules, monkeypatch, change):
    cache = tmp_path / "cache"
    cls = tmp_path / "classification.config"
    cls.write_text("config classification: trojan-activity,A Network Trojan was detected,1\n")
    first = load_rules_cached([str(rules)], _settings(cache), classification=str(cls))
    assert first.cache.status == "miss"
    extra = {}
    if change == "rule file":
        rules.write_text(RULES.replace('"evil"', '"evil2"'))
    elif change == "variable":
        extra["vars.address-groups.HOME_NET"] = "[10.1.0.0/16]"
    elif change == "pcre setting":
        extra["pcre.match-limit"] = "100"
    elif change == "classification":
        cls.write_text("config classification: trojan-activity,A Network Trojan was detected,2\n")
    elif change == "version":
        monkeypatch.setattr(mirrorwatch, "__version__", mirrorwatch.__version__ + ".1")
    else:
        monkeypatch.setattr(mirrorwatch, "PURE_REASON", None if mirrorwatch.PURE_REASON else "test")
    again = load_rules_cached([str(rules)], _settings(cache, **extra), classification=str(cls))
    assert again.cache.status == "miss"
    cold = load_rules_cached([str(rules)], _settings(tmp_path / "other", **extra), classification=str(cls))
    _same_rules(again, cold)
    assert len(_entries(cache, cache_mod.RULES_PREFIX)) == 2


def _damage(kind: str, entry: Path, other: Path) -> None:
    data = entry.read_bytes()
    if kind == "truncated":
        entry.write_bytes(data[: len(data) // 2])
    elif kind == "corrupt":
        mid = len(data) // 2
        entry.write_bytes(data[:mid] + bytes([data[mid] ^ 0x40]) + data[mid + 1:])
    elif kind == "empty":
        entry.write_bytes(b"")
    elif kind == "foreign":  # an authentic entry of other inputs, under this name
        entry.write_bytes(other.read_bytes())
    else:  # tampered: a payload of someone's choosing, without the key
        entry.write_bytes(cache_mod.MAGIC + bytes(cache_mod.TAG_LEN) + pickle.dumps(("x",)))


@pytest.mark.parametrize("kind", ["truncated", "corrupt", "empty", "foreign", "tampered"])
def test_a_bad_rule_set_entry_is_rebuilt(tmp_path, rules, kind):
    cache = tmp_path / "cache"
    other = tmp_path / "other.rules"
    other.write_text(RULES.replace("sid:3;", "sid:4;"))
    _load(other, cache)
    [other_entry] = _entries(cache, cache_mod.RULES_PREFIX)
    cold = _load(rules, cache)
    [entry] = [e for e in _entries(cache, cache_mod.RULES_PREFIX) if e != other_entry]
    _damage(kind, entry, other_entry)
    notes: list = []
    rebuilt = _load(rules, cache, notes)
    assert rebuilt.cache.status == "rebuilt"
    assert len(notes) == 1 and "failed verification" in notes[0] and entry.name in notes[0]
    _same_rules(cold, rebuilt)
    assert _load(rules, cache).cache.status == "hit"  # stored again, whole


def _evil(marker: Path):
    """An object whose unpickling would run a command (``touch marker``)."""

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    return Evil()


def _rewrite(cache: Path, prefix: str, payload: bytes) -> Path:
    """The one entry named ``prefix...`` now holds ``payload``, signed with the real key."""
    [entry] = _entries(cache, prefix)
    cache_mod.CacheDir(str(cache), 0, cache_mod.CacheReport()).write(entry.name, payload)
    return entry


def test_an_authentic_entry_naming_other_code_is_not_unpickled(tmp_path, rules):
    cache = tmp_path / "cache"
    _load(rules, cache)
    marker = tmp_path / "ran"
    _rewrite(cache, cache_mod.RULES_PREFIX, pickle.dumps((_evil(marker),) * 8))
    notes: list = []
    rs = _load(rules, cache, notes)
    assert rs.cache.status == "rebuilt" and not marker.exists()
    assert len(rs.rules) == 3 and "unreadable" in notes[0]


def test_an_entry_of_the_previous_format_is_rebuilt_with_one_note(tmp_path, rules):
    """Format 1 pickled the rule objects whole: such an entry (authentic) is not read, but rebuilt."""
    cache = tmp_path / "cache"
    cold = _load(rules, cache)
    old = ("rules", "skipped", "warnings", "files", "disabled", "classification", "warned")
    _rewrite(cache, cache_mod.RULES_PREFIX, pickle.dumps(tuple(getattr(cold, f) for f in old)))
    notes: list = []
    rebuilt = _load(rules, cache, notes)
    assert rebuilt.cache.status == "rebuilt" and len(notes) == 1 and "unreadable" in notes[0]
    _same_rules(cold, rebuilt)
    warm = _load(rules, cache)
    assert warm.cache.status == "hit" and isinstance(warm.rules, LazyRules)
    _same_rules(cold, warm)


def test_a_rule_pickle_naming_other_code_is_not_unpickled(tmp_path, rules):
    """Rules are unpickled one by one when first used: the same wall holds for each of them."""
    cache = tmp_path / "cache"
    cold = _load(rules, cache)
    marker = tmp_path / "ran"
    fields = tuple(getattr(cold, f) for f in ("skipped", "warnings", "files", "disabled", "classification", "warned"))
    _rewrite(cache, cache_mod.RULES_PREFIX, pickle.dumps(fields + ((pickle.dumps(_evil(marker)),), ())))
    rs = _load(rules, cache)
    assert rs.cache.status == "hit" and len(rs.rules) == 1
    with pytest.raises(pickle.UnpicklingError, match="not part of a rule set"):
        rs.rules[0]
    assert not marker.exists()


def test_a_rule_set_naming_other_code_is_not_stored(tmp_path, rules, monkeypatch):
    """A rule holding something the rule model does not name cannot be cached: one line, no entry."""
    from mirrorwatch.rules import ruleset_cache

    parse = ruleset_cache.load_rules

    def load(*args, **kwargs):
        rs = parse(*args, **kwargs)
        rs.rules[0].extra["hook"] = print
        return rs

    monkeypatch.setattr(ruleset_cache, "load_rules", load)
    notes: list = []
    rs = _load(rules, tmp_path / "cache", notes)
    assert rs.cache.status == "miss" and rs.plan_cache is None and len(rs.rules) == 3
    assert len(notes) == 1 and "cannot be stored" in notes[0]
    assert _entries(tmp_path / "cache", cache_mod.RULES_PREFIX) == []


def test_lazy_rules_read_as_the_list(tmp_path, rules):
    cache = tmp_path / "cache"
    cold = _load(rules, cache)
    warm = _load(rules, cache)
    lazy = warm.rules
    assert isinstance(lazy, LazyRules) and lazy.decoded() == 0
    assert lazy[-1] == cold.rules[-1] and lazy[1:] == cold.rules[1:] and lazy.decoded() == 2
    assert cold.rules[1].src is cold.rules[2].src and lazy[1].src is lazy[2].src  # shared sets stay shared
    assert lazy == cold.rules and len(lazy) == 3 and lazy.decoded() == 3
    view = lazy.without({id(lazy[1])})
    assert [r.sid for r in view] == [1, 3] and view[1] is lazy[2]
    with pytest.raises(IndexError):
        view[2]


@pytest.mark.parametrize("kind", ["truncated", "corrupt", "other layout"])
def test_a_bad_plan_entry_is_rebuilt_with_one_note(tmp_path, rules, kind):
    cache = tmp_path / "cache"
    settings = _settings(cache)
    rs = load_rules_cached([str(rules)], settings)
    cold = Detector(rs, settings)
    assert rs.cache.plan == "miss"
    if kind == "other layout":
        entry = _rewrite(cache, cache_mod.PLAN_PREFIX, pickle.dumps({"index": ()}))
    else:
        [entry] = _entries(cache, cache_mod.PLAN_PREFIX)
        _damage(kind, entry, entry)
    notes: list = []
    rs = load_rules_cached([str(rules)], settings, notify=notes.append)
    det = Detector(rs, settings)
    assert rs.cache.status == "hit" and rs.cache.plan == "rebuilt"
    assert len(notes) == 1 and entry.name in notes[0] and "rebuilding it" in notes[0]
    assert (det.rule_index, det.patterns, det.tx_patterns) == (cold.rule_index, cold.patterns, cold.tx_patterns)
    again = load_rules_cached([str(rules)], settings)
    Detector(again, settings)
    assert again.cache.plan == "hit"


@pytest.mark.parametrize("kind", ["truncated", "corrupt", "foreign"])
def test_a_bad_hyperscan_entry_is_rebuilt(tmp_path, rules, kind):
    cache = tmp_path / "cache"
    settings = _settings(cache)
    Detector(load_rules_cached([str(rules)], settings), settings)
    hs_entries = _entries(cache, cache_mod.HS_PREFIX)
    assert len(hs_entries) >= 2
    _damage(kind, hs_entries[0], hs_entries[1])
    notes: list = []
    rs = load_rules_cached([str(rules)], settings, notify=notes.append)
    det = Detector(rs, settings)
    assert rs.cache.hs_rebuilt == 1 and rs.cache.hs_compiled == 1
    assert rs.cache.hs_loaded == len(hs_entries) - 1
    assert any("failed verification" in n for n in notes)
    cold = Detector(_load(rules, tmp_path / "cold"), Settings())
    assert (det.patterns, det.tx_patterns) == (cold.patterns, cold.tx_patterns)


def test_unusable_directories_mean_no_cache(tmp_path, rules):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    for path in (blocker / "cache", shared):
        notes: list = []
        rs = _load(rules, path, notes)
        assert rs.cache.status == "unusable" and rs.mpm_cache is None
        assert len(rs.rules) == 3 and len(notes) == 1 and "running without it" in notes[0]
    assert list(shared.iterdir()) == []


def test_caching_off_touches_nothing(tmp_path, rules):
    cache = tmp_path / "cache"
    rs = _load(rules, cache, **{"detect.sgh-mpm-caching": "no", "detect.rule-set-caching": "no"})
    assert rs.cache.status == "off" and rs.mpm_cache is None and not cache.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a child as another user")
def test_read_only_directory_as_another_user(tmp_path, rules):
    """A cache directory this user cannot write (root's, 0755) is no cache, and the run goes on."""
    import tempfile

    base = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own tmp_path is root's alone
    base.chmod(0o755)
    cache = base / "cache"
    cache.mkdir(mode=0o755)
    rules = base / "local.rules"
    rules.write_text(RULES)
    rules.chmod(0o644)
    code = ("import json,sys; from mirrorwatch.core.settings import Settings; "
            "from mirrorwatch.rules.ruleset_cache import load_rules_cached as l; "
            "s = Settings({'detect.sgh-mpm-caching-path': sys.argv[2]}); rs = l([sys.argv[1]], s); "
            "print(json.dumps([rs.cache.status, len(rs.rules)]))")
    nobody = 65534
    p = subprocess.run([sys.executable, "-c", code, str(rules), str(cache)], capture_output=True, text=True,
                       cwd=ROOT, user=nobody, group=nobody, env=dict(os.environ, HOME="/nonexistent"))
    if p.returncode != 0 and "Permission denied" in p.stderr and "mirrorwatch" not in p.stderr:
        pytest.skip("the checkout is not readable by nobody")
    assert p.returncode == 0, p.stderr[-2000:]
    try:
        assert json.loads(p.stdout) == ["unusable", 3]
        assert list(cache.iterdir()) == []
    finally:
        shutil.rmtree(base)


def test_max_age_prunes_unused_entries(tmp_path, rules):
    cache = tmp_path / "cache"
    _load(rules, cache)
    [entry] = _entries(cache, cache_mod.RULES_PREFIX)
    os.utime(entry, (1, 1))
    other = tmp_path / "other.rules"
    other.write_text(RULES.replace("sid:3;", "sid:4;"))
    rs = _load(other, cache)
    assert rs.cache.pruned == 1 and not entry.exists()


def _eve(tmp_path: Path, name: str, pcap: Path, rules: Path, cache: Path) -> tuple[list, str]:
    eve = tmp_path / f"{name}.json"
    cmd = [sys.executable, "-m", "mirrorwatch", "replay", "--no-alerts", "--no-table", "--eve-payload", "--eve", str(eve), "--sensor-name",
           "cache", "--rules", str(rules), "--set", f"detect.sgh-mpm-caching-path={cache}", str(pcap)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = []
    for line in eve.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("event_type") == "stats":
            rec["stats"].pop("uptime", None)
        for seg in rec.get("kill", {}).get("segments", ()):
            seg["ip_id"] = None  # forged segments get random IP ids
        lines.append(json.dumps(rec, sort_keys=True))
    return lines, p.stdout + p.stderr


def _hit_same_as_cold(tmp_path: Path, pcap: Path, rules: Path) -> None:
    cache = tmp_path / "cache"
    cold, out_cold = _eve(tmp_path, "cold", pcap, rules, cache)
    warm, out_warm = _eve(tmp_path, "warm", pcap, rules, cache)
    assert "(cache: miss)" in out_cold and "(cache: hit)" in out_warm and ", 0 compiled" in out_warm
    assert any('"event_type": "alert"' in line for line in cold), "nothing alerted"
    for i, (a, b) in enumerate(zip(cold, warm)):
        assert a == b, f"EVE line {i + 1} differs:\ncold: {a[:3000]}\nwarm: {b[:3000]}"
    assert len(cold) == len(warm)


def test_hit_replays_like_a_cold_load_bundled(tmp_path):
    _hit_same_as_cold(tmp_path, DEMO, SIGNATURES)


def test_a_rule_compiled_after_the_transaction_buffers_were_made(tmp_path, corpus):
    """From the cache, a rule is compiled when it first becomes a candidate: after the
    transaction's buffer list was made for the prefilter's buffers (``txrule.new_bufs``), so its
    own buffer (http.uri.raw here, no fast pattern) has a slot the list did not have yet."""
    rules = tmp_path / "late.rules"
    rules.write_text('alert http any any -> any any (msg:"uri"; http.uri; content:"/"; sid:1;)\n'
                     'alert http any any -> any any (msg:"raw uri length"; urilen:>0,raw; sid:2;)\n')
    _hit_same_as_cold(tmp_path, corpus / "bench" / "http-tests-merged.pcap", rules)


@pytest.mark.slow
def test_hit_replays_like_a_cold_load_et_open(tmp_path):
    if not ET_OPEN.is_dir() or not HTTP_PCAP.exists():
        pytest.skip("corpus ET Open rules or http capture not found")
    _hit_same_as_cold(tmp_path, HTTP_PCAP, ET_OPEN)


def test_a_rule_reload_goes_through_the_cache(tmp_path, rules):
    """SIGHUP: the reloaded rule set and its databases come from the cache the start filled."""
    from mirrorwatch.cli.pipeline import Pipeline

    settings = _settings(tmp_path / "cache")
    pipe = Pipeline.build(settings, rule_paths=[str(rules)], console_alerts=False)
    try:
        assert pipe.ruleset.cache.status == "miss" and pipe.ruleset.cache.hs_compiled >= 2
        assert pipe.reload_rules([str(rules)]) is None
        again = pipe.ruleset.cache
        assert again.status == "hit" and again.hs_compiled == 0 and again.hs_loaded >= 2
        assert pipe.rule_count == 3
    finally:
        pipe.close()


def test_rules_check_says_the_load_time_and_the_cache(tmp_path, rules):
    cmd = [sys.executable, "-m", "mirrorwatch", "rules", "check", "--set",
           f"detect.sgh-mpm-caching-path={tmp_path / 'cache'}", str(rules)]
    outs = [subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300) for _ in range(2)]
    assert [p.returncode for p in outs] == [0, 0]
    assert "rule set loaded in " in outs[0].stdout and "(cache: miss)" in outs[0].stdout
    assert "(cache: hit)" in outs[1].stdout and ", 0 compiled" in outs[1].stdout


def test_processes_opening_a_new_cache_at_once_share_one_whole_key(tmp_path):
    """The key appears whole under its name (linked from a temporary file): no process starting at
    the same moment reads it short and runs without the cache."""
    cache = tmp_path / "sgh"
    script = ("import sys; from mirrorwatch.rules import cache as c; "
              "sys.stdout.write(c.CacheDir(sys.argv[1], 0, c.CacheReport()).key.hex())")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(cache)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
    results = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    keys = {out for out, _ in results}
    assert len(keys) == 1 and len(next(iter(keys))) == 2 * cache_mod.KEY_LEN
    assert sorted(os.listdir(cache)) == [cache_mod.KEY_FILE]  # no temporary file left behind
