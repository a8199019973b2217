"""The lectures' architectures as named presets, built by :func:`create`.

Every preset is a function of keyword overrides returning layer dicts; its
defaults reproduce the lecture's Keras model, with the same layer names and
parameter counts (``summary`` shows them). All return logits: the lecture's
final softmax / sigmoid is left to the loss. Presets whose Keras model ends
in 10 softmax units or 1 sigmoid unit follow ``num_classes`` when it is given
(a 1-unit preset stays 1 unit for 2 classes: a binary classifier).

Overrides shared by the CNN and MLP presets: ``activation`` (hidden layers;
a name or ``{'name': 'leaky_relu', 'alpha': 0.2}``), ``kernel_initializer``
(hidden layers; the output layer keeps Keras' default ``glorot_uniform`` as
in the lectures), ``kernel_regularizer`` (``{'l1': .., 'l2': ..}``) and
``kernel_constraint`` (``{'max_norm': 3.0}``) on every kernel, and
``dropout_rate``. Any preset also takes ``weights_path``, a Keras weights
file loaded by name after ``init`` (``keras_import.load_pretrained``).

Lecture 002 (MNIST, 28x28x1)
  ``cnn`` 61,482 params; ``cnn_small`` 14,178; ``cnn_small_bn`` (Conv ->
  ReLU -> BatchNorm, as the lecture orders them) 14,242 of which 32
  non-trainable. ``dropout_rate`` adds a Dropout after Flatten.
Lecture 003
  ``mnist_cnn`` 93,322 (MNIST); ``cats_dogs_cnn`` 3,453,121 at 150x150x3 and
  ``cats_dogs_cnn_dropout`` (Dropout 0.5 after Flatten), one sigmoid unit;
  ``vgg16`` the conv base, 14,714,688 (no classifier: it returns features and
  ignores ``num_classes``); ``vgg16_transfer`` base + Flatten + Dense(256,
  relu) + Dense(1), 16,812,353 at 150x150x3 (``dropout_rate=0.5`` puts the
  lecture's Dropout after Dense(256) for its feature-extraction variant).
  Both VGG presets take ``preprocess=True`` to prepend Keras' caffe
  ``preprocess_input`` as a layer (after ``x * pixel_scale``, default 255
  for images rescaled to [0, 1]).
Lecture 004 (Fashion-MNIST MLPs 300-100-10)
  ``mlp`` (relu, glorot_uniform: the base for the initializer / activation
  comparison), ``mlp_bn`` (BatchNorm before each Dense, elu + he_normal;
  271,346 params, 2,368 non-trainable), ``mlp_dropout`` (Dropout 0.2 before
  each Dense, elu + he_normal), ``mlp_selu`` (selu + lecun_normal with
  AlphaDropout 0.2), ``mlp_leaky_relu`` (leaky_relu alpha 0.2 + he_normal),
  ``mlp_elu`` (elu + he_normal). ``dropout_type`` picks ``dropout``,
  ``mc_dropout`` or ``alpha_dropout``.
Lecture 000 (CIFAR-10 regularization ladder)
  The lecture's code cells are empty, so the network is ours: three 3x3
  'same' conv blocks of 32/64/128 filters, Flatten, Dense(128), Dense(10).
  'same' padding keeps it valid for any input size (28x28x1 too). The
  baseline has no pooling (the lecture finds max-pooling trains much faster,
  so its baseline has none): 16.9M params at 32x32x3, most in the Dense(128),
  which is what overfits. The rungs, each one change from the baseline
  except the last three, which build on dropout + max-norm as the lecture's
  titles say:
  ``cifar_cnn`` baseline; ``cifar_cnn_bn`` (Conv -> BatchNorm -> ReLU, the
  lecture's order); ``cifar_cnn_l2`` (l2 1e-4 on every kernel);
  ``cifar_cnn_l1`` (l1 1e-5); ``cifar_cnn_elastic_net`` (both);
  ``cifar_cnn_maxnorm`` (max-norm 3, the lecture's "c = 3 or 4");
  ``cifar_cnn_dropout`` (Dropout 0.25 after each conv block, 0.5 after
  Dense(128)); ``cifar_cnn_dropout_maxnorm``; ``cifar_cnn_dropout_maxnorm_maxpool``
  (+ 2x2 max-pooling after each block); ``cifar_cnn_dropout_maxnorm_strides``
  (stride-2 convolutions instead of pooling).
Custom
  ``sequential``: ``layers`` is a sequence of layer dicts used as given.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, Sequence

import ml_collections

from jaxcnn import config as config_lib
from jaxcnn.models import sequential
from jaxcnn.models import specs
from jaxcnn.models import vgg16 as vgg16_lib

Layers = list[dict[str, Any]]


def _output_units(num_classes: int | None, default: int) -> int:
  if num_classes is None:
    return default
  if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
    raise config_lib.ConfigError(f"num_classes must be an int >= 1, got {num_classes!r}.")
  if default == 1 and num_classes == 2:
    return 1  # Keep the lecture's single sigmoid unit for binary tasks.
  return num_classes


def _rules(kernel_regularizer, kernel_constraint) -> dict[str, Any]:
  out = {}
  if kernel_regularizer:
    out["kernel_regularizer"] = dict(kernel_regularizer)
  if kernel_constraint:
    out["kernel_constraint"] = dict(kernel_constraint)
  return out


def _conv(filters, kernel_size, activation, kernel_initializer, rules, **extra):
  return {"type": "conv2d", "filters": filters, "kernel_size": kernel_size,
          "activation": activation, "kernel_initializer": kernel_initializer,
          **rules, **extra}


def _dense(units, activation, kernel_initializer, rules):
  return {"type": "dense", "units": units, "activation": activation,
          "kernel_initializer": kernel_initializer, **rules}


def _output(units, rules):
  return {"type": "dense", "units": units, **rules}


def _small_cnn(*, units: int, filters: Sequence[int], kernel_size, dense_units,
               activation, kernel_initializer, batch_norm: bool, dropout_rate: float,
               kernel_regularizer, kernel_constraint, pool_last: bool) -> Layers:
  """Lectures 002/003: [Conv (ReLU [BN]) MaxPool]* Flatten [Dropout] Dense* Dense."""
  rules = _rules(kernel_regularizer, kernel_constraint)
  layers: Layers = []
  for i, f in enumerate(filters):
    if batch_norm:  # Lecture 002: Conv2D, Activation('relu'), BatchNormalization.
      layers += [_conv(f, kernel_size, None, kernel_initializer, rules),
                 {"type": "activation", "activation": activation},
                 {"type": "batch_normalization"}]
    else:
      layers.append(_conv(f, kernel_size, activation, kernel_initializer, rules))
    if pool_last or i < len(filters) - 1:
      layers.append({"type": "max_pooling2d", "pool_size": 2})
  layers.append({"type": "flatten"})
  if dropout_rate:
    layers.append({"type": "dropout", "rate": dropout_rate})
  for u in _as_tuple(dense_units):
    layers.append(_dense(u, activation, kernel_initializer, rules))
  layers.append(_output(units, rules))
  return layers


def _as_tuple(value) -> tuple:
  if value is None:
    return ()
  return tuple(value) if isinstance(value, (tuple, list)) else (value,)


# ---------------------------------------------------------------- lecture 002


def cnn(*, num_classes=None, filters=(32, 32), kernel_size=3, dense_units=(64,),
        activation="relu", kernel_initializer="glorot_uniform", batch_norm=False,
        dropout_rate=0.0, kernel_regularizer=None, kernel_constraint=None) -> Layers:
  """Lecture 002's MNIST CNN: 2x (Conv 3x3 + MaxPool 2), Dense 64, Dense 10."""
  return _small_cnn(units=_output_units(num_classes, 10), filters=filters,
                    kernel_size=kernel_size, dense_units=dense_units,
                    activation=activation, kernel_initializer=kernel_initializer,
                    batch_norm=batch_norm, dropout_rate=dropout_rate,
                    kernel_regularizer=kernel_regularizer,
                    kernel_constraint=kernel_constraint, pool_last=True)


