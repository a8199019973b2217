"""Layer specs: plain dicts in configs, validated into hashable records.

A model is a sequence of dicts such as::

  {'type': 'conv2d', 'filters': 32, 'kernel_size': 3, 'activation': 'relu',
   'kernel_initializer': 'he_normal', 'kernel_regularizer': {'l2': 1e-4},
   'kernel_constraint': {'max_norm': 3.0}}

:func:`parse_layers` checks every key against the layer's real options (an
unknown one names the closest valid one), normalizes values (``3`` ->
``(3, 3)``, ``'relu'`` -> an Activation) and gives each layer its Keras
auto-name (``conv2d``, ``conv2d_1``, ...) unless the dict sets ``name``.
The result is a tuple of frozen :class:`LayerSpec`, hashable, so it can be
a linen module field and the module can be a static ``jit`` argument.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

import flax.linen as nn

from jaxcnn import config as config_lib
from jaxcnn.models import activations
from jaxcnn.models import dropout
from jaxcnn.models import initializers
from jaxcnn.models import layers


@dataclasses.dataclass(frozen=True)
class LayerType:
  """What a spec ``type`` builds.

  Attributes:
    module: the linen class.
    keras_class: the Keras class name (summary's type column).
    prefix: Keras' auto-name prefix.
    stochastic: whether the layer draws from the 'dropout' rng.
    weighted: whether it has a kernel/bias that can carry rules.
  """
  module: type[nn.Module]
  keras_class: str
  prefix: str
  stochastic: bool = False
  weighted: bool = False


LAYER_TYPES: dict[str, LayerType] = {
    "conv2d": LayerType(layers.Conv2D, "Conv2D", "conv2d", weighted=True),
    "dense": LayerType(layers.Dense, "Dense", "dense", weighted=True),
    "locally_connected2d": LayerType(layers.LocallyConnected2D, "LocallyConnected2D",
                                     "locally_connected2d", weighted=True),
    "max_pooling2d": LayerType(layers.MaxPooling2D, "MaxPooling2D", "max_pooling2d"),
    "average_pooling2d": LayerType(layers.AveragePooling2D, "AveragePooling2D",
                                   "average_pooling2d"),
    "global_average_pooling2d": LayerType(layers.GlobalAveragePooling2D,
                                          "GlobalAveragePooling2D",
                                          "global_average_pooling2d"),
    "global_max_pooling2d": LayerType(layers.GlobalMaxPooling2D, "GlobalMaxPooling2D",
                                      "global_max_pooling2d"),
    "flatten": LayerType(layers.Flatten, "Flatten", "flatten"),
    "activation": LayerType(layers.Activation, "Activation", "activation"),
    "leaky_relu": LayerType(layers.LeakyReLU, "LeakyReLU", "leaky_re_lu"),
    "batch_normalization": LayerType(layers.BatchNormalization, "BatchNormalization",
                                     "batch_normalization"),
    "dropout": LayerType(dropout.Dropout, "Dropout", "dropout", stochastic=True),
    "mc_dropout": LayerType(dropout.MCDropout, "MCDropout", "mc_dropout", stochastic=True),
    "alpha_dropout": LayerType(dropout.AlphaDropout, "AlphaDropout", "alpha_dropout",
                               stochastic=True),
    "vgg_preprocess": LayerType(layers.VGGPreprocess, "VGGPreprocess", "vgg_preprocess"),
}

# Keras class names and short forms people type, mapped to the spec type.
ALIASES = {
    **{t.keras_class.lower(): name for name, t in LAYER_TYPES.items()},
    "conv": "conv2d", "maxpool": "max_pooling2d", "max_pool": "max_pooling2d",
    "maxpooling2d": "max_pooling2d", "avg_pool": "average_pooling2d",
    "averagepooling2d": "average_pooling2d", "batchnorm": "batch_normalization",
    "batch_norm": "batch_normalization", "leaky_re_lu": "leaky_relu",
}

RULE_KEYS = ("kernel_regularizer", "bias_regularizer", "kernel_constraint", "bias_constraint")
_PAIR_KEYS = ("kernel_size", "strides", "pool_size", "dilation_rate")
_PADDINGS = ("valid", "same")


@dataclasses.dataclass(frozen=True)
class Rule:
  """Regularization of one parameter (Keras meaning; 0 = off).

  ``l1 * sum|w| + l2 * sum w^2`` is added to the loss; ``max_norm`` caps the
  L2 norm over all axes but the last after every update.
  """
  l1: float = 0.0
  l2: float = 0.0
  max_norm: float = 0.0

  def __bool__(self) -> bool:
    return bool(self.l1 or self.l2 or self.max_norm)


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """A validated layer: type, Keras name, module options and rules."""
  type: str
  name: str
  options: tuple[tuple[str, Any], ...] = ()
  kernel_rule: Rule = Rule()
  bias_rule: Rule = Rule()

  @property
  def layer_type(self) -> LayerType:
    return LAYER_TYPES[self.type]

  @property
  def kwargs(self) -> dict[str, Any]:
    return dict(self.options)

  def build(self, axis_name: str | None = None) -> nn.Module:
    """The linen module of this layer (BatchNorm gets ``axis_name``)."""
    kwargs = self.kwargs
    if self.type == "batch_normalization":
      kwargs["axis_name"] = axis_name
    return self.layer_type.module(name=self.name, **kwargs)


def _module_fields(module: type[nn.Module]) -> list[str]:
  return [f.name for f in dataclasses.fields(module)
          if f.name not in ("parent", "name", "axis_name") and f.init]


def _pair(value: Any, key: str, where: str) -> tuple[int, int] | None:
  if value is None and key == "strides":
    return None
  if isinstance(value, int) and not isinstance(value, bool):
    return (value, value)
  if isinstance(value, (tuple, list)) and len(value) == 2 and all(
      isinstance(v, int) and not isinstance(v, bool) for v in value):
    return (int(value[0]), int(value[1]))
  raise config_lib.ConfigError(
      f"'{key}' of {where} must be an int or a pair of ints, got {value!r}.")


def _rule(value: Any, key: str, where: str) -> Rule:
  if value is None:
    return Rule()
  valid = ("l1", "l2") if key.endswith("regularizer") else ("max_norm",)
  if not isinstance(value, Mapping):
    example = "{'l1': 0.0, 'l2': 1e-4}" if "regularizer" in key else "{'max_norm': 3.0}"
    raise config_lib.ConfigError(
        f"'{key}' of {where} must be None or a dict like {example}; got {value!r}.")
  for k, v in value.items():
    if k not in valid:
      raise config_lib.unknown_key_error(f"{key}.{k}", valid, where)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
      raise config_lib.ConfigError(f"'{key}.{k}' of {where} must be a number >= 0, got {v!r}.")
  return Rule(**{k: float(v) for k, v in value.items()})


def _normalize(kind: str, key: str, value: Any, where: str) -> Any:
  if key in _PAIR_KEYS:
    return _pair(value, key, where)
  if key == "padding":
    if not isinstance(value, str) or value.lower() not in _PADDINGS:
      valid = ("valid",) if kind == "locally_connected2d" else _PADDINGS
      raise config_lib.ConfigError(
          f"'padding' of {where} must be one of {', '.join(valid)}; got {value!r}.")
    return value.lower()
  if key == "activation":
    return activations.parse(value, f"'activation' of {where}")
  if key.endswith("_initializer"):
    return initializers.parse(value, f"'{key}' of {where}")
  if key == "rate":
    if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
      raise config_lib.ConfigError(f"'rate' of {where} must be in [0, 1), got {value!r}.")
    return float(value)
  if key == "mask_bits" and value not in (8, 16, 32):
    raise config_lib.ConfigError(f"'mask_bits' of {where} must be 8, 16 or 32, got {value!r}.")
  if key in ("filters", "units") and (not isinstance(value, int) or value < 1):
    raise config_lib.ConfigError(f"'{key}' of {where} must be an int >= 1, got {value!r}.")
  if isinstance(value, list):
    return tuple(value)
  return value


def canonical_type(kind: Any) -> str:
  """The spec type for a name or alias ('Conv2D' -> 'conv2d')."""
  if not isinstance(kind, str):
    raise config_lib.ConfigError(f"Layer 'type' must be a string, got {kind!r}.")
  key = kind.lower()
  if key in LAYER_TYPES:
    return key
  if key in ALIASES:
    return ALIASES[key]
  guess = config_lib.closest(key, LAYER_TYPES)
  hint = f" Did you mean '{guess}'?" if guess else ""
  raise config_lib.ConfigError(
      f"Unknown layer type '{kind}'.{hint} Valid: {', '.join(sorted(LAYER_TYPES))}.")


def parse_layer(spec: Mapping[str, Any] | LayerSpec, index: int = 0) -> LayerSpec:
  """Validates one layer dict (name left empty unless the dict sets one)."""
  if isinstance(spec, LayerSpec):
    return spec
  if not isinstance(spec, Mapping):
    raise config_lib.ConfigError(
        f"Layer {index} must be a dict with a 'type' (e.g. {{'type': 'dense', "
        f"'units': 10}}), got {spec!r}.")
  spec = dict(spec)
  if "type" not in spec:
    raise config_lib.ConfigError(f"Layer {index} ({spec}) has no 'type'.")
  kind = canonical_type(spec.pop("type"))
  layer_type = LAYER_TYPES[kind]
  name = spec.pop("name", "") or ""
  where = f"layer {index} ({name or kind})"
  fields = _module_fields(layer_type.module)
  valid = fields + (list(RULE_KEYS) if layer_type.weighted else [])
  options = {}
  rules = {}
  for key, value in spec.items():
    if key not in valid:
      raise config_lib.unknown_key_error(key, valid + ["name", "type"], where)
    if key in RULE_KEYS:
      rules[key] = _rule(value, key, where)
    else:
      options[key] = _normalize(kind, key, value, where)
  required = [f.name for f in dataclasses.fields(layer_type.module)
              if f.name in fields and f.default is dataclasses.MISSING
              and f.default_factory is dataclasses.MISSING]
  missing = [k for k in required if k not in options]
  if missing:
    raise config_lib.ConfigError(f"{where} needs {', '.join(missing)}.")
  if options.get("use_bias") is False and (
      "bias_regularizer" in rules or "bias_constraint" in rules):
    raise config_lib.ConfigError(f"{where} has use_bias=False but a bias rule.")
  kernel_rule = Rule(
      l1=rules.get("kernel_regularizer", Rule()).l1,
      l2=rules.get("kernel_regularizer", Rule()).l2,
      max_norm=rules.get("kernel_constraint", Rule()).max_norm)
  bias_rule = Rule(
      l1=rules.get("bias_regularizer", Rule()).l1,
      l2=rules.get("bias_regularizer", Rule()).l2,
      max_norm=rules.get("bias_constraint", Rule()).max_norm)
  return LayerSpec(kind, name, tuple(sorted(options.items())), kernel_rule, bias_rule)


def parse_layers(specs: Iterable[Mapping[str, Any] | LayerSpec]) -> tuple[LayerSpec, ...]:
  """Validates layer dicts and gives them unique Keras-style names.

  Args:
    specs: layer dicts (or already parsed specs), in order.

  Returns:
    The specs with names: an explicit ``name`` is kept; others get Keras'
    auto-name, the type's prefix with ``_1``, ``_2``, ... for later ones.

  Raises:
    ConfigError: a bad layer (naming it and what would be valid) or a
      duplicate name.
  """
  parsed = [parse_layer(s, i) for i, s in enumerate(specs)]
  if not parsed:
    raise config_lib.ConfigError("A model needs at least one layer.")
  taken = {p.name for p in parsed if p.name}
  counters: dict[str, int] = {}
  named = []
  for p in parsed:
    if not p.name:
      prefix = p.layer_type.prefix
      while True:
        n = counters.get(prefix, 0)
        counters[prefix] = n + 1
        candidate = prefix if n == 0 else f"{prefix}_{n}"
        if candidate not in taken:
          break
      taken.add(candidate)
      p = dataclasses.replace(p, name=candidate)
    named.append(p)
  names = [p.name for p in named]
  duplicates = sorted({n for n in names if names.count(n) > 1})
  if duplicates:
    raise config_lib.ConfigError(f"Layer names must be unique; repeated: {', '.join(duplicates)}.")
  return tuple(named)


def to_config(spec: LayerSpec) -> dict[str, Any]:
  """A plain dict that :func:`parse_layer` turns back into ``spec``."""
  out: dict[str, Any] = {"type": spec.type, "name": spec.name}
  for key, value in spec.options:
    if isinstance(value, activations.Activation):
      value = value.to_config()
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
      value = {"name": _initializer_name(value), **dataclasses.asdict(value)}
      value.pop("batch_axes", None)
    out[key] = value
  for rule, prefix in ((spec.kernel_rule, "kernel"), (spec.bias_rule, "bias")):
    if rule.l1 or rule.l2:
      out[f"{prefix}_regularizer"] = {"l1": rule.l1, "l2": rule.l2}
    if rule.max_norm:
      out[f"{prefix}_constraint"] = {"max_norm": rule.max_norm}
  return out


def _initializer_name(init: Any) -> str:
  return {initializers.VarianceScaling: "variance_scaling",
          initializers.RandomNormal: "random_normal",
          initializers.RandomUniform: "random_uniform",
          initializers.Constant: "constant"}[type(init)]
