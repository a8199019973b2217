"""The house's layering is enforced: import-linter's contracts hold, and bite.

The contracts live in pyproject.toml (docs/DESIGN.md draws them); the test
command runs ``lint-imports`` before pytest. These tests show that the
contracts pass on the package as it is and fail when a cycle or an upward
import comes back, on a copy of the package with one line added.
"""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINT = os.path.join(os.path.dirname(sys.executable), "lint-imports")


def _lint(root: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=root)
  return subprocess.run([LINT, "--no-cache", "--config", os.path.join(root, "pyproject.toml")],
                        cwd=root, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def package_copy(tmp_path):
  shutil.copytree(os.path.join(ROOT, "jaxcnn"), tmp_path / "jaxcnn",
                  ignore=shutil.ignore_patterns("__pycache__"))
  shutil.copy(os.path.join(ROOT, "pyproject.toml"), tmp_path)
  return tmp_path


def test_contracts_hold_on_the_package():
  result = _lint(ROOT)
  assert result.returncode == 0, result.stdout + result.stderr
  assert "0 broken" in result.stdout


@pytest.mark.parametrize("module, line, broken", [
    # The cycle the redesign removed: checkpoint -> train -> checkpoint.
    ("checkpoint.py", "from jaxcnn import train", "checkpoint is Orbax only"),
    # A lower layer reaching up: models -> state -> models.
    ("models/presets.py", "from jaxcnn import state", "jaxcnn layers"),
    # A cycle inside a package: data.splits <-> data.pipeline.
    ("data/splits.py", "from jaxcnn.data import pipeline", "no import cycles inside a package"),
])
def test_a_cycle_or_upward_import_breaks_a_contract(package_copy, module, line, broken):
  path = package_copy / "jaxcnn" / module
  path.write_text(path.read_text() + f"\n{line}  # injected by the test\n")
  result = _lint(str(package_copy))
  assert result.returncode != 0
  assert f"{broken} BROKEN" in result.stdout, result.stdout