def _variant(base: Callable[..., Layers], name: str, doc: str,
             **defaults) -> Callable[..., Layers]:
  """``base`` with other defaults; same overrides, visible in its signature."""
  signature = inspect.signature(base)
  for key in defaults:
    if key not in signature.parameters:
      raise TypeError(f"{base.__name__} has no option {key!r}.")

  def factory(**overrides) -> Layers:
    return base(**{**defaults, **overrides})

  factory.__name__ = name
  factory.__doc__ = doc
  factory.__signature__ = signature.replace(parameters=[
      p.replace(default=defaults.get(p.name, p.default))
      for p in signature.parameters.values()])
  return factory


cnn_small = _variant(cnn, "cnn_small",
                     "Lecture 002's ``cnn_small``: the same with 8 filters per conv.",
                     filters=(8, 8))
cnn_small_bn = _variant(cnn, "cnn_small_bn",
                        "Lecture 002's ``cnn_small_bn``: Conv, Activation, BatchNorm, MaxPool.",
                        filters=(8, 8), batch_norm=True)


# ---------------------------------------------------------------- lecture 003


def mnist_cnn(*, num_classes=None, filters=(32, 64, 64), kernel_size=3,
              dense_units=(64,), activation="relu",
              kernel_initializer="glorot_uniform", batch_norm=False,
              dropout_rate=0.0, kernel_regularizer=None,
              kernel_constraint=None) -> Layers:
  """Lecture 003's MNIST CNN: conv 32, pool, conv 64, pool, conv 64, Dense 64."""
  return _small_cnn(units=_output_units(num_classes, 10), filters=filters,
                    kernel_size=kernel_size, dense_units=dense_units,
                    activation=activation, kernel_initializer=kernel_initializer,
                    batch_norm=batch_norm, dropout_rate=dropout_rate,
                    kernel_regularizer=kernel_regularizer,
                    kernel_constraint=kernel_constraint, pool_last=False)


