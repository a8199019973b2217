"""The Keras side of the throughput benchmark: the same model, trained by fit.

``keras_layer`` turns one of jaxcnn's layer specs (``specs.to_config``) into
the Keras layer it stands for, so the Keras model is jaxcnn's model layer for
layer (names and parameter counts included). ``KerasWorker`` trains it with
``model.fit`` on the examples jaxcnn's pipeline produced. The backend is
whatever ``$KERAS_BACKEND`` says: one per process.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np

import throughput_workloads as wl

def _keras_activation(value):
  if value is None or isinstance(value, str):
    return value
  raise ValueError(f"activation {value!r} has no plain Keras string; this benchmark "
                   "translates named activations only.")


def _keras_initializer(keras, value):
  if value is None:
    return "glorot_uniform"
  if isinstance(value, str):
    return value
  value = dict(value)
  name = value.pop("name")
  if name == "variance_scaling":
    return keras.initializers.VarianceScaling(**value)
  return keras.initializers.get({"class_name": name, "config": value})


def keras_layer(keras, cfg: dict[str, Any]):
  """The Keras layer of one ``specs.to_config`` dict (the benchmark's models)."""
  kl = keras.layers
  cfg = dict(cfg)
  kind, name = cfg.pop("type"), cfg.pop("name")
  if kind == "conv2d":
    layer = kl.Conv2D(cfg.pop("filters"), tuple(cfg.pop("kernel_size", (3, 3))),
                      strides=tuple(cfg.pop("strides", (1, 1))),
                      padding=cfg.pop("padding", "valid"),
                      activation=_keras_activation(cfg.pop("activation", None)),
                      kernel_initializer=_keras_initializer(
                          keras, cfg.pop("kernel_initializer", None)), name=name)
  elif kind == "dense":
    layer = kl.Dense(cfg.pop("units"),
                     activation=_keras_activation(cfg.pop("activation", None)),
                     kernel_initializer=_keras_initializer(
                         keras, cfg.pop("kernel_initializer", None)), name=name)
  elif kind == "max_pooling2d":
    strides = cfg.pop("strides", None)
    layer = kl.MaxPooling2D(tuple(cfg.pop("pool_size", (2, 2))),
                            strides=None if strides is None else tuple(strides),
                            padding=cfg.pop("padding", "valid"), name=name)
  elif kind == "flatten":
    layer = kl.Flatten(name=name)
  elif kind == "activation":
    layer = kl.Activation(_keras_activation(cfg.pop("activation", None)) or "linear",
                          name=name)
  elif kind == "batch_normalization":
    layer = kl.BatchNormalization(momentum=cfg.pop("momentum", 0.99),
                                  epsilon=cfg.pop("epsilon", 1e-3), name=name)
  elif kind == "dropout":
    layer = kl.Dropout(cfg.pop("rate"), name=name)
  else:
    raise ValueError(f"Layer type {kind!r} has no Keras translation here; valid: "
                     "conv2d, dense, max_pooling2d, flatten, activation, "
                     "batch_normalization, dropout.")
  if cfg:
    raise ValueError(f"Layer {name!r}: options {sorted(cfg)} have no Keras "
                     "translation in this benchmark.")
  return layer


class KerasWorker:
  """The same model in Keras 3 (backend from $KERAS_BACKEND), trained by fit."""

  _OPTIMIZERS = {"rmsprop": "RMSprop", "adam": "Adam", "nadam": "Nadam", "sgd": "SGD"}

  def __init__(self, workload: wl.Workload, batch_size: int, examples_path: str,
               layers: list[dict], image_shape, output_units: int):
    import keras  # pylint: disable=g-import-not-at-top
    self.batch_size = batch_size
    # jaxcnn's own training part, normalized by its pipeline: the same examples.
    with np.load(examples_path) as f:
      self.x, self.y = f["x"], f["y"]
    if tuple(self.x.shape[1:]) != tuple(image_shape):
      raise ValueError(f"Keras data {self.x.shape[1:]} != jaxcnn's {image_shape}.")
    self.model = keras.Sequential([keras.Input(tuple(image_shape))] +
                                  [keras_layer(keras, c) for c in layers])
    if output_units == 1:
      loss = keras.losses.BinaryCrossentropy(from_logits=True)
      metric = keras.metrics.BinaryAccuracy(threshold=0.0)  # on logits
    else:
      loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
      metric = keras.metrics.SparseCategoricalAccuracy()
    optimizer = getattr(keras.optimizers, self._OPTIMIZERS[workload.optimizer])(
        learning_rate=workload.learning_rate)
    self.model.compile(optimizer=optimizer, loss=loss, metrics=[metric])
    self.run("e2e")  # Warm-up: traces and compiles the train function.
    backend = keras.config.backend()
    self.info = {"framework": f"keras-{backend}", "keras": keras.__version__,
                 "backend": backend, "jit_compile": bool(self.model.jit_compile),
                 "params": int(self.model.count_params()),
                 "xla_flags": os.environ.get("XLA_FLAGS", ""),
                 "device": self._device(backend)}

  @staticmethod
  def _device(backend: str) -> str:
    if backend == "jax":
      import jax  # pylint: disable=g-import-not-at-top
      return f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind}"
    if backend == "tensorflow":
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      gpus = tf.config.list_logical_devices("GPU")
      return "gpu" if gpus else "cpu"
    if backend == "torch":
      import torch  # pylint: disable=g-import-not-at-top
      return f"cuda: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "cpu"
    return "unknown"

  def run(self, item: str) -> dict[str, Any]:
    if item != "e2e":
      raise ValueError(f"Unknown Keras item {item!r}; valid: e2e.")
    start = time.perf_counter()
    history = self.model.fit(self.x, self.y, batch_size=self.batch_size, epochs=1,
                             shuffle=True, verbose=0)
    seconds = time.perf_counter() - start
    if not math.isfinite(history.history["loss"][-1]):
      raise FloatingPointError("non-finite loss in Keras' benchmark run")
    return {"seconds": seconds, "images": len(self.x)}

  def close(self) -> None:
    pass
