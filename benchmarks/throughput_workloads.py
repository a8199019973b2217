"""The workloads of the throughput benchmark and the data they train on.

A workload is one of the lectures' models with its lecture's batch size and
optimizer. Every framework trains the same model (jaxcnn's layer specs,
translated to Keras layers), on the same examples, with the same optimizer
and batch size: the Keras workers train on the examples that jaxcnn's
pipeline produced (saved by the jaxcnn worker). This module imports neither JAX nor TensorFlow nor Keras, so
the orchestrator and every worker can use it.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
from typing import Any

import numpy as np

DEFAULT_MIRROR_DIR = os.environ.get("JAXCNN_MIRROR_DIR",
                                    "/usr/share/datasets/fashion-mnist")


@dataclasses.dataclass(frozen=True)
class Workload:
  """One model trained the lecture's way.

  Attributes:
    model: the jaxcnn preset.
    data: 'fashion_mnist' (the real images) or 'random' (uint8 noise of
      ``image_shape``: a throughput number only).
    image_shape: (H, W, C).
    num_classes: 10, or 2 for a one-sigmoid-unit binary model.
    normalization: jaxcnn's ``dataset.normalization``.
    optimizer: Keras/jaxcnn optimizer name.
    learning_rate: its rate.
    batch_size: the lecture's batch.
    cpu_steps: default steps per timed round on a CPU.
    gpu_steps: default steps per timed round on a GPU.
    source: where the lecture trains it this way.
  """
  model: str
  data: str
  image_shape: tuple[int, int, int]
  num_classes: int
  normalization: str
  optimizer: str
  learning_rate: float
  batch_size: int
  cpu_steps: int
  gpu_steps: int
  source: str


WORKLOADS: dict[str, Workload] = {
    "mnist_cnn": Workload(
        "mnist_cnn", "fashion_mnist", (28, 28, 1), 10, "rescale", "rmsprop",
        1e-3, 64, 200, 900, "lecture 003: RMSprop, batch 64"),
    "cnn_small_bn": Workload(
        "cnn_small_bn", "fashion_mnist", (28, 28, 1), 10, "rescale", "adam",
        1e-3, 128, 100, 450, "lecture 002: Adam, batch 128"),
    "mlp_dropout": Workload(
        "mlp_dropout", "fashion_mnist", (28, 28, 1), 10, "standardize_pixel",
        "nadam", 1e-3, 32, 400, 1800, "lecture 004: Nadam, Keras' batch 32"),
    "cats_dogs_cnn": Workload(
        "cats_dogs_cnn", "random", (150, 150, 3), 2, "rescale", "rmsprop",
        1e-4, 20, 8, 300, "lecture 003: RMSprop 1e-4, batch 20, 150x150x3"),
}


def get(name: str) -> Workload:
  """The workload of ``name``, or a ValueError listing the valid ones."""
  if name not in WORKLOADS:
    raise ValueError(f"Unknown benchmark model {name!r}; valid: "
                     f"{', '.join(WORKLOADS)}.")
  return WORKLOADS[name]


def read_idx_images(path: str) -> np.ndarray:
  """uint8[N, 28, 28, 1] from an IDX3 ``.gz`` file (Fashion-MNIST's format)."""
  with gzip.open(path) as f:
    raw = f.read()
  n, h, w = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
  return np.frombuffer(raw, np.uint8, offset=16).reshape(n, h, w, 1)


def read_idx_labels(path: str) -> np.ndarray:
  """int32[N] from an IDX1 ``.gz`` file."""
  with gzip.open(path) as f:
    return np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int32)


def uint8_examples(workload: Workload, count: int, mirror_dir: str,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """The first ``count`` training examples as (uint8 images, int32 labels).

  For 'fashion_mnist' these are the first ``count`` images of the original
  IDX training file (TFDS' prepared split holds the same images in another
  order); for 'random' they are noise. Only the numpy feeder reads these,
  where TensorFlow (and so TFDS) is missing.

  Raises:
    FileNotFoundError: the Fashion-MNIST IDX files are not in ``mirror_dir``.
    ValueError: more examples asked for than the split holds.
  """
  if workload.data == "random":
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, *workload.image_shape), np.uint8)
    return images, rng.integers(0, workload.num_classes, count).astype(np.int32)
  images_path = os.path.join(mirror_dir, "train-images-idx3-ubyte.gz")
  labels_path = os.path.join(mirror_dir, "train-labels-idx1-ubyte.gz")
  for path in (images_path, labels_path):
    if not os.path.exists(path):
      raise FileNotFoundError(
          f"{path} not found: point --data-dir (or $JAXCNN_MIRROR_DIR) at the "
          "Fashion-MNIST IDX .gz files (Debian package dataset-fashion-mnist).")
  images, labels = read_idx_images(images_path), read_idx_labels(labels_path)
  if count > len(images):
    raise ValueError(f"{count} examples asked for; Fashion-MNIST's training "
                     f"split has {len(images)}. Lower --steps.")
  return images[:count], labels[:count]


def normalization_stats(images: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
  """(mean, std) such that ``(x / 255 - mean) / std`` is jaxcnn's ``mode``."""
  if mode == "rescale":
    return np.zeros((), np.float32), np.ones((), np.float32)
  if mode == "standardize_pixel":
    x = images.astype(np.float64) / 255.0
    std = x.std(axis=0)
    return (x.mean(axis=0).astype(np.float32),
            np.where(std == 0, 1.0, std).astype(np.float32))
  raise ValueError(f"normalization {mode!r} is not used by any workload; "
                   "valid here: rescale, standardize_pixel.")


def jaxcnn_config(workload: Workload, steps: int, mirror_dir: str,
                  batch_size: int | None = None) -> Any:
  """The jaxcnn experiment config training ``workload`` for ``steps`` steps.

  The training part is exactly ``steps`` batches, so one epoch of jaxcnn's
  pipeline is one timed round.
  """
  from jaxcnn import config as config_lib  # pylint: disable=g-import-not-at-top
  b = batch_size or workload.batch_size
  c = config_lib.defaults()
  c.dataset.name = "fashion_mnist" if workload.data == "fashion_mnist" else "cats_vs_dogs"
  c.dataset.mirror_dir = mirror_dir
  c.dataset.validation_split = 0
  c.dataset.num_train_examples = steps * b
  c.dataset.num_test_examples = b
  c.dataset.normalization = workload.normalization
  if workload.data == "random":
    c.dataset.image_size = tuple(workload.image_shape[:2])
  c.model.name = workload.model
  c.optimizer.name = workload.optimizer
  c.optimizer.learning_rate = workload.learning_rate
  c.training.batch_size = b
  c.training.num_epochs = 1
  return c
