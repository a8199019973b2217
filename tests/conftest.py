"""Test setup: four fake CPU devices, set before JAX is first imported.

pmap-ed code paths then run on 4 devices exactly as on a 4-GPU host. TF is
kept off any accelerator so it never grabs GPU memory JAX needs.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# XLA:CPU sizes its thread pools (program launches, Eigen ops) by the CPU
# count, at least one thread per device: 4 threads on a 2-core machine. A
# 4-device step with an all-reduce can then wedge them: launches of the next
# program hold every thread while waiting for the previous one, 3 of 4
# devices wait in the rendezvous, and XLA aborts the process after 40 s
# ("Termination timeout for `all reduce RendezvousKey...`"; seen in most runs
# of tests/test_train.py on 2 cores, jaxlib 0.10.2). XLA reads $NPROC as the
# CPU count: 8 (twice the devices) gives the pools room. Never lowered, and
# an NPROC already set is kept.
if len(os.sched_getaffinity(0)) < 8:
  os.environ.setdefault("NPROC", "8")

import jax  # noqa: E402  (must come after XLA_FLAGS)

# Tests build the same few models many times: a persistent compilation cache
# (per user, reused across runs) turns repeat compiles into disk reads.
jax.config.update("jax_compilation_cache_dir", os.environ.get(
    "JAXCNN_TEST_COMPILATION_CACHE",
    os.path.join(os.path.expanduser("~"), ".cache", "jaxcnn-test-xla")))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
import pytest  # noqa: E402

import tensorflow as tf  # noqa: E402

tf.config.set_visible_devices([], "GPU")

FASHION_MNIST_MIRROR = os.environ.get(
    "JAXCNN_MIRROR_DIR", "/usr/share/datasets/fashion-mnist")


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "real_data: needs the real Fashion-MNIST mirror "
      "($JAXCNN_MIRROR_DIR or /usr/share/datasets/fashion-mnist); skips "
      "without it (its [mock] twin always runs)")


def pytest_report_header(config):
  return f"jax {jax.__version__}, devices: {jax.device_count()} x {jax.devices()[0].platform}"


@pytest.fixture(scope="session")
def fashion_mnist_data_dir(tmp_path_factory):
  """A TFDS data dir holding the real Fashion-MNIST, prepared once per session.

  Skips (with the reason) when the offline mirror is absent.
  """
  from jaxcnn import data as data_lib
  if not os.path.isdir(FASHION_MNIST_MIRROR):
    pytest.skip(f"Fashion-MNIST mirror not found at {FASHION_MNIST_MIRROR} "
                "(apt-get install dataset-fashion-mnist)")
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  data_lib.prepare("fashion_mnist", data_dir=data_dir, mirror_dir=FASHION_MNIST_MIRROR)
  return data_dir


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
  """A TFDS data dir with scikit-learn's digits prepared (offline, about a second).

  Read only by the tests: one per session (per xdist worker).
  """
  from jaxcnn import data as data_lib  # pylint: disable=g-import-not-at-top
  data_dir = str(tmp_path_factory.mktemp("tfds_digits"))
  data_lib.prepare("sklearn_digits", data_dir=data_dir)
  return data_dir


@pytest.fixture
def synchronous_saves(monkeypatch):
  """Every checkpoint save finishes before the loop goes on.

  ``tfds.testing.mock_data`` swaps in a fake file system while a dataset is
  opened (every validation and test pass too); an asynchronous Orbax save
  running at that moment would write into it.
  """
  from jaxcnn import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  save = checkpoint_lib.Checkpointer.save

  def save_and_wait(self, *args, **kwargs):
    result = save(self, *args, **kwargs)
    self.wait()
    return result
  monkeypatch.setattr(checkpoint_lib.Checkpointer, "save", save_and_wait)


@pytest.fixture
def mock_fashion_mnist(tmp_path_factory, synchronous_saves):
  """Defaults on mock Fashion-MNIST (160 examples, 32 held out), inside mock_data."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from jaxcnn import config as config_lib  # pylint: disable=g-import-not-at-top
  del synchronous_saves
  root = tmp_path_factory.mktemp("mock")
  with tfds.testing.mock_data(num_examples=160, policy=tfds.testing.MockPolicy.USE_CODE):
    c = config_lib.defaults()
    c.dataset.name = "fashion_mnist"
    c.dataset.data_dir = str(root / "tfds")
    c.dataset.mirror_dir = str(root / "no-mirror")
    c.dataset.validation_split = 32
    c.training.progress_bar = False
    yield c


@pytest.fixture
def signal_at_step(monkeypatch):
  """Arms a signal sent to this process just before the N-th train step call.

  As a preemption (SIGTERM) or a Ctrl-C (SIGINT) would arrive mid-epoch.
  ``arm(n, signum=SIGTERM, factory='make_train_step')`` wraps
  ``jaxcnn.parallel.<factory>`` (the loop builds its step through it) and
  returns ``disarm()``, which puts the plain factory back for the rerun.
  """
  import signal  # pylint: disable=g-import-not-at-top
  from jaxcnn import parallel  # pylint: disable=g-import-not-at-top

  def arm(step_number, signum=signal.SIGTERM, factory="make_train_step"):
    make = getattr(parallel, factory)
    calls = {"n": 0}

    def make_signalling(*args, **kwargs):
      step = make(*args, **kwargs)

      def wrapped(state, batch):
        calls["n"] += 1
        if calls["n"] == step_number:
          os.kill(os.getpid(), signum)
        return step(state, batch)
      return wrapped

    monkeypatch.setattr(parallel, factory, make_signalling)
    return lambda: monkeypatch.setattr(parallel, factory, make)
  return arm