def cats_dogs_cnn(*, num_classes=None, filters=(32, 64, 128, 128), kernel_size=3,
                  dense_units=(512,), activation="relu",
                  kernel_initializer="glorot_uniform", batch_norm=False,
                  dropout_rate=0.0, kernel_regularizer=None,
                  kernel_constraint=None) -> Layers:
  """Lecture 003's small cats-vs-dogs CNN (150x150x3, one sigmoid unit)."""
  return _small_cnn(units=_output_units(num_classes, 1), filters=filters,
                    kernel_size=kernel_size, dense_units=dense_units,
                    activation=activation, kernel_initializer=kernel_initializer,
                    batch_norm=batch_norm, dropout_rate=dropout_rate,
                    kernel_regularizer=kernel_regularizer,
                    kernel_constraint=kernel_constraint, pool_last=True)


cats_dogs_cnn_dropout = _variant(
    cats_dogs_cnn, "cats_dogs_cnn_dropout",
    "The same with the lecture's Dropout(0.5) after Flatten.", dropout_rate=0.5)


def _vgg_input(preprocess: bool, pixel_scale: float) -> Layers:
  if not preprocess:
    return []
  return [{"type": "vgg_preprocess", "name": "preprocess_input",
           "pixel_scale": pixel_scale}]


def vgg16(*, num_classes=None, preprocess=False, pixel_scale=255.0) -> Layers:
  """VGG16's convolutional base (``include_top=False``); returns features."""
  del num_classes  # A feature extractor has no classifier to resize.
  return _vgg_input(preprocess, pixel_scale) + vgg16_lib.conv_base_layers()


def vgg16_transfer(*, num_classes=None, dense_units=256, dropout_rate=0.0,
                   preprocess=False, pixel_scale=255.0) -> Layers:
  """Lecture 003's transfer model: VGG16 base, Flatten, Dense 256, Dense 1."""
  layers = vgg16(preprocess=preprocess, pixel_scale=pixel_scale)
  layers += [{"type": "flatten"},
             {"type": "dense", "units": dense_units, "activation": "relu"}]
  if dropout_rate:
    layers.append({"type": "dropout", "rate": dropout_rate})
  layers.append({"type": "dense", "units": _output_units(num_classes, 1)})
  return layers


# ---------------------------------------------------------------- lecture 004

DROPOUT_TYPES = ("dropout", "mc_dropout", "alpha_dropout")


