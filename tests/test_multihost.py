"""Several processes and hard kills: JAX's multi-controller runtime on loopback.

Each test starts real `python -m jaxcnn.main` processes (bounded by timeouts,
127.0.0.1 only) and compares what they leave on disk with an in-process run.
Two processes and one differ in the order their gradients are summed, so that
comparison allows float32 rounding, bounded from eps and the run's own
gradients (`rounding_tolerance`), and is shown to fail on wrong rows.
"""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import types

import jax
import numpy as np
import pytest

from jaxcnn import checkpoint as checkpoint_lib
from jaxcnn import config as config_lib
from jaxcnn import data as data_lib
from jaxcnn import parallel
from jaxcnn import state as state_lib
from jaxcnn import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 240


# The data-parallel equality test trains with plain SGD for a few steps: its
# parameters then differ between two runs by a sum of per-step rounding terms,
# which `rounding_tolerance` bounds. Adam would divide near-zero gradients by
# their own noise and turn a last-bit difference into a 4% one (an AVX2-only
# CPU did); many steps would let it compound.
SGD_RUN = dict(optimizer="sgd", learning_rate=0.01, num_epochs=2,
               train_examples=128 + 100)  # 4 steps of 32 per epoch, 8 in all


def write_config(path, data_dir, num_epochs=2, train_examples=612,
                 optimizer="adam", learning_rate=None):
  rate = "" if learning_rate is None else f"c.optimizer.learning_rate = {learning_rate!r}"
  path.write_text(textwrap.dedent(f"""
      from jaxcnn import config as config_lib

      def get_config():
        c = config_lib.defaults()
        c.dataset.data_dir = {data_dir!r}
        c.dataset.num_train_examples = {train_examples}
        c.dataset.num_test_examples = 300
        c.dataset.validation_split = 100
        c.model.name = "cnn_small"
        c.optimizer.name = {optimizer!r}
        {rate}
        c.training.batch_size = 32
        c.training.num_epochs = {num_epochs}
        c.training.progress_bar = False
        return c
      """))
  return str(path)


def in_process_config(data_dir, num_epochs=2, train_examples=612,
                      optimizer="adam", learning_rate=None):
  c = config_lib.defaults()
  c.dataset.data_dir = data_dir
  c.dataset.num_train_examples = train_examples
  c.dataset.num_test_examples = 300
  c.dataset.validation_split = 100
  c.model.name = "cnn_small"
  c.optimizer.name = optimizer
  if learning_rate is not None:
    c.optimizer.learning_rate = learning_rate
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
  _, variables, _ = state_lib.load_for_inference(str(workdir))
  return variables["params"]


def assert_close(a, b, rtol=1e-5, atol=1e-6):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def run_two_processes(config_file, workdir):
  """Runs one training job as processes 0 and 1 (2 CPU devices each).

  Args:
    config_file: the experiment config file.
    workdir: the job's workdir.

  Returns:
    The two processes' outputs, after both exited with 0.
  """
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
  return outputs


class StepRecorder:
  """Keeps what each train step of an in-process run received.

  Attributes:
    model: the module the train step applies.
    steps: per step, ``(params before it, the global batch)`` as host copies.
  """

  def __init__(self):
    self.model = None
    self.steps = []

  def wrap(self, make_train_step):
    """Returns ``make_train_step`` whose steps record their inputs."""

    def make(model, *args, **kwargs):
      self.model = model
      step = make_train_step(model, *args, **kwargs)

      def recorded(state, batch):
        # Copies: the step donates the state's buffers, and a numpy view of a
        # donated buffer would change under us.
        self.steps.append((jax.tree.map(lambda x: np.array(x, copy=True), state.params),
                           {k: np.array(v, copy=True) for k, v in batch.items()}))
        return step(state, batch)

      return recorded

    return make


