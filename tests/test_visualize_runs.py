"""Figures of real tiny runs on scikit-learn's digits (offline, a few seconds each).

* the history plot draws ``data_loss`` (an l2 penalty makes it differ from
  ``loss``) and ``train_eval_*`` (``training.eval_train``), single runs and
  populations, smoothed or not, and a history without them as before;
* ``--mode=visualize`` writes ``depth_diagnostics.png`` when the run logged
  ``training.depth_diagnostics``, and nothing more without;
* ``--mode=visualize`` on a feature-extraction workdir (the head trained on
  cached base outputs, ``models.from_layer``): Grad-CAM of the whole model.
"""

import json
import os
import struct

import numpy as np
import pytest

from jaxcnn import config as config_lib
from jaxcnn import diagnostics
from jaxcnn import models
from jaxcnn import run
from jaxcnn import state as state_lib
from jaxcnn import visualize
from jaxcnn.models import freezing
from jaxcnn.visualize import workdir as workdir_lib

# What plot_history drew before train_eval_* and data_loss were drawn.
TWIN = (["accuracy", "val_accuracy"], ["loss", "val_loss"])
PANELS = (["training accuracy", "validation accuracy"], ["training loss", "validation loss"])


def _digits_config(data_dir, *, l2=0.0, eval_train=False, depth=False, population=1,
                   model="mlp"):
  c = config_lib.defaults()
  c.dataset.name = "sklearn_digits"
  c.dataset.data_dir = data_dir
  c.dataset.num_train_examples = 160  # 128 train (8 steps of 16) + 32 validation
  c.dataset.validation_split = 32
  c.dataset.num_test_examples = 32
  c.model.name = model
  if model == "mlp":
    c.model.hidden_units = (16,)
    c.model.dropout_rate = 0.3  # train-mode accuracy then differs from eval mode
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.05
  c.regularization.l2 = l2
  c.training.batch_size = 16
  c.training.num_epochs = 2
  c.training.progress_bar = False
  c.training.eval_train = eval_train
  c.training.depth_diagnostics = depth
  c.training.population = population
  return c


@pytest.fixture(scope="module")
def runs(digits_dir, tmp_path_factory):
  """Workdirs of three 2-epoch MLP runs: {'full', 'population', 'plain'} -> (config, dir)."""
  configs = {
      "full": _digits_config(digits_dir, l2=1e-2, eval_train=True, depth=True),
      "population": _digits_config(digits_dir, l2=1e-2, eval_train=True, population=2),
      "plain": _digits_config(digits_dir),
  }
  out = {}
  for name, config in configs.items():
    workdir = str(tmp_path_factory.mktemp(name))
    run.run(config, workdir, "train")
    out[name] = (config, workdir)
  return out


def _history(workdir):
  with open(os.path.join(workdir, "history.json")) as f:
    return json.load(f)


def _labels(ax):
  return [line.get_label() for line in ax.lines]


def _ydata(ax, label):
  (line,) = [line for line in ax.lines if line.get_label() == label]
  return np.asarray(line.get_ydata(), np.float64)


# ---------------------------------------------------------------- history keys


