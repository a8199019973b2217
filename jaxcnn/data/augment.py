"""Keras ``ImageDataGenerator`` augmentation as small pure TF functions.

The train pipeline maps ``build(aug_config)`` over single examples (float32
images in [0, 255], before normalization) with a stateless per-example seed, so
an epoch's augmentations are a pure function of (seed, epoch, index): resuming
replays them exactly.

The knobs and units are ``ImageDataGenerator``'s (lecture 003)::

    rotation_range=40,        # degrees, theta ~ U(-40, 40)
    width_shift_range=0.2,    # fraction of the width (an int: pixels)
    height_shift_range=0.2,   # fraction of the height
    shear_range=0.2,          # DEGREES since Keras 2.1.3 (radians before)
    zoom_range=0.2,           # zx, zy ~ U(0.8, 1.2) independently; > 1 zooms out
    horizontal_flip=True,     # each with probability 1/2
    fill_mode='nearest',      # also 'constant' (with cval), 'reflect', 'wrap'
    rescale=None,             # multiplies the result, like Keras

Rotation, shift, shear, zoom and the flips are composed into one 3x3 matrix and
applied in a single bilinear resampling, as Keras does with
``scipy.ndimage.affine_transform(order=1)``. For fixed parameters
:func:`affine_transform` equals Keras'
``keras.src.legacy.preprocessing.image.apply_affine_transform`` followed by its
flips, with these deliberate differences:

* Center: Keras offsets the x (column) axis by ``h / 2 - 0.5`` and the y axis
  by ``w / 2 - 0.5``, so on non-square images it rotates, shears and zooms
  about a point off the center. We use the true center; on square images the
  two agree.
* Shift axes: Keras 3.15's ``get_random_transform`` draws ``tx`` from
  ``height_shift_range * height`` and applies it along x (keras-team/keras
  #17398). Here ``width_shift_range`` moves content horizontally by a fraction
  of the width and ``height_shift_range`` vertically by a fraction of the
  height, as Keras documents.
* Fill modes (see :func:`resample`): 'nearest', 'reflect' and 'constant' are
  scipy's; 'wrap' is the true periodic extension (scipy's 'grid-wrap'),
  because scipy's 'wrap', which Keras passes on, has period n - 1.

The sampler is a gather-based bilinear interpolation rather than
``tf.raw_ops.ImageProjectiveTransformV3``: that kernel blends 'constant' with
``cval`` in a one-pixel band outside the image (scipy does not) and its 'wrap'
neither interpolates across the seam nor wraps beyond two periods.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from typing import Any, Callable, Mapping

import tensorflow as tf

from jaxcnn.config import ConfigError, closest, unknown_key_error

FILL_MODES = ("nearest", "constant", "reflect", "wrap")

# The accepted keys with ImageDataGenerator's defaults.
DEFAULTS: dict[str, Any] = {
    "rotation_range": 0.0,
    "width_shift_range": 0.0,
    "height_shift_range": 0.0,
    "shear_range": 0.0,
    "zoom_range": 0.0,
    "horizontal_flip": False,
    "vertical_flip": False,
    "fill_mode": "nearest",
    "cval": 0.0,
    "rescale": None,
}

_WHERE = "dataset.augmentation"
# A sampled coordinate this close to the image edge counts as inside for
# 'constant', so float rounding of an exact 90-degree rotation keeps its border.
_EDGE_EPS = 1e-6
# Coordinates are clipped before the int cast; far outside is far outside.
_COORD_LIMIT = 2.0**24

AugmentFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


@dataclasses.dataclass(frozen=True)
class ShiftRange:
  """A validated shift range, as ImageDataGenerator reads it.

  Attributes:
    kind: 'off', 'uniform' (U(-bound, bound)) or 'choice' (one of ``values``
      times a random sign, Keras' mode for ints and lists).
    bound: the uniform half-width.
    values: the discrete magnitudes for 'choice'.
    fraction: whether the numbers are fractions of the image side (else pixels).
  """
  kind: str = "off"
  bound: float = 0.0
  values: tuple[float, ...] = ()
  fraction: bool = True


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """A validated augmentation config (see the module docstring for units)."""
  rotation_range: float = 0.0
  width_shift: ShiftRange = ShiftRange()
  height_shift: ShiftRange = ShiftRange()
  shear_range: float = 0.0
  zoom_range: tuple[float, float] = (1.0, 1.0)
  horizontal_flip: bool = False
  vertical_flip: bool = False
  fill_mode: str = "nearest"
  cval: float = 0.0
  rescale: float | None = None

  @property
  def resamples(self) -> bool:
    """Whether any geometric transform (and so a resampling) is configured."""
    return bool(self.rotation_range or self.shear_range or self.horizontal_flip
                or self.vertical_flip or self.width_shift.kind != "off"
                or self.height_shift.kind != "off" or self.zoom_range != (1.0, 1.0))


# ----------------------------------------------------------------- validation


def _is_number(value: Any) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _number(key: str, value: Any, low: float = -math.inf, high: float = math.inf,
            high_open: bool = False, what: str = "a number") -> float:
  """``value`` as a float in [low, high] (or [low, high)), else ConfigError."""
  ok = _is_number(value) and math.isfinite(value) and value >= low and (
      value < high if high_open else value <= high)
  if not ok:
    raise ConfigError(f"'{_WHERE}.{key}' must be {what}, got {value!r}.")
  return float(value)


def _shift(key: str, value: Any) -> ShiftRange:
  """Reads a shift range the way ImageDataGenerator does, minus its trap.

  Keras reads a float < 1 as a fraction and a float >= 1 as pixels, so 1.5
  would silently mean 1.5 pixels; that float is refused here.
  """
  side = "width" if key.startswith("width") else "height"
  if isinstance(value, (list, tuple)):
    if not value or not all(_is_number(v) and math.isfinite(v) for v in value):
      raise ConfigError(f"'{_WHERE}.{key}' as a list must hold numbers, got {value!r}.")
    magnitudes = tuple(abs(float(v)) for v in value)
    if all(m < 1 for m in magnitudes):
      return ShiftRange("choice", values=magnitudes, fraction=True)
    if all(float(m).is_integer() for m in magnitudes):
      return ShiftRange("choice", values=magnitudes, fraction=False)
    raise ConfigError(
        f"'{_WHERE}.{key}'={value!r} mixes fractions and pixels: give fractions "
        f"of the {side} all below 1, or whole pixel counts.")
  if isinstance(value, numbers.Integral) and not isinstance(value, bool):
    if value < 0:
      raise ConfigError(f"'{_WHERE}.{key}' must be >= 0, got {value!r}.")
    if value == 0:
      return ShiftRange()
    # Keras: np.random.choice(n) * (+-1), whole pixels in (-n, n).
    return ShiftRange("choice", values=tuple(float(v) for v in range(value)),
                      fraction=False)
  bound = _number(key, value, low=0.0, what=f"a fraction of the {side} in [0, 1), "
                  "an int number of pixels, or a list of either")
  if bound >= 1:
    raise ConfigError(
        f"'{_WHERE}.{key}'={value!r} is not a fraction of the {side}: fractions "
        f"lie in [0, 1) (ImageDataGenerator would read {value!r} as pixels). Use "
        f"an int for pixels, e.g. {key}={max(1, int(bound))}.")
  return ShiftRange("uniform", bound=bound) if bound else ShiftRange()


def _zoom(value: Any) -> tuple[float, float]:
  if isinstance(value, (list, tuple)):
    if (len(value) != 2 or not all(_is_number(v) and math.isfinite(v) for v in value)
        or not 0 < value[0] <= value[1]):
      raise ConfigError(
          f"'{_WHERE}.zoom_range' as a pair must be [low, high] with "
          f"0 < low <= high, got {value!r}.")
    return float(value[0]), float(value[1])
  z = _number("zoom_range", value, 0.0, 1.0, high_open=True,
              what="a float z in [0, 1) (zoom in [1 - z, 1 + z]) or a pair "
              "[low, high] with 0 < low <= high")
  return 1.0 - z, 1.0 + z


def parse_config(aug_config: Mapping[str, Any] | AugmentConfig | None) -> AugmentConfig:
  """Validates an augmentation config (a dict or ConfigDict).

  Args:
    aug_config: keys of :data:`DEFAULTS`; missing keys take Keras' defaults.
      An :class:`AugmentConfig` is returned as is.

  Returns:
    The validated :class:`AugmentConfig`.

  Raises:
    ConfigError: an unknown key (naming the closest valid one), a negative
      range, a zoom with 1 - z <= 0, a float shift >= 1, a shear of 90 degrees
      or more, an unknown fill mode (listing the valid ones), a non-bool flip.
  """
  if isinstance(aug_config, AugmentConfig):
    return aug_config
  if aug_config is None:
    items: dict[str, Any] = {}
  elif hasattr(aug_config, "to_dict"):  # ml_collections.ConfigDict
    items = aug_config.to_dict()
  elif isinstance(aug_config, Mapping):
    items = dict(aug_config)
  else:
    raise ConfigError(f"'{_WHERE}' must be a dict or ConfigDict, got {aug_config!r}.")
  for key in items:
    if key not in DEFAULTS:
      raise unknown_key_error(f"{_WHERE}.{key}", DEFAULTS, f"'{_WHERE}'")
  c = {**DEFAULTS, **items}

  for key in ("horizontal_flip", "vertical_flip"):
    if not isinstance(c[key], bool):
      raise ConfigError(f"'{_WHERE}.{key}' must be True or False, got {c[key]!r}.")
  fill_mode = c["fill_mode"]
  if fill_mode not in FILL_MODES:
    guess = closest(str(fill_mode), FILL_MODES)
    hint = f" Did you mean '{guess}'?" if guess else ""
    raise ConfigError(f"'{_WHERE}.fill_mode'={fill_mode!r} is not a fill mode.{hint} "
                      f"Valid fill modes: {', '.join(FILL_MODES)}.")
  rescale = c["rescale"]
  if rescale is not None:
    rescale = _number("rescale", rescale, what="None or a finite number") or None
  shear = _number("shear_range", c["shear_range"], 0.0, 90.0, high_open=True,
                  what="an angle in degrees in [0, 90)")
  if 0 < shear < 1:
    warnings.warn(
        f"'{_WHERE}.shear_range'={shear} is in degrees (Keras >= 2.1.3), so it "
        f"barely shears. Lecture code written for radians meant about "
        f"{math.degrees(shear):.1f} degrees.", stacklevel=2)
  return AugmentConfig(
      rotation_range=_number("rotation_range", c["rotation_range"], 0.0,
                             what="an angle in degrees >= 0"),
      width_shift=_shift("width_shift_range", c["width_shift_range"]),
      height_shift=_shift("height_shift_range", c["height_shift_range"]),
      shear_range=shear,
      zoom_range=_zoom(c["zoom_range"]),
      horizontal_flip=c["horizontal_flip"],
      vertical_flip=c["vertical_flip"],
      fill_mode=fill_mode,
      cval=_number("cval", c["cval"]),
      rescale=rescale)


# ------------------------------------------------------------------- matrices
# Each matrix maps OUTPUT coordinates to INPUT coordinates, in homogeneous
# (x = column, y = row, 1) form centered on the image, exactly as Keras builds
# them before its offset to the center; float64 keeps the composition exact.

_F64 = tf.float64


def _matrix(rows: list[list[Any]]) -> tf.Tensor:
  return tf.stack([tf.stack([tf.cast(v, _F64) for v in row]) for row in rows])


def rotation_matrix(theta: Any) -> tf.Tensor:
  """Rotation by ``theta`` degrees; positive turns the content counter-clockwise."""
  t = tf.cast(theta, _F64) * (math.pi / 180)
  c, s = tf.cos(t), tf.sin(t)
  return _matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def shift_matrix(tx: Any, ty: Any) -> tf.Tensor:
  """Shift by (tx, ty) pixels; positive tx moves content left, ty up (Keras' sign)."""
  return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]])