def rounding_tolerance(recorder, final_params, learning_rate):
  """Per parameter array: how far float32 rounding alone can move plain SGD.

  Two runs over the same rows differ only in how each step's mean gradient
  over the global batch of ``B`` examples is summed (per device, then across
  devices in process or over gloo, in an order that XLA, gloo and the CPU
  choose). Whatever the order, a float32 sum of ``B`` terms is within
  ``gamma(B-1) * sum|terms|`` of the exact one, ``gamma(n) = n*u/(1 - n*u)``,
  ``u = eps/2`` (Higham, Accuracy and Stability of Numerical Algorithms,
  4.2), so two runs are within twice that. Plain SGD then rounds ``-lr * g``
  once and ``params + update`` once per run, and keeps no state that could
  magnify a difference, so after the steps ``k``::

    |two - one| <= sum_k [lr * (2 gamma(B-1) + 2u) * A_k + 2u * max|params_k+1|]

  ``A_k`` is the largest mean absolute per-example gradient of the array at
  step ``k``: the largest, not each entry's own, because the runs evaluate
  later gradients at parameters a few ulps apart, which moves every entry by
  a few ulps of the largest magnitudes of its layer (measured on this model:
  at most ``2 eps * A_k`` with every parameter nudged by one ulp, against the
  ``2 gamma(31) = 31 eps * A_k`` allowed here). Everything is in units of
  float32 eps and of the gradients the run computed, none of it a constant
  picked for one machine, so the bound holds on any CPU; it stays far below
  what wrong rows do (the negative tests land 360 to 37000 times beyond).

  Args:
    recorder: the :class:`StepRecorder` of the reference run (plain SGD, no
      BatchNorm, dropout, regularization or clipping).
    final_params: the reference run's parameters after its last step.
    learning_rate: the SGD rate.

  Returns:
    A pytree shaped like the params: one absolute tolerance per array.
  """
  model = recorder.model

  def example_loss(params, image, label):
    logits = model.apply({"params": params}, image[None], train=True)
    return parallel.cross_entropy(logits, label[None]).mean()

  per_example_grads = jax.jit(jax.vmap(jax.grad(example_loss), in_axes=(None, 0, 0)))
  u = float(np.finfo(np.float32).eps) / 2
  afters = [params for params, _ in recorder.steps[1:]] + [final_params]
  tolerance = jax.tree.map(lambda _: 0.0, final_params)
  for (params, batch), after in zip(recorder.steps, afters):
    images = batch["image"].reshape(-1, *batch["image"].shape[2:])
    labels = batch["label"].reshape(-1)
    gamma = (len(labels) - 1) * u / (1 - (len(labels) - 1) * u)
    grads = jax.device_get(per_example_grads(params, images, labels))
    tolerance = jax.tree.map(
        lambda t, g, p: (t + learning_rate * (2 * gamma + 2 * u) * float(np.abs(g).mean(0).max())
                         + 2 * u * float(np.abs(p).max())),
        tolerance, grads, after)
  return tolerance


def rounding_excess(params, reference, tolerance):
  """``max|params - reference| / tolerance`` per parameter array (<= 1: rounding)."""
  paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
  reference_paths = [jax.tree_util.keystr(p)
                     for p, _ in jax.tree_util.tree_leaves_with_path(reference)]
  assert paths == reference_paths
  return {path: float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) / t
          for path, a, b, t in zip(paths, jax.tree.leaves(params), jax.tree.leaves(reference),
                                   jax.tree.leaves(tolerance))}


def assert_equal_up_to_rounding(params, reference, tolerance):
  excess = rounding_excess(params, reference, tolerance)
  worst = max(excess, key=excess.get)
  assert excess[worst] <= 1, (
      f"params{worst} differ {excess[worst]:.3g}x beyond float32 rounding of the "
      f"same SGD steps; all: {excess}")


