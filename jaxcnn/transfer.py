"""Transfer learning (lecture 003): pretrained weights, frozen bases, fine-tuning.

A model starts from the weights of a *source*, layer by layer and by Keras
name, and some of its layers can be frozen:

* ``config.transfer.source``: a Keras weights file (``.h5``, e.g. VGG16's
  ImageNet ``..._notop.h5``) or a jaxcnn workdir (its latest checkpoint,
  through ``checkpoint.load_for_inference``); '' = none.
* ``config.transfer.layers``: globs of the layer names to copy. Empty (the
  default) copies every layer present in both with the same shapes; layers
  whose name matches but whose shapes differ keep their initialization and
  are listed, which is allowed only after the last copied layer (a new
  head): a mismatch inside the copied part is an error listing the shapes.
  Given, every matched layer must fit.
* ``config.regularization.freeze``: parameter globs that get no update and no
  optimizer state (:mod:`jaxcnn.optim.freeze`). :func:`freeze_before` writes
  the fine-tuning patterns: everything before a named layer
  (``'block5_conv1'``).
* ``config.transfer.feature_extraction``: run the frozen base once over the
  data, cache its outputs, and train only the head on them
  (:func:`train_head_on_features`, the lecture's fast path: 8,192 features
  per 150x150 image for VGG16). ``python -m jaxcnn.main`` dispatches to it.

:func:`apply` is the hook ``train.train_and_evaluate`` calls after creating
the state. Besides copying the weights, it returns the train-step model with
two Keras ``trainable=False`` behaviours: a frozen BatchNorm layer normalizes
with its moving statistics even while training (and never updates them), and
no gradient flows into the frozen base (the longest prefix of layers with no
trainable parameter), so its backward pass is not even computed.

Frozen layers that a source was given for but that were not copied (a shape
mismatch, a name the source lacks) are an error: training would otherwise
freeze random weights.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import os
import time
from typing import Any, Iterable, Iterator, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxcnn import checkpoint as checkpoint_lib
from jaxcnn import config as config_lib
from jaxcnn import models
from jaxcnn import optim
from jaxcnn import parallel
from jaxcnn.models import sequential
from jaxcnn.parallel import TrainState

# Variables of a layer keyed 'collection/name' ('params/kernel',
# 'batch_stats/mean'): one flat namespace to compare a source with a model.
LayerVars = dict[str, Any]

# Keras' weight order per layer type, for the unnamed arrays of an .h5 file.
_KERAS_ORDER = {
    "conv2d": ("params/kernel", "params/bias"),
    "dense": ("params/kernel", "params/bias"),
    "locally_connected2d": ("params/kernel", "params/bias"),
    "batch_normalization": ("params/scale", "params/bias", "batch_stats/mean",
                            "batch_stats/var"),
}


class TransferError(config_lib.ConfigError):
  """A source, layer selection or freeze that cannot work; says what would."""


# ---------------------------------------------------------------- freezing


def _as_model(model_or_config: Any) -> sequential.Sequential:
  if isinstance(model_or_config, sequential.Sequential):
    return model_or_config
  return models.create(model_or_config)


def _has_params(spec) -> bool:
  if spec.layer_type.weighted:
    return True
  kwargs = spec.kwargs
  return spec.type == "batch_normalization" and (
      kwargs.get("center", True) or kwargs.get("scale", True))


def freeze_before(model: Any, layer_name: str) -> tuple[str, ...]:
  """Freeze patterns for fine-tuning from ``layer_name`` on (lecture 003).

  The lecture's loop sets ``trainable = False`` on every layer of the base
  before ``block5_conv1``; the same here is the names of the layers with
  parameters before it, for ``config.regularization.freeze``.

  Args:
    model: a :class:`Sequential`, or what ``models.create`` takes (a preset
      name or ``config.model``).
    layer_name: the first layer to train.

  Returns:
    The layer names to freeze, in order (empty when nothing precedes it).

  Raises:
    TransferError: ``layer_name`` is not a layer of the model; the message
      lists the model's layers.
  """
  model = _as_model(model)
  names = model.layer_names
  if layer_name not in names:
    guess = config_lib.closest(layer_name, names)
    hint = f" Did you mean '{guess}'?" if guess else ""
    raise TransferError(
        f"Cannot fine-tune from '{layer_name}': model '{model.preset}' has no "
        f"such layer.{hint} Its layers: {', '.join(names)}.")
  index = names.index(layer_name)
  return tuple(spec.name for spec in model.layers[:index] if _has_params(spec))


def frozen_layers(model: sequential.Sequential, params: Any,
                  patterns: Iterable[str] | str | None) -> set[str]:
  """Names of the layers with at least one frozen parameter."""
  paths = optim.freeze.frozen_paths(params, patterns)
  return {p.split("/", 1)[0] for p in paths} & set(model.layer_names)


def param_counts(params: Any, patterns: Iterable[str] | str | None) -> tuple[int, int]:
  """``(trainable, frozen)`` parameter counts under the freeze ``patterns``."""
  labels = optim.freeze.labels(params, patterns)
  counts = {optim.freeze.TRAINABLE: 0, optim.freeze.FROZEN: 0}
  for leaf, label in zip(jax.tree.leaves(params), jax.tree.leaves(labels)):
    counts[label] += math.prod(np.shape(leaf))
  return counts[optim.freeze.TRAINABLE], counts[optim.freeze.FROZEN]


def base_end(model: sequential.Sequential, params: Any,
             patterns: Iterable[str] | str | None) -> int:
  """Index of the first layer with a trainable parameter.

  ``layers[:base_end]`` is the frozen base: no parameter there trains, so its
  output for an image never changes and can be computed once.
  """
  labels = optim.freeze.labels(params, patterns)
  for i, name in enumerate(model.layer_names):
    if optim.freeze.TRAINABLE in jax.tree.leaves(labels.get(name, {})):
      return i
  return len(model.layers)


class FrozenBaseSequential(sequential.Sequential):
  """:class:`Sequential` with Keras' ``trainable=False`` semantics for training.

  Attributes:
    frozen_batch_norm: BatchNorm layers that use their moving statistics (and
      do not update them) even with ``train=True``, as a frozen Keras
      BatchNormalization does since TF 2.0.
    frozen_prefix: number of leading layers whose output is a constant for
      the gradient (``stop_gradient``): nothing there trains, so their
      backward pass is skipped.
  """
  frozen_batch_norm: tuple[str, ...] = ()
  frozen_prefix: int = 0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False,
               deterministic: bool | None = None, start: int = 0,
               stop: int | None = None) -> jax.Array:
    """As :meth:`Sequential.__call__`; frozen BatchNorm layers get ``train=False``."""
    first, last, _ = slice(start, stop).indices(len(self.layers))
    for i in range(first, last):
      spec = self.layers[i]
      layer_train = train and spec.name not in self.frozen_batch_norm
      x = spec.build(self.axis_name)(x, train=layer_train, deterministic=deterministic)
      if i == self.frozen_prefix - 1:
        x = jax.lax.stop_gradient(x)
    return x


def train_model_for(model: sequential.Sequential, params: Any,
                    patterns: Iterable[str] | str | None) -> sequential.Sequential:
  """The model for the train step under the freeze ``patterns``.

  Returns ``model`` itself when nothing is frozen, else a
  :class:`FrozenBaseSequential` with the same layers (same variables).
  """
  patterns = optim.freeze.normalize(patterns)
  if not patterns:
    return model
  frozen = frozen_layers(model, params, patterns)
  bn = tuple(spec.name for spec in model.layers
             if spec.type == "batch_normalization" and spec.name in frozen)
  return FrozenBaseSequential(
      layers=model.layers, axis_name=model.axis_name,
      weights_path=model.weights_path, preset=model.preset,
      frozen_batch_norm=bn, frozen_prefix=base_end(model, params, patterns))


# ---------------------------------------------------------------- sources


@dataclasses.dataclass(frozen=True)
class Source:
  """Weights to copy: ``layers[name]['params/kernel'] = array``."""
  description: str
  layers: dict[str, LayerVars]


def _flat_layer_vars(variables: Mapping, name: str) -> LayerVars:
  out = {}
  for collection in ("params", "batch_stats"):
    for slot, value in dict(variables.get(collection, {}).get(name, {})).items():
      out[f"{collection}/{slot}"] = value
  return out


def _layer_names_of(variables: Mapping) -> list[str]:
  names: dict[str, None] = {}
  for collection in ("params", "batch_stats"):
    names.update(dict.fromkeys(variables.get(collection, {})))
  return list(names)


def _keras_source(path: str, model: sequential.Sequential,
                  target: Mapping) -> Source:
  """Names the unnamed arrays of an .h5 file by the model's layer types."""
  try:
    weights = models.read_keras_weights(path)
  except models.KerasWeightsError as e:
    raise TransferError(str(e)) from None
  specs = {spec.name: spec for spec in model.layers}
  layers = {}
  for name, arrays in weights.items():
    spec = specs.get(name)
    if spec is None:
      # Not in the model: never copied, kept under positional names to list.
      layers[name] = {f"#{i}": a for i, a in enumerate(arrays)}
      continue
    present = set(_flat_layer_vars(target, name))
    slots = [s for s in _KERAS_ORDER.get(spec.type, ()) if s in present]
    if len(arrays) != len(slots):
      layers[name] = {f"#{i}": a for i, a in enumerate(arrays)}
    else:
      layers[name] = dict(zip(slots, arrays))
  return Source(f"Keras weights {path}", layers)


