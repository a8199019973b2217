"""Feature extraction (lecture 003): the frozen base runs once, the head trains.

With ``config.transfer.feature_extraction`` the frozen base of the model
(``layers[:k]``, where layer ``k`` is the first with a trainable parameter or
the first dropout layer) runs once over the train, validation and test
parts; its outputs are cached in memory, and the head (``layers[k:]``)
trains on them through the same loop as every run (``train.fit``): resume,
SIGTERM, the NaN stop, TensorBoard and history included. The head trains on
exactly the batches the image pipeline would give (same order, same dropout
keys), which is why this equals end-to-end training with the frozen base, at
the cost of one forward pass per image (the lecture's 8,192 features per
150x150 image for VGG16).

A population (``training.population > 1``) trains its members' heads on
one set of cached features, so every member must start from the same base:
a single-run source (or one named ``transfer.source_member``), not a
population source taken seed for seed. Each member keeps its own training
order, dropout keys and head initialization (``PopulationFeatureData``).

The state is the whole model's (the head model is the same model with its
inputs entering at layer ``k``: ``models.from_layer``), so checkpoints,
``state.load_for_inference`` and ``transfer.source`` see an ordinary
workdir. A resumed run computes the features again from the checkpoint's
base, which the pretrained weights were copied into.

Where the weights come from (``transfer.source``, ``model.weights_path``) is
``state.from_pretrained``; which layers are frozen is
``models.freezing`` (``freeze_before`` is re-exported here for configs).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Iterable, Iterator, Mapping

import jax
import ml_collections
import numpy as np

from jaxcnn import models
from jaxcnn import optim
from jaxcnn import state as state_lib
from jaxcnn import train
from jaxcnn.models import sequential
from jaxcnn.models.freezing import TransferError
from jaxcnn.models.freezing import freeze_before
from jaxcnn.state import TrainState

__all__ = ["TransferError", "freeze_before", "extract_features", "FeatureData",
           "PopulationFeatureData", "train_head_on_features"]


def extract_features(model: sequential.Sequential, variables: Mapping, data,
                     splits: Iterable[str], stop: int
                     ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Runs ``layers[:stop]`` once over each split (``Data.eval_batches`` order).

  Returns:
    ``{split: (features f32[N, ...], labels i32[N])}`` of this process, in
    the order of ``data.as_numpy(split)`` (for 'train': the cached order,
    which ``Data.epoch_order`` indexes).
  """
  # One compiled base for every split: all eval batches have the same shape.
  run = jax.jit(lambda x: model.apply(variables, x, train=False, stop=stop))
  out = {}
  for split in splits:
    feats, labels = [], []
    for batch in data.eval_batches(split):
      mask = batch["mask"].reshape(-1)
      x = batch["image"].reshape(-1, *batch["image"].shape[2:])
      feats.append(np.asarray(run(x))[mask])
      labels.append(batch["label"].reshape(-1)[mask])
    out[split] = (np.concatenate(feats), np.concatenate(labels))
  return out


class FeatureData:
  """Cached base outputs served like ``jaxcnn.data.Data`` batches.

  Same batches as the image pipeline would give (without augmentation):
  the training order of epoch ``e`` is ``data.epoch_order(e)``, and each
  process takes its rows of every global batch.
  """

  def __init__(self, data, features: Mapping[str, tuple[np.ndarray, np.ndarray]],
               global_batch_size: int, num_local_devices: int | None = None):
    self._data = data
    self._features = features
    self._global_batch = global_batch_size
    self._batch = global_batch_size // jax.process_count()
    self._devices = num_local_devices or jax.local_device_count()
    self.steps_per_epoch = data.steps_per_epoch
    self.info = data.info
    self.feature_shape = tuple(features["train"][0].shape[1:])

  def _shard(self, x: np.ndarray) -> np.ndarray:
    return x.reshape(self._devices, -1, *x.shape[1:])

  def train_epoch(self, epoch: int, start_step: int = 0
                  ) -> Iterator[dict[str, np.ndarray]]:
    """Epoch ``epoch``'s batches from step ``start_step`` on (exact resume)."""
    x, y = self._features["train"]
    g, b, p = self._global_batch, self._batch, jax.process_index()
    steps = self.steps_per_epoch
    order = self._data.epoch_order(epoch)[:steps * g].reshape(steps, g)
    for rows in order[start_step:, p * b:(p + 1) * b]:
      yield {"image": self._shard(x[rows]), "label": self._shard(y[rows])}

  def eval_batches(self, split: str) -> Iterator[dict[str, np.ndarray]]:
    x, y = self._features[split]
    b = self._batch
    for step in range(self._data.eval_steps(split)):
      xs, ys = x[step * b:(step + 1) * b], y[step * b:(step + 1) * b]
      n, pad = len(ys), b - len(ys)
      yield {"image": self._shard(np.concatenate(
                 [xs, np.zeros((pad, *x.shape[1:]), x.dtype)])),
             "label": self._shard(np.concatenate([ys, np.zeros(pad, ys.dtype)])),
             "mask": self._shard(np.arange(b) < n)}


class PopulationFeatureData:
  """One set of cached features served to a population's members.

  Member ``i`` gets exactly the batches ``FeatureData`` gives its single run
  (its own data seed's order, ``data.PopulationData.members[i]``), stacked
  ``[members, D, b, ...]``; evaluation batches are shared.
  """

  def __init__(self, data, features: Mapping[str, tuple[np.ndarray, np.ndarray]],
               global_batch_size: int, num_local_devices: int | None = None):
    self.members = [FeatureData(m, features, global_batch_size, num_local_devices)
                    for m in data.members]
    self.steps_per_epoch = data.steps_per_epoch
    self.info = data.info
    self.feature_shape = self.members[0].feature_shape

  def train_epoch(self, epoch: int, start_step: int = 0
                  ) -> Iterator[dict[str, np.ndarray]]:
    for batches in zip(*(m.train_epoch(epoch, start_step) for m in self.members)):
      yield {k: np.stack([b[k] for b in batches]) for k in batches[0]}

  def eval_batches(self, split: str) -> Iterator[dict[str, np.ndarray]]:
    return self.members[0].eval_batches(split)


