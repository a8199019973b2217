"""jaxcnn.data.sources.prepare: the offline mirror, the download, and every error.

Each error is one line (``main`` prints it as one ``error:`` line) that names
what is wrong and what to do; tests/test_cli_data_errors.py checks the same
cases from the command line.
"""

import collections
import gzip
import os
import socket

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxcnn import config as config_lib
from jaxcnn import run
from jaxcnn.data import download
from jaxcnn.data import errors
from jaxcnn.data import mirror as mirror_lib
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
  assert "checksum mismatch" in str(e.value) and "\n" not in str(e.value)
  # Printed by main as one line; still a ValueError, as it always was.
  assert isinstance(e.value, run.user_errors()) and isinstance(e.value, ValueError)
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
  assert "\n" not in msg  # main prints it as one error: line
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
  assert "tfds build mnist" in msg and "mirror" not in msg



def test_unknown_name_names_the_closest_registered_one(tmp_path):
  with pytest.raises(errors.UnknownDatasetError) as e:
    sources.prepare("fashon_mnist", data_dir=str(tmp_path), download=False)
  msg = str(e.value)
  assert "Unknown dataset 'fashon_mnist' (dataset.name). Did you mean 'fashion_mnist'?" in msg
  assert "\n" not in msg and len(msg) < 300  # not TFDS's list of every dataset
  assert isinstance(e.value, config_lib.ConfigError)
  with pytest.raises(errors.UnknownDatasetError, match="No registered name is close"):
    sources.prepare("qqqqqqqqqqqq", data_dir=str(tmp_path), download=False)
  with pytest.raises(errors.UnknownDatasetError,
                     match=r"'fashion_mnist:9.9.9': .*at version 9.9.9, only: 3.0.1"):
    sources.prepare("fashion_mnist:9.9.9", data_dir=str(tmp_path), download=False)


def _damaged_mirror(folder, name: str, damage) -> str:
  """A mirror folder linking the real files, ``name`` replaced by ``damage(gz bytes)``."""
  os.makedirs(folder, exist_ok=True)
  for fname in sources.FASHION_MNIST_SHA256:
    src, dst = os.path.join(FASHION_MNIST_MIRROR, fname), os.path.join(folder, fname)
    if fname == name:
      with open(src, "rb") as f:
        data = f.read()
      with open(dst, "wb") as f:
        f.write(damage(data))
    else:
      os.symlink(src, dst)
  return str(folder)


def _flip(data: bytes) -> bytes:
  out = bytearray(data)
  for i in (2000, 2001, 2002):
    out[i] ^= 0xFF
  return bytes(out)


@pytest.mark.parametrize("damage,what", [
    (lambda d: d[:len(d) // 3], "is truncated (1,708 bytes; the dataset-fashion-mnist copy has 5,125)"),
    (_flip, "is not a valid gzip file (Error -3 while decompressing"),
    (lambda d: b"not gzip at all", "is not a valid gzip file (Not a gzipped file"),
])
def test_broken_mirror_file_is_named_before_anything_is_prepared(tmp_path, damage, what):
  if not os.path.isdir(FASHION_MNIST_MIRROR):
    pytest.skip(f"Fashion-MNIST mirror not found at {FASHION_MNIST_MIRROR}")
  name = "t10k-labels-idx1-ubyte.gz"
  folder = _damaged_mirror(tmp_path / "mirror", name, damage)
  data_dir = str(tmp_path / "tfds")
  with pytest.raises(errors.MirrorFileError) as e:
    sources.prepare("fashion_mnist", data_dir=data_dir, mirror_dir=folder, download=False)
  msg = str(e.value)
  assert f"Mirror file {os.path.join(folder, name)} {what}" in msg
  assert "apt-get install --reinstall dataset-fashion-mnist" in msg and "\n" not in msg
  assert isinstance(e.value, run.user_errors())
  # Checked before TFDS started: not even its folder was made.
  assert not os.path.exists(data_dir)


def test_mirror_files_are_verified_before_the_builder_is_made(tmp_path, monkeypatch):
  made = []
  monkeypatch.setattr(mirror_lib, "FashionMNISTMirror",
                      lambda **kw: made.append(kw) or pytest.fail("builder made"))
  folder = tmp_path / "mirror"
  folder.mkdir()
  for fname in sources.FASHION_MNIST_SHA256:
    with gzip.open(folder / fname, "wb") as f:
      f.write(b"\0" * 64)  # valid gzip, wrong contents
  with pytest.raises(sources.ChecksumError, match="train-images-idx3-ubyte.gz: checksum"):
    mirror_lib.prepare_from_mirror(str(tmp_path / "tfds"), str(folder))
  assert not made


class _Builder:
  """Enough of a TFDS builder for download.try_download."""

  def __init__(self, urls, fail=None):
    self.url_infos = {u: None for u in urls}
    self.fail = fail
    self.retries_seen = []

  def download_and_prepare(self):
    from tensorflow_datasets.core.download import downloader
    self.retries_seen.append(downloader.MAX_RETRIES)
    if self.fail:
      raise self.fail


def test_download_hosts_are_the_urls_and_tfds_bucket():
  builder = _Builder(["http://a.example/x.gz", "https://b.example:8443/y", "http://a.example/z"])
  assert download.download_hosts(builder) == [
      download.GCS_HOST, ("a.example", 80), ("b.example", 8443)]
  assert download.download_hosts(_Builder([])) == []


def test_offline_download_is_tried_once_without_retries(monkeypatch):
  from tensorflow_datasets.core.download import downloader
  saved = downloader.MAX_RETRIES
  monkeypatch.setattr(download, "unreachable", lambda hosts: "a.example: Name or service not known")
  builder = _Builder(["http://a.example/x"], fail=ConnectionError("Max retries exceeded\nmore"))
  failure = download.try_download(builder)
  assert builder.retries_seen == [0] and downloader.MAX_RETRIES == saved
  assert failure == ("TFDS download: failed at once, no network "
                     "(a.example: Name or service not known)")
  # Offline but it worked after all (e.g. under tfds.testing.mock_data).
  assert download.try_download(_Builder(["http://a.example/x"])) is None


def test_online_download_keeps_tfds_retries(monkeypatch):
  from tensorflow_datasets.core.download import downloader
  monkeypatch.setattr(download, "unreachable", lambda hosts: None)
  builder = _Builder(["http://a.example/x"], fail=OSError("HTTP 503\nbody"))
  failure = download.try_download(builder)
  assert builder.retries_seen == [downloader.MAX_RETRIES] and downloader.MAX_RETRIES > 0
  assert failure == "TFDS download: failed with OSError: HTTP 503"


def test_unreachable_probes_hosts_quickly(monkeypatch):
  for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
              "ALL_PROXY"):
    monkeypatch.delenv(var, raising=False)
  server = socket.create_server(("127.0.0.1", 0))
  try:
    port = server.getsockname()[1]
    assert download.unreachable([("127.0.0.1", port)]) is None
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    reason = download.unreachable([("127.0.0.1", closed_port)], timeout=2)
    assert reason.startswith("127.0.0.1: ") and "refused" in reason.lower()
    # One answering host is enough.
    assert download.unreachable([("127.0.0.1", closed_port), ("127.0.0.1", port)]) is None
  finally:
    server.close()
  assert download.unreachable([]) is None  # nothing known: TFDS decides
  monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
  assert download.unreachable([("127.0.0.1", closed_port)]) is None  # via the proxy