def mlp(*, num_classes=None, hidden_units=(300, 100), activation="relu",
        kernel_initializer="glorot_uniform", batch_norm=False, dropout_rate=0.0,
        dropout_type="dropout", kernel_regularizer=None,
        kernel_constraint=None) -> Layers:
  """Lecture 004's Fashion-MNIST MLP: Flatten, Dense 300, Dense 100, Dense 10.

  BatchNorm and dropout layers, when on, go before every Dense, as in the
  lecture's models.
  """
  if dropout_type not in DROPOUT_TYPES:
    raise config_lib.ConfigError(
        f"dropout_type must be one of {', '.join(DROPOUT_TYPES)}; got {dropout_type!r}.")
  rules = _rules(kernel_regularizer, kernel_constraint)

  def before_dense() -> Layers:
    out: Layers = []
    if batch_norm:
      out.append({"type": "batch_normalization"})
    if dropout_rate:
      out.append({"type": dropout_type, "rate": dropout_rate})
    return out

  layers: Layers = [{"type": "flatten"}]
  for units in _as_tuple(hidden_units):
    layers += before_dense()
    layers.append(_dense(units, activation, kernel_initializer, rules))
  layers += before_dense()
  layers.append(_output(_output_units(num_classes, 10), rules))
  return layers


mlp_bn = _variant(mlp, "mlp_bn", "BatchNorm MLP (271,346 params, 2,368 non-trainable).",
                  activation="elu", kernel_initializer="he_normal", batch_norm=True)
mlp_dropout = _variant(mlp, "mlp_dropout",
                       "Dropout MLP of the MC-dropout section (rate 0.2, elu, he_normal).",
                       activation="elu", kernel_initializer="he_normal", dropout_rate=0.2)
mlp_selu = _variant(mlp, "mlp_selu", "Self-normalizing MLP: selu + lecun_normal, AlphaDropout.",
                    activation="selu", kernel_initializer="lecun_normal",
                    dropout_rate=0.2, dropout_type="alpha_dropout")
mlp_leaky_relu = _variant(mlp, "mlp_leaky_relu",
                          "Leaky ReLU (alpha 0.2, the lecture's value) with he_normal.",
                          activation={"name": "leaky_relu", "alpha": 0.2},
                          kernel_initializer="he_normal")
mlp_elu = _variant(mlp, "mlp_elu", "ELU with he_normal.", activation="elu",
                   kernel_initializer="he_normal")


# ---------------------------------------------------------------- lecture 000

DOWNSAMPLING = ("none", "max_pool", "strides")


def cifar_cnn(*, num_classes=None, filters=(32, 64, 128), kernel_size=3,
              dense_units=(128,), activation="relu",
              kernel_initializer="glorot_uniform", batch_norm=False,
              dropout_rate=0.0, dense_dropout_rate=0.0, downsample="none",
              kernel_regularizer=None, kernel_constraint=None) -> Layers:
  """Lecture 000's ladder network (our choice; see the module docstring).

  Each block: Conv 3x3 'same' (stride 2 if ``downsample='strides'``),
  [BatchNorm, Activation] or the activation in the conv, [MaxPool 2 if
  ``downsample='max_pool'``], [Dropout ``dropout_rate``]. Then Flatten,
  Dense(``dense_units``) each followed by [Dropout ``dense_dropout_rate``],
  and the output Dense.
  """
  if downsample not in DOWNSAMPLING:
    raise config_lib.ConfigError(
        f"downsample must be one of {', '.join(DOWNSAMPLING)}; got {downsample!r}.")
  rules = _rules(kernel_regularizer, kernel_constraint)
  strides = 2 if downsample == "strides" else 1
  layers: Layers = []
  for f in filters:
    if batch_norm:  # Lecture 000: Conv2D, BatchNormalization, Activation.
      layers += [_conv(f, kernel_size, None, kernel_initializer, rules,
                       padding="same", strides=strides),
                 {"type": "batch_normalization"},
                 {"type": "activation", "activation": activation}]
    else:
      layers.append(_conv(f, kernel_size, activation, kernel_initializer, rules,
                          padding="same", strides=strides))
    if downsample == "max_pool":
      layers.append({"type": "max_pooling2d", "pool_size": 2})
    if dropout_rate:
      layers.append({"type": "dropout", "rate": dropout_rate})
  layers.append({"type": "flatten"})
  for units in _as_tuple(dense_units):
    layers.append(_dense(units, activation, kernel_initializer, rules))
    if dense_dropout_rate:
      layers.append({"type": "dropout", "rate": dense_dropout_rate})
  layers.append(_output(_output_units(num_classes, 10), rules))
  return layers