def test_history_plot_draws_train_eval_and_data_loss(runs):
  workdir = runs["full"][1]
  h = _history(workdir)
  assert h["data_loss"] != h["loss"]  # the l2 penalty is in loss only
  assert len(h["train_eval_accuracy"]) == len(h["train_eval_loss"]) == 2
  ax, twin = visualize.plot_history(workdir).axes
  assert _labels(ax) == ["accuracy", "val_accuracy", "train_eval_accuracy"]
  assert _labels(twin) == ["loss", "data_loss", "val_loss", "train_eval_loss"]
  for axis, key in ((ax, "train_eval_accuracy"), (twin, "data_loss"),
                    (twin, "train_eval_loss"), (twin, "loss")):
    np.testing.assert_array_equal(_ydata(axis, key), h[key])
  acc, loss = visualize.plot_history(workdir, style="panels").axes
  assert _labels(acc) == PANELS[0] + ["training accuracy (eval mode)"]
  assert _labels(loss) == ["training loss", "training data loss (no penalty)",
                           "validation loss", "training loss (eval mode)"]
  np.testing.assert_array_equal(_ydata(loss, "training data loss (no penalty)"), h["data_loss"])
  np.testing.assert_array_equal(_ydata(acc, "training accuracy (eval mode)"),
                                h["train_eval_accuracy"])
  # Smoothed like every other metric.
  acc, loss = visualize.plot_history(workdir, style="panels", smooth=0.5).axes
  for axis, label, key in ((acc, "training accuracy (eval mode)", "train_eval_accuracy"),
                           (loss, "training loss (eval mode)", "train_eval_loss"),
                           (loss, "training data loss (no penalty)", "data_loss")):
    smoothed = visualize.smooth_curve(h[key], 0.5)
    assert smoothed != h[key]
    np.testing.assert_allclose(_ydata(axis, label), smoothed, rtol=1e-12)
  # The ladder's overlay of runs draws them too.
  acc, loss = visualize.plot_histories({"full": workdir}).axes
  assert _labels(acc) == ["full validation", "full train", "full train (eval mode)"]
  assert _labels(loss) == ["full validation", "full train", "full train (eval mode)",
                           "full train data loss"]
  np.testing.assert_array_equal(_ydata(loss, "full train data loss"), h["data_loss"])


def test_population_history_draws_them_as_mean_and_band(runs):
  workdir = runs["population"][1]
  h = _history(workdir)
  assert len(h["members"]) == 2 and "train_eval_accuracy" in h["members"][1]
  acc, loss = visualize.plot_history(workdir, style="panels", smooth=0.8).axes
  assert _labels(acc) == PANELS[0] + ["training accuracy (eval mode)"]
  assert "training data loss (no penalty)" in _labels(loss)
  mean = [np.mean([m["train_eval_loss"][e] for m in h["members"]]) for e in range(2)]
  np.testing.assert_allclose(_ydata(loss, "training loss (eval mode)"),
                             visualize.smooth_curve(mean, 0.8), rtol=1e-9)
  # Each mean has its ±std band (one per line), the std smoothed as the mean.
  assert len(acc.collections) == len(acc.lines) and len(loss.collections) == len(loss.lines)
  band = acc.collections[acc.lines.index(
      next(line for line in acc.lines if line.get_label() == "training accuracy (eval mode)"))]
  top = band.get_paths()[0].vertices[:, 1].max()
  m, s = (visualize.smooth_curve(h[k], 0.8) for k in ("train_eval_accuracy",
                                                      "train_eval_accuracy_std"))
  assert s[-1] > 0 and top == pytest.approx(max(np.add(m, s)), rel=1e-6)


def test_a_history_without_them_plots_as_before(runs):
  workdir = runs["plain"][1]
  h = _history(workdir)
  assert h["data_loss"] == h["loss"] and "train_eval_loss" not in h  # no penalty, no eval
  ax, twin = visualize.plot_history(workdir).axes
  assert (_labels(ax), _labels(twin)) == TWIN
  acc, loss = visualize.plot_history(workdir, style="panels", smooth=0.8).axes
  assert (_labels(acc), _labels(loss)) == PANELS
  acc, loss = visualize.plot_histories({"plain": workdir}).axes
  assert _labels(acc) == _labels(loss) == ["plain validation", "plain train"]


# ---------------------------------------------------------------- depth diagnostics


def _png_size(path):
  with open(path, "rb") as f:
    header = f.read(24)
  return struct.unpack(">II", header[16:24])