def shear_matrix(shear: Any) -> tf.Tensor:
  """Keras' shear by ``shear`` degrees: input = (x - sin(s) y, cos(s) y)."""
  s = tf.cast(shear, _F64) * (math.pi / 180)
  return _matrix([[1, -tf.sin(s), 0], [0, tf.cos(s), 0], [0, 0, 1]])


def zoom_matrix(zx: Any, zy: Any) -> tf.Tensor:
  """Zoom by (zx, zy); a factor above 1 zooms out (content shrinks), as in Keras."""
  return _matrix([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])


def flip_matrix(flip_horizontal: Any, flip_vertical: Any) -> tf.Tensor:
  """Mirror left-right and/or top-bottom about the center."""
  sx = tf.where(tf.cast(flip_horizontal, tf.bool), -1.0, 1.0)
  sy = tf.where(tf.cast(flip_vertical, tf.bool), -1.0, 1.0)
  return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]])


def transform_matrix(height: Any, width: Any, theta: Any = 0.0, tx: Any = 0.0,
                     ty: Any = 0.0, shear: Any = 0.0, zx: Any = 1.0, zy: Any = 1.0,
                     flip_horizontal: Any = False, flip_vertical: Any = False) -> tf.Tensor:
  """Composes Keras' transforms into one output-to-input pixel matrix.

  ``rotation @ shift @ shear @ zoom`` is Keras' order; the flips come last
  because Keras flips the already transformed image. The product is moved to
  the image center ((width - 1) / 2, (height - 1) / 2).

  Args:
    height: image height in pixels.
    width: image width in pixels.
    theta, tx, ty, shear, zx, zy: as in Keras' ``apply_affine_transform``.
    flip_horizontal, flip_vertical: as in Keras' ``apply_transform``.

  Returns:
    float64[3, 3] mapping output (x, y, 1) to input (x, y, 1).
  """
  cx = (tf.cast(width, _F64) - 1) / 2
  cy = (tf.cast(height, _F64) - 1) / 2
  to_center = _matrix([[1, 0, cx], [0, 1, cy], [0, 0, 1]])
  from_center = _matrix([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]])
  m = rotation_matrix(theta)
  for factor in (shift_matrix(tx, ty), shear_matrix(shear), zoom_matrix(zx, zy),
                 flip_matrix(flip_horizontal, flip_vertical), from_center):
    m = m @ factor
  return to_center @ m