_L2 = {"l2": 1e-4}
_L1 = {"l1": 1e-5}
_MAX_NORM = {"max_norm": 3.0}
_DROPOUT = {"dropout_rate": 0.25, "dense_dropout_rate": 0.5}


# ---------------------------------------------------------------- custom


def custom(*, layers=(), num_classes=None) -> Layers:
  """A model given as layer dicts (``num_classes`` is not applied)."""
  del num_classes
  if not layers:
    raise config_lib.ConfigError(
        "The 'sequential' model needs 'layers', a sequence of layer dicts such "
        "as {'type': 'dense', 'units': 10}.")
  return [dict(layer) for layer in layers]


PRESETS: dict[str, Callable[..., Layers]] = {
    "cnn": cnn,
    "cnn_small": cnn_small,
    "cnn_small_bn": cnn_small_bn,
    "mnist_cnn": mnist_cnn,
    "cats_dogs_cnn": cats_dogs_cnn,
    "cats_dogs_cnn_dropout": cats_dogs_cnn_dropout,
    "vgg16": vgg16,
    "vgg16_transfer": vgg16_transfer,
    "mlp": mlp,
    "mlp_bn": mlp_bn,
    "mlp_dropout": mlp_dropout,
    "mlp_selu": mlp_selu,
    "mlp_leaky_relu": mlp_leaky_relu,
    "mlp_elu": mlp_elu,
    "cifar_cnn": cifar_cnn,
    "cifar_cnn_bn": _variant(cifar_cnn, "cifar_cnn_bn", "Ladder: + BatchNorm.",
                             batch_norm=True),
    "cifar_cnn_l2": _variant(cifar_cnn, "cifar_cnn_l2", "Ladder: + L2.",
                             kernel_regularizer=_L2),
    "cifar_cnn_l1": _variant(cifar_cnn, "cifar_cnn_l1", "Ladder: + L1.",
                             kernel_regularizer=_L1),
    "cifar_cnn_elastic_net": _variant(cifar_cnn, "cifar_cnn_elastic_net",
                                      "Ladder: + L1 and L2.",
                                      kernel_regularizer={**_L1, **_L2}),
    "cifar_cnn_maxnorm": _variant(cifar_cnn, "cifar_cnn_maxnorm", "Ladder: + max-norm.",
                                  kernel_constraint=_MAX_NORM),
    "cifar_cnn_dropout": _variant(cifar_cnn, "cifar_cnn_dropout", "Ladder: + dropout.",
                                  **_DROPOUT),
    "cifar_cnn_dropout_maxnorm": _variant(
        cifar_cnn, "cifar_cnn_dropout_maxnorm", "Ladder: dropout + max-norm.",
        kernel_constraint=_MAX_NORM, **_DROPOUT),
    "cifar_cnn_dropout_maxnorm_maxpool": _variant(
        cifar_cnn, "cifar_cnn_dropout_maxnorm_maxpool",
        "Ladder: dropout + max-norm + max-pooling.",
        kernel_constraint=_MAX_NORM, downsample="max_pool", **_DROPOUT),
    "cifar_cnn_dropout_maxnorm_strides": _variant(
        cifar_cnn, "cifar_cnn_dropout_maxnorm_strides",
        "Ladder: dropout + max-norm, stride-2 convs instead of pooling.",
        kernel_constraint=_MAX_NORM, downsample="strides", **_DROPOUT),
    "sequential": custom,
}


# Overrides every preset accepts, besides its own options.
COMMON_OVERRIDES = ("weights_path", "bn_momentum")


def override_names(name: str) -> tuple[str, ...]:
  """The overrides a preset accepts (``weights_path`` and ``bn_momentum`` included)."""
  params = inspect.signature(PRESETS[name]).parameters
  return tuple(sorted(set(params) | set(COMMON_OVERRIDES)))


