"""Dropout layers: standard, always-on Monte Carlo, and alpha dropout.

Masks come from :func:`keep_mask`, several times cheaper than
``jax.random.bernoulli`` on XLA:CPU: it draws one 32-bit word per four units
(``jax.random.bits``, so threefry, 'rbg' and 'unsafe_rbg' keys all work; with
threefry, the original stream that keeps both outputs of each hash), splits
each word into four 8-bit numbers and compares them with an integer
threshold, and applies the mask as a product. This matters because MC
dropout draws a fresh mask per sample: with Bernoulli masks the random
numbers cost more than the matmuls of lecture 004's MLP; with these, 100 MC
samples cost about as much as 100 plain passes.

With 8 bits the drop probability is ``rate`` rounded to a multiple of 1/256
(0.2 -> 0.19922); the kept units are scaled by the exact ``1 / keep`` of that
rounded rate, so ``E[dropout(x)] = x`` holds exactly. Set ``mask_bits`` to 16
or 32 for a finer rate; rates that 8 bits cannot express (below 1/512 or
above 1 - 1/512) switch to more bits by themselves.

Switches (see ``Sequential.__call__``): ``Dropout`` and ``AlphaDropout`` are on
when ``deterministic`` is False, which defaults to ``not train``; MC dropout is
``train=False, deterministic=False`` (dropout on, BatchNorm frozen).
``MCDropout`` (lecture 004's ``MCDropout`` class) is on unless
``deterministic=True`` is passed explicitly, so even a plain evaluation call
samples.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models import activations

# Keras' AlphaDropout: the SELU saturation value -scale * alpha.
ALPHA_P = -activations.SELU_ALPHA * activations.SELU_SCALE  # -1.7580993408473766

_WIDTHS = (8, 16, 32)


def drop_threshold(rate: float, bits: int = 8) -> tuple[int, int]:
  """Integer threshold for a drop probability.

  Args:
    rate: the drop probability in [0, 1).
    bits: preferred width of the random numbers (8, 16 or 32).

  Returns:
    ``(threshold, bits)``: a unit is dropped when its ``bits``-bit uniform
    integer is below ``threshold``; the effective rate is
    ``threshold / 2**bits``. ``bits`` grows when the preferred width would
    round the rate to 0 or 1.
  """
  if bits not in _WIDTHS:
    raise ValueError(f"mask_bits must be 8, 16 or 32, got {bits}.")
  if not 0.0 <= rate < 1.0:
    raise ValueError(f"dropout rate must be in [0, 1), got {rate}.")
  for width in (8, 16, 32):
    if width < bits:
      continue
    threshold = round(rate * 2**width)
    if (threshold > 0 or rate == 0.0) and threshold < 2**width:
      return threshold, width
  return min(max(round(rate * 2**32), 1), 2**32 - 1), 32


def effective_rate(rate: float, bits: int = 8) -> float:
  """The drop probability a mask with ``bits``-bit numbers really uses."""
  threshold, width = drop_threshold(rate, bits)
  return threshold / 2**width


def uniform_bits(key: jax.Array, shape: tuple[int, ...], bits: int) -> jax.Array:
  """Uniform integers in [0, 2**bits) (as uint32), 32/bits of them per word."""
  size = math.prod(shape)
  per_word = 32 // bits
  # Threefry's original (non-partitionable) stream keeps both 32-bit outputs
  # of each hash; the partitionable default XORs them into one. On XLA:CPU
  # that makes it several times faster; inside pmap nothing is partitioned.
  # Keys of other implementations ('rbg', 'unsafe_rbg') ignore the flag.
  with jax.threefry_partitionable(False):
    words = jax.random.bits(key, (-(-size // per_word),), jnp.uint32)
  if per_word == 1:
    return words.reshape(shape)
  # Shifts and masks (not a bitcast to uint8, which XLA:CPU fuses poorly).
  shifts = jnp.arange(per_word, dtype=jnp.uint32)[:, None] * jnp.uint32(bits)
  small = (words[None, :] >> shifts) & jnp.uint32(2**bits - 1)
  flat = small.reshape(-1)
  if flat.shape[0] != size:
    flat = flat[:size]
  return flat.reshape(shape)


def keep_mask(key: jax.Array, shape: tuple[int, ...], rate: float,
              bits: int = 8) -> tuple[jax.Array, float]:
  """A boolean keep-mask and its exact keep probability.

  Args:
    key: a PRNG key (typed or raw; threefry, rbg or unsafe_rbg).
    shape: the mask shape.
    rate: drop probability in [0, 1).
    bits: preferred random-number width (see :func:`drop_threshold`).

  Returns:
    ``(mask, keep_prob)``.
  """
  threshold, width = drop_threshold(rate, bits)
  keep = uniform_bits(key, shape, width) >= jnp.uint32(threshold)
  return keep, 1.0 - threshold / 2**width


def _is_off(deterministic: bool | None, default: bool) -> bool:
  return default if deterministic is None else bool(deterministic)


class Dropout(nn.Module):
  """``keras.layers.Dropout``: inverted dropout, on in training.

  Attributes:
    rate: drop probability in [0, 1).
    mask_bits: random-number width of the mask (8, 16 or 32).
  """
  rate: float
  mask_bits: int = 8

  def apply_dropout(self, x: jax.Array) -> jax.Array:
    keep, keep_prob = keep_mask(self.make_rng("dropout"), x.shape, self.rate,
                                self.mask_bits)
    # A product, not jnp.where: XLA:CPU fuses it with the mask far better.
    return x * (keep.astype(x.dtype) * jnp.asarray(1.0 / keep_prob, x.dtype))

  def __call__(self, x: jax.Array, *, train: bool = False,
               deterministic: bool | None = None) -> jax.Array:
    if self.rate == 0.0 or _is_off(deterministic, not train):
      return x
    return self.apply_dropout(x)


class MCDropout(Dropout):
  """Lecture 004's ``MCDropout``: dropout that stays on at inference.

  Only an explicit ``deterministic=True`` switches it off.
  """

  def __call__(self, x: jax.Array, *, train: bool = False,
               deterministic: bool | None = None) -> jax.Array:
    del train  # On in training and in inference alike.
    if self.rate == 0.0 or _is_off(deterministic, False):
      return x
    return self.apply_dropout(x)


class AlphaDropout(nn.Module):
  """``keras.layers.AlphaDropout`` for SELU networks.

  Dropped units are set to the SELU saturation value ``alpha_p`` and the
  result is mapped by ``a * x + b`` with ``a = ((1 - p)(1 + p alpha_p^2))^-1/2``
  and ``b = -a alpha_p p``, so inputs with mean 0 and variance 1 keep them.
  ``p`` is the effective rate of the mask, which keeps the correction exact.

  Attributes:
    rate: drop probability in [0, 1).
    mask_bits: random-number width of the mask (8, 16 or 32).
  """
  rate: float
  mask_bits: int = 8

  def __call__(self, x: jax.Array, *, train: bool = False,
               deterministic: bool | None = None) -> jax.Array:
    if self.rate == 0.0 or _is_off(deterministic, not train):
      return x
    keep, keep_prob = keep_mask(self.make_rng("dropout"), x.shape, self.rate,
                                self.mask_bits)
    p = 1.0 - keep_prob
    a = ((1.0 - p) * (1.0 + p * ALPHA_P**2)) ** -0.5
    b = -a * ALPHA_P * p
    kept = keep.astype(x.dtype)
    # Keras: a * (x * kept + alpha_p * (1 - kept)) + b.
    return (x * kept + ALPHA_P * (1.0 - kept)) * jnp.asarray(a, x.dtype) + jnp.asarray(b, x.dtype)