# ------------------------------------------------------------------ resampling


def _extend(index: tf.Tensor, size: tf.Tensor, fill_mode: str) -> tf.Tensor:
  """Maps integer sample indices outside [0, size) back inside, per fill mode."""
  if fill_mode == "reflect":  # d c b a | a b c d | d c b a
    period = 2 * size
    index = tf.math.floormod(index, period)
    return tf.where(index >= size, period - 1 - index, index)
  if fill_mode == "wrap":  # a b c d | a b c d | a b c d
    return tf.math.floormod(index, size)
  # 'nearest' (a a a a | a b c d | d d d d); 'constant' masks outside later.
  return tf.clip_by_value(index, 0, size - 1)


def resample(image: tf.Tensor, matrix: tf.Tensor, fill_mode: str = "nearest",
             cval: float = 0.0) -> tf.Tensor:
  """Bilinear resampling: ``out[y, x] = image(matrix @ (x, y, 1))``.

  Points outside the image follow ``fill_mode``, with scipy.ndimage's meaning:

  * 'nearest': ``a a a | a b c d | d d d`` (edge pixel repeated).
  * 'reflect': ``d c b a | a b c d | d c b a``, half-sample symmetric, about
    the pixel edge: scipy's 'reflect', numpy.pad's 'symmetric' and TF's
    'REFLECT' (not numpy.pad's 'reflect' = scipy's 'mirror', ``c b | a b c d``).
  * 'constant': ``cval`` wherever the point falls outside [0, n - 1], with no
    blending across the edge (scipy's 'constant'; TF's kernel blends).
  * 'wrap': ``a b c d | a b c d``, period n, interpolating across the seam
    (scipy's 'grid-wrap'; scipy's 'wrap' has period n - 1).

  Args:
    image: [H, W, C] float32.
    matrix: [3, 3] output-to-input map in (x, y, 1) pixel coordinates.
    fill_mode: one of :data:`FILL_MODES`.
    cval: the fill value for 'constant'.

  Returns:
    The resampled float32 [H, W, C] image.
  """
  if fill_mode not in FILL_MODES:
    raise ValueError(f"fill_mode must be one of {FILL_MODES}, got {fill_mode!r}")
  image = tf.convert_to_tensor(image, tf.float32)
  shape = tf.shape(image)
  h, w = shape[0], shape[1]
  m = tf.cast(matrix, _F64)
  ys, xs = tf.meshgrid(tf.range(h, dtype=_F64), tf.range(w, dtype=_F64), indexing="ij")
  x_in = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
  y_in = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
  x_in = tf.clip_by_value(x_in, -_COORD_LIMIT, _COORD_LIMIT)
  y_in = tf.clip_by_value(y_in, -_COORD_LIMIT, _COORD_LIMIT)
  x0, y0 = tf.floor(x_in), tf.floor(y_in)
  fx = tf.cast(x_in - x0, tf.float32)[..., None]
  fy = tf.cast(y_in - y0, tf.float32)[..., None]
  x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
  cols = [_extend(x0 + d, w, fill_mode) for d in (0, 1)]
  rows = [_extend(y0 + d, h, fill_mode) for d in (0, 1)]
  flat = tf.reshape(image, [h * w, shape[2]])
  def at(r: tf.Tensor, c: tf.Tensor) -> tf.Tensor:
    return tf.gather(flat, r * w + c)
  top = (1 - fx) * at(rows[0], cols[0]) + fx * at(rows[0], cols[1])
  bottom = (1 - fx) * at(rows[1], cols[0]) + fx * at(rows[1], cols[1])
  out = (1 - fy) * top + fy * bottom
  if fill_mode == "constant":
    hi_x, hi_y = tf.cast(w - 1, _F64), tf.cast(h - 1, _F64)
    inside = ((x_in >= -_EDGE_EPS) & (x_in <= hi_x + _EDGE_EPS)
              & (y_in >= -_EDGE_EPS) & (y_in <= hi_y + _EDGE_EPS))
    out = tf.where(inside[..., None], out, tf.cast(cval, tf.float32))
  out.set_shape(image.shape)
  return out


