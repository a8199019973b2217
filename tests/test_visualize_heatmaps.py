"""visualize.class_heatmap (Grad-CAM, lecture 003's class activation map).

A CNN with hand-set weights whose class evidence is known to lie in one
region: a bright patch drives the 'bright' class, darkness the 'dark' one.
The channel weights are checked against central finite differences of the
model's head and against the gradient written out by hand.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import models
from jaxcnn import visualize

SIZE = 16
BRIGHT, DARK = 1, 0


def _hand_built():
  """Conv 3x3 (2 filters), global average pooling, Dense 2, weights set by hand.

  Filter 0 averages the 3x3 neighbourhood (a brightness detector); filter 1
  is 0.5 minus that average (a darkness detector); both ReLU. The 'bright'
  logit is 10 * mean(ch0) - mean(ch1), the 'dark' one the opposite.
  """
  model = models.create({"name": "sequential", "layers": [
      {"type": "conv2d", "filters": 2, "kernel_size": 3, "padding": "same",
       "activation": "relu"},
      {"type": "global_average_pooling2d"},
      {"type": "dense", "units": 2}]})
  x = jnp.zeros((1, SIZE, SIZE, 1))
  variables = model.init(jax.random.PRNGKey(0), x)
  average = np.full((3, 3, 1, 1), 1 / 9, np.float32)
  params = {
      "conv2d": {"kernel": np.concatenate([average, -average], axis=-1),
                 "bias": np.array([0.0, 0.5], np.float32)},
      "dense": {"kernel": np.array([[-10.0, 10.0], [1.0, -1.0]], np.float32),
                "bias": np.zeros(2, np.float32)},
  }
  assert jax.tree.map(np.shape, params) == jax.tree.map(np.shape, dict(variables["params"]))
  return model, {"params": params}


def _image(quadrant: int, seed: int = 0) -> np.ndarray:
  """Dark noise with a bright 4x4 patch in ``quadrant`` (0..3: TL, TR, BL, BR)."""
  image = np.random.default_rng(seed).uniform(0, 0.05, (SIZE, SIZE, 1)).astype(np.float32)
  r, c = divmod(quadrant, 2)
  r0, c0 = r * SIZE // 2 + 2, c * SIZE // 2 + 2
  image[r0:r0 + 4, c0:c0 + 4] = 1.0
  return image


def _quadrant(heatmap: np.ndarray) -> int:
  r, c = np.unravel_index(np.argmax(heatmap), heatmap.shape)
  return int(r >= heatmap.shape[0] // 2) * 2 + int(c >= heatmap.shape[1] // 2)


def test_heatmap_lies_where_the_class_evidence_is():
  model, variables = _hand_built()
  images = np.stack([_image(q, seed=q) for q in range(4)])
  result = visualize.class_heatmap(model, variables, images)
  assert result.layer == "conv2d" and result.heatmap.shape == (4, SIZE, SIZE)
  np.testing.assert_array_equal(result.class_index, [BRIGHT] * 4)  # predicted
  assert [_quadrant(h) for h in result.heatmap] == [0, 1, 2, 3]
  assert result.heatmap.min() >= 0 and np.allclose(result.heatmap.max(axis=(1, 2)), 1)
  # ReLU: outside the patch (and its 1-pixel conv border) no evidence at all.
  for q, h in enumerate(result.heatmap):
    r, c = divmod(q, 2)
    inside = np.zeros((SIZE, SIZE), bool)
    r0, c0 = r * SIZE // 2 + 2, c * SIZE // 2 + 2
    inside[r0 - 1:r0 + 5, c0 - 1:c0 + 5] = True
    assert (h[~inside] == 0).all() and h[inside].max() == 1
  # The 'dark' class's evidence is everywhere but the patch.
  dark = visualize.class_heatmap(model, variables, images, class_index=DARK)
  for q, h in enumerate(dark.heatmap):
    r, c = divmod(q, 2)
    r0, c0 = r * SIZE // 2 + 2, c * SIZE // 2 + 2
    assert (h[r0 + 1:r0 + 3, c0 + 1:c0 + 3] == 0).all()
    assert (h > 0).mean() > 0.8


def test_weights_are_the_mean_gradient_by_finite_differences_and_by_hand():
  model, variables = _hand_built()
  images = np.stack([_image(1), _image(2, seed=5)])
  result = visualize.class_heatmap(model, variables, images, class_index=[BRIGHT, DARK])
  # By hand: global average pooling then Dense, so d y_c / d A_ijk is
  # kernel[k, c] / (h * w) at every position.
  kernel = variables["params"]["dense"]["kernel"]
  np.testing.assert_allclose(result.weights[0], kernel[:, BRIGHT] / SIZE ** 2, rtol=1e-5)
  np.testing.assert_allclose(result.weights[1], kernel[:, DARK] / SIZE ** 2, rtol=1e-5)
  # Central finite differences of the head (layers after conv2d) at a few
  # positions of each channel, in float64 arithmetic on float32 outputs.
  features = result.feature_maps
  head = lambda a: np.asarray(model.apply(variables, a, start=1), np.float64)  # noqa: E731
  eps = 1e-2
  for n, c in ((0, BRIGHT), (1, DARK)):
    for k in range(2):
      grads = []
      for (i, j) in ((0, 0), (5, 9), (15, 3)):
        plus, minus = features[n:n + 1].copy(), features[n:n + 1].copy()
        plus[0, i, j, k] += eps
        minus[0, i, j, k] -= eps
        grads.append((head(plus)[0, c] - head(minus)[0, c]) / (2 * eps))
      np.testing.assert_allclose(grads, result.weights[n, k], rtol=1e-2)
  # And the heatmap is ReLU(sum_k alpha_k A_k) / max, recomputed here.
  cam = np.maximum(np.einsum("hwc,c->hw", features[0], result.weights[0]), 0)
  np.testing.assert_allclose(result.heatmap[0], cam / cam.max(), rtol=1e-5, atol=1e-6)


def test_layer_by_name_or_index_and_errors():
  model = models.create("cnn_small", num_classes=10)
  x = np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype(np.float32)
  variables = model.init(jax.random.PRNGKey(0), x)
  default = visualize.class_heatmap(model, variables, x)
  assert default.layer == "conv2d_1"  # the last conv layer, as the lecture
  index = model.layer_names.index("conv2d_1")
  by_index = visualize.class_heatmap(model, variables, x, layer=index)
  np.testing.assert_array_equal(by_index.heatmap, default.heatmap)
  first = visualize.class_heatmap(model, variables, x, layer="conv2d")
  assert first.heatmap.shape == (2, 26, 26) and first.layer == "conv2d"
  # The gradient weights of the first layer: jax.grad through the whole model.
  logits = model.apply(variables, x)
  assert (first.class_index == np.argmax(logits, -1)).all()
  with pytest.raises(ValueError, match="the conv layers are conv2d, conv2d_1"):
    visualize.class_heatmap(model, variables, x, layer="conv3")
  with pytest.raises(ValueError, match="a heatmap needs"):
    visualize.class_heatmap(model, variables, x, layer="flatten")
  with pytest.raises(ValueError, match="no conv layer"):
    mlp = models.create("mlp", num_classes=10)
    visualize.class_heatmap(mlp, mlp.init(jax.random.PRNGKey(0), x), x)


def test_overlay_plot_is_written(tmp_path):
  model, variables = _hand_built()
  images = np.stack([_image(0), _image(3)])
  result = visualize.class_heatmap(model, variables, images)
  mixed = visualize.overlay(images[0], result.heatmap[0], alpha=0.4)
  assert mixed.shape == (SIZE, SIZE, 3) and 0 <= mixed.min() and mixed.max() <= 1
  # alpha 0 is the image itself.
  np.testing.assert_allclose(visualize.overlay(images[0], result.heatmap[0], alpha=0.0),
                             np.repeat(images[0], 3, axis=-1), atol=1e-6)
  path = tmp_path / "heat.png"
  fig = visualize.plot_class_heatmap(images, result, class_names=["dark", "bright"],
                                     path=path, dpi=50)
  assert os.path.getsize(path) > 1000 and len(fig.axes) == 6
