"""Keras ``ImageDataGenerator`` augmentation in pure JAX, over whole batches.

The same transforms, knobs and units as :mod:`jaxcnn.data.augment` (the
tf.data version; its docstring lists them and where they deliberately differ
from Keras), written as jittable functions of a batch so that augmentation
can run inside a compiled train step on device-resident data::

    fn = augment_jax.build(config.dataset.augmentation)    # validated here
    keys = augment_jax.example_keys(seed, epoch, positions)  # [N] keys
    images = fn(images_uint8_or_f32, keys)                   # f32[N, H, W, C]

The leading axes may be any batch layout (``[N]``, ``[devices, b]``), with
one key per image.

Two halves, as in the tf version: :func:`random_transforms` draws every
image's transform parameters from its key, and :func:`apply_transforms`
resamples the images with given parameters. For fixed parameters the result
equals ``augment.affine_transform`` (tests/test_data_augment_jax.py, which
states the float tolerance); the draws have the same distributions as
``augment.random_transform`` but are not the same numbers (JAX's and TF's
stateless generators differ), so the tf.data path and the device path
augment differently, each reproducibly.

Keys: an image's key is ``fold_in(fold_in(fold_in(key(seed), STREAM), epoch),
position)`` with ``position`` its global position in the epoch, so the draws
depend on neither the batch nor the device nor the process that holds the
image, and a resumed epoch replays them exactly.

Differences from the tf version, all from float32 (JAX runs without x64):

* The 3x3 matrix and the sample coordinates are float32 (the tf version
  composes in float64). Coordinates are off by a few float32 ulps of the
  image side, which moves a bilinear value by at most that times the local
  pixel step.
* 'constant' counts a coordinate within ``max(H, W) * EDGE_EPS`` pixels
  (8 float32 ulps of the image side) of the image edge as inside (the tf
  version: 1e-6 pixels), so that float32 rounding of an exact 90-degree
  rotation keeps its border. A sample that falls in that thin band outside
  the image is the edge pixel here and ``cval`` there.

The matrix is composed with explicit products rather than matrix multiplies:
on GPUs a float32 ``dot`` may run in TF32, which would round the coordinates
to about 1e-3 of their size.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

from jaxcnn.data.augment import FILL_MODES, AugmentConfig, ShiftRange, parse_config

# The augmentation keys are folded from their own stream of the seed's key,
# apart from the init, dropout and step keys ``state.create`` splits from it.
STREAM = 0x417567  # 'Aug'
# A sampled coordinate within max(H, W) * EDGE_EPS pixels of the image edge
# counts as inside for 'constant': float32 coordinates are off by a few ulps
# of the image side (2**-20 is 8 ulps of a number in [1, 2)).
EDGE_EPS = 2.0**-20
# Coordinates are clipped before the int cast; far outside is far outside.
_COORD_LIMIT = 2.0**24
_DEG = math.pi / 180

AugmentFn = Callable[[jax.Array, jax.Array], jax.Array]
Params = dict[str, jax.Array]

# The parameter names of :func:`affine_transform`, with their identities.
IDENTITY: dict[str, Any] = {
    "theta": 0.0, "tx": 0.0, "ty": 0.0, "shear": 0.0, "zx": 1.0, "zy": 1.0,
    "flip_horizontal": False, "flip_vertical": False,
}


# ----------------------------------------------------------------------- keys


def example_keys(seed: Any, epoch: Any, positions: Any) -> jax.Array:
  """Every image's key from (seed, epoch, position in the epoch).

  Args:
    seed: the run's seed (an int, or a traced int32 scalar: a population
      vmaps over its members' seeds).
    epoch: the epoch (int or traced int32 scalar).
    positions: int[N], each image's global position in the epoch (step *
      global batch + row), the same on any number of devices and processes.

  Returns:
    N typed PRNG keys; an image's key depends only on (seed, epoch, position).
  """
  base = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), STREAM), epoch)
  positions = jnp.asarray(positions, jnp.uint32)
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(base, positions)


# -------------------------------------------------------------------- matrices


def _sin_cos_degrees(degrees: jax.Array) -> tuple[jax.Array, jax.Array]:
  """sin and cos of an angle in degrees, exact at multiples of 90.

  The angle is reduced to [-45, 45] degrees before the conversion to radians,
  so a rotation by 90, 180 or 270 degrees moves pixels onto pixels exactly
  (float32 ``cos(pi / 2)`` is -4e-8, which would blur the result).
  """
  quarter = jnp.round(degrees / 90)
  rest = (degrees - 90 * quarter) * _DEG
  s, c = jnp.sin(rest), jnp.cos(rest)
  q = jnp.mod(quarter.astype(jnp.int32), 4)
  sin = jnp.select([q == 0, q == 1, q == 2], [s, c, -s], -c)
  cos = jnp.select([q == 0, q == 1, q == 2], [c, -s, -c], s)
  return sin, cos


def transform_matrix(height: int, width: int, theta: Any = 0.0, tx: Any = 0.0,
                     ty: Any = 0.0, shear: Any = 0.0, zx: Any = 1.0, zy: Any = 1.0,
                     flip_horizontal: Any = False, flip_vertical: Any = False) -> jax.Array:
  """``augment.transform_matrix`` in float32: one output-to-input pixel matrix.

  Keras' ``rotation @ shift @ shear @ zoom``, then the flips, about the true
  center ((width - 1) / 2, (height - 1) / 2), written out product by product.

  Args:
    height: image height in pixels (static).
    width: image width in pixels (static).
    theta, tx, ty, shear, zx, zy, flip_horizontal, flip_vertical: scalars
      with Keras' meaning (see ``augment.affine_transform``).

  Returns:
    float32[3, 3] mapping output (x, y, 1) to input (x, y, 1).
  """
  f32 = jnp.float32
  sn, c = _sin_cos_degrees(jnp.asarray(theta, f32))
  sin_s, cos_s = _sin_cos_degrees(jnp.asarray(shear, f32))
  fx = jnp.where(jnp.asarray(flip_horizontal, bool), -1.0, 1.0).astype(f32)
  fy = jnp.where(jnp.asarray(flip_vertical, bool), -1.0, 1.0).astype(f32)
  # shear @ zoom @ flip = [[zx fx, -sin(s) zy fy], [0, cos(s) zy fy]]
  bx = jnp.asarray(zx, f32) * fx
  by = jnp.asarray(zy, f32) * fy
  b01, b11 = -sin_s * by, cos_s * by
  # rotation @ (that, with the shift (tx, ty) as its translation)
  a00, a01 = c * bx, c * b01 - sn * b11
  a10, a11 = sn * bx, sn * b01 + c * b11
  tx, ty = jnp.asarray(tx, f32), jnp.asarray(ty, f32)
  t0, t1 = c * tx - sn * ty, sn * tx + c * ty
  cx, cy = (width - 1) / 2, (height - 1) / 2
  zero, one = jnp.zeros((), f32), jnp.ones((), f32)
  return jnp.stack([
      jnp.stack([a00, a01, cx + t0 - a00 * cx - a01 * cy]),
      jnp.stack([a10, a11, cy + t1 - a10 * cx - a11 * cy]),
      jnp.stack([zero, zero, one]),
  ])


# ------------------------------------------------------------------ resampling


def _extend(index: jax.Array, size: int, fill_mode: str) -> jax.Array:
  """Maps integer sample indices outside [0, size) back inside, per fill mode."""
  if fill_mode == "reflect":  # d c b a | a b c d | d c b a
    period = 2 * size
    index = jnp.mod(index, period)
    return jnp.where(index >= size, period - 1 - index, index)
  if fill_mode == "wrap":  # a b c d | a b c d | a b c d
    return jnp.mod(index, size)
  # 'nearest' (a a a a | a b c d | d d d d); 'constant' masks outside later.
  return jnp.clip(index, 0, size - 1)


def resample(image: jax.Array, matrix: jax.Array, fill_mode: str = "nearest",
             cval: float = 0.0) -> jax.Array:
  """Bilinear resampling of one image: ``out[y, x] = image(matrix @ (x, y, 1))``.

  The fill modes are ``augment.resample``'s (scipy.ndimage's 'nearest',
  'reflect', 'constant' without blending, and the period-n 'wrap').

  Args:
    image: [H, W, C], any real dtype (computed in float32).
    matrix: [3, 3] output-to-input map in (x, y, 1) pixel coordinates.
    fill_mode: one of :data:`FILL_MODES` (static).
    cval: the fill value for 'constant'.

  Returns:
    The resampled float32 [H, W, C] image.
  """
  if fill_mode not in FILL_MODES:
    raise ValueError(f"fill_mode must be one of {FILL_MODES}, got {fill_mode!r}")
  image = jnp.asarray(image).astype(jnp.float32)
  h, w, channels = image.shape
  m = jnp.asarray(matrix, jnp.float32)
  ys = jnp.arange(h, dtype=jnp.float32)[:, None]
  xs = jnp.arange(w, dtype=jnp.float32)[None, :]
  x_in = jnp.clip(m[0, 0] * xs + m[0, 1] * ys + m[0, 2], -_COORD_LIMIT, _COORD_LIMIT)
  y_in = jnp.clip(m[1, 0] * xs + m[1, 1] * ys + m[1, 2], -_COORD_LIMIT, _COORD_LIMIT)
  x0, y0 = jnp.floor(x_in), jnp.floor(y_in)
  fx, fy = (x_in - x0)[..., None], (y_in - y0)[..., None]
  x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
  cols = [_extend(x0 + d, w, fill_mode) for d in (0, 1)]
  rows = [_extend(y0 + d, h, fill_mode) for d in (0, 1)]
  flat = image.reshape(h * w, channels)

  def at(r: jax.Array, c: jax.Array) -> jax.Array:
    return flat[r * w + c]

  top = (1 - fx) * at(rows[0], cols[0]) + fx * at(rows[0], cols[1])
  bottom = (1 - fx) * at(rows[1], cols[0]) + fx * at(rows[1], cols[1])
  out = (1 - fy) * top + fy * bottom
  if fill_mode == "constant":
    eps = max(h, w) * EDGE_EPS
    inside = ((x_in >= -eps) & (x_in <= w - 1 + eps)
              & (y_in >= -eps) & (y_in <= h - 1 + eps))
    out = jnp.where(inside[..., None], out, jnp.asarray(cval, jnp.float32))
  return out


def affine_transform(image: jax.Array, theta: Any = 0.0, tx: Any = 0.0, ty: Any = 0.0,
                     shear: Any = 0.0, zx: Any = 1.0, zy: Any = 1.0,
                     flip_horizontal: Any = False, flip_vertical: Any = False,
                     fill_mode: str = "nearest", cval: float = 0.0) -> jax.Array:
  """``augment.affine_transform`` of one image: Keras' transforms in one resampling.

  Args:
    image: [H, W, C], any real dtype.
    theta, tx, ty, shear, zx, zy, flip_horizontal, flip_vertical: scalars
      (Keras' meaning: degrees counter-clockwise, pixels with positive moving
      content left/up, degrees, factors > 1 zooming out, mirrors).
    fill_mode: one of :data:`FILL_MODES` (static).
    cval: the fill value for 'constant'.

  Returns:
    The transformed float32 [H, W, C] image.
  """
  h, w = image.shape[0], image.shape[1]
  matrix = transform_matrix(h, w, theta, tx, ty, shear, zx, zy,
                            flip_horizontal, flip_vertical)
  return resample(image, matrix, fill_mode, cval)


def apply_transforms(images: jax.Array, params: Mapping[str, Any],
                     fill_mode: str = "nearest", cval: float = 0.0) -> jax.Array:
  """Transforms every image of a batch with its own parameters.

  Args:
    images: [N, H, W, C], any real dtype (uint8 included).
    params: keys of :data:`IDENTITY` (a missing key is the identity), each
      a scalar or an [N] array: what :func:`random_transforms` returns.
    fill_mode: one of :data:`FILL_MODES` (static).
    cval: the fill value for 'constant'.

  Returns:
    float32 [N, H, W, C].
  """
  unknown = set(params) - set(IDENTITY)
  if unknown:
    raise ValueError(f"unknown transform parameters {sorted(unknown)}; "
                     f"valid: {', '.join(IDENTITY)}")
  n = images.shape[0]
  full = {k: jnp.broadcast_to(jnp.asarray(params.get(k, v)), (n,))
          for k, v in IDENTITY.items()}
  return jax.vmap(lambda x, p: affine_transform(x, **p, fill_mode=fill_mode, cval=cval))(
      images, full)


# -------------------------------------------------------------------- sampling


def _sample_shift(shift: ShiftRange, u_value: jax.Array, u_sign: jax.Array,
                  size: int) -> jax.Array:
  """One shift in pixels from two U(0, 1) draws, with Keras' distribution."""
  if shift.kind == "off":
    return jnp.zeros((), jnp.float32)
  if shift.kind == "uniform":
    value = (2 * u_value - 1) * shift.bound
  else:
    n = len(shift.values)
    index = jnp.minimum((u_value * n).astype(jnp.int32), n - 1)
    sign = jnp.where(u_sign < 0.5, -1.0, 1.0)
    value = jnp.asarray(shift.values, jnp.float32)[index] * sign
  return value * size if shift.fraction else value


