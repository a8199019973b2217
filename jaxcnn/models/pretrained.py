"""Pretrained weights into a model, layer by layer and by Keras name.

A *source* (:class:`Source`) is weights by layer name: a Keras weights file
(:func:`keras_source`: ``.h5``, e.g. VGG16's ImageNet ``..._notop.h5``) or
another model's variables (:func:`variables_source`: a jaxcnn workdir's).
:func:`match` decides which layers to copy (``config.transfer.layers``):

* empty (the default) copies every layer present in both with the same
  shapes; layers whose name matches but whose shapes differ keep their
  initialization and are listed, which is allowed only after the last copied
  layer (a new head): a mismatch inside the copied part is an error listing
  the shapes;
* given (globs of layer names), every matched layer must fit.

:func:`transfer` runs the whole of it and checks that no frozen layer is
left with random weights.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any, Iterable, Mapping

import jax.numpy as jnp
import numpy as np

from jaxcnn.models import keras_import
from jaxcnn.models.freezing import TransferError
from jaxcnn.models.freezing import short_list
from jaxcnn.models.sequential import Sequential

# Variables of a layer keyed 'collection/name' ('params/kernel',
# 'batch_stats/mean'): one flat namespace to compare a source with a model.
LayerVars = dict[str, Any]


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


def keras_source(path: str, model: Sequential, target: Mapping) -> Source:
  """Reads a Keras weights file, naming its arrays by the model's layer types.

  Raises:
    FileNotFoundError: no such file.
    TransferError: a file that is not Keras weights.
  """
  try:
    weights = keras_import.read_keras_weights(path)
  except keras_import.KerasWeightsError as e:
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
    slots = keras_import.keras_slots(spec.type, present)
    if len(arrays) != len(slots):
      layers[name] = {f"#{i}": a for i, a in enumerate(arrays)}
    else:
      layers[name] = dict(zip(slots, arrays))
  return Source(f"Keras weights {path}", layers)


def variables_source(description: str, variables: Mapping) -> Source:
  """A source from another model's variables (e.g. a jaxcnn workdir's)."""
  return Source(description, {name: _flat_layer_vars(variables, name)
                              for name in _layer_names_of(variables)})


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


def match(source: Source, model: Sequential, variables: Mapping,
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


def transfer(source: Source, model: Sequential, variables: Mapping, *,
             layers: Iterable[str] = (), frozen: Iterable[str] = ()
             ) -> tuple[dict[str, Any], list[str]]:
  """Copies the matched layers of ``source`` into ``variables``.

  Args:
    source: the weights to copy.
    model: the model they go into.
    variables: the model's initialized variables.
    layers: ``config.transfer.layers`` (globs; empty = all that fit).
    frozen: names of the model's frozen layers: each must be filled, or
      training would freeze random weights.

  Returns:
    ``(variables, lines)``: the new variables and a report to print.

  Raises:
    TransferError: what :func:`match` raises, or a frozen layer the source
      does not fill (listing what differs).
  """
  plan = match(source, model, variables, layers)
  unfilled = sorted(set(frozen) - set(plan.copy), key=model.layer_names.index)
  if unfilled:
    raise TransferError(
        f"Frozen layers that {source.description} does not fill would train "
        f"nothing from random weights: {', '.join(unfilled)}.\n" +
        _describe_problems(dataclasses.replace(
            plan, mismatched={k: v for k, v in plan.mismatched.items() if k in unfilled},
            absent=tuple(n for n in plan.absent if n in unfilled))) +
        "\nUnfreeze them (regularization.freeze) or give a source that has them.")
  variables = copy_layers(source, plan, variables)
  kept = [n for n in model.layer_names
          if n not in plan.copy and _flat_layer_vars(variables, n)]
  lines = [f"Transfer from {source.description}: copied {len(plan.copy)} "
           f"layer(s): {short_list(plan.copy)}.",
           f"  Initialized here: {short_list(kept)}" + (
               f" (shapes differ: {short_list(plan.mismatched)})" if plan.mismatched else "") +
           (f"; source layers not in the model: {short_list(plan.unused)}"
            if plan.unused else "") + "."]
  return variables, lines
