"""notebooks/tutorial.ipynb runs top to bottom and draws its figures.

The notebook is executed with nbclient in a fresh kernel, in its tiny setting
(``JAXCNN_NOTEBOOK_TINY=1``) on the real Fashion-MNIST prepared by the
``fashion_mnist_data_dir`` fixture. The kernel is this interpreter
(``sys.executable``), through a kernelspec the test writes itself into a
temporary ``JUPYTER_PATH``: a fresh clone after ``pip install -e .[test]`` has
no kernelspec step, and a ``python3`` spec found elsewhere may be another
Python without jaxcnn.
"""

import json
import os
import sys

import jax
import nbformat
from nbclient import NotebookClient

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
NOTEBOOK = os.path.join(REPO_ROOT, "notebooks", "tutorial.ipynb")
KERNEL_NAME = "jaxcnn-test-python3"


def _read():
  return nbformat.read(NOTEBOOK, as_version=4)


def _write_kernelspec(jupyter_dir) -> None:
  """A kernelspec that starts ipykernel with this very interpreter."""
  spec_dir = jupyter_dir / "kernels" / KERNEL_NAME
  spec_dir.mkdir(parents=True)
  (spec_dir / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": "jaxcnn test (this interpreter)",
      "language": "python",
  }))


def _kernel_env(tmp_path, data_dir: str) -> dict[str, str]:
  env = dict(os.environ)
  # The notebook must run against this checkout, whatever else is installed.
  env["PYTHONPATH"] = os.pathsep.join(
      p for p in (REPO_ROOT, env.get("PYTHONPATH", "")) if p)
  env.update({
      "JAXCNN_NOTEBOOK_TINY": "1",
      "JAXCNN_DATA_DIR": data_dir,
      # The notebook's temporary workdirs land under pytest's tmp_path.
      "TMPDIR": str(tmp_path),
      # Reuse the suite's persistent compilation cache (see conftest.py).
      "JAX_COMPILATION_CACHE_DIR": jax.config.jax_compilation_cache_dir or "",
      "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5",
  })
  if not env["JAX_COMPILATION_CACHE_DIR"]:
    del env["JAX_COMPILATION_CACHE_DIR"]
  return env


def test_outputs_are_cleared_in_git():
  for i, cell in enumerate(_read().cells):
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None, f"cell {i} has outputs"


def test_first_cell_sets_xla_flags_before_jax():
  cells = _read().cells
  first = cells[0]
  assert first.cell_type == "code"
  assert 'os.environ["XLA_FLAGS"]' in first.source
  assert "import jax" not in first.source
  later = "\n".join(c.source for c in cells[1:] if c.cell_type == "code")
  assert "XLA_FLAGS" not in later and "import jax" in later


def test_notebook_runs_and_draws(fashion_mnist_data_dir, tmp_path, monkeypatch):
  jupyter_dir = tmp_path / "jupyter"
  _write_kernelspec(jupyter_dir)
  monkeypatch.setenv("JUPYTER_PATH", str(jupyter_dir))
  work = tmp_path / "cwd"
  work.mkdir()
  nb = _read()
  # Which interpreter ran it, and how many devices the first cell gave JAX.
  nb.cells.append(nbformat.v4.new_code_cell(
      "import sys; print(repr(sys.executable), jax.device_count())"))
  client = NotebookClient(nb, kernel_name=KERNEL_NAME, timeout=600,
                          resources={"metadata": {"path": str(work)}})
  client.execute(env=_kernel_env(tmp_path, fashion_mnist_data_dir))

  def outputs(i):
    return nb.cells[i].get("outputs", [])

  def text(i):
    return "".join(o.get("text", "") for o in outputs(i) if o.output_type == "stream")

  errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if o.output_type == "error"]
  assert not errors
  # The conftest's 4 fake devices are overridden by the notebook's own flag.
  assert text(len(nb.cells) - 1).split() == [repr(sys.executable), "1"]
  code = [i for i, c in enumerate(nb.cells[:-1]) if c.cell_type == "code"]
  pngs = {i: sum("image/png" in o.get("data", {}) for o in outputs(i)) for i in code}
  sources = {i: nb.cells[i].source for i in code}
  # Every plotting cell shows its figures.
  expected = {"vis.plot_history": 1, 'vis.plot_filters(variables, "conv2d")': 2,
              "vis.plot_feature_maps": 2, "vis.plot_filter_patterns": 1,
              "axes[1, col].bar": 1}
  for needle, count in expected.items():
    (cell,) = [i for i in code if needle in sources[i]]
    assert pngs[cell] == count, (needle, pngs[cell])
  # MC dropout printed the lecture's comparison table.
  (mc_cell,) = [i for i in code if "jaxcnn.predict_mc" in sources[i]]
  assert "accuracy" in text(mc_cell) and "MC dropout" in text(mc_cell)
  # plot_workdir wrote its figures and listed them.
  (last,) = [i for i in code if "vis.plot_workdir" in sources[i]]
  listed = [line.strip() for line in text(last).splitlines() if line.strip().endswith(".png")]
  assert len(listed) >= 7 and all(os.path.getsize(p) > 2_000 for p in listed)
  assert any(p.endswith("history.png") for p in listed)
