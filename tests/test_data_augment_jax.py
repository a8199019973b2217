"""Augmentation in JAX: equal to the tf version for fixed parameters, seeded draws."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from jaxcnn.config import ConfigError
from jaxcnn.data import augment
from jaxcnn.data import augment_jax

LECTURE = dict(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2,
               zoom_range=0.2, horizontal_flip=True, fill_mode="nearest")
# Against the tf version on [0, 255] images of at most 40 pixels a side: JAX
# computes the sample coordinates in float32 (tf: float64), a few float32 ulps
# of the image side (~1e-6 px here), times a pixel step of up to 255.
ATOL = 2e-3
# The same parameters as tests/test_data_augment.py checks against Keras.
CASES = [
    dict(theta=17.0),
    dict(tx=3.3, ty=-5.2),
    dict(shear=25.0),
    dict(zx=0.7, zy=1.3),
    dict(theta=-33.0, tx=2.5, ty=4.1, shear=12.0, zx=0.8, zy=1.15),
]


def _random_image(h=32, w=32, c=3, seed=0):
  return np.random.default_rng(seed).uniform(0, 255, (h, w, c)).astype(np.float32)


def _tf(x, **params):
  return augment.affine_transform(x, **params).numpy()


@functools.partial(jax.jit, static_argnames=("fill_mode",))
def _jax(x, params, fill_mode="nearest", cval=0.0):
  return augment_jax.affine_transform(x, **params, fill_mode=fill_mode, cval=cval)


# ------------------------------------------------- fixed parameters: each op


@pytest.mark.parametrize("params", CASES, ids=["rotation", "shift", "shear", "zoom", "all"])
@pytest.mark.parametrize("fill_mode", augment.FILL_MODES)
def test_each_op_and_fill_mode_equals_the_tf_version(params, fill_mode):
  x = _random_image(32, 32, 3)
  ref = _tf(x, **params, fill_mode=fill_mode, cval=-50.0)
  out = np.asarray(_jax(x, params, fill_mode, -50.0))
  np.testing.assert_allclose(out, ref, atol=ATOL)


@pytest.mark.parametrize("fill_mode", augment.FILL_MODES)
def test_non_square_image_with_flips_equals_the_tf_version(fill_mode):
  x = _random_image(20, 40, 2)
  params = dict(CASES[-1], flip_horizontal=True, flip_vertical=True)
  ref = _tf(x, **params, fill_mode=fill_mode, cval=7.0)
  np.testing.assert_allclose(np.asarray(_jax(x, params, fill_mode, 7.0)), ref, atol=ATOL)


def test_transform_matrix_equals_the_tf_version():
  params = dict(theta=-21.0, tx=5.5, ty=-3.2, shear=9.0, zx=1.3, zy=0.8,
                flip_horizontal=True)
  ref = augment.transform_matrix(24, 30, **params).numpy()
  np.testing.assert_allclose(augment_jax.transform_matrix(24, 30, **params), ref,
                             rtol=0, atol=1e-5)


def test_flips_and_right_angles_are_exact():
  # No interpolation: pixels land on pixels, bit for bit, as in the tf version.
  x = _random_image(12, 20, 3)
  for params, ref in [(dict(flip_horizontal=True), x[:, ::-1]),
                      (dict(flip_vertical=True), x[::-1]),
                      (dict(theta=180.0), x[::-1, ::-1]),
                      (dict(tx=-3.0, ty=2.0), None)]:
    out = np.asarray(_jax(x, params))
    if ref is None:  # an integer shift: the tf version's pixels exactly
      ref = _tf(x, **params)
    np.testing.assert_array_equal(out, ref)
  sq = _random_image(16, 16, 1)
  for theta, k in [(90.0, 1), (-90.0, 3), (270.0, 3), (450.0, 1)]:
    out = np.asarray(_jax(sq, dict(theta=theta), "constant", -50.0))
    np.testing.assert_array_equal(out, np.rot90(sq, k))  # border kept, no cval


@pytest.mark.parametrize("fill_mode, expected_left", [
    ("nearest", [1, 1, 1]),      # a a a | a b c ...
    ("constant", [-9, -9, -9]),  # cval
    ("reflect", [3, 2, 1]),      # c b a | a b c ... about the pixel edge
    ("wrap", [6, 7, 8]),         # f g h | a b c ... period n
])
def test_fill_modes(fill_mode, expected_left):
  row = np.arange(1, 9, dtype=np.float32)  # a..h = 1..8
  x = np.tile(row[None, :, None], (4, 1, 1))
  out = np.asarray(_jax(x, dict(tx=-3.0), fill_mode, -9.0))
  np.testing.assert_array_equal(out[0, :, 0], expected_left + list(row[:5]))
  np.testing.assert_array_equal(out[:, :, 0], np.tile(out[:1, :, 0], (4, 1)))
  half = np.asarray(_jax(x[:2, :6], dict(tx=-0.5), fill_mode, -9.0))[0, 0, 0]
  assert half == {"nearest": 1.0, "reflect": 1.0, "wrap": 3.5, "constant": -9.0}[fill_mode]


def test_random_batch_equals_the_tf_version_image_by_image():
  # The combination: JAX's draws for a batch, applied by apply_transforms
  # (jit, vmap over the batch), against the tf version given the same numbers.
  cfg = augment.parse_config({**LECTURE, "shear_range": 15, "vertical_flip": True,
                              "fill_mode": "constant", "cval": 30.0})
  images = np.stack([_random_image(28, 28, 1, seed=i) for i in range(12)])
  keys = augment_jax.example_keys(3, 1, np.arange(12))
  params = augment_jax.random_transforms(cfg, keys, 28, 28)
  out = jax.jit(augment_jax.apply_transforms, static_argnames="fill_mode")(
      images, params, "constant", 30.0)
  for i in range(12):
    p = {k: v[i].item() for k, v in params.items()}
    ref = _tf(images[i], **p, fill_mode="constant", cval=30.0)
    np.testing.assert_allclose(out[i], ref, atol=ATOL, err_msg=str(p))


# ------------------------------------------------------------ build, dtypes


def test_uint8_in_float32_out_and_rescale_after_the_transform():
  x8 = np.random.default_rng(0).integers(0, 256, (6, 14, 14, 1), dtype=np.uint8)
  keys = augment_jax.example_keys(0, 0, np.arange(6))
  cfg = {**LECTURE, "fill_mode": "constant", "cval": 255.0}
  fn = jax.jit(augment_jax.build(cfg))
  out = fn(x8, keys)
  assert out.dtype == jnp.float32 and out.shape == x8.shape
  np.testing.assert_array_equal(out, fn(x8.astype(np.float32), keys))
  scaled = jax.jit(augment_jax.build({**cfg, "rescale": 1 / 255}))(x8, keys)
  np.testing.assert_allclose(scaled, np.asarray(out) / 255, rtol=1e-6)
  assert float(scaled.max()) == pytest.approx(1.0)  # cval 255 filled, then rescaled


def test_no_geometry_is_identity_times_rescale():
  x = _random_image(5, 6, 1)[None].repeat(3, 0)
  keys = augment_jax.example_keys(0, 0, np.arange(3))
  np.testing.assert_array_equal(augment_jax.build({})(x, keys), x)
  np.testing.assert_allclose(augment_jax.build({"rescale": 0.5})(x, keys), x * 0.5)


def test_bad_config_raises_config_error_when_built():
  with pytest.raises(ConfigError, match="Did you mean 'rotation_range'"):
    augment_jax.build({"rotation": 40})
  with pytest.raises(ValueError, match="unknown transform parameters"):
    augment_jax.apply_transforms(np.zeros((1, 4, 4, 1)), {"rotation": 1.0})


def test_flips_only_give_the_four_exact_flips():
  x = _random_image(12, 20, 3)
  fn = jax.jit(augment_jax.build({"horizontal_flip": True, "vertical_flip": True}))
  out = np.asarray(fn(np.repeat(x[None], 16, 0), augment_jax.example_keys(1, 0, np.arange(16))))
  seen = set()
  for k in range(16):
    for name, ref in [("id", x), ("h", x[:, ::-1]), ("v", x[::-1]), ("hv", x[::-1, ::-1])]:
      if np.array_equal(out[k], ref):
        seen.add(name)
        break
    else:
      raise AssertionError(f"image {k}: not an exact flip of the input")
  assert seen == {"id", "h", "v", "hv"}


# ----------------------------------------------------- keys, jit and vmap


def test_same_seed_epoch_position_same_image_whatever_the_batch():
  # A resumed epoch (or another device's share of the batch) sees the same
  # images: draws depend on (seed, epoch, position) only.
  cfg = {**LECTURE, "shear_range": 10, "fill_mode": "reflect"}
  fn = jax.jit(augment_jax.build(cfg))
  images = np.stack([_random_image(16, 16, 1, seed=i) for i in range(8)])
  whole = fn(images, augment_jax.example_keys(5, 3, np.arange(8)))
  tail = fn(images[5:], augment_jax.example_keys(5, 3, np.arange(5, 8)))
  np.testing.assert_allclose(tail, whole[5:], rtol=0, atol=1e-5)
  parsed = augment.parse_config(cfg)
  draws = [augment_jax.random_transforms(parsed, augment_jax.example_keys(5, 3, p), 16, 16)
           for p in (np.arange(8), np.arange(5, 8))]
  for k in draws[0]:
    np.testing.assert_array_equal(draws[0][k][5:], draws[1][k])  # the same bits
  # Any leading layout: [devices, b] images with [devices, b] keys.
  grid = fn(images.reshape(2, 4, 16, 16, 1),
            augment_jax.example_keys(5, 3, np.arange(8)).reshape(2, 4))
  np.testing.assert_allclose(grid.reshape(whole.shape), whole, rtol=0, atol=1e-5)
  with pytest.raises(ValueError, match="one key per image"):
    fn(images, augment_jax.example_keys(5, 3, np.arange(4)))
  for other in (augment_jax.example_keys(6, 3, np.arange(8)),   # another seed
                augment_jax.example_keys(5, 4, np.arange(8)),   # another epoch
                augment_jax.example_keys(5, 3, np.arange(8) + 8)):  # other positions
    assert np.abs(np.asarray(fn(images, other)) - np.asarray(whole)).mean(axis=(1, 2, 3)).min() > 1.0


def test_vmap_over_seeds_equals_a_loop():
  # A population maps over its members' seeds inside one program. (Every
  # other test runs the jitted functions against the tf version or numpy.)
  fn = augment_jax.build({**LECTURE, "shear_range": 10, "fill_mode": "wrap"})
  images = np.stack([_random_image(10, 12, 2, seed=i) for i in range(4)])
  positions = np.arange(4)
  jitted = jax.jit(lambda s: fn(images, augment_jax.example_keys(s, 2, positions)))
  mapped = jax.jit(jax.vmap(jitted))(jnp.arange(3))
  for s in range(3):
    np.testing.assert_allclose(mapped[s], jitted(s), atol=1e-3)
  assert np.abs(np.asarray(mapped[0]) - np.asarray(mapped[1])).mean() > 1.0


# ---------------------------------------------------------------- sampling


def _draws(config, n, height, width, seed=0):
  cfg = augment.parse_config(config)
  keys = augment_jax.example_keys(seed, 0, np.arange(n))
  out = jax.jit(lambda k: augment_jax.random_transforms(cfg, k, height, width))(keys)
  return {k: np.asarray(v) for k, v in out.items()}


def _tf_draws(config, n, height, width):
  cfg = augment.parse_config(config)
  ds = tf.data.Dataset.range(n).map(
      lambda i: augment.random_transform(cfg, tf.stack([tf.constant(0, tf.int64), i]),
                                         height, width))
  return {k: v.numpy() for k, v in next(iter(ds.batch(n))).items()}


RANGES = dict(rotation_range=40, width_shift_range=0.2, height_shift_range=0.1,
              shear_range=10, zoom_range=(0.5, 1.5), horizontal_flip=True)


def test_random_parameters_cover_the_configured_ranges_reproducibly():
  d = _draws(RANGES, 4000, 20, 50)
  for key, bound in [("theta", 40), ("shear", 10), ("tx", 0.2 * 50), ("ty", 0.1 * 20)]:
    v = d[key]
    assert v.dtype == np.float32 and np.all(np.abs(v) <= bound), key
    assert v.min() < -0.97 * bound and v.max() > 0.97 * bound, key  # spread over it
    assert abs(v.mean()) < 0.05 * bound and abs(v.std() - bound / np.sqrt(3)) < 0.03 * bound
  for key in ("zx", "zy"):
    assert d[key].min() >= 0.5 and d[key].max() <= 1.5 and abs(d[key].mean() - 1) < 0.02
  assert abs(np.corrcoef(d["zx"], d["zy"])[0, 1]) < 0.05  # independent, as in Keras
  assert 0.46 < d["flip_horizontal"].mean() < 0.54 and not d["flip_vertical"].any()
  again = _draws(RANGES, 4000, 20, 50)
  for k in d:
    np.testing.assert_array_equal(d[k], again[k])
  assert not np.array_equal(d["theta"], _draws(RANGES, 4000, 20, 50, seed=1)["theta"])


def test_random_parameters_have_the_tf_versions_distributions():
  # Not the same numbers (JAX's and TF's generators differ), the same laws.
  ours, theirs = _draws(RANGES, 2000, 20, 50), _tf_draws(RANGES, 2000, 20, 50)
  for key in ("theta", "tx", "ty", "shear", "zx", "zy"):
    assert scipy.stats.ks_2samp(ours[key], theirs[key]).pvalue > 1e-3, key
  assert abs(ours["flip_horizontal"].mean() - theirs["flip_horizontal"].mean()) < 0.06


def test_integer_and_list_shift_ranges_are_keras_choices():
  d = _draws({"width_shift_range": 3, "height_shift_range": [0.1, 0.2]}, 600, 10, 30)
  assert set(np.unique(d["tx"])) == {-2.0, -1.0, 0.0, 1.0, 2.0}
  np.testing.assert_allclose(np.unique(d["ty"]), [-2.0, -1.0, 1.0, 2.0], rtol=1e-6)


def test_height_shift_moves_content_vertically_only():
  x = np.zeros((20, 40, 1), np.float32)
  x[10, 20] = 255.0
  fn = jax.jit(augment_jax.build({"height_shift_range": 0.25, "fill_mode": "constant"}))
  out = np.asarray(fn(np.repeat(x[None], 12, 0), augment_jax.example_keys(0, 0, np.arange(12))))
  rows = set()
  for k in range(12):
    row, col = np.unravel_index(np.argmax(out[k, ..., 0]), (20, 40))
    assert col == 20 and abs(row - 10) <= 5
    rows.add(int(row))
  assert len(rows) > 3


# --------------------------------------------------------------- benchmark


def test_benchmark_smoke_run_writes_its_json(tmp_path):
  # benchmarks/bench_augment.py (BENCHMARKS.md): it runs and reports both
  # variants per round; no timing is asserted.
  import os  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                  "benchmarks"))
  import bench_augment  # pylint: disable=g-import-not-at-top
  out = tmp_path / "augment.json"
  result = bench_augment.main(["--batch", "8", "--batches", "3", "--rounds", "2",
                               "--fill_mode", "constant", "--json", str(out)])
  saved = json.loads(out.read_text())
  assert saved == json.loads(json.dumps(result))
  assert saved["config"]["fill_mode"] == "constant" and saved["image"] == [28, 28, 1]
  for name in ("tf.data", "jax"):
    assert len(saved["ms_per_batch"][name]) == 2 and min(saved["ms_per_batch"][name]) > 0
  assert len(saved["tf_over_jax_per_round"]) == 2