def random_transform(config: AugmentConfig, key: jax.Array, height: int,
                     width: int) -> Params:
  """Draws one image's transform parameters, like ``augment.random_transform``.

  ImageDataGenerator's distributions: theta ~ U(-r, r); shear ~ U(-s, s);
  zx, zy ~ U(low, high) independently; each enabled flip with probability
  1/2; tx ~ U(-w, w) * width, ty ~ U(-h, h) * height, or Keras' discrete
  choice times a random sign for int/list ranges. Disabled transforms give
  their identity.

  Args:
    config: a validated config (static).
    key: a PRNG key; equal keys give equal draws.
    height: image height in pixels (static).
    width: image width in pixels (static).

  Returns:
    float32 scalars 'theta', 'tx', 'ty', 'shear', 'zx', 'zy' and bool
    scalars 'flip_horizontal', 'flip_vertical'.
  """
  u = jax.random.uniform(key, (10,), jnp.float32)
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


def random_transforms(config: AugmentConfig, keys: jax.Array, height: int,
                      width: int) -> Params:
  """:func:`random_transform` for each of ``keys``: a dict of [N] arrays."""
  return jax.vmap(lambda k: random_transform(config, k, height, width))(keys)


# ----------------------------------------------------------------------- build


def augment(images: jax.Array, keys: jax.Array, config: AugmentConfig) -> jax.Array:
  """Augments a batch: each image transformed with the draws of its own key.

  Args:
    images: [..., H, W, C] in [0, 255], any real dtype (uint8 included);
      the leading axes are any batch layout, e.g. [N] or [devices, b].
    keys: PRNG keys shaped like the leading axes (:func:`example_keys`).
    config: a validated config (static; hashable, so it may be a static jit
      argument).

  Returns:
    float32 [..., H, W, C]: the transformed images times ``rescale`` (when
    set), as ``augment.build``'s function returns for each image.
  """
  images = jnp.asarray(images).astype(jnp.float32)
  if images.ndim < 4 or keys.shape != images.shape[:-3]:
    raise ValueError(f"augment expects images [..., H, W, C] and one key per image, "
                     f"got images {images.shape} and keys {keys.shape}")
  if config.resamples:
    lead, (h, w, c) = images.shape[:-3], images.shape[-3:]
    flat_keys = keys.reshape(-1)
    params = random_transforms(config, flat_keys, h, w)
    flat = apply_transforms(images.reshape(-1, h, w, c), params, config.fill_mode, config.cval)
    images = flat.reshape(*lead, h, w, c)
  if config.rescale is not None:
    images = images * config.rescale
  return images


def build(aug_config: Mapping[str, Any] | AugmentConfig | None) -> AugmentFn:
  """The batch augmentation for a config, validated now.

  Args:
    aug_config: a dict or ConfigDict with the keys of ``augment.DEFAULTS``
      (the same config as the tf.data path reads).

  Returns:
    ``fn(images, keys)``: [..., H, W, C] images in [0, 255] (uint8 or float)
    and one key per image to float32 [..., H, W, C]; pure and jittable.

  Raises:
    ConfigError: a bad config, with ``augment.parse_config``'s messages.
  """
  config = parse_config(aug_config)

  def fn(images: jax.Array, keys: jax.Array) -> jax.Array:
    return augment(images, keys, config)

  return fn
