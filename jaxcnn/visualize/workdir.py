"""Every figure of a trained workdir, written to ``<workdir>/plots/`` (``--mode=visualize``).

::

  python -m jaxcnn.main --config=experiments/fashion_mnist_cnn.py --workdir=DIR --mode=visualize
  paths = jaxcnn.run.run(config, DIR, "visualize")    # the same from a notebook
  paths = jaxcnn.visualize.plot_workdir(None, DIR)     # DIR's own config.json as is

The model and its weights come from the workdir's latest checkpoint; the test
images come through the input pipeline of the config given, which
``--mode=visualize`` resolves once (``jaxcnn.run.workdir_config``: the
workdir's own ``config.json``, so the dataset and normalization are the ones
the model was trained with, with this machine's data location). A model
without conv layers (an MLP) gets its training curves (and depth diagnostics) only.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxcnn.visualize import _tree
from jaxcnn.visualize._figure import finish, new_figure
from jaxcnn.visualize.activations import feature_maps, plot_feature_maps
from jaxcnn.visualize.classic import plot_classic_kernels
from jaxcnn.visualize.depth import plot_depth_statistics
from jaxcnn.visualize.filters import _is_conv, conv_kernel, plot_filters
from jaxcnn.visualize.heatmaps import class_heatmap, plot_class_heatmap
from jaxcnn.visualize.history import HISTORY_FILE, load_history, plot_history
from jaxcnn.visualize.patterns import plot_filter_patterns

PLOTS_DIR = "plots"
# Spec types whose outputs are spatial feature maps (lecture 003 shows the
# conv and max-pooling layers of its activation model).
_FEATURE_MAP_TYPES = ("conv2d", "max_pooling2d", "average_pooling2d")
# Lecture 003's activation model takes the first 8 layers, and it draws the
# filter patterns of four conv layers (one per VGG16 block).
_MAX_FEATURE_MAP_LAYERS = 8
_MAX_PATTERN_LAYERS = 4
# Depth diagnostics: initialization, the last epoch and evenly spaced epochs
# between them, as many lines as one panel can tell apart.
_MAX_DEPTH_EPOCHS = 6


def conv_layer_names(model: nn.Module, variables: Mapping[str, Any]) -> list[str]:
  """Names of the model's 2-D conv layers, in the order they run.

  A ``jaxcnn.models.Sequential`` lists them from its layer specs; any other
  linen module from its parameters (every node with a 4-D ``kernel``).
  """
  layers = getattr(model, "layers", None)
  if layers is not None and all(hasattr(s, "type") for s in layers):
    return [spec.name for spec in layers if spec.type == "conv2d"]
  return list(_tree.named_nodes(variables.get("params", variables), _is_conv))


def feature_map_layer_names(model: nn.Module, variables: Mapping[str, Any]) -> list[str]:
  """The conv and pooling layers whose outputs are feature maps (at most 8)."""
  layers = getattr(model, "layers", None)
  if layers is not None and all(hasattr(s, "type") for s in layers):
    names = [spec.name for spec in layers if spec.type in _FEATURE_MAP_TYPES]
  else:
    names = conv_layer_names(model, variables)
  return names[:_MAX_FEATURE_MAP_LAYERS]


def _dataset_config(config: ml_collections.ConfigDict,
                    num_images: int) -> ml_collections.ConfigDict:
  """A copy of ``config.dataset`` that reads only ``num_images`` test images."""
  dataset = ml_collections.ConfigDict(config.dataset.to_dict())
  dataset.num_test_examples = num_images
  # Augmentation is for training only; an empty section builds nothing.
  dataset.augmentation = ml_collections.ConfigDict()
  return dataset


def _pixels(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
  """Normalized model inputs back to displayable [0, 1] pixels."""
  return np.clip(images * std + mean, 0.0, 1.0)


def _slug(text: str) -> str:
  return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def plot_test_images(images: np.ndarray, labels: Sequence[int], probs: np.ndarray,
                     class_names: Sequence[str], *, mean: np.ndarray, std: np.ndarray,
                     path: str | None = None, dpi: int = 100):
  """The images whose feature maps are drawn, with true and predicted classes.

  Args:
    images: (N, H, W, C) normalized model inputs.
    labels: (N,) true classes.
    probs: (N, K) predicted probabilities.
    class_names: K names.
    mean, std: the normalization ``(x / 255 - mean) / std``, undone for display.
    path: where to save the PNG, if anywhere.
    dpi: pixels per inch.

  Returns:
    The Figure: one 2.2-inch panel per image.
  """
  n = len(images)
  fig = new_figure(2.2 * n, 2.6, dpi)
  axes = np.atleast_1d(fig.subplots(1, n, subplot_kw={"xticks": (), "yticks": ()}))
  shown = _pixels(np.asarray(images), mean, std)
  for i, ax in enumerate(axes):
    image = shown[i]
    if image.shape[-1] == 1:
      ax.imshow(image[..., 0], cmap="gray_r", vmin=0, vmax=1)
    else:
      ax.imshow(image)
    pred = int(np.argmax(probs[i]))
    right = pred == int(labels[i])
    ax.set_title(f"image {i}: {class_names[int(labels[i])]}\npredicted {class_names[pred]} "
                 f"({probs[i, pred]:.2f})", fontsize=8, color="black" if right else "C3")
  return finish(fig, path)


def _pattern_inputs(conv_name: str, variables, num_filters: int,
                    image_shape: tuple[int, ...], mean: np.ndarray, std: np.ndarray,
                    seed: int) -> tuple[np.ndarray, tuple[float, float]]:
  """Starting noise and ``value_range`` for gradient ascent in the model's input scale.

  The lecture's gray noise ``random * 20 + 128`` is drawn in pixels and
  normalized exactly as the data was (per channel or per pixel); the step
  scale uses the mean range of one pixel, ``((0 - mean) / std, (1 - mean) / std)``.
  """
  count = min(num_filters, conv_kernel(variables, conv_name).shape[-1])
  noise = np.random.default_rng(seed).uniform(size=(count, *image_shape))
  init = (((noise * 20.0 + 128.0) / 255.0) - mean) / std
  low = float(np.mean((0.0 - mean) / std * np.ones(image_shape)))
  high = float(np.mean((1.0 - mean) / std * np.ones(image_shape)))
  return init.astype(np.float32), (low, high)


class _Output:
  """The ``plots/`` folder of a workdir and the figures written to it.

  Several hosts share one workdir: only process 0 writes, as for the logs.
  """

  def __init__(self, out_dir: str):
    self.dir = out_dir
    self.written: list[str] = []
    self.writer = jax.process_index() == 0

  def save(self, fig, name: str) -> None:
    if self.writer:
      path = os.path.join(self.dir, name)
      finish(fig, path)
      self.written.append(path)

  def report(self) -> list[str]:
    """Prints what was written (process 0) and returns the paths."""
    if self.writer:
      print(f"Wrote {len(self.written)} figure(s) to {self.dir}:")
      for path in self.written:
        print(f"  {path}")
    return self.written


def _plot_curves(out: _Output, workdir: str, title: str, dpi: int) -> None:
  """``history.png``, or a note when no epoch has finished yet."""
  if not os.path.exists(os.path.join(workdir, HISTORY_FILE)):
    print(f"Note: no {HISTORY_FILE} in {workdir} (no epoch finished yet): no training curves.")
    return
  history = load_history(workdir)
  # A constant learning rate is a flat line: worth a panel only when scheduled.
  rates = [r for r in history.get("lr", []) if r == r]
  out.save(plot_history(history, style="panels", show_lr=len(set(rates)) > 1,
                        title=title, dpi=dpi), "history.png")


def depth_epochs(rows: Sequence[Mapping[str, Any]],
                 max_lines: int = _MAX_DEPTH_EPOCHS) -> dict[str, Mapping[str, Any]]:
  """``{label: row}`` of ``depth_diagnostics.json``'s rows to draw, by epoch.

  Every epoch when there are at most ``max_lines``; else the first
  (initialization), the last and evenly spaced epochs between them.
  """
  rows = sorted(rows, key=lambda r: r["epoch"])
  picked = sorted({int(i) for i in np.linspace(0, len(rows) - 1, min(len(rows), max_lines))
                   .round()}) if rows else []
  return {("initialization" if rows[i]["epoch"] == 0 else f"epoch {rows[i]['epoch']}"): rows[i]
          for i in picked}


def _plot_depth(out: _Output, workdir: str, title: str, population: bool, dpi: int) -> None:
  """``depth_diagnostics.png`` when the run logged ``training.depth_diagnostics``."""
  # Imported here: it pulls jaxcnn.parallel, which the plots do not need.
  from jaxcnn import diagnostics  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, diagnostics.JSON_FILE)
  if not os.path.exists(path):
    return
  with open(path) as f:
    rows = json.load(f)
  if not rows:
    print(f"Note: {path} holds no epoch yet: no depth diagnostics figure.")
    return
  # train.fit computes them for member 0 of a population only.
  title = f"{title}: depth diagnostics" + (" (member 0)" if population else "")
  out.save(plot_depth_statistics(depth_epochs(rows), title=title, dpi=dpi),
           "depth_diagnostics.png")


def _pattern_layer_list(pattern_layers: Sequence[str] | str | None, convs: Sequence[str],
                        model_name: str) -> list[str]:
  """The conv layers whose filter patterns are drawn; default the first four."""
  if pattern_layers is None:
    pattern_layers = convs[:_MAX_PATTERN_LAYERS]
  pattern_layers = [pattern_layers] if isinstance(pattern_layers, str) else list(pattern_layers)
  unknown = [name for name in pattern_layers if name not in convs]
  if unknown:
    raise ValueError(f"pattern_layers {unknown} are not conv layers of "
                     f"{model_name}; valid: {convs}")
  return pattern_layers


def _test_images(config: ml_collections.ConfigDict, num_images: int):
  """The first ``num_images`` test images, their labels and the dataset info."""
  # Imported here: it pulls TensorFlow, which the plotting functions of this
  # package do not need.
  from jaxcnn import data as data_lib  # pylint: disable=g-import-not-at-top
  data = data_lib.create(_dataset_config(config, num_images),
                         global_batch_size=jax.device_count(), seed=config.seed)
  images, labels = data.as_numpy("test")
  return images[:num_images], labels[:num_images], data.info


def _probabilities(model: nn.Module, variables, images: np.ndarray) -> np.ndarray:
  """Class probabilities; one logit z is the binary classifier softmax([0, z])."""
  logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)
  if logits.shape[-1] == 1:
    logits = jnp.concatenate([jnp.zeros_like(logits), logits], axis=-1)
  return np.asarray(jax.nn.softmax(logits.astype(jnp.float32), axis=-1))


def _plot_images_and_maps(out: _Output, model: nn.Module, variables, images: np.ndarray,
                          labels: np.ndarray, info, dpi: int) -> None:
  """``test_images.png`` and one ``feature_maps_<i>_<class>.png`` per image."""
  mean, std = np.asarray(info.mean, np.float32), np.asarray(info.std, np.float32)
  probs = _probabilities(model, variables, images)
  out.save(plot_test_images(images, labels, probs, info.class_names, mean=mean, std=std,
                            dpi=dpi), "test_images.png")
  maps = feature_maps(model, variables, images, feature_map_layer_names(model, variables))
  for i in range(len(images)):
    out.save(plot_feature_maps(maps, image_index=i, dpi=dpi),
             f"feature_maps_{i}_{_slug(info.class_names[int(labels[i])])}.png")
  # Lecture 003's third view: where the predicted class's evidence lies, at
  # the last conv layer (Grad-CAM).
  heatmaps = class_heatmap(model, variables, images)
  out.save(plot_class_heatmap(_pixels(images, mean, std), heatmaps,
                              class_names=info.class_names, dpi=dpi),
           f"class_heatmaps_{_slug(heatmaps.layer)}.png")


def _plot_patterns(out: _Output, model: nn.Module, variables, layers: Sequence[str], info, *,
                   num_patterns: int, steps: int, step_size: float, seed: int,
                   dpi: int) -> None:
  """One ``filter_patterns_<layer>.png`` per layer, ascended in the model's input scale."""
  mean, std = np.asarray(info.mean, np.float32), np.asarray(info.std, np.float32)
  for layer in layers:
    init, value_range = _pattern_inputs(layer, variables, num_patterns, info.image_shape,
                                        mean, std, seed)
    out.save(plot_filter_patterns(model, variables, layer, input_shape=info.image_shape,
                                  num_filters=num_patterns, steps=steps,
                                  step_size=step_size, value_range=value_range,
                                  init=init, dpi=dpi),
             f"filter_patterns_{_slug(layer)}.png")