def _workdir_source(path: str) -> Source:
  _, variables, _ = checkpoint_lib.load_for_inference(path)
  variables = parallel.to_host(variables)
  layers = {name: _flat_layer_vars(variables, name)
            for name in _layer_names_of(variables)}
  return Source(f"jaxcnn workdir {path}", layers)


def load_source(path: str, model: sequential.Sequential,
                variables: Mapping) -> Source:
  """Reads the weights of ``path``: a jaxcnn workdir or a Keras weights file.

  Args:
    path: ``config.transfer.source``.
    model: the model the weights go into (names the arrays of an .h5 file).
    variables: the model's initialized variables.

  Raises:
    FileNotFoundError: no such file or folder, or a workdir with no config
      or checkpoint.
    TransferError: a file that is not Keras weights.
  """
  path = os.path.expanduser(path)
  if os.path.isdir(path):
    return _workdir_source(path)
  if os.path.isfile(path):
    return _keras_source(path, model, variables)
  raise FileNotFoundError(
      f"transfer.source {path!r} does not exist. Give a jaxcnn workdir (with "
      "config.json and checkpoints/) or a Keras weights file (.h5 or "
      ".weights.h5); VGG16's ImageNet base is published at "
      f"{models.vgg16.NOTOP_WEIGHTS_URL}")