def affine_transform(image: tf.Tensor, theta: Any = 0.0, tx: Any = 0.0, ty: Any = 0.0,
                     shear: Any = 0.0, zx: Any = 1.0, zy: Any = 1.0,
                     flip_horizontal: Any = False, flip_vertical: Any = False,
                     fill_mode: str = "nearest", cval: float = 0.0) -> tf.Tensor:
  """Keras' ``apply_affine_transform`` plus its flips, in one resampling.

  Parameters have Keras' meaning (channels_last): ``theta`` degrees
  counter-clockwise; ``tx``/``ty`` pixels, positive moving content left/up;
  ``shear`` degrees; ``zx``/``zy`` > 1 zoom out; flips mirror the result.

  Args:
    image: [H, W, C] float32.
    theta, tx, ty, shear, zx, zy, flip_horizontal, flip_vertical: scalars or
      scalar tensors.
    fill_mode: one of :data:`FILL_MODES` (see :func:`resample`).
    cval: the fill value for 'constant'.

  Returns:
    The transformed float32 [H, W, C] image.
  """
  image = tf.convert_to_tensor(image, tf.float32)
  shape = tf.shape(image)
  matrix = transform_matrix(shape[0], shape[1], theta, tx, ty, shear, zx, zy,
                            flip_horizontal, flip_vertical)
  return resample(image, matrix, fill_mode, cval)


