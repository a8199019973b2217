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


# ------------------------------------------------ heads made by models.from_layer


def _hand_built_two_convs():
  """:func:`_hand_built` with a 1x1 identity conv after the first: the same logits.

  Three entry points for ``models.from_layer`` (after conv2d, after
  conv2d_1, at the Dense), and a two-layer base for freezing.
  """
  model = models.create({"name": "sequential", "layers": [
      {"type": "conv2d", "filters": 2, "kernel_size": 3, "padding": "same",
       "activation": "relu"},
      {"type": "conv2d", "filters": 2, "kernel_size": 1},  # linear: no ReLU kink at 0
      {"type": "global_average_pooling2d"},
      {"type": "dense", "units": 2}]})
  _, hand = _hand_built()
  params = dict(hand["params"])
  params["conv2d_1"] = {"kernel": np.eye(2, dtype=np.float32).reshape(1, 1, 2, 2),
                        "bias": np.zeros(2, np.float32)}
  init = model.init(jax.random.PRNGKey(0), jnp.zeros((1, SIZE, SIZE, 1)))
  assert jax.tree.map(np.shape, params) == jax.tree.map(np.shape, dict(init["params"]))
  return model, {"params": params}


def _numpy_grad_cam(params, images, classes):
  """Grad-CAM of the hand-built model written out in numpy, from the image.

  The conv is a 3x3 'same' correlation (zero padding) + ReLU; global average
  pooling then Dense is linear, so d y_c / d A_ijk = kernel[k, c] / (h * w).
  """
  kernel, bias = params["conv2d"]["kernel"], params["conv2d"]["bias"]
  padded = np.pad(images[..., 0].astype(np.float64), ((0, 0), (1, 1), (1, 1)))
  maps = np.zeros((len(images), SIZE, SIZE, 2))
  for di in range(3):
    for dj in range(3):
      maps += padded[:, di:di + SIZE, dj:dj + SIZE, None] * kernel[di, dj, 0]
  maps = np.maximum(maps + bias, 0.0)
  weights = params["dense"]["kernel"][:, classes].T / SIZE ** 2
  cam = np.maximum(np.einsum("nhwc,nc->nhw", maps, weights), 0.0)
  return maps, weights, cam / cam.max(axis=(1, 2), keepdims=True)


def test_heads_made_by_from_layer_get_the_whole_models_heatmap():
  """Grad-CAM from the image through base + head, at a conv layer of the base."""
  from jaxcnn.models import freezing
  model, variables = _hand_built_two_convs()
  images = np.stack([_image(q, seed=q) for q in range(4)])
  classes = np.array([BRIGHT, DARK, BRIGHT, DARK])
  maps, weights, cam = _numpy_grad_cam(variables["params"], images, classes)
  # Feature extraction's train model: conv2d and conv2d_1 frozen, so its
  # stop_gradient sits after the pooling (the base's last layer), between
  # both convs and the logits.
  train_model = freezing.train_model_for(model, variables["params"], ("conv2d", "conv2d_1"))
  assert train_model.frozen_prefix == 3
  heads = {"whole": model, **{f"from_layer({k})": models.from_layer(model, k)
                              for k in (1, 2, 3)},
           "frozen train model from_layer(3)": models.from_layer(train_model, 3)}
  for what, head in heads.items():
    for layer in ("conv2d", 0, None):  # None: the last conv, conv2d_1 (the identity)
      result = visualize.class_heatmap(head, variables, images, layer=layer,
                                       class_index=classes)
      assert result.layer == ("conv2d_1" if layer is None else "conv2d"), what
      np.testing.assert_allclose(result.feature_maps, maps, rtol=1e-5, atol=1e-6,
                                 err_msg=what)
      np.testing.assert_allclose(result.weights, weights, rtol=1e-5, err_msg=what)
      np.testing.assert_allclose(result.heatmap, cam, rtol=1e-5, atol=1e-6, err_msg=what)
    predicted = visualize.class_heatmap(head, variables, images, layer="conv2d")
    assert [_quadrant(h) for h in predicted.heatmap] == [0, 1, 2, 3], what
  # Central finite differences of the plain model's layers after conv2d, at
  # the numpy feature maps, against the head's weights.
  result = visualize.class_heatmap(heads["from_layer(3)"], variables, images[:1],
                                   layer="conv2d", class_index=BRIGHT)
  after = lambda a: np.asarray(model.apply(variables, a.astype(np.float32), start=1),  # noqa: E731
                               np.float64)
  eps = 1e-2
  for k in range(2):
    plus, minus = maps[:1].copy(), maps[:1].copy()
    plus[0, 4:8, 10:14, k] += eps  # 16 positions: the mean gradient times 16
    minus[0, 4:8, 10:14, k] -= eps
    grad = (after(plus)[0, BRIGHT] - after(minus)[0, BRIGHT]) / (2 * eps) / 16
    np.testing.assert_allclose(grad, result.weights[0, k], rtol=1e-2)


def test_a_from_layer_head_given_features_instead_of_images_is_a_clear_error():
  model, variables = _hand_built_two_convs()
  images = np.stack([_image(0), _image(3)])
  head = models.from_layer(model, 2)
  features = model.apply(variables, images, stop=2)  # what the head trains on
  with pytest.raises(ValueError, match=r"input of shape \(2, 16, 16, 2\) does not fit layer "
                     r"'conv2d': this model enters at layer 2 \('global_average_pooling2d', "
                     r"models.from_layer\).*give the images the base takes, not the "
                     r"outputs of layer 'conv2d_1'"):
    visualize.class_heatmap(head, variables, features, layer="conv2d")
