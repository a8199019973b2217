"""Augmentation: geometry, fill modes, seeds, tf.data, and Keras' own results."""

import os
import warnings

import ml_collections
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from jaxcnn.data import augment
from jaxcnn.config import ConfigError

# Keras calls scipy.ndimage.interpolation, deprecated in scipy 1.17.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Please import `affine_transform`:DeprecationWarning")

# Lecture 003's ImageDataGenerator, minus its shear (0.2 degrees, see below).
LECTURE = dict(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2,
               zoom_range=0.2, horizontal_flip=True, fill_mode="nearest")
# Float32 bilinear weights against scipy's float64, on a [0, 255] scale.
ATOL = 1e-3


@pytest.fixture(scope="module")
def keras_image():
  """Keras' legacy ImageDataGenerator module (numpy/scipy, any backend)."""
  os.environ.setdefault("KERAS_BACKEND", "tensorflow")
  from keras.src.legacy.preprocessing import image
  return image


def _random_image(h=32, w=32, c=3, seed=0):
  return np.random.default_rng(seed).uniform(0, 255, (h, w, c)).astype(np.float32)


def _marker(h, w, row, col):
  x = np.zeros((h, w, 1), np.float32)
  x[row, col] = 255.0
  return x


def _peak(x):
  return tuple(int(v) for v in np.unravel_index(np.argmax(x[..., 0]), x.shape[:2]))


def _seed(k):
  return tf.constant([7, k], tf.int64)


# ------------------------------------------------------------------ config


def test_unknown_key_names_closest_valid_key():
  with pytest.raises(ConfigError, match="Did you mean 'rotation_range'"):
    augment.build({"rotation": 40})


@pytest.mark.parametrize("bad, match", [
    ({"rotation_range": -5}, "rotation_range"),
    ({"width_shift_range": -0.1}, "width_shift_range"),
    ({"height_shift_range": 1.5}, r"not a fraction of the height.*int for pixels"),
    ({"width_shift_range": 1.0}, "fractions lie in"),
    ({"width_shift_range": [0.1, 5]}, "mixes fractions and pixels"),
    ({"zoom_range": 1.0}, r"\[0, 1\)"),
    ({"zoom_range": 1.5}, r"\[0, 1\)"),
    ({"zoom_range": (0.0, 1.2)}, "0 < low <= high"),
    ({"zoom_range": (1.2, 0.8)}, "0 < low <= high"),
    ({"shear_range": 90}, r"\[0, 90\)"),
    ({"shear_range": -3}, "shear_range"),
    ({"fill_mode": "mirror"}, "nearest, constant, reflect, wrap"),
    ({"fill_mode": "constnat"}, "Did you mean 'constant'"),
    ({"horizontal_flip": 1}, "True or False"),
    ({"rescale": "1/255"}, "rescale"),
    ({"cval": float("nan")}, "cval"),
])
def test_bad_values_raise_config_error_in_build(bad, match):
  with pytest.raises(ConfigError, match=match):
    augment.build(bad)


def test_config_dict_and_keras_shift_forms():
  c = augment.parse_config(ml_collections.ConfigDict(
      {"width_shift_range": 3, "height_shift_range": [0.1, 0.2], "zoom_range": [0.5, 2]}))
  assert c.width_shift == augment.ShiftRange("choice", values=(0.0, 1.0, 2.0), fraction=False)
  assert c.height_shift == augment.ShiftRange("choice", values=(0.1, 0.2), fraction=True)
  assert c.zoom_range == (0.5, 2.0)
  assert augment.parse_config({"zoom_range": 0.2}).zoom_range == (0.8, 1.2)
  assert augment.parse_config({"rescale": 0}).rescale is None  # Keras: falsy = off


def test_sub_degree_shear_warns_about_radians():
  # Lecture 003's shear_range=0.2 was radians (about 11.5 degrees) before
  # Keras 2.1.3 (keras-team/keras#8868); it is 0.2 degrees now.
  with pytest.warns(UserWarning, match="11.5 degrees"):
    augment.build({"shear_range": 0.2})