# -------------------------------------------------------------------- sampling


def _sample_shift(shift: ShiftRange, u_value: tf.Tensor, u_sign: tf.Tensor,
                  size: tf.Tensor) -> tf.Tensor:
  """One shift in pixels from two U(0, 1) draws, with Keras' distribution."""
  if shift.kind == "off":
    return tf.constant(0.0, _F64)
  if shift.kind == "uniform":
    value = (2 * u_value - 1) * shift.bound
  else:
    n = len(shift.values)
    index = tf.minimum(tf.cast(u_value * n, tf.int32), n - 1)
    sign = tf.where(u_sign < 0.5, -1.0, 1.0)
    value = tf.gather(tf.constant(shift.values, _F64), index) * tf.cast(sign, _F64)
  return value * tf.cast(size, _F64) if shift.fraction else value


def random_transform(config: AugmentConfig, seed: tf.Tensor, height: Any,
                     width: Any) -> dict[str, tf.Tensor]:
  """Draws one set of transform parameters, like ``get_random_transform``.

  Distributions are ImageDataGenerator's: theta ~ U(-r, r); shear ~ U(-s, s);
  zx, zy ~ U(low, high) independently; each enabled flip with probability 1/2;
  tx ~ U(-w, w) * width (horizontal) and ty ~ U(-h, h) * height (vertical), or
  Keras' discrete choice times a random sign for int/list ranges.

  Args:
    config: a validated config.
    seed: int32/int64[2], the stateless seed; equal seeds give equal draws.
    height: image height in pixels.
    width: image width in pixels.

  Returns:
    float64 scalars 'theta', 'tx', 'ty', 'shear', 'zx', 'zy' and bool scalars
    'flip_horizontal', 'flip_vertical': keyword arguments of
    :func:`affine_transform`.
  """
  u = tf.random.stateless_uniform([10], seed=seed, dtype=_F64)
  sym = 2 * u - 1  # U(-1, 1)
  low, high = config.zoom_range
  return {
      "theta": sym[0] * config.rotation_range,
      "tx": _sample_shift(config.width_shift, u[1], u[2], width),
      "ty": _sample_shift(config.height_shift, u[3], u[4], height),
      "shear": sym[5] * config.shear_range,
      "zx": low + (high - low) * u[6],
      "zy": low + (high - low) * u[7],
      "flip_horizontal": (u[8] < 0.5) & config.horizontal_flip,
      "flip_vertical": (u[9] < 0.5) & config.vertical_flip,
  }