# ---------------------------------------------------------------- matching


@dataclasses.dataclass(frozen=True)
class Plan:
  """What :func:`match` decided, per model layer."""
  copy: tuple[str, ...]
  mismatched: dict[str, list[str]]  # layer -> what differs
  absent: tuple[str, ...]  # model layers with variables the source lacks
  unused: tuple[str, ...]  # source layers the model lacks


def _shape(x) -> tuple[int, ...]:
  # Arrays or jax.ShapeDtypeStruct (matching needs no values).
  return tuple(x.shape) if hasattr(x, "shape") else tuple(np.shape(x))


def _differences(source: LayerVars, target: LayerVars) -> list[str]:
  if set(source) != set(target):
    def names(d):
      return ", ".join(sorted(d)) or "nothing"
    return [f"the source has {names(source)}; the model has {names(target)}"]
  return [f"{slot.split('/', 1)[1]}: source {_shape(source[slot])} vs model "
          f"{_shape(target[slot])}"
          for slot in sorted(target) if _shape(source[slot]) != _shape(target[slot])]


def match(source: Source, model: sequential.Sequential, variables: Mapping,
          layers: Iterable[str] = ()) -> Plan:
  """Decides which layers to copy (see the module docstring).

  Raises:
    TransferError: an input-channel mismatch on the first layer (grayscale
      data into an RGB base), a ``layers`` glob matching no layer, a selected
      layer that does not fit; with the default selection, no layer that
      fits, or a layer that does not fit before one that does (only the
      last layers, a new head, may differ).
  """
  patterns = tuple(layers)
  with_vars = [n for n in model.layer_names if _flat_layer_vars(variables, n)]
  for pattern in patterns:
    if not any(fnmatch.fnmatchcase(n, pattern) for n in with_vars):
      raise TransferError(
          f"transfer.layers pattern {pattern!r} matches no layer with weights. "
          f"Layers with weights: {', '.join(with_vars)}.")
  selected = [n for n in with_vars
              if not patterns or any(fnmatch.fnmatchcase(n, p) for p in patterns)]
  _check_input_channels(source, model, variables, selected)
  copy, absent, mismatched = [], [], {}
  for name in selected:
    if name not in source.layers:
      absent.append(name)
      continue
    diff = _differences(source.layers[name], _flat_layer_vars(variables, name))
    if diff:
      mismatched[name] = diff
    else:
      copy.append(name)
  unused = tuple(n for n in source.layers if n not in model.layer_names)
  plan = Plan(tuple(copy), mismatched, tuple(absent), unused)
  if patterns and (mismatched or absent):
    raise TransferError(
        f"transfer.layers={list(patterns)} selects layers that {source.description} "
        "cannot fill:\n" + _describe_problems(plan) +
        f"\nSource layers: {', '.join(source.layers) or 'none'}.")
  order = model.layer_names.index
  early = [n for n in mismatched if copy and order(n) < order(copy[-1])]
  if not patterns and early:
    # A new head may differ; a layer that differs *before* one that fits
    # means the source is another architecture, and copying around it
    # would stitch unrelated weights together.
    raise TransferError(
        f"{source.description} does not fit the model '{model.preset}': layers "
        f"before '{copy[-1]}' (which fits) have other shapes:\n" +
        _describe_problems(dataclasses.replace(
            plan, mismatched={n: mismatched[n] for n in early}, absent=())) +
        "\nUse a source of the same architecture, or choose the layers to "
        "copy with transfer.layers.")
  if not copy:
    raise TransferError(
        f"No layer of {source.description} fits the model '{model.preset}'.\n" +
        (_describe_problems(plan) + "\n" if mismatched or absent else "") +
        f"Source layers: {', '.join(source.layers) or 'none'}; model layers: "
        f"{', '.join(with_vars)}.")
  return plan


