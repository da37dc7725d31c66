"""Loading rule files into a ``RuleSet``, and the ``rules check`` report.

Files are read line by line: ``#`` starts a comment (a disabled rule such as
``# alert ...`` is a comment and only counted), a trailing backslash joins the
next line.  Every rule that cannot be loaded is recorded in ``skipped`` as
(file, line, sid, reason) and loading goes on.  Duplicate (gid, sid): as in
Suricata the one with the higher rev wins, on a tie the first; the loser is
recorded in ``skipped`` and a warning is given.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .classification import ClassificationError, load_classification
from .matches import Pcre
from .model import Rule
from .parser import RuleContext, RuleError, parse_rule
from .pcre import library_version

PROGRESS_EVERY = 1024  # rule lines parsed between two calls of load_rules' progress callback
_DISABLED_RE = re.compile(r"^#+\s*(alert|drop|pass|reject|rejectsrc|rejectdst|rejectboth)\s+\S+\s")


@dataclass
class RuleSet:
    """The loaded rules plus everything the operator should hear about.

    ``skipped``: (file, line, sid or None, reason) per rule not loaded;
    ``errors``: whole-file problems (unreadable path...); ``warnings``:
    loaded-but-noteworthy (unknown classtype, duplicate sid...);
    ``disabled``: commented-out rules seen; ``seconds``: load time.  ``rules`` is a list, or a
    ``lazy.LazyRules`` (a read-only sequence) when the rule set came from the cache.
    """

    rules: list[Rule] = field(default_factory=list)
    skipped: list[tuple[str, int, int | None, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    disabled: int = 0
    seconds: float = 0.0
    classification: dict = field(default_factory=dict)
    warned: set = field(default_factory=set)  # per-rule warning texts already reported
    cache: object = None  # rules.cache.CacheReport when loaded through the cache
    mpm_cache: object = None  # rules.ruleset_cache.MpmCache: where the Detector keeps hyperscan databases
    plan_cache: object = None  # rules.ruleset_cache.PlanCache: where the Detector keeps the plan of its tables

    def skip_lines(self) -> list[str]:
        """Each skip as ``file:line: sid N: reason``."""
        return [format_skip(*s) for s in self.skipped]


def format_skip(file: str, line: int, sid: int | None, reason: str) -> str:
    return f"{file}:{line}: sid {sid if sid is not None else '?'}: {reason}"


def iter_rule_lines(text: str):
    """Yield (first line number, rule text) and (line, None) for each disabled rule."""
    pending: list[str] = []
    start = 0
    for no, line in enumerate(text.splitlines(), 1):
        s = line.rstrip("\r\n")
        if not pending:
            stripped = s.strip()
            if not stripped:
                continue
            if stripped.startswith("#"):
                if _DISABLED_RE.match(stripped):
                    yield no, None
                continue
            start = no
        if s.rstrip().endswith("\\"):
            pending.append(s.rstrip()[:-1])
            continue
        pending.append(s)
        yield start, "".join(pending).strip()
        pending = []
    if pending:
        yield start, "".join(pending).strip()


def _line_progress(progress, base: int, size: int, lines: int, total: int):
    """``on_line`` for one file: its line number as bytes of the whole set."""

    def on_line(no: int) -> None:
        progress(base + size * min(no, lines) // max(1, lines), total)

    return on_line


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _expand(paths) -> tuple[list[Path], list[str]]:
    files: list[Path] = []
    errors: list[str] = []
    if isinstance(paths, (str, Path)):
        paths = [paths]
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(path.glob("*.rules"))
            if not found:
                errors.append(f"{path}: directory holds no *.rules files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            errors.append(f"{path}: no such rule file or directory")
    return files, errors


def load_rules(paths, settings, classification=None, progress=None) -> RuleSet:
    """Parse rule files and directories (``*.rules``) into a RuleSet.

    ``classification``: path to a classification.config, an already parsed
    {name: (description, priority)} dict, or None for the bundled standard file.
    ``progress(done, total)``: called as the rule files are parsed, in bytes of
    their text (every ``PROGRESS_EVERY`` lines and after each file).
    """
    t0 = time.perf_counter()
    rs = RuleSet()
    if isinstance(classification, dict):
        table = classification
    else:
        try:
            table, cw = load_classification(classification)
            rs.warnings.extend(cw)
        except ClassificationError as e:
            # Suricata carries on without classification (default priority 3);
            # a file the operator named explicitly is an error
            (rs.warnings if classification is None else rs.errors).append(str(e))
            table = {}
    rs.classification = table
    ctx = RuleContext(settings, table)
    files, path_errors = _expand(paths)
    rs.errors.extend(path_errors)
    seen: dict[tuple[int, int], int] = {}
    sizes = [_size(f) for f in files]
    total, done = sum(sizes), 0
    for f, size in zip(files, sizes):
        fname = str(f)
        try:
            text = f.read_text(encoding="utf-8", errors="surrogateescape")
        except OSError as e:
            rs.errors.append(f"{fname}: cannot read: {e.strerror or e}")
            continue
        rs.files.append(fname)
        on_line = None if progress is None else _line_progress(progress, done, size, text.count("\n"), total)
        load_text(text, fname, ctx, rs, seen, on_line)
        done += size
        if progress is not None:
            progress(done, total)
    rs.seconds = time.perf_counter() - t0
    return rs


def load_text(text: str, fname: str, ctx: RuleContext, rs: RuleSet, seen: dict | None = None,
              on_line=None) -> None:
    """Parse the rules of one file's text into ``rs`` (used by load_rules and tests).

    ``on_line(line_number)``: called every ``PROGRESS_EVERY`` rule lines.
    """
    if seen is None:
        seen = {r.key: i for i, r in enumerate(rs.rules)}
    for n, (line, rule_text) in enumerate(iter_rule_lines(text), 1):
        if on_line is not None and not n % PROGRESS_EVERY:
            on_line(line)
        if rule_text is None:
            rs.disabled += 1
            continue
        try:
            rule, warnings = parse_rule(rule_text, ctx, fname, line)
        except RuleError as e:
            rs.skipped.append((fname, line, getattr(e, "sid", None), str(e)))
            continue
        except Exception as e:  # a parser defect must cost one rule, never the rule set
            rs.skipped.append((fname, line, None, f"cannot parse: {type(e).__name__}: {e}"))
            continue
        for w in warnings:
            # like Suricata, say it once per distinct message (e.g. per unknown classtype)
            if w not in rs.warned:
                rs.warned.add(w)
                rs.warnings.append(f"{fname}:{line}: sid {rule.sid}: {w} (first of its kind)")
        idx = seen.get(rule.key)
        if idx is not None:
            old = rs.rules[idx]
            if rule.rev > old.rev:
                rs.rules[idx] = rule
                loser, kept = old, rule
            else:
                loser, kept = rule, old
            reason = f"duplicate sid {rule.sid} (gid {rule.gid}): kept rev {kept.rev} from {kept.file}:{kept.line}"
            rs.skipped.append((loser.file, loser.line, loser.sid, reason))
            rs.warnings.append(format_skip(loser.file, loser.line, loser.sid, reason))
            continue
        seen[rule.key] = len(rs.rules)
        rs.rules.append(rule)


def _reason_kind(reason: str) -> str:
    """Skip reasons as ``check_report`` counts them: duplicate sids share one line, every
    other reason is shown as it is (keyword, protocol and value names included)."""
    return "duplicate sid" if reason.startswith("duplicate sid") else reason


def check_report(ruleset: RuleSet) -> str:
    """Text summary for ``mirrorwatch rules check``: counts, every distinct skip reason
    with its count (most frequent first), errors."""
    rs = ruleset
    total = len(rs.rules) + len(rs.skipped)
    pct = 100.0 * len(rs.rules) / total if total else 0.0
    lines = [
        f"{len(rs.files)} file(s), {total} rule(s): {len(rs.rules)} loaded ({pct:.1f}%), "
        f"{len(rs.skipped)} skipped, {rs.disabled} disabled (commented out); {rs.seconds:.2f}s",
    ]
    if rs.cache is not None:
        lines.append(rs.cache.summary())
    actions = Counter(r.action for r in rs.rules)
    protos = Counter(r.proto for r in rs.rules)
    apps = Counter(r.app_proto for r in rs.rules if r.app_proto is not None)
    npcre = sum(1 for r in rs.rules for m in r.matches if isinstance(m, Pcre))
    if npcre:
        lines.append(f"{npcre} pcre keyword(s), matched with PCRE2 {library_version()}")
    if rs.rules:
        lines.append("loaded by action: " + ", ".join(f"{k} {v}" for k, v in actions.most_common()))
        lines.append("loaded by protocol: " + ", ".join(f"{k} {v}" for k, v in protos.most_common()))
    if apps:
        lines.append("loaded by application protocol: " + ", ".join(f"{k} {v}" for k, v in apps.most_common()))
    if rs.skipped:
        kinds = Counter(_reason_kind(s[3]) for s in rs.skipped)
        lines.append(f"skip reasons ({len(kinds)} distinct):")
        for reason, n in kinds.most_common():
            lines.append(f"  {n:>7}  {reason}")
    for e in rs.errors:
        lines.append(f"error: {e}")
    if rs.warnings:
        lines.append(f"{len(rs.warnings)} warning(s), first: {rs.warnings[0]}")
    return "\n".join(lines)