def build(aug_config: Mapping[str, Any] | AugmentConfig | None) -> AugmentFn:
  """The per-example augmentation the train pipeline maps.

  ``rescale`` multiplies the result, as ImageDataGenerator does after its
  transforms (so ``cval`` is in the input's [0, 255] units). The pipeline then
  applies ``dataset.normalization`` on top: with the default 'rescale'
  normalization, ``rescale=1/255`` here would divide twice. Leave ``rescale``
  unset and let the pipeline normalize; set it only with normalization 'none'.

  Args:
    aug_config: a dict or ConfigDict with keys of :data:`DEFAULTS`.

  Returns:
    ``fn(image, seed)``: float32 [H, W, C] in [0, 255] and an int32/int64[2]
    stateless seed to the augmented float32 [H, W, C]; pure, so the same seed
    gives the same image, eagerly or inside ``tf.data.Dataset.map``.

  Raises:
    ConfigError: bad config, raised here, before any training (see
      :func:`parse_config`).
  """
  config = parse_config(aug_config)

  def augment(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    image = tf.convert_to_tensor(image)
    if image.shape.rank not in (None, 3):
      raise ValueError(f"augment expects one image [H, W, C], got shape {image.shape}")
    image = tf.cast(image, tf.float32)
    if config.resamples:
      shape = tf.shape(image)
      params = random_transform(config, seed, shape[0], shape[1])
      image = affine_transform(image, **params, fill_mode=config.fill_mode,
                               cval=config.cval)
    if config.rescale is not None:
      image = image * config.rescale
    return image

  return augment