def test_visualize_mode_plots_the_depth_diagnostics(runs, monkeypatch, capsys):
  config, workdir = runs["full"]
  drawn = []
  real = workdir_lib.plot_depth_statistics
  monkeypatch.setattr(workdir_lib, "plot_depth_statistics",
                      lambda stats, **kw: drawn.append(stats) or real(stats, **kw))
  capsys.readouterr()
  paths = run.run(config, workdir, "visualize")
  plots = os.path.join(workdir, "plots")
  assert paths == [os.path.join(plots, "history.png"),
                   os.path.join(plots, "depth_diagnostics.png")]
  assert os.path.join(plots, "depth_diagnostics.png") in capsys.readouterr().out
  assert _png_size(paths[1]) == (1500, 450)
  # What was drawn: the rows of depth_diagnostics.json, by epoch.
  with open(os.path.join(workdir, diagnostics.JSON_FILE)) as f:
    rows = json.load(f)
  (stats,) = drawn
  assert list(stats) == ["initialization", "epoch 1", "epoch 2"]
  for row, drawn_row in zip(rows, stats.values()):
    assert drawn_row["layers"] == ["dense", "dense_1"]
    for key in diagnostics.STATISTICS:
      np.testing.assert_array_equal(drawn_row[key], row[key])


def test_visualize_mode_without_depth_diagnostics_writes_no_such_plot(runs):
  config, workdir = runs["plain"]
  assert not os.path.exists(os.path.join(workdir, diagnostics.JSON_FILE))
  paths = run.run(config, workdir, "visualize")
  assert paths == [os.path.join(workdir, "plots", "history.png")]
  assert not os.path.exists(os.path.join(workdir, "plots", "depth_diagnostics.png"))


def test_depth_epochs_keep_the_first_the_last_and_evenly_spaced_ones():
  rows = [{"epoch": e, "activation_std": [float(e)]} for e in range(20, -1, -1)]
  picked = workdir_lib.depth_epochs(rows)
  assert list(picked) == ["initialization", "epoch 4", "epoch 8", "epoch 12", "epoch 16",
                          "epoch 20"]
  assert [r["epoch"] for r in picked.values()] == [0, 4, 8, 12, 16, 20]
  assert list(workdir_lib.depth_epochs(rows[-3:])) == ["initialization", "epoch 1", "epoch 2"]


# ---------------------------------------------------------------- feature extraction


def test_visualize_mode_on_a_feature_extraction_workdir(digits_dir, tmp_path):
  """The head trained on cached features; the figures are the whole model's, from images."""
  config = _digits_config(digits_dir, model="cnn_small")
  config.training.num_epochs = 1
  config.regularization.freeze = freezing.freeze_before(config.model, "flatten")
  config.transfer.feature_extraction = True
  workdir = str(tmp_path / "features")
  run.run(config, workdir, "train")
  paths = visualize.plot_workdir(run.workdir_config(workdir, config), workdir, num_images=2,
                                 pattern_layers=(), classic_kernels=False)
  assert os.path.join(workdir, "plots", "class_heatmaps_conv2d_1.png") in paths
  # The head the run trained (models.from_layer of the frozen train model)
  # gives the whole model's heatmap at a conv layer of its frozen base.
  model, variables, _ = state_lib.load_for_inference(workdir)
  k = freezing.base_end(model, variables["params"], config.regularization.freeze)
  assert model.layer_names[k - 1] == "flatten"
  train_model = freezing.train_model_for(model, variables["params"],
                                         config.regularization.freeze)
  images, _, _ = workdir_lib._test_images(run.workdir_config(workdir, config), 4)
  for layer in ("conv2d", "conv2d_1"):
    whole = visualize.class_heatmap(model, variables, images, layer=layer)
    for head in (models.from_layer(model, k), models.from_layer(train_model, k)):
      result = visualize.class_heatmap(head, variables, images, layer=layer)
      np.testing.assert_allclose(result.weights, whole.weights, rtol=1e-5, atol=1e-9)
      np.testing.assert_allclose(result.heatmap, whole.heatmap, rtol=1e-5, atol=1e-6)
      assert np.abs(result.weights).max() > 0
