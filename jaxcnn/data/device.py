"""The training part on the accelerator, and how many steps each call runs.

Two settings decide how the train loop feeds its compiled step
(:func:`plan` resolves both into a :class:`Feed`):

* ``dataset.device_cache`` ('auto' | 'on' | 'off'). On: the cached
  training part is uploaded once, as uint8, replicated on every local
  device (:class:`DeviceTrainSet`); each step receives only the int32 rows
  of its batch (``Data.train_indices``: the very order of the tf.data path,
  a pure function of ``(seed, epoch)``), and gathering, augmentation and
  normalization run inside the compiled step (:func:`make_gather`). The
  step sees the same batches in the same order as from tf.data; augmented,
  the same images under other random draws (below).
* ``training.steps_per_call`` (K, 0 = auto). One compiled call runs K train
  steps (``lax.scan`` over K batches, or K rows of indices, stacked on a
  leading axis); the last call of an epoch runs what is left, so epochs
  (and a resume mid-epoch) stay exact.

The 'auto' rules (measured in BENCHMARKS.md, "Device data and steps per
call"):

* ``device_cache`` is on where the backend is a GPU or TPU, the run is one
  process, the training part is cached (``dataset.cache``), the images are
  not feature-extraction features, and the uint8 training part takes at
  most :data:`DEVICE_MEMORY_FRACTION` of one device's memory, augmented or
  not (taking augmentation off the host is what the accelerator gains).
  On XLA:CPU it is off, so that the default CPU run keeps its programs: there
  the "device" is the host, and the gain measured was small; 'on' takes it.
* ``steps_per_call`` is 1 on XLA:CPU (a scan over CNN steps ran several times
  slower per step there) and :data:`ACCELERATOR_STEPS_PER_CALL` on GPU and TPU, where a
  step of these small models costs less than its dispatch (not yet measured
  there: the GPU figures are pending).

Augmentation (``dataset.augmentation``) runs on the device too, with
:mod:`jaxcnn.data.augment_jax`: a step's input is then ``{'rows',
'position', 'seed', 'epoch'}`` (int32/uint32, all shaped like the rows, so
they shard and stack as rows do), and every image's key is
``augment_jax.example_keys(seed, epoch, position)``, its global position in
the epoch: a resumed epoch, any K, any device count draw the same images.
The draws follow the tf.data path's distributions but are other numbers
(JAX's and TF's generators differ): an augmented device run is reproducible,
not equal to an augmented tf.data run. The order is the tf.data path's:
augmentation on the float32 [0, 255] images (``rescale`` last), then
tiling and the normalization.
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
from jaxcnn.data import augment_jax

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
  if data.augmented and max(_seeds(data)) >= 2**32:
    return ("the augmentation keys take seeds below 2**32 on the device; got "
            f"{max(_seeds(data))}")
  need, have = train_bytes(data), device_memory_bytes()
  if need > DEVICE_MEMORY_FRACTION * have:
    return (f"the uint8 training part takes {need / 2**20:.0f} MiB, more than "
            f"{DEVICE_MEMORY_FRACTION:.0%} of one device's {have / 2**20:.0f} MiB")
  return None


def make_gather(info, normalization: str, tile: int, augment=None):
  """``gather(arrays, index) -> batch``: a batch built inside the compiled step.

  The same arithmetic as the tf.data path (``Data._normalize`` after
  ``Data._augment_fn``): uint8 to float32, the augmentation (in [0, 255]),
  tile the channels, then the normalization.

  Args:
    info: the data's ``DataInfo`` (``mean`` and ``std``).
    normalization: ``dataset.normalization``.
    tile: times the stored channels are repeated.
    augment: ``augment_jax.build``'s ``fn(images, keys)``, or None. With it
      ``index`` is ``{'rows', 'position', 'seed', 'epoch'}`` (see
      :func:`calls`), else the rows alone.
  """
  mean = np.asarray(info.mean, np.float32)
  std = np.asarray(info.std, np.float32)

  def gather(arrays, index):
    images, labels = arrays
    rows = index["rows"] if augment is not None else index
    x = images[rows].astype(jnp.float32)
    if augment is not None:
      x = augment(x, example_keys(index))
    if tile > 1:
      x = jnp.tile(x, (1,) * (x.ndim - 1) + (tile,))
    if normalization == "rescale":
      x = x / 255.0
    elif normalization != "none":
      x = (x / 255.0 - mean) / std
    return {"image": x, "label": labels[rows]}
  return gather


def example_keys(index) -> jax.Array:
  """One key per image of ``index`` (``{'position', 'seed', 'epoch'}``, any shape).

  ``augment_jax.example_keys(seed, epoch, position)`` for each image: the
  seed and epoch ride along per image so that a population's members (each
  its own seed) and stacked calls need nothing else.
  """
  position = index["position"]

  def one(seed, epoch, pos):
    return augment_jax.example_keys(seed, epoch, pos[None])[0]
  keys = jax.vmap(one)(index["seed"].reshape(-1), index["epoch"].reshape(-1),
                       position.reshape(-1))
  return keys.reshape(position.shape)


class DeviceTrainSet:
  """The cached training part, uploaded once to every local device.

  Attributes:
    arrays: ``(uint8[N, H, W, C], int32[N])`` replicated over the local
      devices (the mesh the train step runs on).
    gather: :func:`make_gather` for the data's normalization and
      augmentation.
  """

  def __init__(self, data, devices=None):
    images, labels = data.train_arrays()
    replicated = jax.sharding.NamedSharding(parallel.batch_mesh(devices),
                                            jax.sharding.PartitionSpec())
    self.arrays = (jax.device_put(images, replicated),
                   jax.device_put(labels, replicated))
    augment = augment_jax.build(data.augmentation) if data.augmented else None
    self.gather = make_gather(data.info, *data.normalization, augment=augment)


def calls(data, epoch: int, start_step: int, feed: Feed) -> Iterator[tuple[int, Any]]:
  """The inputs of each compiled call of an epoch, from ``start_step`` on.

  Yields:
    ``(steps, inputs)``: on the device path ``inputs`` are int32 rows
    (``data.train_indices``), augmented ``{'rows', 'position', 'seed',
    'epoch'}`` (:func:`device_inputs`), else host batches
    (``data.train_epoch``); with ``feed.stacked`` up to K of them stacked
    on a leading axis (the last call of the epoch takes what is left),
    else one.
  """
  k = feed.steps_per_call
  if feed.device:
    inputs = device_inputs(data, epoch, start_step)
    steps = len(jax.tree.leaves(inputs)[0])
    for i in range(0, steps, k):
      chunk = jax.tree.map(lambda x: x[i:i + k] if feed.stacked else x[i], inputs)
      yield min(k, steps - i), chunk
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


def device_inputs(data, epoch: int, start_step: int = 0):
  """The device path's inputs of an epoch's steps, from ``start_step`` on.

  Unaugmented: ``data.train_indices`` (int32 ``[steps, (M,) D, b]``).
  Augmented: also what the keys need, every array shaped like the rows:
  ``position`` (``data.train_positions``, int32), ``seed`` (each member's,
  uint32: ``jax.random.key`` of a uint32 is that of the same Python int)
  and ``epoch`` (int32).
  """
  rows = data.train_indices(epoch, start_step)
  if not data.augmented:
    return rows
  seeds = np.asarray(_seeds(data), np.uint32)
  if rows.ndim == 4:  # [steps, M, D, b]: each member its own seed.
    seeds = seeds[None, :, None, None]
  else:
    seeds = seeds[0]
  return {"rows": rows,
          "position": data.train_positions(epoch, start_step).astype(np.int32),
          "seed": np.broadcast_to(seeds, rows.shape).copy(),
          "epoch": np.full(rows.shape, epoch, np.int32)}


def _seeds(data) -> list[int]:
  return list(data.seeds) if hasattr(data, "seeds") else [data.seed]


def _stack(batches: list[dict]) -> dict:
  return {key: np.stack([b[key] for b in batches]) for key in batches[0]}
