"""jaxcnn.kernels: the lectures' classic kernels, checked against SciPy."""

import numpy as np
import pytest
from scipy import ndimage, signal

from jaxcnn import kernels


@pytest.fixture(scope="module")
def photo():
  """china.jpg (427x640 RGB) as float64, the reference dtype for SciPy."""
  return kernels.sample_image().astype(np.float64)


def test_random_walk_and_gaussian_are_lecture_002s():
  rng = np.random.RandomState(2)
  np.testing.assert_array_equal(kernels.random_walk(), np.cumsum(rng.normal(size=200)))
  g = kernels.gaussian_1d()
  expected = np.exp(-np.linspace(-2, 2, 15) ** 2)
  np.testing.assert_allclose(g, expected / expected.sum())
  assert g.sum() == pytest.approx(1.0)
  g2 = kernels.gaussian_2d()
  assert g2.shape == (15, 15)
  np.testing.assert_allclose(g2, g[:, None] * g[None, :])
  assert g2.sum() == pytest.approx(1.0)


def test_random_walk_smoothing_equals_scipy():
  walk, g = kernels.random_walk(), kernels.gaussian_1d()
  smoothed = np.asarray(kernels.convolve(walk, g))
  np.testing.assert_allclose(smoothed, ndimage.convolve(walk, g), atol=1e-4)
  # Smoothing removes the walk's step noise: the first differences shrink.
  assert np.std(np.diff(smoothed)) < 0.5 * np.std(np.diff(walk))


@pytest.mark.parametrize("mode", ["reflect", "mirror", "nearest", "wrap", "constant"])
@pytest.mark.parametrize("size", [2, 3, 4, 20])  # even sizes shift; 20 > the signal
def test_convolve_boundaries_and_even_sizes_equal_scipy(mode, size):
  rng = np.random.RandomState(0)
  x, k = rng.normal(size=13), rng.normal(size=size)
  np.testing.assert_allclose(np.asarray(kernels.convolve(x, k, mode=mode, cval=2.5)),
                             ndimage.convolve(x, k, mode=mode, cval=2.5), atol=1e-4)
  x2, k2 = rng.normal(size=(9, 11)), rng.normal(size=(size, 3))
  np.testing.assert_allclose(np.asarray(kernels.convolve(x2, k2, mode=mode, cval=2.5)),
                             ndimage.convolve(x2, k2, mode=mode, cval=2.5), atol=1e-4)


def test_convolve_is_true_convolution_not_correlation():
  x = np.zeros(7)
  x[3] = 1.0
  # An impulse returns the kernel itself, in order, only if the kernel is flipped.
  np.testing.assert_allclose(np.asarray(kernels.convolve(x, [1.0, 2.0, 3.0]))[2:5], [1, 2, 3])


def test_gaussian_blur_of_photo_equals_scipy_per_channel(photo):
  g2 = kernels.gaussian_2d()
  blurred = np.asarray(kernels.convolve(photo, g2))
  assert blurred.shape == photo.shape
  # Lecture 002: convolve(image, gaussian_2d[:, :, np.newaxis]).
  np.testing.assert_allclose(blurred, ndimage.convolve(photo, g2[:, :, None]), atol=2e-3)
  # A blur keeps the mean and lowers the high frequencies.
  assert blurred.mean() == pytest.approx(photo.mean(), rel=1e-3)
  assert np.abs(np.diff(blurred, axis=1)).mean() < 0.5 * np.abs(np.diff(photo, axis=1)).mean()


def test_gradient_filter_equals_scipy_and_finds_vertical_edges(photo):
  g2 = kernels.gaussian_2d()
  reference = ndimage.convolve(g2, [[-1.0, 1.0]])
  np.testing.assert_allclose(kernels.gradient_2d(), reference, atol=1e-7)
  gray = photo.mean(axis=2)
  np.testing.assert_allclose(np.asarray(kernels.convolve(gray, kernels.gradient_2d())),
                             ndimage.convolve(gray, reference), atol=2e-3)
  vertical = np.zeros((40, 40))
  vertical[:, 20:] = 255.0  # an edge along y: intensity changes along x
  horizontal = vertical.T
  response = np.abs(np.asarray(kernels.convolve(vertical, kernels.gradient_2d())))
  # A smoothed peak on the edge: 255 times the blurred step's slope (~0.16).
  assert set(response.argmax(axis=1)) <= {19, 20}
  assert response.max() > 0.15 * 255
  np.testing.assert_allclose(np.asarray(kernels.convolve(horizontal, kernels.gradient_2d())),
                             0.0, atol=1e-3)


