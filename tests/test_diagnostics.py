"""Depth diagnostics (jaxcnn.diagnostics) and the deep-MLP ladder at initialization.

The statistics are checked against independent computations (the whole
model's ``jax.grad`` for the kernel gradients, ``capture_intermediates`` for
the activations, a hand-written backward pass for ``dL/da``), then the
ladder's rungs against lecture 004's claims, on a standardized batch
(N(0, 1) pixels: what per-pixel standardization gives), no training.
"""

import json
import os

import jax
import numpy as np
import pytest

from jaxcnn import config as config_lib
from jaxcnn import diagnostics
from jaxcnn import models
from jaxcnn import parallel
from jaxcnn import visualize

EXPERIMENT = os.path.join(os.path.dirname(__file__), "..", "experiments", "deep_mlp.py")


def _batch(n=256):
  rng = np.random.RandomState(0)
  return (rng.randn(n, 28, 28, 1).astype(np.float32),
          rng.randint(0, 10, n).astype(np.int32))


def _rung(member):
  config = config_lib.load(f"{EXPERIMENT}:{member}")
  model = models.create(config.model, num_classes=10)
  images, labels = _batch()
  variables = model.init(jax.random.PRNGKey(0), images[:1])
  return diagnostics.depth_statistics(model, variables, images, labels)


def test_statistics_equal_independent_computations():
  model = models.create({"name": "mlp", "hidden_units": (16, 8), "activation": "tanh"},
                        num_classes=3)
  images, labels = _batch(32)
  labels = labels % 3
  variables = model.init(jax.random.PRNGKey(1), images[:1])
  stats = diagnostics.depth_statistics(model, variables, images, labels)
  assert stats["layers"] == ["dense", "dense_1", "dense_2"]

  # Kernel gradients: jax.grad of the whole model's mean loss.
  loss = lambda p: parallel.cross_entropy(
      model.apply({"params": p}, images), labels).mean()
  grads = jax.grad(loss)(variables["params"])
  for i, name in enumerate(stats["layers"]):
    k = np.asarray(grads[name]["kernel"])
    np.testing.assert_allclose(stats["kernel_grad_std"][i], k.std(), rtol=1e-5)
    np.testing.assert_allclose(stats["kernel_grad_mean"][i], k.mean(), rtol=1e-4,
                               atol=1e-9)

  # Activations: the outputs capture_intermediates records.
  outputs = visualize.layer_outputs(model, variables, images, stats["layers"])
  for i, name in enumerate(stats["layers"]):
    np.testing.assert_allclose(stats["activation_std"][i], np.std(outputs[name]), rtol=1e-5)
    np.testing.assert_allclose(stats["activation_mean"][i], np.mean(outputs[name]),
                               rtol=1e-4, atol=1e-7)

  # dL/da by hand: softmax - onehot at the logits, then back through tanh layers.
  p = variables["params"]
  a1, a2, logits = (np.asarray(outputs[n], np.float64) for n in stats["layers"])
  probs = np.exp(logits - logits.max(1, keepdims=True))
  probs /= probs.sum(1, keepdims=True)
  g3 = (probs - np.eye(3)[labels]) / len(labels)
  g2 = g3 @ np.asarray(p["dense_2"]["kernel"], np.float64).T
  g1 = (g2 * (1 - a2 ** 2)) @ np.asarray(p["dense_1"]["kernel"], np.float64).T
  np.testing.assert_allclose(stats["activation_grad_std"], [g1.std(), g2.std(), g3.std()],
                             rtol=1e-4)


def test_selu_lecun_self_normalizes_through_20_layers():
  stats = _rung("selu_lecun")
  hidden = slice(0, 20)  # the last layer is the logits
  assert len(stats["layers"]) == 21
  std, mean = stats["activation_std"][hidden], stats["activation_mean"][hidden]
  assert np.all((std > 0.9) & (std < 1.1)), std
  assert np.all(np.abs(mean) < 0.05), mean


