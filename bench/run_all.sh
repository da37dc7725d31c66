#!/usr/bin/env bash
# Runs every benchmark in bench/ (bench/*.py), one after another, with the
# project's Python ($PY, default .venv/bin/python).  A failing benchmark is
# reported and the others still run; the exit status is non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
failed=()
for b in bench/*.py; do
  [ -e "$b" ] || continue
  echo "=== $b ==="
  if ! "$PY" "$b"; then
    echo "=== $b FAILED ===" >&2
    failed+=("$b")
  fi
  echo
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "failed benchmarks: ${failed[*]}" >&2
  exit 1
fi