def test_classic_filters_have_lecture_003_values():
  np.testing.assert_array_equal(kernels.FILTERS["emboss"], [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
  np.testing.assert_array_equal(kernels.FILTERS["edge_detect"], [[0, 1, 0], [1, -4, 1], [0, 1, 0]])
  np.testing.assert_array_equal(kernels.FILTERS["edge_enhance"], [[0, 0, 0], [-1, 1, 0], [0, 0, 0]])
  sharpen = kernels.FILTERS["sharpen"]
  assert sharpen.shape == (5, 5) and sharpen[2, 2] == 5 and sharpen.sum() == 1
  blur = kernels.FILTERS["blur"]
  assert blur.shape == (5, 5) and blur.sum() == 9 and blur[1:4, 1:4].min() == 1
  # Normalizing divides by a non-zero sum only (blur), leaving edges signed.
  np.testing.assert_allclose(kernels.classic_filter("blur"), blur / 9)
  np.testing.assert_array_equal(kernels.classic_filter("edge_detect"),
                                kernels.FILTERS["edge_detect"])
  with pytest.raises(ValueError, match="valid filters.*blur"):
    kernels.classic_filter("gaussian_blur")


@pytest.mark.parametrize("name", sorted(kernels.FILTERS))
def test_classic_filters_on_photo_equal_scipy(photo, name):
  k = kernels.classic_filter(name).astype(np.float64)
  gray = photo.mean(axis=2)
  np.testing.assert_allclose(np.asarray(kernels.convolve(gray, k)),
                             ndimage.convolve(gray, k), atol=2e-3)
  np.testing.assert_allclose(np.asarray(kernels.convolve(photo, k)),
                             ndimage.convolve(photo, k[:, :, None]), atol=2e-3)


def test_sample_image_is_the_real_photo():
  rgb = kernels.sample_image()
  assert rgb.shape == (427, 640, 3) and rgb.dtype == np.float32
  assert 0 <= rgb.min() and rgb.max() <= 255 and rgb.std() > 30
  np.testing.assert_allclose(kernels.sample_image(gray=True), rgb.mean(axis=2), rtol=1e-6)
  with pytest.raises(ValueError, match="china.jpg"):
    kernels.sample_image("lena.png")


def test_convolve_rejects_bad_input():
  with pytest.raises(ValueError, match="valid modes.*reflect"):
    kernels.convolve(np.zeros(5), [1.0], mode="same")
  with pytest.raises(ValueError, match="channels last"):
    kernels.convolve(np.zeros((2, 3, 4, 5)), np.ones((3, 3)))


def test_pattern_detection_reproduces_6600_and_0():
  ex = kernels.pattern_detection_example()
  assert ex.filter.shape == (7, 7) and set(np.unique(ex.filter)) == {0, 30}
  # 30*0 + 30*50 + 30*20 + 30*50 + 30*50 + 30*50 = 6600, term by term.
  assert ex.back_products == [(30, 0), (30, 50), (30, 20), (30, 50), (30, 50), (30, 50)]
  assert ex.back_score == 6600.0
  assert ex.head_products == [(30, 0)] * 6
  assert ex.head_score == 0.0
  # The head patch is not empty: it simply has no ink where the curve is.
  assert ex.head_patch.sum() > 0
  assert ex.back_score == sum(w * x for w, x in ex.back_products)


def test_correlate_valid_is_what_a_conv_layer_computes():
  rng = np.random.RandomState(1)
  image, kernel = rng.normal(size=(10, 12)), rng.normal(size=(3, 4))
  np.testing.assert_allclose(kernels.correlate_valid(image, kernel),
                             signal.correlate2d(image, kernel, mode="valid"), atol=1e-5)


def test_sobel_example_reproduces_lecture_003():
  ex = kernels.sobel_example()
  np.testing.assert_array_equal(ex.kernel, [[1, 0, -1], [2, 0, -2], [1, 0, -1]])
  # The lecture's figure: -1,2  -0,6  0,6  1,2 on the first row, -1,2 below.
  np.testing.assert_allclose(ex.shown, [-1.2, -0.6, 0.6, 1.2, -1.2], atol=1e-6)
  # The image holds only 0 and the lecture's 0.6.
  np.testing.assert_allclose(np.unique(ex.image), [0.0, 0.6])
  # Independently: the sum of products over each zero-padded 3x3 window ...
  padded = np.pad(ex.image.astype(np.float64), 1)
  by_hand = np.array([[np.sum(padded[i:i + 3, j:j + 3] * ex.kernel) for j in range(4)]
                      for i in range(4)])
  np.testing.assert_allclose(ex.output, by_hand, atol=1e-6)
  # ... which is SciPy's 'same' cross-correlation, not the flipped convolution.
  np.testing.assert_allclose(ex.output, signal.correlate2d(ex.image, ex.kernel, "same"),
                             atol=1e-6)
  assert not np.allclose(ex.output, signal.convolve2d(ex.image, ex.kernel, "same"))
