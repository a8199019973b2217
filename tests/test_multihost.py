"""Several processes and hard kills: JAX's multi-controller runtime on loopback.

Each test starts real `python -m jaxcnn.main` processes (bounded by timeouts,
127.0.0.1 only) and compares what they leave on disk with an in-process run.
"""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from jaxcnn import checkpoint as checkpoint_lib
from jaxcnn import config as config_lib
from jaxcnn import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 240


def write_config(path, data_dir, num_epochs=2, train_examples=612):
  path.write_text(textwrap.dedent(f"""
      from jaxcnn import config as config_lib

      def get_config():
        c = config_lib.defaults()
        c.dataset.data_dir = {data_dir!r}
        c.dataset.num_train_examples = {train_examples}
        c.dataset.num_test_examples = 300
        c.dataset.validation_split = 100
        c.model.name = "cnn_small"
        c.optimizer.name = "adam"
        c.training.batch_size = 32
        c.training.num_epochs = {num_epochs}
        c.training.progress_bar = False
        return c
      """))
  return str(path)


def in_process_config(data_dir, num_epochs=2, train_examples=612):
  c = config_lib.defaults()
  c.dataset.data_dir = data_dir
  c.dataset.num_train_examples = train_examples
  c.dataset.num_test_examples = 300
  c.dataset.validation_split = 100
  c.model.name = "cnn_small"
  c.optimizer.name = "adam"
  c.training.batch_size = 32
  c.training.num_epochs = num_epochs
  c.training.progress_bar = False
  return c


def env_with_devices(n):
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n}"
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = ROOT
  return env


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def params_of(workdir):
  _, variables, _ = checkpoint_lib.load_for_inference(str(workdir))
  return variables["params"]


def assert_close(a, b, rtol=1e-5, atol=1e-6):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_two_processes_equal_one_process_with_four_devices(fashion_mnist_data_dir, tmp_path):
  config_file = write_config(tmp_path / "cfg.py", fashion_mnist_data_dir)
  workdir = tmp_path / "two_hosts"
  port = free_port()
  procs = [subprocess.Popen(
      [sys.executable, "-m", "jaxcnn.main", f"--config={config_file}",
       f"--workdir={workdir}", f"--coordinator_address=127.0.0.1:{port}",
       "--num_processes=2", f"--process_id={i}"],
      env=env_with_devices(2), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True, cwd=ROOT) for i in range(2)]
  outputs = []
  for p in procs:
    try:
      outputs.append(p.communicate(timeout=TIMEOUT)[0])
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      pytest.fail("two-process run did not finish in time")
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]
  assert "on 4 device(s)" in outputs[0]
  assert "Epoch 2/2" in outputs[0] and "Epoch 2/2" not in outputs[1]  # process 0 logs

  single_state, _ = train.train_and_evaluate(
      in_process_config(fashion_mnist_data_dir), str(tmp_path / "one_host"))
  assert_close(params_of(workdir), single_state.params, rtol=1e-4, atol=1e-5)


def test_sigkill_then_restart_equals_uninterrupted(fashion_mnist_data_dir, tmp_path):
  config_file = write_config(tmp_path / "cfg.py", fashion_mnist_data_dir, num_epochs=3)
  workdir = tmp_path / "killed"
  cmd = [sys.executable, "-m", "jaxcnn.main", f"--config={config_file}",
         f"--workdir={workdir}"]
  p = subprocess.Popen(cmd, env=env_with_devices(4), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, cwd=ROOT)
  first = workdir / "checkpoints" / "16"
  deadline = time.time() + TIMEOUT
  while not first.exists() and time.time() < deadline and p.poll() is None:
    time.sleep(0.05)
  p.send_signal(signal.SIGKILL)
  p.wait(timeout=30)
  assert p.returncode == -signal.SIGKILL
  done = subprocess.run(cmd, env=env_with_devices(4), capture_output=True, text=True,
                        timeout=TIMEOUT, cwd=ROOT)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  assert "Resumed from" in done.stdout

  full_state, _ = train.train_and_evaluate(
      in_process_config(fashion_mnist_data_dir, num_epochs=3), str(tmp_path / "full"))
  assert_close(params_of(workdir), full_state.params)


def test_sigterm_saves_and_exits_cleanly(fashion_mnist_data_dir, tmp_path):
  config_file = write_config(tmp_path / "cfg.py", fashion_mnist_data_dir,
                             num_epochs=200, train_examples=1124)
  workdir = tmp_path / "term"
  p = subprocess.Popen([sys.executable, "-m", "jaxcnn.main", f"--config={config_file}",
                        f"--workdir={workdir}"], env=env_with_devices(4),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
  deadline = time.time() + TIMEOUT
  history = workdir / "history.json"
  while not history.exists() and time.time() < deadline and p.poll() is None:
    time.sleep(0.05)
  p.send_signal(signal.SIGTERM)
  out = p.communicate(timeout=TIMEOUT)[0]
  assert p.returncode == 143, out[-3000:]
  assert "SIGTERM: saved a complete checkpoint at step" in out
  steps = checkpoint_lib.Checkpointer(str(workdir / "checkpoints")).all_steps()
  assert steps and steps[-1] % 32 != 0 or len(steps) >= 1
  # The newest step restores (it was finished before the exit).
  _, variables, _ = checkpoint_lib.load_for_inference(str(workdir), step=steps[-1])
  assert variables["params"]


def test_distributed_after_backend_started_is_a_clear_error():
  from jaxcnn import parallel
  jax.devices()  # The backend is up in this test process.
  with pytest.raises(RuntimeError, match="before JAX starts its backend"):
    parallel.initialize_distributed("127.0.0.1:1", 2, 0)


def test_xla_flags_set_too_late_is_a_clear_error(monkeypatch):
  from jaxcnn import parallel
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
  with pytest.raises(RuntimeError, match="asks for 8 CPU devices but JAX has 4"):
    parallel.check_device_count()