def test_lecture_preset_states_its_shear_in_degrees_and_does_not_warn():
  # jaxcnn's own preset must not trip jaxcnn's own radians warning: it says
  # the lecture's 0.2 radians in degrees.
  from jaxcnn import config as config_lib  # pylint: disable=g-import-not-at-top
  from jaxcnn import experiment_bases  # pylint: disable=g-import-not-at-top
  preset = experiment_bases.CATS_VS_DOGS_AUGMENTATION
  assert preset["shear_range"] == pytest.approx(0.2 * 180 / np.pi)  # 11.459...
  assert {k: v for k, v in preset.items() if k != "shear_range"} == LECTURE
  # The other presets are unchanged.
  assert experiment_bases.DIGITS_AUGMENTATION.get("shear_range", 0) == 0
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    augment.build(preset)
    for name in ("cats_vs_dogs_augment", "cats_vs_dogs_vgg16_frozen_augment"):
      config = config_lib.load(os.path.join(repo, "experiments", f"{name}.py"))
      config_lib.validate(config)
      parsed = augment.parse_config(config.dataset.augmentation)
      assert parsed.shear_range == pytest.approx(preset["shear_range"]), name


# ---------------------------------------------------------------- geometry


def test_rotation_by_90_degrees_turns_content_counter_clockwise():
  x = _marker(9, 9, row=1, col=4)  # top middle
  out = augment.affine_transform(x, theta=90).numpy()
  assert _peak(out) == (4, 1)  # left middle
  np.testing.assert_allclose(out[4, 1, 0], 255.0, atol=ATOL)
  np.testing.assert_allclose(augment.affine_transform(x, theta=180).numpy(),
                             x[::-1, ::-1], atol=ATOL)


def test_shift_by_a_quarter_moves_content_a_quarter():
  x = _random_image(16, 32, 1)
  # Keras' sign: tx > 0 moves content left, ty > 0 moves it up.
  out = augment.affine_transform(x, tx=0.25 * 32, ty=-0.25 * 16).numpy()
  np.testing.assert_allclose(out[4:, :24], x[:12, 8:], atol=ATOL)
  # 'nearest' repeats the last column/first row into the uncovered quarter.
  np.testing.assert_allclose(out[4:, 24:], np.repeat(x[:12, 31:], 8, axis=1), atol=ATOL)


def test_zoom_scales_distances_from_the_center():
  x = _marker(17, 17, row=8, col=10)  # 2 px right of the center (8, 8)
  assert _peak(augment.affine_transform(x, zx=0.5, zy=0.5).numpy()) == (8, 12)
  x = _marker(17, 17, row=12, col=8)  # 4 px below the center
  assert _peak(augment.affine_transform(x, zx=1.0, zy=2.0).numpy()) == (10, 8)


def test_shear_follows_keras_matrix():
  # Keras' shear maps output (x, y) to input (x - sin(s) y, cos(s) y) about
  # the center; on linear ramps bilinear interpolation reproduces it exactly.
  h, w, s = 21, 41, np.deg2rad(30.0)
  rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
  ramps = np.stack([cols, rows], axis=-1)  # channel 0 = x, channel 1 = y
  out = augment.affine_transform(ramps, shear=30).numpy()
  y = rows - 10
  np.testing.assert_allclose(out[..., 1], 10 + np.cos(s) * y, atol=ATOL)
  inside = np.abs(np.sin(s) * y) <= np.minimum(cols, w - 1 - cols)
  np.testing.assert_allclose(out[..., 0][inside], (cols - np.sin(s) * y)[inside], atol=ATOL)


def test_flips_are_exact():
  x = _random_image(12, 20, 3)
  fn = augment.build({"horizontal_flip": True, "vertical_flip": True})
  seen = set()
  for k in range(16):
    out = fn(x, _seed(k)).numpy()
    for name, ref in [("id", x), ("h", x[:, ::-1]), ("v", x[::-1]), ("hv", x[::-1, ::-1])]:
      if np.array_equal(out, ref):
        seen.add(name)
        break
    else:
      raise AssertionError(f"seed {k}: output is not an exact flip of the input")
  assert seen == {"id", "h", "v", "hv"}


@pytest.mark.parametrize("fill_mode, expected_left", [
    ("nearest", [1, 1, 1]),      # a a a | a b c ...
    ("constant", [-9, -9, -9]),  # cval
    ("reflect", [3, 2, 1]),      # c b a | a b c ... about the pixel edge
    ("wrap", [6, 7, 8]),         # f g h | a b c ... period n
])
def test_fill_modes(fill_mode, expected_left):
  row = np.arange(1, 9, dtype=np.float32)  # a..h = 1..8
  x = np.tile(row[None, :, None], (4, 1, 1))
  out = augment.affine_transform(x, tx=-3, fill_mode=fill_mode, cval=-9).numpy()
  np.testing.assert_array_equal(out[0, :, 0], expected_left + list(row[:5]))
  np.testing.assert_array_equal(out[:, :, 0], np.tile(out[:1, :, 0], (4, 1)))