def with_bn_momentum(layers: Layers, momentum: float | None) -> Layers:
  """Sets the moving-average momentum of every BatchNorm layer that sets none.

  Keras' (and the layer's) default 0.99 keeps 0.99**n of the initial
  moving statistics after n updates: about 60% after 50 steps. A short run
  needs a lower momentum (e.g. 0.9) or ``training.recompute_bn_stats``.

  Args:
    layers: layer dicts, as a preset returns them.
    momentum: in [0, 1); None leaves every layer as it is.

  Raises:
    ConfigError: a momentum outside [0, 1).
  """
  if momentum is None:
    return layers
  if (isinstance(momentum, bool) or not isinstance(momentum, (int, float))
      or not 0 <= momentum < 1):
    raise config_lib.ConfigError(
        f"model.bn_momentum must be a number in [0, 1) (Keras' default 0.99), "
        f"got {momentum!r}.")
  return [{**layer, "momentum": float(momentum)}
          if isinstance(layer, Mapping) and "momentum" not in layer
          and specs.canonical_type(layer.get("type")) == "batch_normalization"
          else layer for layer in layers]


def _plain(value: Any) -> Any:
  """ConfigDict / FieldReference values -> plain Python."""
  if isinstance(value, ml_collections.ConfigDict):
    return value.to_dict()
  if isinstance(value, list):
    return tuple(_plain(v) for v in value)
  if isinstance(value, tuple):
    return tuple(_plain(v) for v in value)
  return value


def create(name_or_config: str | Mapping[str, Any] | ml_collections.ConfigDict, *,
           num_classes: int | None = None, axis_name: str | None = None,
           dtype: Any = None, **overrides) -> sequential.Sequential:
  """Builds a preset model.

  Args:
    name_or_config: a preset name (see ``PRESETS``) or a ConfigDict / dict
      with ``name`` and override fields (``config.model``).
    num_classes: output classes (e.g. the dataset's); None keeps the
      preset's. 1-unit presets stay binary for 2 classes.
    axis_name: BatchNorm's ``pmap`` axis (``'batch'`` in the train step).
    dtype: the compute dtype (``precision.compute_dtype(training.precision)``);
      None computes in float32. Parameters are float32 either way.
    **overrides: preset options, e.g. ``dropout_rate=0.3, activation='elu'``;
      they win over the config's fields. Every preset also takes
      ``bn_momentum`` (the moving-average momentum of its BatchNorm layers;
      None or absent: Keras' 0.99) and ``weights_path``.

  Returns:
    A :class:`Sequential` linen module returning logits.

  Raises:
    ConfigError: an unknown preset (listing them), an unknown override
      (naming the closest valid one), or a bad layer.
  """
  if isinstance(name_or_config, str):
    name, fields = name_or_config, {}
  elif isinstance(name_or_config, (Mapping, ml_collections.ConfigDict)):
    fields = {k: _plain(v) for k, v in dict(name_or_config).items()}
    if "name" not in fields:
      raise config_lib.ConfigError(
          f"The model config needs a 'name' among: {', '.join(sorted(PRESETS))}.")
    name = fields.pop("name")
  else:
    raise config_lib.ConfigError(
        f"models.create takes a preset name or a config with 'name'; got {name_or_config!r}.")
  if name not in PRESETS:
    guess = config_lib.closest(name, PRESETS)
    hint = f" Did you mean '{guess}'?" if guess else ""
    raise config_lib.ConfigError(
        f"Unknown model '{name}'.{hint} Valid models: {', '.join(sorted(PRESETS))}.")
  config_classes = fields.pop("num_classes", None)
  if num_classes is None:
    num_classes = config_classes
  elif config_classes is not None and config_classes != num_classes:
    raise config_lib.ConfigError(
        f"model.num_classes={config_classes} disagrees with num_classes={num_classes} "
        "(the dataset's); drop one.")
  options = {**fields, **{k: _plain(v) for k, v in overrides.items()}}
  valid = override_names(name)
  for key in options:
    if key not in valid:
      raise config_lib.unknown_key_error(f"model.{key}", valid, f"model '{name}'")
  weights_path = options.pop("weights_path", "") or ""
  bn_momentum = options.pop("bn_momentum", None)
  layers = with_bn_momentum(PRESETS[name](num_classes=num_classes, **options), bn_momentum)
  return sequential.build(layers, axis_name=axis_name, weights_path=weights_path,
                          name=name, dtype=dtype)
