"""The command line on bad data and unwritable output: one ``error:`` line, exit 1.

Each test runs ``python -m jaxcnn.main`` in a subprocess, the way a user
does, on tiny sizes, and checks what the user sees: exactly one ``error:``
line on stderr that names what is wrong and what to do, no traceback, a
non-zero exit code, and (where it matters) that it came fast and before any
work was done. The subprocesses see one CPU device (a user's plain CPU run),
not the 4 fake devices of the in-process tests.
"""

import contextlib
import gzip
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

from jaxcnn.data import sources

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIRROR = os.environ.get(sources.MIRROR_ENV, sources.DEFAULT_MIRROR_DIR)
CONFIG = "--config=experiments/fashion_mnist_fast.py:width=2,epochs=1"
needs_mirror = pytest.mark.skipif(
    not os.path.isdir(MIRROR),
    reason=f"Fashion-MNIST mirror not found at {MIRROR} "
           "(apt-get install dataset-fashion-mnist)")


def _env() -> dict[str, str]:
  env = dict(os.environ)
  # conftest's 4 fake devices are for the in-process tests only.
  flags = env.get("XLA_FLAGS", "").replace(
      "--xla_force_host_platform_device_count=4", "").strip()
  env["XLA_FLAGS"] = flags
  env.pop(sources.MIRROR_ENV, None)  # each test says which mirror it means
  return env


def _cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
  """Runs the command line as a user would; stdout and stderr as text."""
  return subprocess.run([sys.executable, "-m", "jaxcnn.main", CONFIG, *args],
                        cwd=REPO, env=_env(), capture_output=True, text=True,
                        timeout=timeout, check=False)


def _error_line(result: subprocess.CompletedProcess) -> str:
  """The one ``error:`` line of a failed run (asserting there is exactly one).

  Searched anywhere in a line: an error raised mid-epoch lands after the
  progress bar's text.
  """
  assert result.returncode == 1, (result.returncode, result.stderr[-3000:])
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  lines = re.findall(r"error: .*", result.stderr)
  assert len(lines) == 1, result.stderr[-3000:]
  return lines[0]


# --- 1. batch sizes against the data ---------------------------------------


@needs_mirror
def test_batch_larger_than_the_training_data_says_what_fits(tmp_path, fashion_mnist_data_dir):
  line = _error_line(_cli(
      f"--workdir={tmp_path / 'w'}", f"--config.dataset.data_dir={fashion_mnist_data_dir}",
      "--config.dataset.num_train_examples=100", "--config.dataset.validation_split=0",
      "--config.training.batch_size=256"))
  assert "training.batch_size=256" in line
  assert "100 training examples" in line
  assert "training.batch_size <= 100" in line  # what fits on one device
  assert "dataset.num_train_examples" in line


@needs_mirror
def test_validation_split_taking_every_example_says_what_fits(tmp_path, fashion_mnist_data_dir):
  # fashion_mnist_fast keeps 5000 for validation: 100 examples leave none to train on.
  line = _error_line(_cli(
      f"--workdir={tmp_path / 'w'}", f"--config.dataset.data_dir={fashion_mnist_data_dir}",
      "--config.dataset.num_train_examples=100", "--config.training.batch_size=256"))
  assert "dataset.validation_split=5000" in line and "out of 100" in line
  assert "below 100" in line and "0.1" in line