def test_fractional_fill_modes_interpolate_across_the_edge():
  x = np.tile(np.arange(1, 7, dtype=np.float32)[None, :, None], (2, 1, 1))

  def left(mode):
    return augment.affine_transform(x, tx=-0.5, fill_mode=mode, cval=-9).numpy()[0, 0, 0]

  assert left("nearest") == 1.0 and left("reflect") == 1.0
  assert left("wrap") == 3.5  # halfway between the last (6) and first (1) pixel
  assert left("constant") == -9.0  # scipy: no blending with cval


def test_resample_agrees_with_tf_projective_transform_kernel():
  # TF's own kernel is a second implementation; it agrees where its fill
  # semantics equal scipy's ('nearest', 'reflect').
  x = _random_image(24, 30, 2)
  matrix = augment.transform_matrix(24, 30, theta=-21, tx=5.5, ty=-3.2, shear=9, zx=1.3, zy=0.8)
  flat = tf.reshape(tf.cast(matrix, tf.float32), [-1])[:8]
  for mode in ("nearest", "reflect"):
    ref = tf.raw_ops.ImageProjectiveTransformV3(
        images=x[None], transforms=flat[None], output_shape=tf.constant([24, 30]),
        fill_value=0.0, interpolation="BILINEAR", fill_mode=mode.upper())[0]
    np.testing.assert_allclose(augment.resample(x, matrix, mode), ref, atol=2e-2)


# ---------------------------------------------------------- seeds, tf.data


def test_same_seed_same_output_and_different_seeds_differ():
  x = _random_image(20, 24, 3)
  fn = augment.build(LECTURE)
  a, b, c = fn(x, _seed(1)).numpy(), fn(x, _seed(1)).numpy(), fn(x, _seed(2)).numpy()
  np.testing.assert_array_equal(a, b)
  assert np.abs(a - c).mean() > 5.0
  assert a.dtype == np.float32 and a.shape == x.shape


def test_inside_tf_data_map_equals_eager():
  images = np.stack([_random_image(16, 16, 3, seed=i) for i in range(6)])
  seeds = np.stack([[3, i] for i in range(6)]).astype(np.int64)
  fn = augment.build({**LECTURE, "fill_mode": "reflect", "vertical_flip": True,
                      "shear_range": 15, "rescale": 1 / 255})
  ds = tf.data.Dataset.from_tensor_slices((images, seeds)).map(fn).batch(6)
  assert ds.element_spec.shape.as_list() == [None, 16, 16, 3]
  got = next(iter(ds)).numpy()
  eager = np.stack([fn(images[i], seeds[i]).numpy() for i in range(6)])
  np.testing.assert_allclose(got, eager, atol=1e-6)
  assert got.max() <= 1.0 + 1e-6  # rescale applied after the transform


def test_no_geometry_is_identity_times_rescale():
  x = _random_image(5, 6, 1)
  np.testing.assert_array_equal(augment.build({})(x, _seed(0)), x)
  np.testing.assert_allclose(augment.build({"rescale": 0.5})(x, _seed(0)), x * 0.5)


# ------------------------------------------------------------ against Keras


KERAS_CASES = [
    dict(theta=17.0),
    dict(tx=3.3, ty=-5.2),
    dict(shear=25.0),
    dict(zx=0.7, zy=1.3),
    dict(theta=-33.0, tx=2.5, ty=4.1, shear=12.0, zx=0.8, zy=1.15),
]


@pytest.mark.parametrize("params", KERAS_CASES)
@pytest.mark.parametrize("fill_mode, keras_mode", [
    ("nearest", "nearest"), ("reflect", "reflect"), ("constant", "constant"),
    ("wrap", "grid-wrap")])
