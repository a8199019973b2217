"""jaxcnn.visualize.uncertainty: reliability diagrams and certain/unsure images."""

import numpy as np
import pytest

from jaxcnn import metrics
from jaxcnn import visualize as vis

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _data(n=40, k=10, seed=0):
  rng = np.random.default_rng(seed)
  return rng, rng.dirichlet(np.ones(k), size=n), rng.integers(0, k, size=n)


def test_reliability_diagram_writes_png_with_the_ece(tmp_path):
  _, probs, labels = _data()
  path = tmp_path / "sub" / "reliability.png"
  fig = vis.plot_reliability_diagram(probs, labels, path=path, dpi=100)
  ece = metrics.expected_calibration_error(probs, labels)
  assert fig.axes[0].get_title() == f"Reliability diagram (ECE {ece:.4f})"
  assert path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 5000
  # One accuracy bar per non-empty bin, the histogram over all bins.
  bins = metrics.calibration_bins(probs, labels)
  assert len(fig.axes[1].patches) == metrics.NUM_BINS
  assert len(fig.axes[0].patches) == 2 * int((bins.counts > 0).sum())


def test_certainty_examples(tmp_path):
  rng, probs, labels = _data()
  images = rng.normal(size=(40, 28, 28, 1))
  path = tmp_path / "certain.png"
  names = [f"class {i}" for i in range(10)]
  fig = vis.plot_certainty_examples(images, probs, labels, k=3, class_names=names,
                                    std=probs / 10, path=path)
  assert len(fig.axes) == 12
  assert path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 5000
  # Default ranking: the predictive entropy.
  most_certain = int(np.argmin(np.asarray(metrics.entropy(probs))))
  assert fig.axes[0].get_title().startswith(
      f"most certain\ntrue {names[labels[most_certain]]}")
  assert "\nentropy " in fig.axes[0].get_title()
  # RGB images and ranking by a given score.
  rgb = rng.uniform(size=(40, 8, 8, 3))
  fig = vis.plot_certainty_examples(rgb, probs, labels, k=2, uncertainty=np.arange(40))
  assert fig.axes[0].get_title().endswith("score 0.000")  # most certain: lowest score
  assert fig.axes[4].get_title().endswith("score 39.000")  # least certain: highest


def test_certainty_examples_bad_inputs():
  rng, probs, labels = _data()
  images = rng.normal(size=(40, 28, 28, 1))
  with pytest.raises(ValueError, match=r"k must be in \[1, 40\]"):
    vis.plot_certainty_examples(images, probs, labels, k=41)
  with pytest.raises(ValueError, match="class_names has 2 names"):
    vis.plot_certainty_examples(images, probs, labels, class_names=["a", "b"])
  with pytest.raises(ValueError, match=r"uncertainty must be \[40\]"):
    vis.plot_certainty_examples(images, probs, labels, uncertainty=np.arange(3))
  with pytest.raises(ValueError, match="std must be"):
    vis.plot_certainty_examples(images, probs, labels, std=probs[:, :2])
  with pytest.raises(ValueError, match="images must be"):
    vis.plot_certainty_examples(images[:3], probs, labels)