@pytest.fixture(scope="module")
def sgd_runs(fashion_mnist_data_dir, tmp_path_factory):
  """The SGD_RUN job on 2 processes x 2 devices and in this process on 4 devices."""
  tmp = tmp_path_factory.mktemp("sgd_runs")
  config_file = write_config(tmp / "cfg.py", fashion_mnist_data_dir, **SGD_RUN)
  outputs = run_two_processes(config_file, tmp / "two_hosts")
  recorder = StepRecorder()
  with pytest.MonkeyPatch.context() as m:
    m.setattr(parallel, "make_train_step", recorder.wrap(parallel.make_train_step))
    state, _ = train.train_and_evaluate(
        in_process_config(fashion_mnist_data_dir, **SGD_RUN), str(tmp / "one_host"))
  one = jax.device_get(state.params)
  return types.SimpleNamespace(
      tmp=tmp, outputs=outputs,
      two=params_of(tmp / "two_hosts"), one=one, initial=recorder.steps[0][0],
      num_steps=len(recorder.steps),
      tolerance=rounding_tolerance(recorder, one, SGD_RUN["learning_rate"]))


def test_two_processes_equal_one_process_with_four_devices(sgd_runs):
  """2 processes x 2 devices train on the same rows as 1 process x 4: same params.

  Same up to the rounding of a different summation order, which is all that
  may differ (see `rounding_tolerance`).
  """
  outputs = sgd_runs.outputs
  assert "on 4 device(s)" in outputs[0]
  assert "Epoch 2/2" in outputs[0] and "Epoch 2/2" not in outputs[1]  # process 0 logs
  assert sgd_runs.num_steps == 2 * 128 // 32  # SGD_RUN: 2 epochs of 4 steps
  # The tolerance is no blanket: training moved every array far beyond it.
  moved = rounding_excess(sgd_runs.one, sgd_runs.initial, sgd_runs.tolerance)
  assert min(moved.values()) > 100, moved
  assert_equal_up_to_rounding(sgd_runs.two, sgd_runs.one, sgd_runs.tolerance)


def next_epochs_order(true_order):
  """Each epoch takes the next one's order: its examples, in other batches."""
  return lambda self, epoch: true_order(self, epoch + 1)


def process_1_reads_process_0_rows(true_order):
  """The global batches a 2-process job trains on when process 1 reads process 0's rows.

  Process ``p`` owns rows ``[16p, 16p + 16)`` of each global batch of 32;
  with the bug both halves are process 0's.
  """

  def order(self, epoch):
    rows = true_order(self, epoch).copy()
    steps = len(rows) // 32
    batches = rows[:steps * 32].reshape(steps, 32)  # A view: edits land in rows.
    batches[:, 16:] = batches[:, :16]
    return rows

  return order


@pytest.mark.parametrize("wrong_rows", [next_epochs_order, process_1_reads_process_0_rows],
                         ids=lambda f: f.__name__)
def test_comparison_detects_wrong_rows(sgd_runs, fashion_mnist_data_dir, monkeypatch, wrong_rows):
  """The equality check fails when one side trains on the wrong rows.

  The one-process side takes them here: the comparison sees only the two
  parameter sets, and a one-process run on a buggy job's rows computes that
  job's parameters up to rounding (measured with the bug injected into
  process 1 of a real 2-process job: every array 3.8e3 to 3.7e4 times beyond
  its tolerance), in about a tenth of the time.
  """
  monkeypatch.setattr(data_lib.Data, "epoch_order", wrong_rows(data_lib.Data.epoch_order))
  state, _ = train.train_and_evaluate(
      in_process_config(fashion_mnist_data_dir, **SGD_RUN),
      str(sgd_runs.tmp / wrong_rows.__name__))
  wrong = jax.device_get(state.params)
  with pytest.raises(AssertionError, match="beyond float32 rounding"):
    assert_equal_up_to_rounding(sgd_runs.two, wrong, sgd_runs.tolerance)
  # Far beyond, not at the edge: the check keeps its power on a noisier CPU.
  assert max(rounding_excess(sgd_runs.two, wrong, sgd_runs.tolerance).values()) > 100


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
  _, variables, _ = state_lib.load_for_inference(str(workdir), step=steps[-1])
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