def _describe_problems(plan: Plan) -> str:
  lines = [f"  {name}: {'; '.join(diff)}" for name, diff in plan.mismatched.items()]
  lines += [f"  {name}: not in the source" for name in plan.absent]
  return "\n".join(lines)


def _check_input_channels(source: Source, model, variables, selected) -> None:
  """Grayscale data into an RGB base fails with the switch that fixes it."""
  first = next((spec.name for spec in model.layers if spec.layer_type.weighted), None)
  if first is None or first not in selected or first not in source.layers:
    return
  src = source.layers[first].get("params/kernel")
  dst = _flat_layer_vars(variables, first).get("params/kernel")
  if src is None or dst is None:
    return
  s, d = _shape(src), _shape(dst)
  if len(s) != 4 or len(d) != 4 or s[:2] + s[3:] != d[:2] + d[3:] or s[2] == d[2]:
    return
  fix = ("set dataset.grayscale_to_rgb = True to repeat the gray channel"
         if d[2] == 1 and s[2] == 3 else
         f"give the model {s[2]}-channel images")
  raise TransferError(
      f"The source's first layer '{first}' expects {s[2]} input channel(s) "
      f"(kernel {s}) but the data has {d[2]} (kernel {d}): {fix}.")


def copy_layers(source: Source, plan: Plan, variables: Mapping) -> dict[str, Any]:
  """New variables with the planned layers taken from ``source``."""
  out = {c: {n: dict(v) for n, v in dict(tree).items()}
         for c, tree in dict(variables).items()}
  for name in plan.copy:
    for slot, value in source.layers[name].items():
      collection, key = slot.split("/", 1)
      target = out[collection][name][key]
      out[collection][name][key] = jnp.asarray(np.asarray(value), target.dtype)
  return out