@pytest.fixture(scope="module")
def tiny_workdir(tmp_path_factory, fashion_mnist_data_dir):
  """A workdir trained for one epoch on 190 images; validation and test are
  smaller than one evaluation batch, which is padded and masked, not an error."""
  workdir = str(tmp_path_factory.mktemp("tiny") / "w")
  result = _cli(f"--workdir={workdir}", f"--config.dataset.data_dir={fashion_mnist_data_dir}",
                "--config.dataset.num_train_examples=200",
                "--config.dataset.validation_split=10",
                "--config.dataset.num_test_examples=20", "--config.training.batch_size=64",
                timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "190 train / 10 validation / 20 test" in result.stdout
  assert "Test: loss" in result.stdout and "(20 examples)" in result.stdout
  return workdir


# --- 2. an unknown dataset name ----------------------------------------------


def test_unknown_dataset_names_the_closest_registered_one(tmp_path):
  result = _cli(f"--workdir={tmp_path / 'w'}", "--config.dataset.name=fashon_mnist",
                f"--config.dataset.data_dir={tmp_path / 'tfds'}")
  line = _error_line(result)
  assert "'fashon_mnist'" in line and "Did you mean 'fashion_mnist'?" in line
  assert "tfds.list_builders()" in line
  assert len(result.stderr.splitlines()) < 20  # not TFDS's list of every dataset


# --- 3. a broken mirror file -------------------------------------------------


def _mirror_with(folder, name: str, damage) -> str:
  """A copy of the mirror (links) with ``name`` replaced by ``damage(bytes)``."""
  os.makedirs(folder)
  for fname in sources.FASHION_MNIST_SHA256:
    src, dst = os.path.join(MIRROR, fname), os.path.join(folder, fname)
    if fname == name:
      with open(src, "rb") as f:
        data = f.read()
      with open(dst, "wb") as f:
        f.write(damage(data))
    else:
      os.symlink(src, dst)
  return str(folder)


def _truncated(data: bytes) -> bytes:
  return data[:len(data) // 3]


def _bytes_flipped(data: bytes) -> bytes:
  out = bytearray(data)
  for i in (2000, 2001, 2002):  # inside the deflate stream
    out[i] ^= 0xFF
  return bytes(out)


def _label_changed(data: bytes) -> bytes:
  # A valid gzip whose contents differ by one label: only the sha256 sees it.
  raw = bytearray(gzip.decompress(data))
  raw[100] = (raw[100] + 1) % 10
  return gzip.compress(bytes(raw))


@needs_mirror
@pytest.mark.parametrize("name,damage,what", [
    ("train-labels-idx1-ubyte.gz", _truncated, "truncated"),
    ("t10k-labels-idx1-ubyte.gz", _bytes_flipped, "not a valid gzip file"),
    ("t10k-labels-idx1-ubyte.gz", _label_changed, "checksum mismatch"),
])
def test_broken_mirror_file_is_named_with_what_to_do(tmp_path, name, damage, what):
  mirror = _mirror_with(tmp_path / "mirror", name, damage)
  data_dir = tmp_path / "tfds"
  line = _error_line(_cli(f"--workdir={tmp_path / 'w'}", f"--config.dataset.mirror_dir={mirror}",
                          f"--config.dataset.data_dir={data_dir}"))
  assert os.path.join(mirror, name) in line and what in line
  assert "apt-get install --reinstall dataset-fashion-mnist" in line
  assert "dataset.mirror_dir" in line
  # Nothing half-prepared for a later run to trust.
  assert not os.path.exists(data_dir / "fashion_mnist" / "3.0.1" / "dataset_info.json")


@needs_mirror
def test_corrupt_prepared_data_says_delete_it(tmp_path, fashion_mnist_data_dir):
  data_dir = tmp_path / "tfds"
  shutil.copytree(fashion_mnist_data_dir, data_dir)
  prepared = data_dir / "fashion_mnist" / "3.0.1"
  (record,) = [p for p in prepared.iterdir() if "train.tfrecord" in p.name]
  with open(record, "r+b") as f:  # a byte of the first records' image bytes
    f.seek(1000)
    byte = f.read(1)
    f.seek(1000)
    f.write(bytes([byte[0] ^ 0xFF]))
  line = _error_line(_cli(f"--workdir={tmp_path / 'w'}", f"--config.dataset.data_dir={data_dir}",
                          "--config.dataset.num_train_examples=200",
                          "--config.dataset.validation_split=10"))
  assert str(prepared) in line and "delete" in line


# --- 4. no data and no network -----------------------------------------------


@needs_mirror
def test_empty_mirror_offline_fails_fast_saying_where_it_looked(tmp_path):
  if _online():
    pytest.skip("online: the real TFDS download would run")
  empty = tmp_path / "empty_mirror"
  empty.mkdir()
  start = time.monotonic()
  result = _cli(f"--workdir={tmp_path / 'w'}", f"--config.dataset.mirror_dir={empty}",
                f"--config.dataset.data_dir={tmp_path / 'tfds'}", timeout=120)
  elapsed = time.monotonic() - start
  line = _error_line(result)
  assert elapsed < 60, elapsed  # was 219 s of TFDS's retries
  assert "Retrying" not in result.stderr
  assert str(tmp_path / "tfds" / "fashion_mnist") in line  # where it looked
  assert f"{empty} (missing train-images-idx3-ubyte.gz" in line
  assert "no network" in line
  for advice in ("apt-get install dataset-fashion-mnist", "JAXCNN_MIRROR_DIR",
                 "tfds build fashion_mnist"):
    assert advice in line


def _online() -> bool:
  """Whether Fashion-MNIST's download hosts answer (then the test would download)."""
  for host, port in (("fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80),
                     ("storage.googleapis.com", 443)):
    try:
      socket.create_connection((host, port), timeout=3).close()
      return True
    except OSError:
      pass
  return False


# --- 5. predict_mc with nowhere to write ---------------------------------------


@needs_mirror
def test_predict_mc_with_output_in_the_way_fails_before_computing(tmp_path, tiny_workdir):
  workdir = tmp_path / "w"
  shutil.copytree(tiny_workdir, workdir)
  (workdir / "mc_dropout").write_text("a file where the folder goes")
  result = _cli(f"--workdir={workdir}", "--mode=predict_mc",
                "--config.inference.num_samples=3")
  line = _error_line(result)
  assert str(workdir / "mc_dropout") in line and "not writable" in line
  assert "MC dropout," not in result.stdout  # nothing was computed first


@contextlib.contextmanager
def _read_only(folder):
  """``folder`` read-only for this user: chmod, or for root (who ignores modes) chattr +i."""
  if os.geteuid() != 0:
    os.chmod(folder, 0o555)
    try:
      yield
    finally:
      os.chmod(folder, 0o755)
    return
  if subprocess.run(["chattr", "+i", str(folder)], capture_output=True,
                    check=False).returncode != 0:
    pytest.skip("root, and chattr +i is not available here to make a folder read-only")
  try:
    yield
  finally:
    subprocess.run(["chattr", "-i", str(folder)], check=True)


@needs_mirror
def test_predict_mc_in_a_read_only_workdir_fails_before_computing(tmp_path, tiny_workdir):
  workdir = tmp_path / "w"
  shutil.copytree(tiny_workdir, workdir)
  with _read_only(workdir):
    result = _cli(f"--workdir={workdir}", "--mode=predict_mc",
                  "--config.inference.num_samples=3")
  line = _error_line(result)
  assert str(workdir / "mc_dropout") in line and "not writable" in line
  assert "MC dropout," not in result.stdout
