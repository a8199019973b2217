#!/usr/bin/env bash
# Sets up the environment and runs the whole test suite (what CI runs).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
# The layering of docs/DESIGN.md (pyproject.toml's import-linter contracts).
.venv/bin/lint-imports --no-cache || exit 1
# One pytest worker per core (at most 4), each test file whole on one worker
# (--dist loadfile: a file's module fixtures are built once). Most of a test's
# time is single-threaded compilation, so two workers on two cores finish the
# suite in about half the time (BENCHMARKS.md, "The test suite").
.venv/bin/python -m pytest -q -n auto --maxprocesses=4 --dist loadfile "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: the suite is missing or a selection matched nothing." >&2
  exit 1
fi
exit "$status"
