"""Iterating a prepared dataset: host numpy batches for training and evaluation.

Every batch is a dict of numpy arrays shaped for ``jax.pmap``:
``{'image': f32[D, b, H, W, C], 'label': i32[D, b]}`` (``D`` local devices,
``b`` examples per device), plus ``'mask': bool[D, b]`` for evaluation.
:class:`Data` is built by ``jaxcnn.data.create`` from already prepared parts
(a :class:`~jaxcnn.data.reader.Reader`, the split arithmetic and the
normalization statistics); it only iterates.

* Train order: with ``cache`` (default) the decoded uint8 examples are held
  in memory and each epoch is a full permutation drawn from
  ``numpy.random.default_rng([seed, epoch])``: the same on every run (exact
  resume), different each epoch, independent of any TF global seed; resuming
  at ``start_step`` gathers only the remaining batches. Every process holds
  the whole training part and takes its own rows of each global batch, so
  the run is the same on 1 host with 4 devices and 2 hosts with 2 each.
  Without ``cache`` the encoded examples stream through a ``shuffle_buffer``
  seeded by ``(seed, epoch)``; skipped batches are never decoded.
* Augmentation is seeded by ``(seed, epoch, position in the epoch)``, so a
  resumed epoch draws the same augmentations as the uninterrupted one.
* Normalization is applied on whole batches (vectorized):
  ``image = (x / 255 - mean) / std`` with ``mean``/``std`` in ``Data.info``.
* Evaluation pads the last batch with zero images (after normalization) and a
  ``mask`` False, and gives every process the same number of steps, so every
  example counts exactly once.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Iterator, Mapping

import jax
import numpy as np
import tensorflow as tf

from jaxcnn.data import splits
from jaxcnn.data.augment import AugmentConfig, AugmentFn
from jaxcnn.data.reader import AUTOTUNE, Reader

Batch = dict[str, np.ndarray]

# Cached, unaugmented training batches are gathered several steps per tf.data
# element: about this many bytes of float32 images, and at most this many steps.
_GATHER_BYTES = 4 << 20
_MAX_STEPS_PER_GATHER = 64


@dataclasses.dataclass(frozen=True)
class DataInfo:
  """What the model and the logs need to know about the data.

  Counts are global (all processes). ``mean``/``std`` broadcast against
  ``image_shape`` and define the normalization ``(x / 255 - mean) / std``.
  """
  name: str
  num_classes: int
  image_shape: tuple[int, int, int]
  num_train: int
  num_validation: int
  num_test: int
  class_names: tuple[str, ...]
  mean: np.ndarray
  std: np.ndarray


def _numpy_batches(ds: tf.data.Dataset) -> Iterator[Any]:
  """Iterates ``ds`` as numpy with tf.data's autotuner off.

  With autotuning on, training epochs can fall into a mode where each step
  waits on its batch, well below the step's own speed; with it off the
  epoch keeps up with the step (BENCHMARKS.md has the measurements).
  Parallel maps still run on all cores (AUTOTUNE parallelism falls back to
  the core count).
  """
  options = tf.data.Options()
  options.autotune.enabled = False
  return ds.with_options(options).as_numpy_iterator()


class Data:
  """The dataset as host numpy batches; built by ``jaxcnn.data.create``.

  Args:
    reader: reads the examples of each part.
    parts: this process's parts, by name (``splits.plan``).
    info: the dataset's description, normalization statistics included.
    batches: the batch sizes per process and the local device count.
    steps_per_epoch: whole training batches per epoch.
    seed: fixes the training order (with the epoch) and the augmentation.
    normalization: one of ``config.NORMALIZATIONS``.
    tile: times the stored channels are repeated (3: grayscale to RGB).
    cache: whether the decoded training part is held in memory.
    shuffle_buffer: the shuffle buffer without ``cache``.
    augment: the per-example augmentation (``augment.build``), or None.
    augmentation: its validated config (``augment.parse_config``), which
      the device path builds its own augmentation from; None without one.
  """

  def __init__(self, reader: Reader, parts: Mapping[str, splits.Part],
               info: DataInfo, batches: splits.Batching, *, steps_per_epoch: int,
               seed: int, normalization: str, tile: int, cache: bool,
               shuffle_buffer: int, augment: AugmentFn | None = None,
               augmentation: AugmentConfig | None = None):
    self.info = info
    self.steps_per_epoch = steps_per_epoch
    self._reader = reader
    self._parts = parts
    self._batches = batches
    self._seed = int(seed)
    self._normalization = normalization
    self._tile = tile
    self._cache = cache
    self._shuffle_buffer = shuffle_buffer
    self._augment = augment
    self._augmentation = augmentation
    self._mean = tf.constant(info.mean)
    self._std = tf.constant(info.std)

  def reseeded(self, seed: int) -> "Data":
    """The same data (the decoded cache shared, not copied) under another seed.

    The training order and augmentation become those of ``seed``; the
    evaluation batches do not depend on it.
    """
    other = copy.copy(self)
    other._seed = int(seed)
    return other

  # --- batch finishing --------------------------------------------------------

  def _normalize(self, images: tf.Tensor) -> tf.Tensor:
    x = tf.cast(images, tf.float32)
    if self._tile > 1:
      x = tf.tile(x, [1, 1, 1, self._tile])
    if self._normalization == "none":
      return x
    if self._normalization == "rescale":
      return x / 255.0
    return (x / 255.0 - self._mean) / self._std

  def _shard(self, x: tf.Tensor) -> tf.Tensor:
    """[B, ...] -> [local devices, B / local devices, ...]."""
    return tf.reshape(x, [self._batches.num_local_devices, -1, *x.shape[1:]])

  def _finish(self, images, labels) -> dict[str, tf.Tensor]:
    return {"image": self._shard(self._normalize(images)),
            "label": self._shard(labels)}

  def _finished(self, ds: tf.data.Dataset) -> Iterator[Batch]:
    """Normalized, sharded numpy batches of a dataset of (images, labels) batches."""
    # Guarded: streamed batches read the prepared files as they go.
    return self._reader.guarded(
        _numpy_batches(ds.map(self._finish, num_parallel_calls=AUTOTUNE).prefetch(2)))

  # --- training ---------------------------------------------------------------

  def epoch_order(self, epoch: int) -> np.ndarray:
    """The order of the (global) training examples in ``epoch``.

    Only with ``dataset.cache`` (without it the order comes from a shuffle
    buffer and has no index form).
    """
    if not self._cache:
      raise ValueError("epoch_order needs dataset.cache = True.")
    rng = np.random.default_rng([self._seed, int(epoch)])
    return rng.permutation(self._parts["train"].count)

  def train_epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
    """The training batches of one epoch, from ``start_step`` on.

    Args:
      epoch: the epoch number (>= 0); with the seed it fixes the order.
      start_step: batches of this epoch already trained (resume mid-epoch);
        they are skipped without being decoded or normalized.

    Returns:
      An iterator of ``{'image': f32[D, b, H, W, C], 'label': i32[D, b]}``, exactly
      ``steps_per_epoch - start_step`` of them (the remainder is dropped).

    Raises:
      ValueError: a negative epoch or seed, or ``start_step`` outside
        ``[0, steps_per_epoch]`` (at the call, not at the first batch).
    """
    self._check_epoch_args(epoch, start_step)
    if self._cache:
      pipeline = self._cached_augmented if self._augment else self._cached_plain
    else:
      pipeline = self._streamed_augmented if self._augment else self._streamed_plain
    return pipeline(epoch, start_step)

  def _check_epoch_args(self, epoch: int, start_step: int) -> None:
    if epoch < 0 or self._seed < 0:
      raise ValueError(f"epoch and seed must be >= 0; got {epoch}, {self._seed}.")
    if not 0 <= start_step <= self.steps_per_epoch:
      raise ValueError(f"start_step must be in [0, {self.steps_per_epoch}] "
                       f"(steps_per_epoch); got {start_step}.")

  # --- the training part on the device (jaxcnn.data.device) -----------------

  @property
  def augmented(self) -> bool:
    """Whether training batches are augmented."""
    return self._augment is not None

  @property
  def augmentation(self) -> AugmentConfig | None:
    """The augmentation's validated config, or None (unaugmented)."""
    return self._augmentation if self._augment is not None else None

  @property
  def seed(self) -> int:
    """The data seed: with the epoch it fixes the order and the augmentation."""
    return self._seed

  @property
  def cached(self) -> bool:
    """Whether the decoded training part is held in memory (``dataset.cache``)."""
    return self._cache

  @property
  def normalization(self) -> tuple[str, int]:
    """``(dataset.normalization, tile)``: what :meth:`train_epoch` applies."""
    return self._normalization, self._tile

  def train_arrays(self) -> tuple[np.ndarray, np.ndarray]:
    """The cached training part: ``(uint8[N, H, W, C], int32[N])``, unnormalized."""
    images, labels = self._reader.arrays("train")
    return images.numpy(), labels.numpy().astype(np.int32)

  def train_indices(self, epoch: int, start_step: int = 0) -> np.ndarray:
    """The rows of :meth:`train_arrays` that :meth:`train_epoch` batches.

    Batch ``i`` of ``train_epoch(epoch, start_step)`` is exactly
    ``train_arrays()`` at ``train_indices(epoch, start_step)[i]``,
    normalized: the same order, the same rows of each global batch for
    this process, the same split over devices.

    Returns:
      int32 ``[steps_per_epoch - start_step, D, b]`` (D local devices).
    """
    self._check_epoch_args(epoch, start_step)
    rows = self._process_rows(epoch, start_step)
    d = self._batches.num_local_devices
    return rows.reshape(len(rows), d, -1).astype(np.int32)

  def train_positions(self, epoch: int, start_step: int = 0) -> np.ndarray:
    """Each example's global position in the epoch, shaped as :meth:`train_indices`.

    Step ``i``'s row ``j`` of the global batch is at ``i * global_batch + j``:
    the augmentation's seed, the same on any number of devices and
    processes (cached data only).

    Returns:
      int64 ``[steps_per_epoch - start_step, D, b]``.
    """
    self._check_epoch_args(epoch, start_step)
    g, b = self._batches.global_size, self._batches.process_size
    where = (np.arange(start_step, self.steps_per_epoch)[:, None] * g
             + jax.process_index() * b + np.arange(b)[None, :])
    return where.reshape(len(where), self._batches.num_local_devices, -1)

  def _process_rows(self, epoch: int, start_step: int) -> np.ndarray:
    """[remaining steps, b]: this process's rows of each remaining global batch."""
    g, b, steps = self._batches.global_size, self._batches.process_size, self.steps_per_epoch
    p = jax.process_index()
    global_order = self.epoch_order(epoch)[:steps * g].reshape(steps, g)
    return global_order[start_step:, p * b:(p + 1) * b]

  def _cached_plain(self, epoch: int, start_step: int) -> Iterator[Batch]:
    """Cached, unaugmented: whole batches gathered from memory."""
    return self._gathered_batches(self._process_rows(epoch, start_step))

  def _cached_augmented(self, epoch: int, start_step: int) -> Iterator[Batch]:
    """Cached, augmented: examples gathered from memory, augmented one by one."""
    images, labels = self._reader.arrays("train")
    rows = self._process_rows(epoch, start_step)
    # Global positions seed the augmentation: the same images whatever the
    # number of processes.
    where = self.train_positions(epoch, start_step)
    ds = tf.data.Dataset.from_tensor_slices((rows.reshape(-1), where.reshape(-1)))
    ds = ds.map(lambda i, w: (tf.gather(images, i), tf.gather(labels, i), w))
    return self._augmented_batches(ds, epoch)

  def _streamed_plain(self, epoch: int, start_step: int) -> Iterator[Batch]:
    """Streamed, unaugmented: decoded from the shuffle buffer."""
    ds = self._streamed_examples(epoch, start_step)
    ds = ds.map(lambda x, y, p: (x, y)).batch(self._batches.process_size,
                                              drop_remainder=True)
    return self._finished(ds)

  def _streamed_augmented(self, epoch: int, start_step: int) -> Iterator[Batch]:
    """Streamed, augmented: decoded from the shuffle buffer, augmented one by one."""
    return self._augmented_batches(self._streamed_examples(epoch, start_step), epoch)

  def _streamed_examples(self, epoch: int, start_step: int) -> tf.data.Dataset:
    """(uint8 image, label, position in this process's epoch), shuffled."""
    b, steps = self._batches.process_size, self.steps_per_epoch
    first = start_step * b
    shuffle_seed = int(np.random.default_rng([self._seed, int(epoch)]).integers(2**31))
    ds = self._reader.encoded("train")
    ds = ds.shuffle(self._shuffle_buffer, seed=shuffle_seed,
                    reshuffle_each_iteration=False)
    # Skip before decoding: resuming costs reading, not decoding.
    ds = ds.take(steps * b).skip(first)
    ds = tf.data.Dataset.zip(ds, tf.data.Dataset.range(first, steps * b))
    return ds.map(lambda xy, p: (self._reader.decode(xy[0]), xy[1], p),
                  num_parallel_calls=AUTOTUNE)

  def _augmented_batches(self, ds: tf.data.Dataset, epoch: int) -> Iterator[Batch]:
    """Batches of a dataset of (image, label, position), augmented per example."""
    ds = ds.map(self._augment_fn(epoch), num_parallel_calls=AUTOTUNE)
    return self._finished(ds.batch(self._batches.process_size, drop_remainder=True))

  def _augment_fn(self, epoch: int):
    base = tf.constant([self._seed, int(epoch)], tf.int64)
    if not self._cache:  # Positions are per process without the cache.
      base = tf.random.experimental.stateless_fold_in(base, jax.process_index())
    augment = self._augment

    def fn(image, label, position):
      # Seed f(seed, epoch, position in the epoch): a resumed epoch draws the
      # same augmentations as the uninterrupted one.
      seed = tf.random.experimental.stateless_fold_in(base, position)
      return augment(tf.cast(image, tf.float32), seed), label
    return fn

  def _gathered_batches(self, rows: np.ndarray) -> Iterator[Batch]:
    """Cached, unaugmented batches: ``rows[i]`` indexes step i's examples.

    Several steps are gathered and normalized per tf.data element (a few
    MiB of images) and split here: tf.data's fixed cost per element is then
    paid once per chunk rather than once per step, which matters for small
    models at small batches (BENCHMARKS.md). The batches are the same as
    one element per step.
    """
    if len(rows) == 0:
      return iter(())
    images, labels = self._reader.arrays("train")
    b = rows.shape[1]
    image_bytes = 4 * b * int(np.prod(self.info.image_shape))
    per_chunk = int(np.clip(_GATHER_BYTES // max(image_bytes, 1), 1,
                            _MAX_STEPS_PER_GATHER))
    d = self._batches.num_local_devices

    def gather(chunk_rows):
      flat = tf.reshape(chunk_rows, [-1])
      x = self._normalize(tf.gather(images, flat))
      y = tf.gather(labels, flat)
      k = tf.shape(chunk_rows)[0]
      return (tf.reshape(x, [k, d, -1, *x.shape[1:]]),
              tf.reshape(y, [k, d, -1]))

    ds = tf.data.Dataset.from_tensor_slices(rows).batch(per_chunk)
    ds = ds.map(gather, num_parallel_calls=AUTOTUNE).prefetch(2)
    return ({"image": x[i], "label": y[i]}
            for x, y in _numpy_batches(ds) for i in range(len(y)))

  # --- evaluation -------------------------------------------------------------

  def eval_steps(self, split: str) -> int:
    """Eval batches of ``split``; the same on every process."""
    return splits.eval_steps(splits.eval_part(self._parts, split),
                             self._batches.eval_process_size)

  def eval_batches(self, split: str) -> Iterator[Batch]:
    """Every example of ``split`` once, in order, in padded, masked batches.

    Args:
      split: 'validation', 'test', or 'train' (the training part, unshuffled,
        e.g. to measure the training loss without dropout).

    Returns:
      An iterator of ``{'image': f32[D, b, H, W, C], 'label': i32[D, b],
      'mask': bool[D, b]}``; padding is zero images, label 0, mask False.

    Raises:
      ValueError: an unknown split, or one with no data (no validation split
        configured).
    """
    part = splits.eval_part(self._parts, split)
    b, steps = self._batches.eval_process_size, self.eval_steps(split)
    if self._cache:
      ds = tf.data.Dataset.from_tensor_slices(self._reader.arrays(split))
    else:
      ds = self._reader.decoded(split)
    ds = ds.batch(b).map(self._padded_finish, num_parallel_calls=AUTOTUNE)
    extra = steps - (-(-part.count // b))  # this process may have fewer batches
    if extra > 0:
      ds = ds.concatenate(self._empty_batches(extra))
    return self._reader.guarded(_numpy_batches(ds.prefetch(2)))

  def _padded_finish(self, images, labels) -> dict[str, tf.Tensor]:
    """A normalized eval batch, padded to the full batch with a mask."""
    b = self._batches.eval_process_size
    n = tf.shape(labels)[0]
    x, y = self._normalize(images), labels
    pad = b - n
    x = tf.pad(x, [[0, pad], [0, 0], [0, 0], [0, 0]])
    y = tf.pad(y, [[0, pad]])
    mask = tf.range(b) < n
    return {"image": self._shard(x), "label": self._shard(y),
            "mask": self._shard(mask)}

  def _empty_batches(self, count: int) -> tf.data.Dataset:
    """``count`` all-padding eval batches (mask False)."""
    d = self._batches.num_local_devices
    shape = (d, self._batches.eval_process_size // d)
    empty = {"image": tf.zeros(shape + self.info.image_shape, tf.float32),
             "label": tf.zeros(shape, tf.int32), "mask": tf.zeros(shape, tf.bool)}
    return tf.data.Dataset.from_tensors(empty).repeat(count)

  def as_numpy(self, split: str) -> tuple[np.ndarray, np.ndarray]:
    """All of this process's examples of ``split``, normalized, in order.

    Returns:
      ``(images f32[N, H, W, C], labels i32[N])``.
    """
    images, labels = [], []
    for batch in self.eval_batches(split):
      mask = batch["mask"].reshape(-1)
      images.append(batch["image"].reshape(-1, *self.info.image_shape)[mask])
      labels.append(batch["label"].reshape(-1)[mask])
    return np.concatenate(images), np.concatenate(labels)


class PopulationData:
  """Several members' training orders over one decoded dataset.

  Member ``i`` gets exactly the batches ``data.reseeded(seeds[i])`` would
  give a single run (its seed fixes its order and augmentation); the
  examples are read and decoded once (``Data.reseeded`` shares the cache).

  Args:
    data: the dataset.
    seeds: each member's data seed.
  """

  def __init__(self, data: Data, seeds: list[int]):
    self.members = [data.reseeded(s) for s in seeds]
    self.info = data.info
    self.steps_per_epoch = data.steps_per_epoch

  def train_epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
    """``{'image': f32[M, D, b, H, W, C], 'label': i32[M, D, b]}`` batches, M members."""
    iterators = [m.train_epoch(epoch, start_step) for m in self.members]
    for batches in zip(*iterators):
      yield {k: np.stack([b[k] for b in batches]) for k in batches[0]}

  def train_indices(self, epoch: int, start_step: int = 0) -> np.ndarray:
    """int32 ``[steps, M, D, b]``: each member's ``Data.train_indices``."""
    return np.stack([m.train_indices(epoch, start_step) for m in self.members], axis=1)

  # The device path reads the members' shared arrays and settings.
  augmented = property(lambda self: self.members[0].augmented)
  augmentation = property(lambda self: self.members[0].augmentation)
  cached = property(lambda self: self.members[0].cached)
  normalization = property(lambda self: self.members[0].normalization)

  def train_arrays(self) -> tuple[np.ndarray, np.ndarray]:
    return self.members[0].train_arrays()

  @property
  def seeds(self) -> list[int]:
    """Each member's data seed."""
    return [m.seed for m in self.members]

  def train_positions(self, epoch: int, start_step: int = 0) -> np.ndarray:
    """``[steps, M, D, b]``: ``Data.train_positions``, the same for every member."""
    where = self.members[0].train_positions(epoch, start_step)
    return np.repeat(where[:, None], len(self.members), axis=1)

  def eval_batches(self, split: str) -> Iterator[Batch]:
    """Every example of ``split`` once (the same for every member)."""
    return self.members[0].eval_batches(split)

  def eval_steps(self, split: str) -> int:
    return self.members[0].eval_steps(split)
