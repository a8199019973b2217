#!/usr/bin/env bash
# Sets up the environment and runs the whole test suite (what CI runs).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
# The layering of docs/DESIGN.md (pyproject.toml's import-linter contracts).
.venv/bin/lint-imports --no-cache || exit 1
.venv/bin/python -m pytest -q "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: the suite is missing or a selection matched nothing." >&2
  exit 1
fi
exit "$status"
