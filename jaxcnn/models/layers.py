"""Keras-equivalent layers as Flax linen modules (NHWC, float32).

Parameter names and layouts are Keras' own, so weights move between the two
unchanged: Conv2D ``kernel (kh, kw, in, filters)`` and ``bias``, Dense
``kernel (in, units)`` and ``bias``. BatchNormalization keeps Flax's names:
params ``scale`` (Keras gamma) and ``bias`` (beta), batch_stats ``mean`` and
``var`` (moving_mean, moving_variance).

Every layer is called as ``layer(x, train=..., deterministic=...)`` so the
Sequential model can drive them uniformly; layers ignore what they don't use.
The dropout family lives in :mod:`jaxcnn.models.dropout`.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxcnn import collectives
from jaxcnn.models import activations
from jaxcnn.models import initializers
from jaxcnn.models import vgg16

Pair = tuple[int, int]

_GLOROT = initializers.NAMED["glorot_uniform"]
_ZEROS = initializers.NAMED["zeros"]


def _activate(activation: activations.Activation | None, x: jax.Array) -> jax.Array:
  return x if activation is None else activation(x)


class Conv2D(nn.Module):
  """``keras.layers.Conv2D`` with NHWC inputs.

  ``'same'`` padding pads like TensorFlow (the extra pixel goes after), which
  is also what ``lax`` does.
  """
  filters: int
  kernel_size: Pair = (3, 3)
  strides: Pair = (1, 1)
  padding: str = "valid"
  dilation_rate: Pair = (1, 1)
  activation: activations.Activation | None = None
  use_bias: bool = True
  kernel_initializer: Any = _GLOROT
  bias_initializer: Any = _ZEROS

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False,
               deterministic: bool | None = None) -> jax.Array:
    del train, deterministic
    kernel = self.param("kernel", self.kernel_initializer,
                        (*self.kernel_size, x.shape[-1], self.filters), jnp.float32)
    y = lax.conv_general_dilated(
        x, kernel.astype(x.dtype), window_strides=self.strides,
        padding=self.padding.upper(), rhs_dilation=self.dilation_rate,
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.use_bias:
      y = y + self.param("bias", self.bias_initializer, (self.filters,),
                         jnp.float32).astype(x.dtype)
    return _activate(self.activation, y)


class Dense(nn.Module):
  """``keras.layers.Dense``: ``activation(x @ kernel + bias)`` on the last axis."""
  units: int
  activation: activations.Activation | None = None
  use_bias: bool = True
  kernel_initializer: Any = _GLOROT
  bias_initializer: Any = _ZEROS

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False,
               deterministic: bool | None = None) -> jax.Array:
    del train, deterministic
    kernel = self.param("kernel", self.kernel_initializer,
                        (x.shape[-1], self.units), jnp.float32)
    y = x @ kernel.astype(x.dtype)
    if self.use_bias:
      y = y + self.param("bias", self.bias_initializer, (self.units,),
                         jnp.float32).astype(x.dtype)
    return _activate(self.activation, y)


def _whole_windows(x: jax.Array, window: Pair) -> tuple[int, int]:
  """How many whole windows fit along H and W (Keras' 'valid' floors odd sizes)."""
  *_, h, w, _ = x.shape
  oh, ow = h // window[0], w // window[1]
  if oh == 0 or ow == 0:
    raise ValueError(f"Pooling window {window} is larger than the input {h}x{w}.")
  return oh, ow


def _block_view(x: jax.Array, window: Pair) -> jax.Array:
  """Crops ``x`` to whole windows and splits H and W into (blocks, window)."""
  *batch, _, _, c = x.shape
  (kh, kw), (oh, ow) = window, _whole_windows(x, window)
  x = x[..., :oh * kh, :ow * kw, :]
  return x.reshape(*batch, oh, kh, ow, kw, c)


def _window_slices(x: jax.Array, window: Pair) -> list[jax.Array]:
  """The ``kh * kw`` strided views of non-overlapping windows, in row-major order.

  Slice ``i * kw + j`` holds element ``(i, j)`` of every whole window.
  """
  (kh, kw), (oh, ow) = window, _whole_windows(x, window)
  return [x[..., i:oh * kh:kh, j:ow * kw:kw, :] for i in range(kh) for j in range(kw)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _max_pool_windows(x: jax.Array, window: Pair) -> jax.Array:
  views = _window_slices(x, window)
  return functools.reduce(jnp.maximum, views)


def _max_pool_windows_fwd(x, window):
  y = _max_pool_windows(x, window)
  return y, (x, y)


def _max_pool_windows_bwd(window, residuals, g):
  x, y = residuals
  kh, kw = window
  views = _window_slices(x, window)
  # Each window's gradient goes to its FIRST maximum in row-major order, as
  # XLA's select-and-scatter (jax.grad of nn.max_pool) and TensorFlow's
  # MaxPoolGrad do: elementwise, so XLA fuses it into one loop.
  taken = jnp.zeros(y.shape, bool)
  parts = []
  for v in views:
    first = (v == y) & ~taken
    parts.append(jnp.where(first, g, jnp.zeros_like(g)))
    taken = taken | first
  *batch, oh, ow, c = y.shape
  # (..., oh, ow, c) x (kh*kw) -> (..., oh, kh, ow, kw, c): the windows' layout.
  dx = jnp.stack(parts, axis=-2).reshape(*batch, oh, ow, kh, kw, c)
  dx = jnp.moveaxis(dx, -3, -4).reshape(*batch, oh * kh, ow * kw, c)
  h, w = x.shape[-3], x.shape[-2]
  if (h, w) != (oh * kh, ow * kw):  # cropped rows/columns get no gradient
    pad = [(0, 0)] * (x.ndim - 3) + [(0, h - oh * kh), (0, w - ow * kw), (0, 0)]
    dx = jnp.pad(dx, pad)
  return (dx,)


_max_pool_windows.defvjp(_max_pool_windows_fwd, _max_pool_windows_bwd)


def max_pool(x: jax.Array, pool_size: Pair, strides: Pair | None = None,
             padding: str = "valid") -> jax.Array:
  """``MaxPooling2D``'s function.

  Non-overlapping 'valid' windows (the common case, e.g. 2x2 stride 2) take
  the elementwise maximum of the ``kh * kw`` strided views, with a custom
  gradient that sends each window's gradient to its first maximum: the same
  values and gradients as ``nn.max_pool`` (tested equal, ties included), but
  XLA:CPU fuses both into single loops instead of running reduce-window and
  select-and-scatter, which it does several times slower. Other cases use
  ``nn.max_pool``.
  """
  strides = pool_size if strides is None else strides
  if tuple(strides) == tuple(pool_size) and padding == "valid":
    return _max_pool_windows(x, tuple(pool_size))
  return nn.max_pool(x, tuple(pool_size), tuple(strides), padding.upper())


def avg_pool(x: jax.Array, pool_size: Pair, strides: Pair | None = None,
             padding: str = "valid") -> jax.Array:
  """``AveragePooling2D``'s function ('same' windows average real pixels only)."""
  strides = pool_size if strides is None else strides
  if tuple(strides) == tuple(pool_size) and padding == "valid":
    return _block_view(x, pool_size).mean(axis=(-4, -2))
  return nn.avg_pool(x, tuple(pool_size), tuple(strides), padding.upper(),
                     count_include_pad=False)


class MaxPooling2D(nn.Module):
  """``keras.layers.MaxPooling2D`` (strides default to the pool size)."""
  pool_size: Pair = (2, 2)
  strides: Pair | None = None
  padding: str = "valid"

  def __call__(self, x, *, train=False, deterministic=None):
    del train, deterministic
    return max_pool(x, self.pool_size, self.strides, self.padding)


class AveragePooling2D(nn.Module):
  """``keras.layers.AveragePooling2D``."""
  pool_size: Pair = (2, 2)
  strides: Pair | None = None
  padding: str = "valid"

  def __call__(self, x, *, train=False, deterministic=None):
    del train, deterministic
    return avg_pool(x, self.pool_size, self.strides, self.padding)


class GlobalAveragePooling2D(nn.Module):
  """``keras.layers.GlobalAveragePooling2D``: mean over height and width."""

  def __call__(self, x, *, train=False, deterministic=None):
    del train, deterministic
    return x.mean(axis=(-3, -2))


class GlobalMaxPooling2D(nn.Module):
  """``keras.layers.GlobalMaxPooling2D``: max over height and width."""

  def __call__(self, x, *, train=False, deterministic=None):
    del train, deterministic
    return x.max(axis=(-3, -2))


class Flatten(nn.Module):
  """``keras.layers.Flatten``: row-major over (H, W, C), batch axis kept."""

  def __call__(self, x, *, train=False, deterministic=None):
    del train, deterministic
    return x.reshape(x.shape[0], -1)


class Activation(nn.Module):
  """``keras.layers.Activation``."""
  activation: activations.Activation | None = None

  def __call__(self, x, *, train=False, deterministic=None):
    del train, deterministic
    return _activate(self.activation, x)


class LeakyReLU(nn.Module):
  """``keras.layers.LeakyReLU`` (the layer's Keras default slope is 0.3)."""
  alpha: float = 0.3

  def __call__(self, x, *, train=False, deterministic=None):
    del train, deterministic
    return activations.leaky_relu(x, self.alpha)


class BatchNormalization(nn.Module):
  """``keras.layers.BatchNormalization`` over the last axis.

  Keras defaults: momentum 0.99, epsilon 1e-3. With ``train=True`` it
  normalizes with the batch mean and (biased) variance and updates the
  moving averages ``m <- momentum * m + (1 - momentum) * batch``; otherwise it
  uses the moving averages. With ``axis_name`` (inside ``pmap``) the batch
  statistics are averaged over devices, so every device normalizes with the
  statistics of the global batch.
  """
  momentum: float = 0.99
  epsilon: float = 1e-3
  center: bool = True
  scale: bool = True
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False,
               deterministic: bool | None = None) -> jax.Array:
    del deterministic
    features = x.shape[-1]
    moving_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
    moving_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
    if train:
      axes = tuple(range(x.ndim - 1))
      xf = x.astype(jnp.float32)
      mean = xf.mean(axes)
      if self.axis_name is not None:
        mean = collectives.pmean(mean, self.axis_name)
      # Two-pass variance (as tf.nn.moments): no cancellation error.
      var = jnp.square(xf - mean).mean(axes)
      if self.axis_name is not None:
        var = collectives.pmean(var, self.axis_name)
      if not self.is_initializing():
        m = self.momentum
        moving_mean.value = m * moving_mean.value + (1.0 - m) * mean
        moving_var.value = m * moving_var.value + (1.0 - m) * var
    else:
      mean, var = moving_mean.value, moving_var.value
    mul = lax.rsqrt(var + self.epsilon)
    if self.scale:
      mul = mul * self.param("scale", nn.initializers.ones, (features,), jnp.float32)
    y = (x - mean.astype(x.dtype)) * mul.astype(x.dtype)
    if self.center:
      y = y + self.param("bias", nn.initializers.zeros, (features,), jnp.float32).astype(x.dtype)
    return y


class LocallyConnected2D(nn.Module):
  """Keras 2's ``LocallyConnected2D`` (lecture 000's bonus), 'valid' padding.

  A convolution whose filters are not shared: every output position has its
  own. Kernel ``(out_h, out_w, kh, kw, in, filters)``, bias ``(out_h, out_w,
  filters)``: ``out_h * out_w * (kh * kw * in + 1) * filters`` parameters, as
  in Keras 2. The initializer's fans are those of one position's filter
  (``kh * kw * in`` and ``filters``).
  """
  filters: int
  kernel_size: Pair = (3, 3)
  strides: Pair = (1, 1)
  activation: activations.Activation | None = None
  use_bias: bool = True
  kernel_initializer: Any = _GLOROT
  bias_initializer: Any = _ZEROS

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False,
               deterministic: bool | None = None) -> jax.Array:
    del train, deterministic
    kh, kw = self.kernel_size
    cin = x.shape[-1]
    # (N, oh, ow, cin * kh * kw) with the features ordered (cin, kh, kw).
    patches = lax.conv_general_dilated_patches(
        x, (kh, kw), self.strides, "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    n, oh, ow, _ = patches.shape
    patches = patches.reshape(n, oh, ow, cin, kh, kw)
    init = self.kernel_initializer
    if isinstance(init, initializers.VarianceScaling):
      init = initializers.VarianceScaling(init.scale, init.mode, init.distribution, batch_axes=2)
    kernel = self.param("kernel", init, (oh, ow, kh, kw, cin, self.filters), jnp.float32)
    y = jnp.einsum("nhwcij,hwijcf->nhwf", patches, kernel.astype(x.dtype))
    if self.use_bias:
      y = y + self.param("bias", self.bias_initializer, (oh, ow, self.filters),
                         jnp.float32).astype(x.dtype)
    return _activate(self.activation, y)


class VGGPreprocess(nn.Module):
  """Keras' VGG16 ``preprocess_input`` as a layer, after ``x * pixel_scale``.

  ``pixel_scale`` brings the pipeline's images back to [0, 255]: 255 for the
  default 'rescale' normalization (x / 255), 1 for 'none'.
  """
  pixel_scale: float = 255.0

  def __call__(self, x, *, train=False, deterministic=None):
    del train, deterministic
    return vgg16.preprocess_input(x * self.pixel_scale)
