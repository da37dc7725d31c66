"""classification.config: classtype -> (category description, priority).

Suricata's format, one per line: ``config classification: name,description,priority``.
The standard file ships as ``signatures/classification.config``.
"""

from __future__ import annotations

from pathlib import Path

BUNDLED = Path(__file__).resolve().parent.parent.parent / "signatures" / "classification.config"


class ClassificationError(ValueError):
    """Unreadable classification file (one line)."""


def parse_classification(text: str, source: str = "classification.config") -> tuple[dict[str, tuple[str, int]], list[str]]:
    """Parse the file text; returns (table, warnings) — bad lines are warnings, as in Suricata."""
    table: dict[str, tuple[str, int]] = {}
    warnings: list[str] = []
    for no, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        head, sep, rest = s.partition(":")
        if not sep or head.strip().lower() != "config classification":
            warnings.append(f"{source}:{no}: not a 'config classification:' line, ignored")
            continue
        parts = [p.strip() for p in rest.split(",")]
        if len(parts) != 3 or not parts[0] or not parts[2].isdigit():
            warnings.append(f"{source}:{no}: expected 'name,description,priority', ignored")
            continue
        table[parts[0].lower()] = (parts[1], int(parts[2]))
    return table, warnings


def load_classification(path: str | Path | None = None) -> tuple[dict[str, tuple[str, int]], list[str]]:
    """Load ``path`` (default: the bundled standard file)."""
    p = Path(path) if path is not None else BUNDLED
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise ClassificationError(f"cannot read classification file {p}: {e.strerror or e} (name a readable one "
                                  "with --classification, or leave classification-file out of -c for the bundled "
                                  "one)") from None
    return parse_classification(text, str(p))
