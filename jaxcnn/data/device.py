"""The training part on the accelerator, and how many steps each call runs.

Two settings decide how the train loop feeds its compiled step
(:func:`plan` resolves both into a :class:`Feed`):

* ``dataset.device_cache`` ('auto' | 'on' | 'off'). On: the cached
  training part is uploaded once, as uint8, replicated on every local
  device (:class:`DeviceTrainSet`); each step receives only the int32 rows
  of its batch (``Data.train_indices``: the very order of the tf.data path,
  a pure function of ``(seed, epoch)``), and gathering and normalization
  run inside the compiled step (:func:`make_gather`). The step sees the
  same batches in the same order as from tf.data.
* ``training.steps_per_call`` (K, 0 = auto). One compiled call runs K train
  steps (``lax.scan`` over K batches, or K rows of indices, stacked on a
  leading axis); the last call of an epoch runs what is left, so epochs
  (and a resume mid-epoch) stay exact.

The 'auto' rules (measured in BENCHMARKS.md, "Device data and steps per
call"):

* ``device_cache`` is on where the backend is a GPU or TPU, the run is one
  process, the training part is cached (``dataset.cache``) and unaugmented,
  the images are not feature-extraction features, and the uint8 training
  part takes at most :data:`DEVICE_MEMORY_FRACTION` of one device's memory.
  On XLA:CPU it is off, so that the default CPU run keeps its programs: there
  the "device" is the host, and the gain measured was small; 'on' takes it.
* ``steps_per_call`` is 1 on XLA:CPU (a scan over CNN steps ran several times
  slower per step there) and :data:`ACCELERATOR_STEPS_PER_CALL` on GPU and TPU, where a
  step of these small models costs less than its dispatch (not yet measured
  there: the GPU figures are pending).

Augmentation on the device is not wired yet: 'on' refuses an augmented
config (``config.validate``), and 'auto' keeps such runs on tf.data. A
jittable augmentation slots into :func:`make_gather` between the uint8 to
float32 cast and the tiling/normalization, as in the tf.data path.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import config as config_lib
from jaxcnn import parallel

# 'auto' keeps the training part on a device only if its uint8 copy takes
# at most this fraction of the device's memory: the rest is for the model,
# its activations and XLA's buffers.
DEVICE_MEMORY_FRACTION = 0.25
# Steps per compiled call that 'auto' picks on GPU and TPU: enough to make
# the per-call dispatch small against the steps; not yet measured on a GPU.
ACCELERATOR_STEPS_PER_CALL = 16


@dataclasses.dataclass(frozen=True)
class Feed:
  """How the train loop feeds its step (``plan``'s answer).

  Attributes:
    device: the training part lives on the devices (``dataset.device_cache``).
    steps_per_call: train steps per compiled call (>= 1).
  """
  device: bool = False
  steps_per_call: int = 1

  @property
  def stacked(self) -> bool:
    """Whether calls take batches stacked on a leading steps axis."""
    return self.steps_per_call > 1


def plan(config, data, platform: str | None = None) -> Feed:
  """Resolves ``dataset.device_cache`` and ``training.steps_per_call``.

  Args:
    config: the validated run config.
    data: the run's data (``Data``, ``PopulationData``, or cached features).
    platform: the JAX backend; default ``jax.default_backend()``.

  Raises:
    ConfigError: ``device_cache='on'`` where it cannot run (several
      processes, data that is not a cached image dataset, a training part
      too large for the devices), with why and what to do.
  """
  platform = platform or jax.default_backend()
  return Feed(device=_device_cache(config, data, platform),
              steps_per_call=steps_per_call(config, platform))


def steps_per_call(config, platform: str) -> int:
  """``training.steps_per_call``, with 0 (auto) resolved for ``platform``."""
  k = config.training.steps_per_call
  if k:
    return int(k)
  if platform == "cpu" or jax.config.jax_debug_nans:
    return 1
  return ACCELERATOR_STEPS_PER_CALL


def train_bytes(data) -> int:
  """Bytes of the uint8 training part as it would be held on one device."""
  return data.info.num_train * int(np.prod(data.info.image_shape)) // data.normalization[1]


def device_memory_bytes(device: jax.Device | None = None) -> int:
  """One device's memory: XLA's limit, else the host's memory over the local devices."""
  device = device or jax.local_devices()[0]
  stats = device.memory_stats() or {}
  if stats.get("bytes_limit"):
    return int(stats["bytes_limit"])
  host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  return host // jax.local_device_count()


def _device_cache(config, data, platform: str) -> bool:
  mode = config.dataset.device_cache
  if mode == "off":
    return False
  problem = _problem(config, data)
  if mode == "on":
    if problem:
      raise config_lib.ConfigError(
          f"dataset.device_cache='on' cannot be honoured: {problem}. Set "
          "dataset.device_cache='off' (or 'auto', which picks the host path "
          "then).")
    return True
  return problem is None and platform != "cpu" and not jax.config.jax_debug_nans


def _problem(config, data) -> str | None:
  """Why the training part cannot live on the devices, or None."""
  if config.transfer.feature_extraction or not hasattr(data, "train_indices"):
    return "the head trains on cached features, not on the image dataset"
  if jax.process_count() > 1:
    return (f"this run has {jax.process_count()} processes, and the device copy "
            "is made for one (each process would need its own rows of every "
            "global batch on its devices)")
  if not data.cached:
    return "dataset.cache is False"
  if data.augmented:
    return "the training batches are augmented (augmentation runs in tf.data)"
  need, have = train_bytes(data), device_memory_bytes()
  if need > DEVICE_MEMORY_FRACTION * have:
    return (f"the uint8 training part takes {need / 2**20:.0f} MiB, more than "
            f"{DEVICE_MEMORY_FRACTION:.0%} of one device's {have / 2**20:.0f} MiB")
  return None


def make_gather(info, normalization: str, tile: int):
  """``gather(arrays, rows) -> batch``: a batch built inside the compiled step.

  The same arithmetic as the tf.data path (``Data._normalize``): uint8 to
  float32, tile the channels, then the normalization.

  Args:
    info: the data's ``DataInfo`` (``mean`` and ``std``).
    normalization: ``dataset.normalization``.
    tile: times the stored channels are repeated.
  """
  mean = np.asarray(info.mean, np.float32)
  std = np.asarray(info.std, np.float32)

  def gather(arrays, rows):
    images, labels = arrays
    x = images[rows].astype(jnp.float32)
    # Augmentation (jittable, over the batch, in [0, 255]) goes here.
    if tile > 1:
      x = jnp.tile(x, (1,) * (x.ndim - 1) + (tile,))
    if normalization == "rescale":
      x = x / 255.0
    elif normalization != "none":
      x = (x / 255.0 - mean) / std
    return {"image": x, "label": labels[rows]}
  return gather


class DeviceTrainSet:
  """The cached training part, uploaded once to every local device.

  Attributes:
    arrays: ``(uint8[N, H, W, C], int32[N])`` replicated over the local
      devices (the mesh the train step runs on).
    gather: :func:`make_gather` for the data's normalization.
  """

  def __init__(self, data, devices=None):
    images, labels = data.train_arrays()
    replicated = jax.sharding.NamedSharding(parallel.batch_mesh(devices),
                                            jax.sharding.PartitionSpec())
    self.arrays = (jax.device_put(images, replicated),
                   jax.device_put(labels, replicated))
    self.gather = make_gather(data.info, *data.normalization)


def calls(data, epoch: int, start_step: int, feed: Feed) -> Iterator[tuple[int, Any]]:
  """The inputs of each compiled call of an epoch, from ``start_step`` on.

  Yields:
    ``(steps, inputs)``: on the device path ``inputs`` are int32 rows
    (``data.train_indices``), else host batches (``data.train_epoch``);
    with ``feed.stacked`` up to K of them stacked on a leading axis (the
    last call of the epoch takes what is left), else one.
  """
  k = feed.steps_per_call
  if feed.device:
    rows = data.train_indices(epoch, start_step)
    for i in range(0, len(rows), k):
      chunk = rows[i:i + k]
      yield len(chunk), chunk if feed.stacked else chunk[0]
    return
  batches = data.train_epoch(epoch, start_step)
  if not feed.stacked:
    for batch in batches:
      yield 1, batch
    return
  group = []
  for batch in batches:
    group.append(batch)
    if len(group) == k:
      yield k, _stack(group)
      group = []
  if group:
    yield len(group), _stack(group)


def _stack(batches: list[dict]) -> dict:
  return {key: np.stack([b[key] for b in batches]) for key in batches[0]}
