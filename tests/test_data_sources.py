"""jaxcnn.data.sources.prepare: the offline Fashion-MNIST mirror and the missing-data error."""

import collections
import gzip
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxcnn.data import sources

FASHION_MNIST_MIRROR = os.environ.get(sources.MIRROR_ENV, sources.DEFAULT_MIRROR_DIR)


def _idx(name: str, header: int) -> np.ndarray:
  with gzip.open(os.path.join(FASHION_MNIST_MIRROR, name), "rb") as f:
    return np.frombuffer(f.read(), np.uint8)[header:]


def test_mirror_gives_the_real_fashion_mnist(fashion_mnist_data_dir):
  # Already prepared: found in the data dir, no mirror or network needed.
  builder = sources.prepare("fashion_mnist", data_dir=fashion_mnist_data_dir,
                            mirror_dir="/nonexistent", download=False)
  assert builder.name == "fashion_mnist"
  assert str(builder.version) == "3.0.1"  # TFDS's own version, read back by TFDS
  assert builder.info.splits["train"].num_examples == 60_000
  assert builder.info.splits["test"].num_examples == 10_000
  assert builder.info.features["label"].names[0] == "T-shirt/top"

  # Plain TFDS reads it back.
  images, labels = tfds.as_numpy(tfds.load(
      "fashion_mnist", split="test", data_dir=fashion_mnist_data_dir,
      batch_size=-1, as_supervised=True))
  assert images.shape == (10_000, 28, 28, 1) and images.dtype == np.uint8
  assert labels.min() == 0 and labels.max() == 9
  # Fashion-MNIST's test set holds exactly 1000 images of each class.
  np.testing.assert_array_equal(np.bincount(labels), np.full(10, 1000))
  # The examples are exactly the IDX files' (image, label) pairs; TFDS stores
  # them in its own shuffled order, the same as its download would give.
  raw = np.concatenate([_idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784),
                        _idx("t10k-labels-idx1-ubyte.gz", 8)[:, None]], axis=1)
  got = np.concatenate([images.reshape(-1, 784), labels[:, None].astype(np.uint8)], axis=1)
  assert collections.Counter(map(bytes, raw)) == collections.Counter(map(bytes, got))


def _fake_mirror(folder, corrupt: str | None = None) -> str:
  """A mirror folder linking the real files, one of them optionally corrupted."""
  os.makedirs(folder, exist_ok=True)
  for name in sources.FASHION_MNIST_SHA256:
    dst = os.path.join(folder, name)
    if name == corrupt:
      data = bytearray(gzip.decompress(
          open(os.path.join(FASHION_MNIST_MIRROR, name), "rb").read()))
      data[100] = (data[100] + 1) % 10  # one label changed: a valid-looking file
      with gzip.open(dst, "wb") as f:
        f.write(bytes(data))
    else:
      os.symlink(os.path.join(FASHION_MNIST_MIRROR, name), dst)
  return str(folder)


def test_corrupted_mirror_file_is_a_checksum_error_and_writes_nothing(tmp_path):
  if not os.path.isdir(FASHION_MNIST_MIRROR):
    pytest.skip(f"Fashion-MNIST mirror not found at {FASHION_MNIST_MIRROR}")
  mirror = _fake_mirror(tmp_path / "mirror", corrupt="train-labels-idx1-ubyte.gz")
  data_dir = str(tmp_path / "tfds")
  with pytest.raises(sources.ChecksumError, match="train-labels-idx1-ubyte.gz") as e:
    sources.prepare("fashion_mnist", data_dir=data_dir, mirror_dir=mirror,
                    download=False)
  assert sources.FASHION_MNIST_SHA256["train-labels-idx1-ubyte.gz"] in str(e.value)
  # Nothing a later run would trust: no prepared dataset, no metadata left.
  assert not tfds.builder("fashion_mnist", data_dir=data_dir).is_prepared()
  left = [f for _, _, files in os.walk(data_dir) for f in files]
  assert "dataset_info.json" not in left
  assert not any(f.endswith((".tfrecord-00000-of-00001", "-idx1-ubyte")) for f in left)


def test_missing_fashion_mnist_lists_every_place_searched(tmp_path):
  data_dir = str(tmp_path / "tfds")
  os.makedirs(tmp_path / "empty_mirror")
  with pytest.raises(sources.DatasetNotFoundError) as e:
    sources.prepare("fashion_mnist", data_dir=data_dir,
                    mirror_dir=str(tmp_path / "empty_mirror"), download=False)
  assert isinstance(e.value, FileNotFoundError)
  msg = str(e.value)
  with pytest.raises(sources.DatasetNotFoundError, match="nowhere \\(no such folder\\)"):
    sources.prepare("fashion_mnist", data_dir=data_dir,
                    mirror_dir=str(tmp_path / "nowhere"), download=False)
  assert os.path.join(data_dir, "fashion_mnist", "3.0.1") in msg
  assert str(tmp_path / "empty_mirror") in msg
  assert "missing train-images-idx3-ubyte.gz" in msg
  assert "TFDS download: not tried" in msg
  for advice in ("apt-get install dataset-fashion-mnist", "tfds build fashion_mnist",
                 "JAXCNN_MIRROR_DIR"):
    assert advice in msg


def test_mirror_dir_resolution(monkeypatch):
  monkeypatch.setenv(sources.MIRROR_ENV, "/from/env")
  assert sources.mirror_dirs("/explicit") == ["/explicit"]
  assert sources.mirror_dirs("") == ["/from/env", sources.DEFAULT_MIRROR_DIR]
  monkeypatch.delenv(sources.MIRROR_ENV)
  assert sources.mirror_dirs("") == [sources.DEFAULT_MIRROR_DIR]


def test_missing_mnist_has_no_mirror_and_says_how_to_get_it(tmp_path, monkeypatch):
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))  # data_dir '' reads it
  with pytest.raises(sources.DatasetNotFoundError) as e:
    sources.prepare("mnist", download=False)
  msg = str(e.value)
  assert os.path.join(str(tmp_path), "mnist") in msg
  assert "tfds build mnist" in msg and "mirror" not in msg.split("How to get it")[0]