def test_equals_keras_apply_affine_transform(keras_image, params, fill_mode, keras_mode):
  x = _random_image(32, 32, 3)
  ref = keras_image.apply_affine_transform(
      x.astype(np.float64), **params, row_axis=0, col_axis=1, channel_axis=2,
      fill_mode=keras_mode, cval=-50.0, order=1)
  out = augment.affine_transform(x, **params, fill_mode=fill_mode, cval=-50.0).numpy()
  np.testing.assert_allclose(out, ref, atol=ATOL)


def test_equals_keras_apply_transform_with_flips(keras_image):
  x = _random_image(32, 32, 3)
  params = dict(KERAS_CASES[-1], flip_horizontal=True, flip_vertical=True)
  gen = keras_image.ImageDataGenerator(fill_mode="reflect")
  ref = gen.apply_transform(x.astype(np.float64), params)
  np.testing.assert_allclose(augment.affine_transform(x, **params, fill_mode="reflect"),
                             ref, atol=ATOL)


def test_keras_wrap_differs_only_where_content_wraps(keras_image):
  # scipy's 'wrap' (what Keras passes on) repeats with period n - 1; ours has
  # period n. Inside the image the two agree; the wrapped band differs.
  x = _random_image(32, 32, 3)
  ref = keras_image.apply_affine_transform(
      x.astype(np.float64), tx=-5, row_axis=0, col_axis=1, channel_axis=2,
      fill_mode="wrap", order=1)
  out = augment.affine_transform(x, tx=-5, fill_mode="wrap").numpy()
  np.testing.assert_allclose(out[:, 5:], ref[:, 5:], atol=ATOL)
  np.testing.assert_allclose(out[:, :5], x[:, 27:], atol=ATOL)  # period 32
  np.testing.assert_allclose(ref[:, :5], x[:, 26:31], atol=ATOL)  # period 31


def test_keras_constant_loses_a_border_line_at_exactly_90_degrees(keras_image):
  # In float64 cos(90 deg) = 6e-17, so scipy sees some rotated edge pixels at
  # -1e-15 (outside) and fills them with cval; the exact rotation keeps them,
  # as we do (a coordinate within 1e-6 of the edge counts as inside).
  x = _random_image(16, 16, 1)
  ref = keras_image.apply_affine_transform(
      x.astype(np.float64), theta=90, row_axis=0, col_axis=1, channel_axis=2,
      fill_mode="constant", cval=-50.0, order=1)
  out = augment.affine_transform(x, theta=90, fill_mode="constant", cval=-50.0).numpy()
  np.testing.assert_allclose(out, np.rot90(x), atol=ATOL)  # exact rotation
  differs = np.abs(out - ref)[..., 0] > ATOL
  border = np.ones((16, 16), bool)
  border[1:-1, 1:-1] = False
  assert differs.any() and not (differs & ~border).any()  # interior equal
  assert np.all(ref[differs] == -50.0)  # Keras filled those border pixels


def test_non_square_center_differs_from_keras_by_a_known_shift(keras_image):
  # Keras offsets x by (h - 1) / 2 and y by (w - 1) / 2: on an h x w image its
  # rotation by 180 degrees equals ours with (tx, ty) = (w - h, h - w).
  h, w = 20, 40
  x = _random_image(h, w, 2)
  ref = keras_image.apply_affine_transform(
      x.astype(np.float64), theta=180, row_axis=0, col_axis=1, channel_axis=2,
      fill_mode="nearest", order=1)
  ours = augment.affine_transform(x, theta=180).numpy()
  np.testing.assert_allclose(ours, x[::-1, ::-1], atol=ATOL)  # about the true center
  shifted = augment.affine_transform(x, theta=180, tx=w - h, ty=h - w).numpy()
  np.testing.assert_allclose(shifted, ref, atol=ATOL)
  # Shifts and flips do not depend on the center: equal to Keras as is.
  params = dict(tx=6.5, ty=-2.25, flip_horizontal=True)
  ref = keras_image.ImageDataGenerator(fill_mode="reflect").apply_transform(
      x.astype(np.float64), params)
  np.testing.assert_allclose(augment.affine_transform(x, **params, fill_mode="reflect"),
                             ref, atol=ATOL)


# ---------------------------------------------------------------- sampling


def _draws(config, n, height, width):
  """n parameter draws with seeds (0, i), computed in a tf.data graph."""
  cfg = augment.parse_config(config)
  ds = tf.data.Dataset.range(n).map(
      lambda i: augment.random_transform(cfg, tf.stack([tf.constant(0, tf.int64), i]),
                                         height, width))
  return {k: v.numpy() for k, v in next(iter(ds.batch(n))).items()}


