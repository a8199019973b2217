"""Loading Keras weight files into a model, matching layers by name.

Two layouts are read (nothing is ever downloaded):

* the legacy HDF5 layout of Keras 1/2 ``save_weights('x.h5')`` and of the
  published ``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``: root
  attribute ``layer_names``; one group per layer with attribute
  ``weight_names`` listing its datasets in order (``block1_conv1_W_1:0``,
  ``block1_conv1_b_1:0`` in the VGG16 file; ``dense/kernel:0`` in Keras 2).
  A whole-model ``.h5`` keeps the same under ``model_weights``. Weights of a
  nested model (``vgg16`` inside a Sequential) are attributed to their own
  layer by the first part of their name (``block1_conv1/kernel:0``).
* Keras 3 ``save_weights('x.weights.h5')``: ``layers/<path>/vars/0, 1, ...``,
  where the path is the layer class's auto-name and the real layer name is
  the ``name`` attribute of ``vars`` (nested models nest ``layers``).

Weights come in Keras' order: ``kernel, bias`` for Conv2D / Dense;
``gamma, beta, moving_mean, moving_variance`` for BatchNormalization.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from absl import logging
import flax
import jax.numpy as jnp
import numpy as np

from jaxcnn.models import sequential
from jaxcnn.models import vgg16


class KerasWeightsError(ValueError):
  """A weights file that does not fit the model; the message says how."""


def _decode(value: Any) -> str:
  return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _read_legacy(root) -> dict[str, list[np.ndarray]]:
  weights: dict[str, list[np.ndarray]] = {}
  for layer in (_decode(n) for n in root.attrs["layer_names"]):
    group = root[layer]
    for weight_name in (_decode(n) for n in group.attrs.get("weight_names", [])):
      head = weight_name.split("/", 1)[0]
      # In a nested model's group the first part names the inner layer.
      owner = head if "/" in weight_name and head != layer else layer
      weights.setdefault(owner, []).append(np.asarray(group[weight_name]))
  return weights


def _read_keras3(root) -> dict[str, list[np.ndarray]]:
  weights: dict[str, list[np.ndarray]] = {}

  def visit(path: str, obj) -> None:
    if path.rsplit("/", 1)[-1] != "vars" or not hasattr(obj, "keys"):
      return
    keys = sorted(obj.keys(), key=int)
    if not keys:
      return
    name = _decode(obj.attrs.get("name", path.split("/")[-2] if "/" in path else path))
    if name in weights:
      raise KerasWeightsError(f"Layer name {name!r} appears twice in the weights file.")
    weights[name] = [np.asarray(obj[k]) for k in keys]

  root.visititems(visit)
  return weights


def read_keras_weights(path: str) -> dict[str, list[np.ndarray]]:
  """Reads a Keras weights file.

  Args:
    path: a legacy ``.h5`` (Keras 1/2 layout) or a Keras 3 ``.weights.h5``.

  Returns:
    ``{layer_name: [arrays in Keras order]}`` for the layers with weights.

  Raises:
    FileNotFoundError: no file at ``path``.
    KerasWeightsError: a file in neither layout.
  """
  import h5py  # Only needed here.
  if not path or not os.path.isfile(path):
    raise FileNotFoundError(
        f"Keras weights file not found: {path!r}. Pass the path of a local file "
        f"(nothing is downloaded); VGG16's ImageNet base is published at "
        f"{vgg16.NOTOP_WEIGHTS_URL}")
  if path.endswith(".keras"):
    raise KerasWeightsError(
        f"{path} is a whole-model .keras archive; save its weights with "
        "model.save_weights('x.weights.h5') and pass that file.")
  with h5py.File(path, "r") as f:
    root = f["model_weights"] if "model_weights" in f else f
    if "layer_names" in root.attrs:
      return _read_legacy(root)
    if "layers" in root or "vars" in root:
      return _read_keras3(root)
  raise KerasWeightsError(
      f"{path} is not a Keras weights file: no 'layer_names' attribute (Keras 1/2 "
      "layout) and no 'layers' group (Keras 3 .weights.h5).")


# Keras' weight order per layer type ('collection/name' slots): the arrays
# of a weights file are unnamed, in this order.
KERAS_ORDER = {
    "conv2d": ("params/kernel", "params/bias"),
    "dense": ("params/kernel", "params/bias"),
    "locally_connected2d": ("params/kernel", "params/bias"),
    "batch_normalization": ("params/scale", "params/bias", "batch_stats/mean",
                            "batch_stats/var"),
}


def keras_slots(layer_type: str, present: set[str]) -> list[str]:
  """The slots of a layer that has ``present`` variables, in Keras' order.

  A layer without ``use_bias`` or BatchNorm without ``center``/``scale`` has
  fewer arrays; a layer type Keras files never fill gets none.
  """
  return [slot for slot in KERAS_ORDER.get(layer_type, ()) if slot in present]


def load_keras_weights(path: str, model: sequential.Sequential, variables: Mapping,
                       *, allow_unused: bool = False) -> dict[str, Any]:
  """Replaces a model's weights with those of a Keras file, by layer name.

  Layers of the model absent from the file keep their values (a new head on
  a pretrained base); every layer of the file with weights must exist in the
  model with the same shapes.

  Args:
    path: the weights file (see :func:`read_keras_weights`).
    model: the model (its layer names are Keras').
    variables: ``model.init(...)`` output, giving the target shapes.
    allow_unused: accept file layers the model lacks (e.g. loading a full
      classifier's file into its base).

  Returns:
    New variables with the file's weights in place.

  Raises:
    FileNotFoundError: no such file.
    KerasWeightsError: layers the model lacks, a different number of weights,
      or different shapes; the message names the layers and shapes.
  """
  weights = read_keras_weights(path)
  variables = flax.core.unfreeze(variables)
  params = variables.get("params", {})
  stats = variables.get("batch_stats", {})
  by_name = {spec.name: spec for spec in model.layers}
  unused = sorted(set(weights) - set(by_name))
  if unused and not allow_unused:
    raise KerasWeightsError(
        f"{path} has weights for layers the model lacks: {', '.join(unused)}. "
        f"Model layers: {', '.join(model.layer_names)}.")
  loaded = []
  for name, arrays in weights.items():
    if name not in by_name:
      continue
    spec = by_name[name]
    present = {f"params/{k}" for k in params.get(name, {})} | {
        f"batch_stats/{k}" for k in stats.get(name, {})}
    slots = [tuple(slot.split("/", 1)) for slot in keras_slots(spec.type, present)]
    if spec.type not in KERAS_ORDER:
      raise KerasWeightsError(
          f"Loading Keras weights into a {spec.type!r} layer is not supported.")
    if len(arrays) != len(slots):
      raise KerasWeightsError(
          f"Layer {name!r}: the file has {len(arrays)} weights, the model's "
          f"{spec.type} has {len(slots)} ({', '.join(n for _, n in slots)}).")
    for (collection, slot), array in zip(slots, arrays):
      target = variables[collection][name][slot]
      if tuple(array.shape) != tuple(target.shape):
        raise KerasWeightsError(
            f"Layer {name!r} {slot}: the file's shape {tuple(array.shape)} does not "
            f"fit the model's {tuple(target.shape)}.")
      variables[collection][name][slot] = jnp.asarray(array, target.dtype)
    loaded.append(name)
  if not loaded:
    raise KerasWeightsError(
        f"No layer of {path} matches the model ({', '.join(model.layer_names)}).")
  logging.info("Loaded Keras weights of %d layers from %s: %s", len(loaded), path,
               ", ".join(loaded))
  return variables


def load_pretrained(model: sequential.Sequential, variables: Mapping) -> Mapping:
  """Loads ``model.weights_path`` (a ``weights_path`` override) if set.

  Call it after ``model.init`` and outside ``jit``; without a path it
  returns ``variables`` unchanged.
  """
  if not model.weights_path:
    return variables
  return load_keras_weights(model.weights_path, model, variables)
