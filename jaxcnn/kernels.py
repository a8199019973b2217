"""Classic image kernels of the lectures, applied with JAX's convolution.

Lecture 002 smooths a random walk with a 1-D Gaussian, blurs a photograph with
the 2-D Gaussian (the outer product of the 1-D one) and finds vertical edges
with a Sobel-like gradient (the Gaussian convolved with ``[[-1, 1]]``).
Lecture 003 lists GIMP's sharpen, emboss, blur, edge enhance and edge detect.
Lecture 000 shows why a filter detects a pattern: a curve filter scores 6600 on
the rat's back and 0 on its head. Lecture 003's "Intuición de una convolución"
slides a Sobel kernel over a letter A drawn in 0.6: -1.2, -0.6, 0.6, 1.2, -1.2.

:func:`convolve` is a true convolution (flipped kernel) with the output size
and boundary handling of ``scipy.ndimage.convolve``, so every result here
equals SciPy's on the same input. The figures live in
:mod:`jaxcnn.visualize.classic`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

# scipy.ndimage boundary mode -> jnp.pad mode. SciPy's 'reflect' repeats the
# edge pixel (d c b a | a b c d), which numpy calls 'symmetric'; SciPy's
# 'mirror' does not (d c b | a b c d), which numpy calls 'reflect'.
_PAD_MODES = {
    "reflect": "symmetric",
    "mirror": "reflect",
    "nearest": "edge",
    "wrap": "wrap",
    "constant": "constant",
}

# Lecture 003, "Ejemplos de algunos filtros" (GIMP's convolution matrix page).
FILTERS: dict[str, np.ndarray] = {
    "sharpen": np.array([[0, 0, 0, 0, 0],
                         [0, 0, -1, 0, 0],
                         [0, -1, 5, -1, 0],
                         [0, 0, -1, 0, 0],
                         [0, 0, 0, 0, 0]], np.float32),
    "emboss": np.array([[-2, -1, 0],
                        [-1, 1, 1],
                        [0, 1, 2]], np.float32),
    "blur": np.array([[0, 0, 0, 0, 0],
                      [0, 1, 1, 1, 0],
                      [0, 1, 1, 1, 0],
                      [0, 1, 1, 1, 0],
                      [0, 0, 0, 0, 0]], np.float32),
    "edge_enhance": np.array([[0, 0, 0],
                              [-1, 1, 0],
                              [0, 0, 0]], np.float32),
    "edge_detect": np.array([[0, 1, 0],
                             [1, -4, 1],
                             [0, 1, 0]], np.float32),
}


@functools.partial(jax.jit, static_argnames=("mode",))
def _convolve(x: jax.Array, kernel: jax.Array, cval: jax.Array, mode: str) -> jax.Array:
  """Convolves x[b] with kernel for each leading b; see :func:`convolve`."""
  # SciPy centres a kernel of size n at index (n - 1) // 2 of the flipped
  # kernel, so an even kernel takes one more sample after the pixel than before.
  pads = [(0, 0)] + [((n - 1) // 2, n // 2) for n in kernel.shape]
  pad_kwargs = {"constant_values": cval} if mode == "constant" else {}
  padded = jnp.pad(x, pads, mode=_PAD_MODES[mode], **pad_kwargs)
  # XLA's convolution is a cross-correlation (what a conv layer computes);
  # flipping the kernel makes it the true convolution SciPy computes.
  rhs = jnp.flip(kernel)[None, None]
  out = jax.lax.conv_general_dilated(
      padded[:, None], rhs, window_strides=(1,) * kernel.ndim, padding="VALID",
      precision=jax.lax.Precision.HIGHEST)
  return out[:, 0]


def convolve(x: np.ndarray | jax.Array, kernel: np.ndarray | jax.Array | Sequence,
             mode: str = "reflect", cval: float = 0.0) -> jax.Array:
  """True convolution with the same output as ``scipy.ndimage.convolve``.

  Args:
    x: the signal or image. Either it has as many axes as the kernel (a 1-D
      signal, a grayscale image), or one more, the last, taken as channels: the
      kernel is applied to each channel on its own (SciPy's
      ``convolve(image, kernel[:, :, None])`` in lecture 002).
    kernel: the weights, any number of axes, odd or even sizes.
    mode: boundary handling, as in SciPy: 'reflect' (SciPy's default),
      'mirror', 'nearest', 'wrap' or 'constant'.
    cval: the value outside the input when ``mode='constant'``.

  Returns:
    float32 array of the shape of ``x``. (SciPy casts the result back to the
    input's dtype, truncating for uint8 photos; the exact values are kept here.)

  Raises:
    ValueError: for an unknown mode or shapes that do not fit.
  """
  if mode not in _PAD_MODES:
    raise ValueError(f"unknown mode {mode!r}; valid modes: {sorted(_PAD_MODES)}")
  x = jnp.asarray(x, jnp.float32)
  kernel = jnp.asarray(kernel, jnp.float32)
  if kernel.ndim == 0 or 0 in kernel.shape:
    raise ValueError(
        f"kernel must have at least one axis and no empty axis, got shape {kernel.shape}")
  if x.ndim == kernel.ndim:
    return _convolve(x[None], kernel, jnp.float32(cval), mode)[0]
  if x.ndim == kernel.ndim + 1:
    out = _convolve(jnp.moveaxis(x, -1, 0), kernel, jnp.float32(cval), mode)
    return jnp.moveaxis(out, 0, -1)
  raise ValueError(
      f"x of shape {x.shape} does not fit a kernel of shape {kernel.shape}: x must have "
      f"{kernel.ndim} axes, or {kernel.ndim + 1} with channels last")


def random_walk(num_steps: int = 200, seed: int = 2) -> np.ndarray:
  """Lecture 002's signal: the cumulative sum of standard normal steps.

  Args:
    num_steps: length of the walk.
    seed: seed of ``np.random.RandomState`` (the lecture uses 2).

  Returns:
    float64 array of shape ``(num_steps,)``.
  """
  return np.cumsum(np.random.RandomState(seed).normal(size=num_steps))


def gaussian_1d(size: int = 15, extent: float = 2.0) -> np.ndarray:
  """Lecture 002's smoothing filter: ``exp(-linspace(-extent, extent, size)**2)``, summing to 1."""
  if size < 1:
    raise ValueError(f"size must be >= 1, got {size}")
  g = np.exp(-np.linspace(-extent, extent, size) ** 2)
  return g / g.sum()


def gaussian_2d(size: int = 15, extent: float = 2.0) -> np.ndarray:
  """The 2-D Gaussian blur: the outer product of :func:`gaussian_1d` with itself."""
  g = gaussian_1d(size, extent)
  return g * g[:, np.newaxis]


def gradient_2d(size: int = 15, extent: float = 2.0) -> np.ndarray:
  """Lecture 002's Sobel-like filter: the 2-D Gaussian convolved with ``[[-1, 1]]``.

  Convolved with an image it responds to changes along x, so vertical lines
  stand out. Computed with :func:`convolve` ('reflect' borders, as SciPy).
  """
  return np.asarray(convolve(gaussian_2d(size, extent), np.array([[-1.0, 1.0]])))


def classic_filter(name: str, normalize: bool = True) -> np.ndarray:
  """One of lecture 003's GIMP kernels.

  Args:
    name: one of ``FILTERS``: 'sharpen', 'emboss', 'blur', 'edge_enhance',
      'edge_detect'.
    normalize: divide by the sum of the weights when it is not zero (GIMP's
      "normalise" option), so that blur keeps the image's brightness.

  Returns:
    float32 kernel.
  """
  if name not in FILTERS:
    raise ValueError(f"unknown filter {name!r}; valid filters: {sorted(FILTERS)}")
  k = FILTERS[name].copy()
  total = k.sum()
  return k / total if normalize and total != 0 else k


def sample_image(name: str = "china.jpg", gray: bool = False) -> np.ndarray:
  """A real photograph shipped inside scikit-learn, read with no network.

  Args:
    name: 'china.jpg' or 'flower.jpg' (``sklearn.datasets.load_sample_image``).
    gray: average the three colour channels (lecture 002's ``image.mean(axis=2)``).

  Returns:
    float32 array in [0, 255]: ``(427, 640, 3)``, or ``(427, 640)`` when gray.
  """
  valid = ("china.jpg", "flower.jpg")
  if name not in valid:
    raise ValueError(f"unknown sample image {name!r}; valid names: {valid}")
  try:
    from sklearn.datasets import load_sample_image  # pylint: disable=g-import-not-at-top
  except ImportError as e:  # scikit-learn is a test extra, not a core dependency
    raise ImportError("sample_image needs scikit-learn: pip install scikit-learn") from e
  image = load_sample_image(name).astype(np.float32)
  return image.mean(axis=2) if gray else image


# Lecture 000's pattern detection (after cs231n / A. Deshpande's "beginner's
# guide to CNNs"): a 7x7 curve detector with weight 30 along a curve ...
CURVE_FILTER = np.array([[0, 0, 0, 0, 0, 30, 0],
                         [0, 0, 0, 0, 30, 0, 0],
                         [0, 0, 0, 30, 0, 0, 0],
                         [0, 0, 0, 30, 0, 0, 0],
                         [0, 0, 0, 30, 0, 0, 0],
                         [0, 0, 0, 30, 0, 0, 0],
                         [0, 0, 0, 0, 0, 0, 0]], np.float32)
# ... the receptive field on the rat's back, whose outline follows the curve:
# under the six weights lie 0, 50, 20, 50, 50, 50 (the lecture's six products)
RAT_BACK_PATCH = np.array([[0, 0, 0, 0, 0, 0, 30],
                           [0, 0, 0, 0, 50, 50, 50],
                           [0, 0, 0, 20, 50, 0, 0],
                           [0, 0, 0, 50, 50, 0, 0],
                           [0, 0, 0, 50, 50, 0, 0],
                           [0, 0, 0, 50, 50, 0, 0],
                           [0, 0, 0, 50, 50, 0, 0]], np.float32)
# ... and on its head, whose outline lies where the filter's weights are zero.
RAT_HEAD_PATCH = np.array([[0, 0, 0, 0, 0, 0, 0],
                           [0, 40, 0, 0, 0, 0, 0],
                           [40, 0, 40, 0, 0, 0, 0],
                           [40, 20, 0, 0, 0, 0, 0],
                           [0, 50, 0, 0, 0, 0, 0],
                           [0, 0, 50, 0, 0, 0, 0],
                           [25, 25, 0, 50, 0, 0, 0]], np.float32)


class PatternDetection(NamedTuple):
  """Lecture 000's worked example: what a conv filter computes on two patches."""
  filter: np.ndarray            # the 7x7 curve detector
  back_patch: np.ndarray        # receptive field on the rat's back
  head_patch: np.ndarray        # receptive field on the rat's head
  back_products: list[tuple[float, float]]  # (weight, pixel) under each non-zero weight
  head_products: list[tuple[float, float]]
  back_score: float             # 30*0 + 30*50 + 30*20 + 30*50 + 30*50 + 30*50 = 6600
  head_score: float             # 30*0 + ... = 0


def correlate_valid(image: np.ndarray | jax.Array, kernel: np.ndarray | jax.Array) -> np.ndarray:
  """What a conv layer computes: the kernel slid (unflipped) over the image, 'valid' borders."""
  image = jnp.asarray(image, jnp.float32)
  kernel = jnp.asarray(kernel, jnp.float32)
  if image.ndim != 2 or kernel.ndim != 2:
    raise ValueError(f"expected 2-D image and kernel, got shapes {image.shape} and {kernel.shape}")
  out = jax.lax.conv_general_dilated(
      image[None, None], kernel[None, None], (1, 1), "VALID",
      precision=jax.lax.Precision.HIGHEST)
  return np.asarray(out[0, 0])


def detection_products(kernel: np.ndarray, patch: np.ndarray) -> list[tuple[float, float]]:
  """The (weight, pixel) pairs under the kernel's non-zero weights, in row order."""
  kernel, patch = np.asarray(kernel), np.asarray(patch)
  if kernel.shape != patch.shape:
    raise ValueError(f"kernel {kernel.shape} and patch {patch.shape} must have the same shape")
  return [(float(kernel[i, j]), float(patch[i, j])) for i, j in zip(*np.nonzero(kernel))]


def pattern_detection_example() -> PatternDetection:
  """Reproduces lecture 000's 6600 (rat's back) and 0 (rat's head).

  Each score is what a conv layer computes at one position
  (:func:`correlate_valid` of the 7x7 patch with the 7x7 filter): high where
  the image has the filter's shape, zero where it has none of it.
  """
  back_score = float(correlate_valid(RAT_BACK_PATCH, CURVE_FILTER)[0, 0])
  head_score = float(correlate_valid(RAT_HEAD_PATCH, CURVE_FILTER)[0, 0])
  return PatternDetection(
      filter=CURVE_FILTER, back_patch=RAT_BACK_PATCH, head_patch=RAT_HEAD_PATCH,
      back_products=detection_products(CURVE_FILTER, RAT_BACK_PATCH),
      head_products=detection_products(CURVE_FILTER, RAT_HEAD_PATCH),
      back_score=back_score, head_score=head_score)


# Lecture 003, "Intuición de una convolución": the vertical-edge Sobel kernel
# slid over a letter A drawn in 0.6 on a 4x4 grid (blank cells are 0).
SOBEL_KERNEL = np.array([[1, 0, -1],
                         [2, 0, -2],
                         [1, 0, -1]], np.float32)
SOBEL_IMAGE = np.array([[0, 0.6, 0.6, 0],
                        [0.6, 0, 0, 0.6],
                        [0.6, 0.6, 0.6, 0.6],
                        [0.6, 0, 0, 0.6]], np.float32)
# The lecture's figure, in the order the kernel visits positions: the first
# output row, then the first value of the second.
SOBEL_LECTURE_OUTPUTS = (-1.2, -0.6, 0.6, 1.2, -1.2)


class SobelExample(NamedTuple):
  """Lecture 003's worked convolution: a Sobel kernel slid over a small image."""
  kernel: np.ndarray   # 3x3 Sobel, [[1, 0, -1], [2, 0, -2], [1, 0, -1]]
  image: np.ndarray    # 4x4 letter A in 0.6
  output: np.ndarray   # 4x4: one value per pixel (zero-padded borders)
  shown: np.ndarray    # the lecture's five values, in visiting order


def sobel_example() -> SobelExample:
  """Reproduces lecture 003's Sobel example: -1.2, -0.6, 0.6, 1.2, then -1.2.

  The kernel is slid unflipped (:func:`correlate_valid`, what a conv layer
  computes) with stride 1. The figure's output rows are as wide as the 4x4
  image, so its borders are filled with zeros (Keras' ``padding='same'``, the
  lecture's "llenar de ceros"); without padding the output would be
  ``(n - m + 1) x (n - m + 1)`` = 2x2.
  """
  output = correlate_valid(np.pad(SOBEL_IMAGE, 1), SOBEL_KERNEL)
  shown = output.reshape(-1)[:len(SOBEL_LECTURE_OUTPUTS)]
  return SobelExample(kernel=SOBEL_KERNEL, image=SOBEL_IMAGE, output=output, shown=shown)