def test_random_parameters_cover_the_configured_ranges():
  d = _draws(dict(rotation_range=40, width_shift_range=0.2, height_shift_range=0.1,
                  shear_range=10, zoom_range=(0.5, 1.5), horizontal_flip=True), 4000, 20, 50)
  for key, bound in [("theta", 40), ("shear", 10), ("tx", 0.2 * 50), ("ty", 0.1 * 20)]:
    v = d[key]
    assert np.all(np.abs(v) <= bound), key
    assert v.min() < -0.97 * bound and v.max() > 0.97 * bound, key  # spread over it
    assert abs(v.mean()) < 0.05 * bound and abs(v.std() - bound / np.sqrt(3)) < 0.03 * bound
  for key in ("zx", "zy"):
    assert d[key].min() >= 0.5 and d[key].max() <= 1.5 and abs(d[key].mean() - 1) < 0.02
  assert abs(np.corrcoef(d["zx"], d["zy"])[0, 1]) < 0.05  # independent, as in Keras
  assert 0.46 < d["flip_horizontal"].mean() < 0.54 and not d["flip_vertical"].any()


def test_integer_shift_range_is_whole_pixels_as_in_keras():
  d = _draws({"width_shift_range": 3}, 600, 10, 10)
  assert set(np.unique(d["tx"])) == {-2.0, -1.0, 0.0, 1.0, 2.0}
  assert np.all(d["ty"] == 0)


def test_sampling_matches_image_data_generator(keras_image):
  h, w, n = 20, 50, 2000
  kw = dict(rotation_range=40, width_shift_range=0.2, height_shift_range=0.1,
            shear_range=10, zoom_range=0.2, horizontal_flip=True)
  gen = keras_image.ImageDataGenerator(**kw)
  state = np.random.get_state()  # get_random_transform reseeds numpy globally
  try:
    keras = [gen.get_random_transform((h, w, 3), seed=s) for s in range(n)]
  finally:
    np.random.set_state(state)
  ours = _draws(kw, n, h, w)
  # Keras 3.15 names the height shift 'tx' (and applies it along x,
  # keras-team/keras#17398); its distribution is our vertical 'ty'.
  pairs = [("theta", "theta"), ("shear", "shear"), ("zx", "zx"), ("zy", "zy"),
           ("ty", "tx"), ("tx", "ty")]
  for our_key, keras_key in pairs:
    sample = [p[keras_key] for p in keras]
    assert scipy.stats.ks_2samp(ours[our_key], sample).pvalue > 1e-3, our_key
  keras_flips = np.mean([bool(p["flip_horizontal"]) for p in keras])
  assert abs(ours["flip_horizontal"].mean() - keras_flips) < 0.06


def test_height_shift_moves_content_vertically_only():
  x = _marker(20, 40, row=10, col=20)
  fn = augment.build({"height_shift_range": 0.25, "fill_mode": "constant"})
  rows = set()
  for k in range(12):
    row, col = _peak(fn(x, _seed(k)).numpy())
    assert col == 20 and abs(row - 10) <= 5
    rows.add(row)
  assert len(rows) > 3


# -------------------------------------------------------------------- plot


def test_plot_augmentations_writes_png_of_expected_size(tmp_path):
  from matplotlib.image import imread
  from sklearn.datasets import load_sample_images

  from jaxcnn.visualize.augmentations import plot_augmentations
  china = load_sample_images().images[0][::2, ::2]  # 214 x 320 x 3 uint8
  path = tmp_path / "aug.png"
  fig = plot_augmentations(china, dict(LECTURE, shear_range=10), n=8, seed=0, path=path)
  png = imread(path)
  assert png.shape[:2] == (750, 750)  # 3 x 3 panels of 250 px
  assert png.std() > 0.05  # not blank
  assert len([ax for ax in fig.axes if ax.images]) == 9
  small = plot_augmentations(china[..., 0], {"rotation_range": 90}, n=3,
                             path=tmp_path / "gray.png")
  assert imread(tmp_path / "gray.png").shape[:2] == (500, 500)
  assert small.axes[0].get_title() == "original"
  with pytest.raises(ValueError, match="n must be"):
    plot_augmentations(china, {}, n=0)