def _check_one_base(config) -> None:
  """A population's members must start from one base: not a population source
  taken member for member (seed-matched)."""
  source = os.path.expanduser(config.transfer.source)
  if (config.training.population < 2 or config.transfer.source_member >= 0
      or not os.path.isfile(os.path.join(source, "config.json"))):
    return
  n = state_lib.read_config(source).get("training", {}).get("population", 1)
  if n > 1:
    raise TransferError(
        f"transfer.feature_extraction with training.population="
        f"{config.training.population} caches one base's features for every member, "
        f"but transfer.source {source!r} holds a population of {n}, whose member i "
        "would give member i its own base. Start every member from one source "
        f"member (transfer.source_member=j, 0 to {n - 1}), or set "
        "transfer.feature_extraction = False to train each member's frozen base "
        "end to end.")


def _shared_base(setup, state, k: int) -> Mapping:
  """The base's variables (layers[:k]) that every member holds, as ``variables``.

  Raises:
    TransferError: the members' bases differ (their frozen layers came from
      different weights), so one set of features cannot serve them all.
  """
  if not setup.members:
    return state.variables
  names = setup.model.layer_names[:k]
  first = state_lib.member(state, 0).variables
  for i in range(1, state_lib.population_size(state)):
    other = state_lib.member(state, i).variables
    for collection, layers in first.items():
      for name in names:
        if name in layers and not all(jax.tree.leaves(jax.tree.map(
            lambda a, b: bool(np.array_equal(a, b)), layers[name],
            other[collection][name]))):
          raise TransferError(
              f"transfer.feature_extraction: population member {i}'s frozen layer "
              f"'{name}' differs from member 0's, so one set of cached features "
              "cannot serve every member. Start them from one base, or set "
              "transfer.feature_extraction = False.")
  return first


def _check_feature_config(config, model, params, patterns) -> int:
  if config.dataset.augmentation:
    raise TransferError(
        "transfer.feature_extraction runs the frozen base once over fixed "
        "images, so it cannot see augmented ones. Drop dataset.augmentation, "
        "or set transfer.feature_extraction = False to train end to end with "
        "the frozen base (the lecture's 'frozen base with augmentation').")
  # Dropout is no part of a cached base: the head starts at the first
  # trainable or stochastic layer, whichever comes first.
  k = min(models.freezing.base_end(model, params, patterns), models.first_stochastic_layer(model))
  if k == 0:
    raise TransferError(
        "transfer.feature_extraction needs a frozen base, but the first layer "
        f"'{model.layer_names[0]}' trains. Freeze the base with "
        "regularization.freeze, e.g. transfer.freeze_before(config.model, "
        "'<first head layer>').")
  if k == len(model.layers):
    raise TransferError(
        "transfer.feature_extraction: every layer is frozen, there is no head "
        "to train. Unfreeze the head layers in regularization.freeze.")
  return k


def train_head_on_features(config: ml_collections.ConfigDict, workdir: str
                           ) -> tuple[TrainState, dict[str, Any]]:
  """Feature extraction: the frozen base runs once, only the head trains.

  Args:
    config: an experiment config with ``transfer.feature_extraction``.
    workdir: where to write; a run there resumes, a finished one is tested.

  Returns:
    ``(state, history)`` as ``train.train_and_evaluate`` (the whole model's
    state, the Keras-like history with ``test_loss`` / ``test_accuracy``).

  Raises:
    TransferError: augmentation (features are fixed), no frozen base, nothing
      to train; and what ``state.from_pretrained`` raises.
  """
  setup = train.build(config, workdir)
  setup = dataclasses.replace(setup, meta={**setup.meta, "feature_extraction": True},
                              test_time_flip=False)  # Features of unflipped images.
  info = setup.data.info
  # Checked on shapes alone, before the workdir is touched.
  shapes = jax.eval_shape(lambda: state_lib.create(config, setup.model, setup.tx,
                                                   info.image_shape))
  k = _check_feature_config(config, setup.model, shapes.params,
                            optim.freeze.normalize(config.regularization.freeze))
  _check_one_base(config)
  with train.open_run(setup) as ckpt:
    setup, state, progress = train.start(setup, ckpt)
    t0 = time.perf_counter()
    splits = ["train", "test"] + (["validation"] if info.num_validation else [])
    features = extract_features(setup.model, _shared_base(setup, state, k), setup.data,
                                splits, k)
    feature_data = (PopulationFeatureData if setup.members else FeatureData)(
        setup.data, features, config.training.batch_size)
    if train.is_main_process():
      names = setup.model.layer_names
      print(f"Feature extraction: layers {names[0]}...{names[k - 1]} ran once over "
            f"{sum(len(f[1]) for f in features.values())} images in "
            f"{time.perf_counter() - t0:.1f} s: "
            f"{math.prod(feature_data.feature_shape):,} features each "
            f"{feature_data.feature_shape}; training {', '.join(names[k:])}.")
    head = dataclasses.replace(
        setup, data=feature_data, model=models.from_layer(setup.model, k),
        train_model=models.from_layer(setup.train_model, k),
        members=tuple(dataclasses.replace(m, train_model=models.from_layer(m.train_model, k))
                      for m in setup.members))
    return train.fit(head, state, progress, ckpt)
