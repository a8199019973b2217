"""jaxcnn.visualize.lectures: lecture 004's activation and optimizer figures.

Derivatives are checked against their closed forms, and optimizer paths
against the lecture's update equations written out in NumPy.
"""

import numpy as np
import pytest

from jaxcnn import visualize as vis
from jaxcnn.models import activations
from jaxcnn.visualize import lectures

# Away from z = 0, where ReLU-like functions have a kink.
Z = np.array([-3.0, -1.0, -0.25, 0.25, 1.0, 3.0])


def _closed_forms(z, leaky_alpha, elu_alpha):
  sig = 1 / (1 + np.exp(-z))
  a, lam = activations.SELU_ALPHA, activations.SELU_SCALE
  return {
      "sigmoid": sig * (1 - sig),
      "tanh": 1 - np.tanh(z) ** 2,
      "relu": (z > 0).astype(float),
      "leaky_relu": np.where(z > 0, 1.0, leaky_alpha),
      "elu": np.where(z > 0, 1.0, elu_alpha * np.exp(z)),
      "selu": lam * np.where(z > 0, 1.0, a * np.exp(z)),
  }


def test_activation_derivatives_equal_closed_forms():
  curves = vis.activation_curves(Z, leaky_alpha=0.01, elu_alpha=1.5)
  assert tuple(curves) == lectures.ACTIVATIONS
  for name, expected in _closed_forms(Z, 0.01, 1.5).items():
    np.testing.assert_allclose(curves[name][1], expected, rtol=1e-5, err_msg=name)
  # The values are the lecture's definitions too: LeakyReLU = max(alpha z, z), ...
  np.testing.assert_allclose(curves["leaky_relu"][0], np.maximum(0.01 * Z, Z), rtol=1e-6)
  np.testing.assert_allclose(curves["elu"][0], np.where(Z < 0, 1.5 * (np.exp(Z) - 1), Z),
                             rtol=1e-5)
  with pytest.raises(ValueError, match="valid"):
    vis.activation_curves(Z, names=("swish",))


def _grad(loss, p):
  """Central differences: a gradient independent of jax.grad."""
  h = 1e-4
  return np.array([(loss(p + h * e) - loss(p - h * e)) / (2 * h) for e in np.eye(2)])


def _bowl(p):
  return 0.05 * p[0] ** 2 + p[1] ** 2


def _lecture_steps(name, start, n, lr, beta=0.9, beta2=0.999, eps=1e-7):
  """The lecture 004 equations, step by step, in float64."""
  theta, m, s = np.array(start, float), np.zeros(2), np.zeros(2)
  out = [theta.copy()]
  for t in range(1, n + 1):
    if name == "momentum":
      m = beta * m - lr * _grad(_bowl, theta)
      theta = theta + m
      out.append(theta.copy())
    elif name == "nesterov":
      m = beta * m - lr * _grad(_bowl, theta + beta * m)
      theta = theta + m
      # Keras (and jaxcnn) keep the look-ahead point theta + beta m as the params.
      out.append(theta + beta * m)
    elif name == "rmsprop":
      g = _grad(_bowl, theta)
      s = beta * s + (1 - beta) * g * g
      theta = theta - lr * g / np.sqrt(s + eps)
      out.append(theta.copy())
    elif name == "adam":
      g = _grad(_bowl, theta)
      m = beta * m + (1 - beta) * g
      s = beta2 * s + (1 - beta2) * g * g
      # The lecture prints 1 - beta_2^t under m; Adam's m-hat uses beta_1.
      m_hat, s_hat = m / (1 - beta ** t), s / (1 - beta2 ** t)
      theta = theta - lr * m_hat / np.sqrt(s_hat + eps)
      out.append(theta.copy())
  return np.array(out)


@pytest.mark.parametrize("label", ["momentum", "nesterov", "rmsprop", "adam"])
def test_optimizer_paths_follow_the_lecture_equations(label):
  config = lectures.OPTIMIZER_PATHS[label]
  start = lectures.TOY_STARTS["bowl"]
  path = vis.optimizer_path("bowl", config, start, steps=5)
  assert path.shape == (6, 2)
  expected = _lecture_steps(label, start, 5, config["learning_rate"])
  np.testing.assert_allclose(path, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("loss", sorted(lectures.TOY_LOSSES))
def test_optimizer_paths_descend(loss):
  fn = lectures.TOY_LOSSES[loss]
  paths = vis.optimizer_paths(loss)
  assert set(paths) == {"momentum", "nesterov", "rmsprop", "adam"}
  for label, path in paths.items():
    first, last = float(fn(path[0])), float(fn(path[-1]))
    assert last < 0.5 * first, (label, first, last)


def test_lecture_figures_write_pngs(tmp_path):
  fig = vis.plot_activations(path=tmp_path / "activations.png", dpi=50)
  assert [len(ax.lines) for ax in fig.axes] == [6 + 2, 6 + 2]  # 6 curves + the axes lines
  fig = vis.plot_optimizer_paths("rosenbrock", steps=50, path=tmp_path / "paths.png", dpi=50)
  assert (tmp_path / "activations.png").stat().st_size > 0
  assert (tmp_path / "paths.png").stat().st_size > 0
  labels = [line.get_label() for line in fig.axes[0].lines]
  assert labels[:4] == ["momentum", "nesterov", "rmsprop", "adam"]
  with pytest.raises(ValueError, match="valid"):
    vis.optimizer_paths("himmelblau")
