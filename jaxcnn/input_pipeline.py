"""The tf.data input pipeline: TFDS examples to host numpy batches.

Every batch is a dict of numpy arrays shaped for ``jax.pmap``:
``{'image': f32[D, b, H, W, C], 'label': i32[D, b]}`` (``D`` local devices,
``b`` examples per device), plus ``'mask': bool[D, b]`` for evaluation.

Choices worth knowing:

* Splits: ``num_train_examples`` takes the first N of ``train_split``; the
  validation part is carved from the END of those (Keras' ``fit(...,
  validation_split=)`` convention, lecture 002), and the rest is trained on.
  Lecture 004 takes the FIRST 5000 instead; the two give different but equally
  valid partitions. Each part is split per process with
  ``tfds.split_for_jax_process`` (train evenly, dropping a remainder).
* Train order: with ``cache`` (default) the decoded uint8 examples are held
  in memory and each epoch is a full permutation drawn from
  ``numpy.random.default_rng([seed, epoch])``: the same on every run (exact
  resume), different each epoch, independent of any TF global seed; resuming
  at ``start_step`` gathers only the remaining batches. Every process holds
  the whole training part and takes its own rows of each global batch, so
  the run is the same on 1 host with 4 devices and 2 hosts with 2 each. Without ``cache`` the
  encoded examples stream through a ``shuffle_buffer`` seeded by
  ``(seed, epoch)``; skipped batches are never decoded.
* Normalization is applied on whole batches (vectorized):
  ``image = (x / 255 - mean) / std`` with ``mean``/``std`` in
  ``Data.info`` ('rescale': 0 and 1; 'none': 0 and 1/255, i.e. raw x).
  'standardize' uses per-channel and 'standardize_pixel' per-pixel statistics
  of the training part only (never validation or test, lecture 000); a
  constant pixel (std 0) is divided by 1.
* ``image_size`` resizes bilinearly as Keras' ``image_dataset_from_directory``
  does, once per example before caching; the result is rounded to uint8 (at
  most half a grey level from Keras' float result) so the cache stays small.
* Evaluation pads the last batch with zero images (after normalization) and a
  ``mask`` False, and gives every process the same number of steps, so every
  example counts exactly once.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from jaxcnn import datasets


def _hide_gpus_from_tf() -> None:
  """Keeps TF on the CPU so it never takes GPU memory that JAX needs."""
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:
    # TF's devices were initialized before this import; they cannot change now.
    pass


_hide_gpus_from_tf()

NORMALIZATIONS = ("rescale", "standardize", "standardize_pixel", "none")
SPLITS = ("train", "validation", "test")
_AUTOTUNE = tf.data.AUTOTUNE
_CHUNK = 2048  # images per chunk when loading or computing statistics


def _numpy_batches(ds: tf.data.Dataset) -> Iterator[Any]:
  """Iterates ``ds`` as numpy with tf.data's autotuner off.

  Measured on a 2-core CPU (BENCHMARKS.md): with autotuning on, the training
  epochs fall into a mode where every step waits a multiple of ~13 ms for its
  batch (half the step's own speed on small models); with it off, the whole
  epoch runs within 5-10% of the step alone. Parallel maps still run on all
  cores (AUTOTUNE parallelism falls back to the core count).
  """
  options = tf.data.Options()
  options.autotune.enabled = False
  return ds.with_options(options).as_numpy_iterator()

Batch = dict[str, np.ndarray]


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


@dataclasses.dataclass(frozen=True)
class _Part:
  """One part of the data as seen by this process."""
  split: Any  # the TFDS split argument for this process
  count: int  # examples in this process
  max_count: int  # examples in the largest process (sets the eval steps)
  global_count: int


def _check_divisible(batch: int, num_devices: int, what: str) -> None:
  if batch >= num_devices and batch % num_devices == 0:
    return
  lower = batch // num_devices * num_devices
  options = [str(m) for m in (lower, lower + num_devices) if m > 0]
  raise ValueError(
      f"{what} {batch} is not divisible by the {num_devices} devices "
      f"(jax.device_count() = {num_devices}): every device needs the same "
      f"share. Use {' or '.join(options)}.")


def _num_examples(builder: tfds.core.DatasetBuilder, split: Any) -> int:
  """Examples in ``split``, from the metadata or else from the dataset."""
  try:
    return int(builder.info.splits[split].num_examples)
  except (KeyError, ValueError, TypeError):
    # No split metadata (e.g. under tfds.testing.mock_data): ask tf.data.
    ds = builder.as_dataset(split=split, shuffle_files=False)
    n = int(ds.cardinality())
    return n if n >= 0 else int(ds.reduce(0, lambda c, _: c + 1))


def _sliced(split: str, start: int, stop: int | None, total: int) -> str:
  if start == 0 and (stop is None or stop >= total):
    return split
  if "[" in split:
    raise ValueError(
        f"Split '{split}' already has a slice; num_train_examples, "
        "num_test_examples and validation_split need a plain split name "
        "such as 'train'.")
  return f"{split}[{start}:{'' if stop is None else stop}]"


def _validation_count(value: float | int, n: int) -> int:
  if isinstance(value, float) and 0 < value < 1:
    return int(round(value * n))
  if value < 0 or float(value) != int(value):
    raise ValueError(
        f"dataset.validation_split must be a fraction in (0, 1), a count of "
        f"examples or 0; got {value!r}.")
  return int(value)


# --- normalization statistics (float64, mergeable over chunks and processes)


def _merge(a, b):
  """Merges (count, mean, M2) moments (Chan et al.'s parallel variance)."""
  (na, ma, sa), (nb, mb, sb) = a, b
  n = na + nb
  if nb == 0:
    return a
  d = mb - ma
  return n, ma + d * (nb / n), sa + sb + d * d * (na * nb / n)


def _moments(chunks: Iterator[np.ndarray], per_pixel: bool, gather: bool):
  total = None
  for chunk in chunks:
    x = chunk.astype(np.float64) / 255.0
    axes = (0,) if per_pixel else (0, 1, 2)
    n = float(np.prod([x.shape[a] for a in axes]))
    mean = x.mean(axis=axes)
    m = (n, mean, ((x - mean) ** 2).sum(axis=axes))
    total = m if total is None else _merge(total, m)
  if gather and jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    n, mean, m2 = total
    g = multihost_utils.process_allgather(
        (np.float32(n), mean.astype(np.float32), m2.astype(np.float32)))
    total = (0.0, np.zeros_like(mean), np.zeros_like(m2))
    for p in range(jax.process_count()):
      total = _merge(total, (float(g[0][p]), g[1][p].astype(np.float64),
                             g[2][p].astype(np.float64)))
  return total


def _statistics(mode: str, chunks: Callable[[], Iterator[np.ndarray]],
                channels: int, tile: int, gather: bool = True):
  """Returns (mean, std) float32 of the normalization ``mode``."""
  if mode == "rescale":
    return np.zeros(channels * tile, np.float32), np.ones(channels * tile, np.float32)
  if mode == "none":
    return (np.zeros(channels * tile, np.float32),
            np.full(channels * tile, 1 / 255, np.float32))
  n, mean, m2 = _moments(chunks(), per_pixel=mode == "standardize_pixel",
                         gather=gather)
  std = np.sqrt(m2 / n)  # population std, as numpy's .std() in the lectures
  std = np.where(std == 0, 1.0, std)  # a constant pixel carries no signal
  reps = (1,) * (mean.ndim - 1) + (tile,)
  return (np.tile(mean, reps).astype(np.float32),
          np.tile(std, reps).astype(np.float32))


class Data:
  """The dataset as host numpy batches; built by :func:`create`."""

  def __init__(self, dataset_config, *, global_batch_size: int, seed: int,
               num_local_devices: int | None, eval_batch_size: int | None):
    cfg = dataset_config
    if cfg.normalization not in NORMALIZATIONS:
      raise ValueError(f"dataset.normalization must be one of "
                       f"{', '.join(NORMALIZATIONS)}; got {cfg.normalization!r}.")
    self._cfg = cfg
    self._seed = int(seed)
    self._num_local_devices = num_local_devices or jax.local_device_count()
    num_devices = self._num_local_devices * jax.process_count()
    eval_batch_size = eval_batch_size or global_batch_size
    _check_divisible(global_batch_size, num_devices, "Global batch size")
    _check_divisible(eval_batch_size, num_devices, "Eval batch size")
    self._batch = global_batch_size // jax.process_count()
    self._eval_batch = eval_batch_size // jax.process_count()
    self._augment = None
    if cfg.augmentation:
      # Built first: a bad augmentation config fails before any data loads.
      from jaxcnn import augment  # pylint: disable=g-import-not-at-top
      self._augment = augment.build(cfg.augmentation)

    self._builder = datasets.prepare(cfg.name, data_dir=cfg.data_dir,
                                     mirror_dir=cfg.mirror_dir)
    info = self._builder.info
    keys = info.supervised_keys or ("image", "label")
    self._image_key, self._label_key = keys[0], keys[1]
    native = tuple(info.features[self._image_key].shape)
    if cfg.image_size:
      size = tuple(int(s) for s in cfg.image_size)
    elif None in native[:2]:
      raise ValueError(
          f"Dataset '{cfg.name}' has images of varying size {native}; set "
          "dataset.image_size = (height, width) to resize them.")
    else:
      size = native[:2]
    self._resize = None if size == native[:2] else size
    channels = native[2]
    self._tile = 3 if cfg.grayscale_to_rgb and channels == 1 else 1
    self._parts = self._make_parts()
    self._cache: dict[str, tuple[tf.Tensor, tf.Tensor]] = {}

    self.steps_per_epoch = (self._parts["train"].count // global_batch_size
                            if cfg.cache else
                            self._parts["train"].count // self._batch)
    self._global_batch = global_batch_size
    if self.steps_per_epoch < 1:
      raise ValueError(
          f"The training part has {self._parts['train'].count} examples per "
          f"process, fewer than one batch of {self._batch}; lower "
          "training.batch_size or raise dataset.num_train_examples.")
    mean, std = _statistics(cfg.normalization,
                            lambda: self._uint8_chunks("train"), channels, self._tile,
                            gather=not cfg.cache)
    label = info.features[self._label_key]
    self.info = DataInfo(
        name=cfg.name, num_classes=int(label.num_classes),
        image_shape=(size[0], size[1], channels * self._tile),
        num_train=self._parts["train"].global_count,
        num_validation=self._parts["validation"].global_count,
        num_test=self._parts["test"].global_count,
        class_names=tuple(label.names), mean=mean, std=std)
    self._mean = tf.constant(mean)
    self._std = tf.constant(std)

  # --- splits ---------------------------------------------------------------

  def _make_parts(self) -> dict[str, _Part]:
    cfg, builder = self._cfg, self._builder
    total = _num_examples(builder, cfg.train_split)
    n_used = min(cfg.num_train_examples, total) if cfg.num_train_examples > 0 else total
    n_val = _validation_count(cfg.validation_split, n_used)
    if n_val >= n_used:
      raise ValueError(
          f"dataset.validation_split={cfg.validation_split!r} leaves no "
          f"training examples out of {n_used}.")
    n_fit = n_used - n_val
    total_test = _num_examples(builder, cfg.test_split)
    n_test = (min(cfg.num_test_examples, total_test)
              if cfg.num_test_examples > 0 else total_test)
    specs = {
        "train": (_sliced(cfg.train_split, 0, n_fit, total), n_fit, True),
        "validation": (_sliced(cfg.train_split, n_fit, n_used, total), n_val, False),
        "test": (_sliced(cfg.test_split, 0, n_test, total_test), n_test, False),
    }
    parts = {}
    procs = jax.process_count()
    for name, (split, n, drop) in specs.items():
      if n == 0:
        parts[name] = _Part(None, 0, 0, 0)
        continue
      if name == "train" and cfg.cache:
        # Every process holds the whole (cached) training part and takes its
        # rows of each global batch: the order is then independent of how
        # many processes and devices there are (same run on 1 or 4 hosts).
        parts[name] = _Part(split, n, n, n)
        continue
      local = tfds.split_for_jax_process(split, drop_remainder=drop)
      count = _num_examples(builder, local)
      if procs == 1:
        n = count  # the truth, even where the metadata is missing
      if drop:  # every process trains on n // procs examples
        parts[name] = _Part(local, count, n // procs, n // procs * procs)
      else:
        parts[name] = _Part(local, count, -(-n // procs), n)
    return parts

  # --- decoding and the uint8 cache ----------------------------------------

  def _encoded(self, split: Any) -> tf.data.Dataset:
    """(encoded image, int32 label) in the split's fixed order."""
    ds = self._builder.as_dataset(
        split=split, shuffle_files=False,
        decoders={self._image_key: tfds.decode.SkipDecoding()})
    image_key, label_key = self._image_key, self._label_key
    return ds.map(lambda ex: (ex[image_key], tf.cast(ex[label_key], tf.int32)))

  def _decode(self, encoded: tf.Tensor) -> tf.Tensor:
    image = self._builder.info.features[self._image_key].decode_example(encoded)
    if self._resize is not None:
      # Keras' image_dataset_from_directory: bilinear, no antialias. Rounded
      # back to uint8, which bilinear weights keep inside [0, 255].
      image = tf.image.resize(image, self._resize, method="bilinear")
      image = tf.cast(tf.round(image), tf.uint8)
    return image

  def _decoded(self, split: Any) -> tf.data.Dataset:
    return self._encoded(split).map(lambda x, y: (self._decode(x), y),
                                    num_parallel_calls=_AUTOTUNE)

  def _arrays(self, name: str) -> tuple[tf.Tensor, tf.Tensor]:
    """The decoded uint8 images and labels of a part, loaded once."""
    if name not in self._cache:
      images, labels = [], []
      for x, y in self._decoded(self._parts[name].split).batch(_CHUNK).prefetch(2):
        images.append(x.numpy())
        labels.append(y.numpy())
      self._cache[name] = (tf.constant(np.concatenate(images)),
                           tf.constant(np.concatenate(labels)))
    return self._cache[name]

  def _uint8_chunks(self, name: str) -> Iterator[np.ndarray]:
    if self._cfg.cache:
      images = self._arrays(name)[0].numpy()
      for i in range(0, len(images), _CHUNK):
        yield images[i:i + _CHUNK]
    else:
      for x, _ in self._decoded(self._parts[name].split).batch(_CHUNK).prefetch(2):
        yield x.numpy()

  # --- batches --------------------------------------------------------------

  def _normalize(self, images: tf.Tensor) -> tf.Tensor:
    x = tf.cast(images, tf.float32)
    if self._tile > 1:
      x = tf.tile(x, [1, 1, 1, self._tile])
    mode = self._cfg.normalization
    if mode == "none":
      return x
    if mode == "rescale":
      return x / 255.0
    return (x / 255.0 - self._mean) / self._std

  def _shard(self, x: tf.Tensor) -> tf.Tensor:
    """[B, ...] -> [local devices, B / local devices, ...]."""
    return tf.reshape(x, [self._num_local_devices, -1, *x.shape[1:]])

  def _finish(self, images, labels) -> dict[str, tf.Tensor]:
    return {"image": self._shard(self._normalize(images)),
            "label": self._shard(labels)}

  def epoch_order(self, epoch: int) -> np.ndarray:
    """The order of the (global) training examples in ``epoch``.

    Only with ``dataset.cache`` (without it the order comes from a shuffle
    buffer and has no index form).
    """
    if not self._cfg.cache:
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
    """
    if epoch < 0 or self._seed < 0:
      raise ValueError(f"epoch and seed must be >= 0; got {epoch}, {self._seed}.")
    if not 0 <= start_step <= self.steps_per_epoch:
      raise ValueError(f"start_step must be in [0, {self.steps_per_epoch}] "
                       f"(steps_per_epoch); got {start_step}.")
    b, steps = self._batch, self.steps_per_epoch
    first = start_step * b
    if self._cfg.cache:
      images, labels = self._arrays("train")
      g, p = self._global_batch, jax.process_index()
      # This process's rows [p*b, (p+1)*b) of every remaining global batch.
      global_order = self.epoch_order(epoch)[:steps * g].reshape(steps, g)
      order = global_order[start_step:, p * b:(p + 1) * b]
      if self._augment is None:
        return self._gathered_batches(images, labels, order)
      else:
        # Global positions seed the augmentation: the same images whatever
        # the number of processes.
        where = (np.arange(start_step, steps)[:, None] * g + p * b
                 + np.arange(b)[None, :])
        ds = tf.data.Dataset.from_tensor_slices(
            (order.reshape(-1), where.reshape(-1)))
        ds = ds.map(lambda i, w: (tf.gather(images, i), tf.gather(labels, i), w))
    else:
      shuffle_seed = int(np.random.default_rng([self._seed, int(epoch)]).integers(2**31))
      ds = self._encoded(self._parts["train"].split)
      ds = ds.shuffle(self._cfg.shuffle_buffer, seed=shuffle_seed,
                      reshuffle_each_iteration=False)
      # Skip before decoding: resuming costs reading, not decoding.
      ds = ds.take(steps * b).skip(first)
      ds = tf.data.Dataset.zip(ds, tf.data.Dataset.range(first, steps * b))
      ds = ds.map(lambda xy, p: (self._decode(xy[0]), xy[1], p),
                  num_parallel_calls=_AUTOTUNE)
      if self._augment is None:
        ds = ds.map(lambda x, y, p: (x, y)).batch(b, drop_remainder=True)
    if self._augment is not None:
      ds = ds.map(self._augment_fn(epoch), num_parallel_calls=_AUTOTUNE)
      ds = ds.batch(b, drop_remainder=True)
    ds = ds.map(self._finish, num_parallel_calls=_AUTOTUNE).prefetch(2)
    return _numpy_batches(ds)

  def _gathered_batches(self, images: tf.Tensor, labels: tf.Tensor,
                        order: np.ndarray) -> Iterator[Batch]:
    """Cached, unaugmented batches: ``order[i]`` indexes step i's examples.

    Several steps are gathered and normalized per tf.data element (about
    4 MiB of images) and split here: tf.data's per-element cost (~0.3 ms on
    a 2-core CPU) is then paid once per chunk, which on small models (the
    lecture 004 MLP at batch 32) was a third of the step time. The batches
    are the same as one element per step.
    """
    steps, b = order.shape
    if steps == 0:
      return
    image_bytes = 4 * b * int(np.prod(self.info.image_shape))
    per_chunk = int(np.clip((4 << 20) // max(image_bytes, 1), 1, 64))

    def gather(rows):
      flat = tf.reshape(rows, [-1])
      x = self._normalize(tf.gather(images, flat))
      y = tf.gather(labels, flat)
      k = tf.shape(rows)[0]
      d = self._num_local_devices
      return (tf.reshape(x, [k, d, -1, *x.shape[1:]]),
              tf.reshape(y, [k, d, -1]))

    ds = tf.data.Dataset.from_tensor_slices(order).batch(per_chunk)
    ds = ds.map(gather, num_parallel_calls=_AUTOTUNE).prefetch(2)
    for x, y in _numpy_batches(ds):
      for i in range(len(y)):
        yield {"image": x[i], "label": y[i]}

  def _augment_fn(self, epoch: int):
    base = tf.constant([self._seed, int(epoch)], tf.int64)
    if not self._cfg.cache:  # Positions are per process without the cache.
      base = tf.random.experimental.stateless_fold_in(base, jax.process_index())
    augment = self._augment

    def fn(image, label, position):
      # Seed f(seed, epoch, position in the epoch): a resumed epoch draws the
      # same augmentations as the uninterrupted one.
      seed = tf.random.experimental.stateless_fold_in(base, position)
      return augment(tf.cast(image, tf.float32), seed), label
    return fn

  def _part(self, split: str) -> _Part:
    if split not in SPLITS:
      raise ValueError(f"Unknown split {split!r}; valid: {', '.join(SPLITS)}.")
    part = self._parts[split]
    if part.global_count == 0:
      hint = (" Set dataset.validation_split (a fraction such as 0.1, or a "
              "count) to carve one from the end of the training data."
              if split == "validation" else "")
      raise ValueError(f"There is no {split} data.{hint}")
    return part

  def eval_steps(self, split: str) -> int:
    """Eval batches of ``split``; the same on every process."""
    return -(-self._part(split).max_count // self._eval_batch)

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
    part = self._part(split)
    b, steps = self._eval_batch, self.eval_steps(split)
    if self._cfg.cache:
      ds = tf.data.Dataset.from_tensor_slices(self._arrays(split))
    else:
      ds = self._decoded(part.split)

    def finish(images, labels):
      n = tf.shape(labels)[0]
      x, y = self._normalize(images), labels
      pad = b - n
      x = tf.pad(x, [[0, pad], [0, 0], [0, 0], [0, 0]])
      y = tf.pad(y, [[0, pad]])
      mask = tf.range(b) < n
      return {"image": self._shard(x), "label": self._shard(y),
              "mask": self._shard(mask)}

    ds = ds.batch(b).map(finish, num_parallel_calls=_AUTOTUNE)
    extra = steps - (-(-part.count // b))  # this process may have fewer batches
    if extra > 0:
      shape = (self._num_local_devices, b // self._num_local_devices)
      empty = {"image": tf.zeros(shape + self.info.image_shape, tf.float32),
               "label": tf.zeros(shape, tf.int32), "mask": tf.zeros(shape, tf.bool)}
      ds = ds.concatenate(tf.data.Dataset.from_tensors(empty).repeat(extra))
    return _numpy_batches(ds.prefetch(2))

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


def create(dataset_config, *, global_batch_size: int, seed: int,
           num_local_devices: int | None = None,
           eval_batch_size: int | None = None) -> Data:
  """Builds the input pipeline of an experiment.

  Args:
    dataset_config: the ``config.dataset`` section (see ``config.defaults``).
    global_batch_size: training batch over all devices of all processes.
    seed: fixes the training order (with the epoch) and the augmentation.
    num_local_devices: devices of this process; default
      ``jax.local_device_count()``.
    eval_batch_size: global evaluation batch; default ``global_batch_size``.

  Returns:
    A :class:`Data`.

  Raises:
    ValueError: a batch size not divisible by the device count (with the
      nearest ones that are), an unknown normalization, a validation split
      that leaves nothing to train on, varying image sizes without
      ``image_size``.
    datasets.DatasetNotFoundError: the dataset cannot be found or downloaded.
  """
  return Data(dataset_config, global_batch_size=global_batch_size, seed=seed,
              num_local_devices=num_local_devices, eval_batch_size=eval_batch_size)