def test_sigmoid_rungs_saturate_or_vanish():
  normal, glorot = _rung("sigmoid_normal"), _rung("sigmoid_glorot")
  hidden = slice(0, 20)
  # N(0, 1) weights: the pre-activations' variance explodes (std ~ 7), so every
  # sigmoid sits at 0 or 1: output std near its maximum 0.5 at every layer.
  assert np.all(normal["activation_std"][hidden] > 0.4), normal["activation_std"]
  # Glorot with sigmoid (slope 1/4 at 0): the gradient reaching the first
  # layer's kernel is > 10^9 times smaller than the last hidden layer's.
  k = glorot["kernel_grad_std"]
  assert k[0] / k[19] < 1e-9, k
  assert np.all(np.diff(np.log(k[hidden])) > 0), k  # shrinks at every layer
  # N(0, 1): the large weights amplify what saturation loses; the first
  # layer's kernel gradient is smaller, but within 100x (measured ~8x).
  k = normal["kernel_grad_std"]
  assert 1e-2 < k[0] / k[19] < 1, k


@pytest.mark.parametrize("member", ["relu_he", "tanh_glorot"])
def test_he_and_glorot_keep_gradients_within_a_bounded_ratio(member):
  stats = _rung(member)
  hidden = slice(0, 20)
  for key in ("kernel_grad_std", "activation_grad_std"):
    values = stats[key][hidden]
    assert values.max() / values.min() < 10, (key, values)


def test_plot_depth_statistics_writes_a_png(tmp_path):
  stats = {"a": {"activation_std": [1.0, 0.5], "activation_grad_std": [1e-3, 1e-2],
                 "kernel_grad_std": [1e-4, 1e-3]}}
  path = tmp_path / "depth.png"
  fig = visualize.plot_depth_statistics(stats, title="t", path=path)
  assert path.exists() and len(fig.axes) == 3
  assert fig.axes[1].get_yscale() == "log"


def _digits_config(data_dir, depth_diagnostics):
  c = config_lib.defaults()
  c.dataset.name = "sklearn_digits"
  c.dataset.data_dir = data_dir
  c.dataset.num_train_examples = 160  # 128 train (8 steps of 16) + 32 validation
  c.dataset.validation_split = 32
  c.dataset.num_test_examples = 50
  c.model.name = "mlp"
  c.model.hidden_units = (16,)
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.05
  c.training.batch_size = 16
  c.training.num_epochs = 2
  c.training.progress_bar = False
  c.training.depth_diagnostics = depth_diagnostics
  return c


def test_training_logs_them_per_epoch_without_changing_the_run(digits_dir, tmp_path):
  from jaxcnn import state as state_lib
  from jaxcnn import train
  config = _digits_config(digits_dir, True)
  state, _ = train.train_and_evaluate(config, str(tmp_path / "on"))
  plain, _ = train.train_and_evaluate(_digits_config(digits_dir, False),
                                      str(tmp_path / "off"))
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(plain.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not (tmp_path / "off" / diagnostics.JSON_FILE).exists()

  rows = json.loads((tmp_path / "on" / diagnostics.JSON_FILE).read_text())
  assert [r["epoch"] for r in rows] == [0, 1, 2]  # initialization, then each epoch
  assert rows[0]["layers"] == ["dense", "dense_1"]
  # Recomputed independently: the initial state and the final one on the same batch.
  setup = train.build(config, str(tmp_path / "on"))
  images, labels = diagnostics.fixed_batch(setup.data)
  assert images.shape[0] == 32  # the 32 validation images
  init = state_lib.create(config, setup.model, setup.tx, setup.data.info.image_shape)
  for row, variables in ((rows[0], init.variables), (rows[2], state.variables)):
    expected = diagnostics.depth_statistics(setup.model, variables, images, labels)
    for key in diagnostics.STATISTICS:
      np.testing.assert_allclose(row[key], expected[key], rtol=1e-5, atol=1e-9)

  from tensorboard.backend.event_processing import event_accumulator
  events = event_accumulator.EventAccumulator(str(tmp_path / "on" / "tensorboard"))
  events.Reload()
  tags = set(events.Tags()["tensors"]) | set(events.Tags()["scalars"])
  assert {f"depth/{layer}/{key}" for layer in ("dense", "dense_1")
          for key in diagnostics.STATISTICS} <= tags
