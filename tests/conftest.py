"""Test setup: four fake CPU devices, set before JAX is first imported.

pmap-ed code paths then run on 4 devices exactly as on a 4-GPU host. TF is
kept off any accelerator so it never grabs GPU memory JAX needs.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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


def pytest_report_header(config):
  return f"jax {jax.__version__}, devices: {jax.device_count()} x {jax.devices()[0].platform}"


@pytest.fixture(scope="session")
def fashion_mnist_data_dir(tmp_path_factory):
  """A TFDS data dir holding the real Fashion-MNIST, prepared once per session.

  Skips (with the reason) when the offline mirror is absent.
  """
  from jaxcnn import data as datasets
  if not os.path.isdir(FASHION_MNIST_MIRROR):
    pytest.skip(f"Fashion-MNIST mirror not found at {FASHION_MNIST_MIRROR} "
                "(apt-get install dataset-fashion-mnist)")
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  datasets.prepare("fashion_mnist", data_dir=data_dir, mirror_dir=FASHION_MNIST_MIRROR)
  return data_dir