def _plot_classic(out: _Output, dpi: int) -> None:
  """``classic_kernels.png``, or a note when scikit-learn (the photo) is missing."""
  try:
    out.save(plot_classic_kernels(dpi=dpi), "classic_kernels.png")
  except ImportError as e:
    print(f"Note: no classic kernels figure ({e}).")


def plot_workdir(config: ml_collections.ConfigDict | None, workdir: str, *,
                 num_images: int = 3, pattern_layers: Sequence[str] | None = None,
                 num_patterns: int = 64, pattern_steps: int = 40,
                 pattern_step_size: float = 1.0, seed: int = 0,
                 classic_kernels: bool = True, dpi: int = 100,
                 member: int | None = None) -> list[str]:
  """Writes the figures of a trained workdir into ``<workdir>/plots/``.

  * ``history.png``: accuracy and loss per epoch, train vs validation (from
    ``history.json``; lecture 003's two panels), and the learning rate when
    a schedule changed it; the training part in evaluation mode
    (``training.eval_train``) and ``data_loss`` (where a penalty makes it
    differ from ``loss``) where the history has them.
  * ``depth_diagnostics.png``: when the run logged
    ``training.depth_diagnostics`` (``depth_diagnostics.json``), the std per
    layer of activations and gradients at initialization and after up to
    five epochs (lecture 004's vanishing gradients; a population's member 0).
  * ``filters_<layer>.png``: the kernels of the first conv layer (one tile
    per filter) and of the second (one tile per input/output pair), as in
    lecture 002.
  * ``test_images.png`` and ``feature_maps_<i>_<class>.png``: a few test
    images with the model's predictions, and for each the outputs of the
    conv and pooling layers, tiled as lecture 003's activation model.
  * ``class_heatmaps_<layer>.png``: for the same images, the Grad-CAM
    heatmap of the predicted class at the last conv layer and the two
    superimposed (lecture 003's class activation map; ``class_heatmap``).
  * ``filter_patterns_<layer>.png``: for each of the first four conv
    layers, the inputs its filters respond to most (lecture 003's gradient
    ascent from gray noise, in the model's input scale). A filter that gray
    noise does not excite anywhere (ReLU output 0, so no gradient) keeps its
    noise: deeper layers have more of them.
  * ``classic_kernels.png``: the Gaussian, gradient and GIMP kernels on a
    photograph (lectures 002 and 003); needs scikit-learn for the photo.

  A model without conv layers gets ``history.png`` and
  ``depth_diagnostics.png`` only (a note says so).

  Args:
    config: the workdir's config, used as given (``--mode=visualize`` passes
      ``jaxcnn.run.workdir_config``'s: the workdir's ``config.json`` with
      this machine's data location). Its ``dataset`` and ``seed`` read the
      test images; None reads the workdir's ``config.json`` alone.
    workdir: a training workdir (``config.json``, ``checkpoints/``,
      ``history.json``).
    num_images: test images whose feature maps are drawn.
    pattern_layers: conv layers whose filter patterns are drawn; default
      the first four (all when fewer); () draws none.
    num_patterns: at most this many filters per grid (the lecture's 64).
    pattern_steps: gradient ascent steps (the lecture's 40).
    pattern_step_size: step in 0..255 pixel units (the lecture's 1).
    seed: seed of the starting noise of the patterns.
    classic_kernels: also draw the classic kernels figure.
    dpi: pixels per inch of every PNG.
    member: a population workdir's member (required there); its figures go
      to ``plots/member_<i>/`` (the curves are the population's mean ± std).

  Returns:
    The paths written, in the order above (none on processes other than 0).

  Raises:
    FileNotFoundError: the workdir has no config.json or no checkpoint.
    ValueError: ``num_images`` < 1, or ``pattern_layers`` names a layer that
      is not a conv layer (the message lists those that are).
  """
  # Imported here: it pulls Orbax, which the plotting functions of this
  # package do not need.
  from jaxcnn import state  # pylint: disable=g-import-not-at-top

  if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
    raise ValueError(f"num_images must be an integer >= 1, got {num_images!r}")
  workdir = os.path.abspath(workdir)
  if config is None:
    config = state.read_config(workdir)
  model, variables, _ = state.load_for_inference(workdir, member=member)
  out = _Output(os.path.join(workdir, PLOTS_DIR,
                             *([f"member_{member}"] if member is not None else [])))
  title = f"{config.model.name} on {config.dataset.name}"
  _plot_curves(out, workdir, title, dpi)
  _plot_depth(out, workdir, title, config.get("training", {}).get("population", 1) > 1, dpi)
  convs = conv_layer_names(model, variables)
  if not convs:
    print(f"Note: {config.model.name} has no conv layers: only the training curves (and "
          "depth diagnostics) are drawn (filters, feature maps and filter patterns need a "
          "CNN).")
    return out.report()
  pattern_layers = _pattern_layer_list(pattern_layers, convs, config.model.name)
  for name in convs[:2]:
    out.save(plot_filters(variables, name, dpi=dpi), f"filters_{_slug(name)}.png")
  images, labels, info = _test_images(config, num_images)
  _plot_images_and_maps(out, model, variables, images, labels, info, dpi)
  _plot_patterns(out, model, variables, pattern_layers, info, num_patterns=num_patterns,
                 steps=pattern_steps, step_size=pattern_step_size, seed=seed, dpi=dpi)
  if classic_kernels:
    _plot_classic(out, dpi)
  return out.report()