# ---------------------------------------------------------------- the hook


def _names(items: Iterable[str], limit: int = 8) -> str:
  items = list(items)
  if len(items) <= limit:
    return ", ".join(items) or "none"
  return ", ".join(items[:limit // 2]) + f", ... ({len(items) - limit} more), " + \
      ", ".join(items[-limit // 2:])


def apply(config: ml_collections.ConfigDict, state: TrainState, tx,
          model: sequential.Sequential, *, verbose: bool = True
          ) -> tuple[TrainState, sequential.Sequential]:
  """Copies the source's weights into ``state``; freezes what the config says.

  Called by ``train.train_and_evaluate`` right after ``create_train_state``
  and before anything trains, so every problem surfaces at once.

  Args:
    config: the experiment config (``transfer``, ``regularization.freeze``).
    state: the freshly initialized TrainState.
    tx: the optimizer (its state is re-initialized for the new params).
    model: the train-step model (``axis_name='batch'``).
    verbose: print which layers were copied and the parameter counts.

  Returns:
    ``(state, train_model)``: the state with the copied weights and a fresh
    optimizer state; the train-step model with frozen BatchNorm layers on
    their moving statistics and no backward pass through the frozen base.

  Raises:
    FileNotFoundError: no such source.
    TransferError: the source does not fit (the message lists each layer and
      shape that differs), grayscale data into an RGB base, a frozen layer
      the source could not fill.
  """
  patterns = optim.freeze.normalize(config.regularization.freeze)
  variables = {"params": state.params}
  if state.batch_stats:
    variables["batch_stats"] = state.batch_stats
  lines = []
  if config.transfer.source:
    source = load_source(config.transfer.source, model, variables)
    plan = match(source, model, variables, config.transfer.layers)
    frozen = frozen_layers(model, state.params, patterns)
    unfilled = sorted(frozen - set(plan.copy), key=model.layer_names.index)
    if unfilled:
      raise TransferError(
          f"Frozen layers that {source.description} does not fill would train "
          f"nothing from random weights: {', '.join(unfilled)}.\n" +
          _describe_problems(dataclasses.replace(
              plan, mismatched={k: v for k, v in plan.mismatched.items() if k in unfilled},
              absent=tuple(n for n in plan.absent if n in unfilled))) +
          "\nUnfreeze them (regularization.freeze) or give a source that has them.")
    variables = copy_layers(source, plan, variables)
    params = variables["params"]
    state = state.replace(params=params,
                          batch_stats=variables.get("batch_stats", state.batch_stats),
                          opt_state=tx.init(params))
    kept = [n for n in model.layer_names if n not in plan.copy
            and _flat_layer_vars(variables, n)]
    lines.append(f"Transfer from {source.description}: copied {len(plan.copy)} "
                 f"layer(s): {_names(plan.copy)}.")
    lines.append(f"  Initialized here: {_names(kept)}" + (
        f" (shapes differ: {_names(plan.mismatched)})" if plan.mismatched else "") +
        (f"; source layers not in the model: {_names(plan.unused)}"
         if plan.unused else "") + ".")
  trainable, frozen_count = param_counts(state.params, patterns)
  lines.append(f"Trainable params: {trainable:,}; frozen params: {frozen_count:,}" + (
      f" ({_names(sorted(frozen_layers(model, state.params, patterns), key=model.layer_names.index))})"
      if frozen_count else "") + ".")
  if verbose and jax.process_index() == 0:
    print("\n".join(lines))
  return state, train_model_for(model, state.params, patterns)


# ---------------------------------------------------------------- features


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
  """Cached base outputs served like ``input_pipeline.Data`` batches.

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
    self.feature_shape = tuple(features["train"][0].shape[1:])

  def _shard(self, x: np.ndarray) -> np.ndarray:
    return x.reshape(self._devices, -1, *x.shape[1:])

  def train_epoch(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
    x, y = self._features["train"]
    g, b, p = self._global_batch, self._batch, jax.process_index()
    steps = self.steps_per_epoch
    order = self._data.epoch_order(epoch)[:steps * g].reshape(steps, g)
    for rows in order[:, p * b:(p + 1) * b]:
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


def _write_json(path: str, obj: Any) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)


def _head_regularization(config) -> dict[str, Any]:
  reg = config.regularization
  return {"l1": reg.l1, "l2": reg.l2, "max_norm": reg.max_norm}


def _check_feature_config(config, model, params, patterns) -> int:
  if config.dataset.augmentation:
    raise TransferError(
        "transfer.feature_extraction runs the frozen base once over fixed "
        "images, so it cannot see augmented ones. Drop dataset.augmentation, "
        "or set transfer.feature_extraction = False to train end to end with "
        "the frozen base (the lecture's 'frozen base with augmentation').")
  # Dropout is no part of a cached base: the head starts at the first
  # trainable or stochastic layer, whichever comes first.
  k = min(base_end(model, params, patterns), models.first_stochastic_layer(model))
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

  The base is ``layers[:k]`` where layer ``k`` is the first with a trainable
  parameter or the first dropout layer. Its outputs on the train, validation and test parts are cached
  in memory; the head (``layers[k:]``, same names and parameters) then
  trains on exactly the batches the image pipeline would give (same order,
  same dropout keys), which is why this equals end-to-end training with the
  frozen base, at the cost of one forward pass per image. The workdir gets
  the same files as ``train.train_and_evaluate`` (``config.json``,
  ``history.json``, ``results.json``, a checkpoint of the whole model, so
  ``checkpoint.load_for_inference`` and ``transfer.source`` take it; its
  optimizer state is a fresh one, the head's moments are not kept).

  Args:
    config: an experiment config with ``transfer.feature_extraction``.
    workdir: where to write; a finished run there is evaluated, not redone.

  Returns:
    ``(state, history)`` as ``train.train_and_evaluate`` (the whole model's
    state, the Keras-like history with ``test_loss`` / ``test_accuracy``).

  Raises:
    TransferError: augmentation (features are fixed), no frozen base, nothing
      to train; and what :func:`apply` raises.
  """
  # Local: train imports this module; tf.data only when features are made
  # (experiment files import this module for freeze_before).
  from jaxcnn import input_pipeline
  from jaxcnn import train
  config_lib.validate(config)
  parallel.check_global_batch(config.training.batch_size)
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  patterns = optim.freeze.normalize(config.regularization.freeze)

  data = input_pipeline.create(config.dataset,
                               global_batch_size=config.training.batch_size,
                               seed=config.seed)
  info = data.info
  model = train.create_model(config, info.num_classes)
  tx = train.create_optimizer(config, data.steps_per_epoch)
  state = train.create_train_state(config, model, tx, info.image_shape)
  k = _check_feature_config(config, model, state.params, patterns)
  state, _ = apply(config, state, tx, model)
  main = jax.process_index() == 0
  if main:
    _write_json(os.path.join(workdir, "config.json"), config_lib.to_dict(config))

  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                                     max_to_keep=config.training.keep_checkpoints)
  try:
    finished = _finished_run(ckpt, state, config)
    if finished is not None:
      return _evaluate_finished(finished, model, data, workdir)

    variables = {"params": state.params}
    if state.batch_stats:
      variables["batch_stats"] = state.batch_stats
    t0 = time.perf_counter()
    splits = ["train", "test"] + (["validation"] if info.num_validation else [])
    features = extract_features(model, variables, data, splits, k)
    feature_data = FeatureData(data, features, config.training.batch_size)
    if main:
      print(f"Feature extraction: layers {model.layer_names[0]}..."
            f"{model.layer_names[k - 1]} ran once over "
            f"{sum(len(f[1]) for f in features.values())} images in "
            f"{time.perf_counter() - t0:.1f} s: {math.prod(feature_data.feature_shape):,} "
            f"features each {feature_data.feature_shape}; training "
            f"{', '.join(model.layer_names[k:])}.")
    head_state, history = _train_head(config, model, state, k, feature_data,
                                      info, workdir)
    state = _merge_head(state, head_state, tx)
    ckpt.save(int(parallel.to_host(state.step)), state, {
        "epoch": config.training.num_epochs, "history": history, "partial": {},
        "num_classes": info.num_classes, "image_shape": list(info.image_shape),
        "steps_per_epoch": data.steps_per_epoch,
        "global_batch_size": config.training.batch_size,
        "feature_extraction": True})
  finally:
    ckpt.close()
  return state, history


def _finished_run(ckpt, state, config):
  if not ckpt.all_steps():
    return None
  restored = ckpt.restore_latest(state)
  if restored is None:
    return None
  state, meta = restored
  if meta["epoch"] < config.training.num_epochs:
    raise TransferError(
        f"{ckpt.directory} holds a feature-extraction run of {meta['epoch']} "
        f"epochs, fewer than training.num_epochs={config.training.num_epochs}; "
        "feature extraction does not resume (it is fast): use a new workdir.")
  return state, meta


def _evaluate_finished(finished, model, data, workdir):
  from jaxcnn import train
  state, meta = finished
  history = meta["history"]
  print(f"Feature extraction already finished in {workdir}; evaluating.")
  test = train.evaluate(parallel.make_eval_step(model), state, data, "test")
  history["test_loss"], history["test_accuracy"] = test["loss"], test["accuracy"]
  print(f"Test: loss {test['loss']:.4f}, accuracy {test['accuracy']:.4f} "
        f"({test['count']} examples).")
  return state, history


def _head_model(model: sequential.Sequential, k: int, axis_name=None):
  return sequential.Sequential(layers=model.layers[k:], axis_name=axis_name,
                               preset=f"{model.preset}_head")


def _train_head(config, model, state, k, feature_data, info, workdir):
  """The epoch loop over cached features; returns the head state and history."""
  from jaxcnn import train
  head = _head_model(model, k)
  head_train = _head_model(model, k, axis_name=parallel.AXIS)
  head_names = set(head.layer_names)
  # The head's own optimizer: same settings, nothing frozen inside the head.
  tx = optim.create(config.optimizer, config.schedule,
                    steps_per_epoch=feature_data.steps_per_epoch,
                    num_epochs=config.training.num_epochs)
  head_state = train.create_train_state(config, head, tx, feature_data.feature_shape)
  params = {n: v for n, v in state.params.items() if n in head_names}
  stats = {n: v for n, v in dict(state.batch_stats).items() if n in head_names}
  head_state = head_state.replace(params=params, batch_stats=stats,
                                  opt_state=tx.init(params))
  rules = optim.regularizers.build_rules(models.param_rules(head), params,
                                         _head_regularization(config))
  pmap = not jax.config.jax_debug_nans
  step_fn = parallel.make_train_step(
      head_train, tx, penalty_fn=lambda p: optim.regularizers.penalty(p, rules),
      project_fn=lambda p: optim.constraints.project(p, rules),
      label_smoothing=config.training.label_smoothing, pmap=pmap,
      donate_state=False)  # head_state shares its arrays with state
  # Cached features of unflipped images: training.test_time_flip does not apply.
  eval_fn = parallel.make_eval_step(head, pmap=pmap)
  has_val = info.num_validation > 0
  history = {k_: [] for k_ in (["loss", "accuracy"] +
                               (["val_loss", "val_accuracy"] if has_val else []) +
                               ["lr", "epoch_time", "images_per_second"])}
  main = jax.process_index() == 0
  num_epochs = config.training.num_epochs
  for epoch in range(num_epochs):
    t0 = time.perf_counter()
    metrics = []
    for batch in feature_data.train_epoch(epoch):
      head_state, m = step_fn(head_state, batch)
      metrics.append(m)
    metrics = parallel.to_host(metrics)
    elapsed = time.perf_counter() - t0
    loss = float(np.mean([m["loss"] for m in metrics]))
    if not (math.isfinite(loss) and all(math.isfinite(float(m["grad_norm"]))
                                        for m in metrics)):
      raise train.NonFiniteLossError(
          f"Non-finite loss or gradient in epoch {epoch + 1} of the head's "
          "training on cached features; lower optimizer.learning_rate or add "
          "optimizer.clipnorm.")
    row = {"loss": loss, "accuracy": float(np.mean([m["accuracy"] for m in metrics]))}
    if has_val and ((epoch + 1) % config.training.eval_every_epochs == 0
                    or epoch + 1 == num_epochs):
      val = train.evaluate(eval_fn, head_state, feature_data, "validation")
      row.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
      opt_state, plateau = optim.on_epoch_end(
          head_state.opt_state, head_state.plateau, val["loss"], config.schedule)
      head_state = head_state.replace(opt_state=opt_state, plateau=plateau)
    elif has_val:
      row.update(val_loss=float("nan"), val_accuracy=float("nan"))
    row.update(lr=float(parallel.to_host(optim.learning_rate(head_state.opt_state))),
               epoch_time=elapsed,
               images_per_second=len(metrics) * config.training.batch_size / elapsed)
    for key, value in row.items():
      history[key].append(value)
    if main:
      print(f"Epoch {epoch + 1}/{num_epochs} - " +
            " - ".join(f"{key}: {value:.4g}" for key, value in row.items()))
      _write_json(os.path.join(workdir, "history.json"), history)
  test = train.evaluate(eval_fn, head_state, feature_data, "test")
  history["test_loss"], history["test_accuracy"] = test["loss"], test["accuracy"]
  if main:
    print(f"Test: loss {test['loss']:.4f}, accuracy {test['accuracy']:.4f} "
          f"({test['count']} examples).")
    _write_json(os.path.join(workdir, "history.json"), history)
    _write_json(os.path.join(workdir, "results.json"), {
        "test_loss": test["loss"], "test_accuracy": test["accuracy"],
        "test_count": test["count"], "epochs": num_epochs,
        "step": int(parallel.to_host(head_state.step)), "feature_extraction": True})
  return head_state, history


def _merge_head(state: TrainState, head_state: TrainState, tx) -> TrainState:
  """The whole model's state with the trained head in place."""
  params = {**state.params, **head_state.params}
  stats = {**dict(state.batch_stats), **dict(head_state.batch_stats)}
  return state.replace(step=head_state.step, params=params, batch_stats=stats,
                       opt_state=tx.init(params), rng=head_state.rng,
                       plateau=head_state.plateau)
