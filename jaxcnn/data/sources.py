"""TFDS sources: prepare a dataset once, online or from the offline mirror.

:func:`prepare` returns a prepared ``tfds`` builder. It tries, in order:

1. the dataset already prepared in ``data_dir``;
2. for ``fashion_mnist`` only, the offline mirror of the four original IDX
   ``.gz`` files (the Debian package ``dataset-fashion-mnist``), read by a
   builder that subclasses TFDS's own ``FashionMNIST`` (same name, version,
   features and splits), so that afterwards plain
   ``tfds.load('fashion_mnist', data_dir=...)`` works with no network;
3. TFDS's normal ``download_and_prepare``.

``sklearn_digits`` (``jaxcnn.data.digits``, registered on import) prepares
offline from scikit-learn's own copy.

When all fail, :class:`DatasetNotFoundError` lists every place searched and
how to get the data. A mirror file whose decompressed bytes do not match the
published sha256 raises :class:`ChecksumError` before any example is written.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile

import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification import mnist as tfds_mnist

from jaxcnn.data import digits  # noqa: F401  (registers the sklearn_digits builder)

DEFAULT_MIRROR_DIR = "/usr/share/datasets/fashion-mnist"
MIRROR_ENV = "JAXCNN_MIRROR_DIR"

# sha256 of the decompressed IDX files (the gz bytes differ between mirrors:
# TFDS's copies keep the file name in the gzip header, Debian's do not).
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz":
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz":
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz":
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz":
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

# Datasets with an offline mirror reader.
MIRRORED = ("fashion_mnist",)


class DatasetNotFoundError(FileNotFoundError):
  """No prepared copy, no mirror and no download; the message says where."""


class ChecksumError(ValueError):
  """A mirror file whose contents are not the published dataset."""


def default_data_dir() -> str:
  """The TFDS data dir used when none is given: $TFDS_DATA_DIR or ~/tensorflow_datasets."""
  return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser(
      "~/tensorflow_datasets")


def mirror_dirs(mirror_dir: str = "") -> list[str]:
  """The mirror folders to try, in order.

  Args:
    mirror_dir: an explicit folder; when given, it is the only one tried (a
      wrong explicit path is reported, not silently replaced).

  Returns:
    ``[mirror_dir]``, or else ``[$JAXCNN_MIRROR_DIR (if set),
    /usr/share/datasets/fashion-mnist]``.
  """
  if mirror_dir:
    return [mirror_dir]
  dirs = (os.environ.get(MIRROR_ENV, ""), DEFAULT_MIRROR_DIR)
  return list(dict.fromkeys(d for d in dirs if d))  # ordered, no repeats


def _decompress_verified(src: str, dst: str, sha256: str) -> None:
  """Decompresses ``src`` to ``dst``, raising ChecksumError on a mismatch."""
  digest = hashlib.sha256()
  tmp = dst + ".partial"
  with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
    while chunk := fin.read(1 << 20):
      digest.update(chunk)
      fout.write(chunk)
  if digest.hexdigest() != sha256:
    os.remove(tmp)
    raise ChecksumError(
        f"Checksum mismatch for {src}: the decompressed bytes have sha256 "
        f"{digest.hexdigest()}, expected {sha256}. The file is corrupt or is "
        "not Fashion-MNIST; reinstall it (apt-get install --reinstall "
        "dataset-fashion-mnist). Nothing was written to the data dir.")
  os.replace(tmp, dst)


class FashionMNISTMirror(tfds_mnist.FashionMNIST, skip_registration=True):
  """TFDS's Fashion-MNIST builder reading the four IDX files from a folder.

  Same name, version, features and splits as ``tfds.builder('fashion_mnist')``,
  so what it prepares is read back by plain ``tfds.load``. Not registered:
  ``tfds.builder('fashion_mnist')`` still gives TFDS's own downloader.
  """

  name = "fashion_mnist"

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    # TFDS's own builder file: metadata lookups (checksums, configs) then find
    # TFDS's files, not ours (an editable install of jaxcnn can otherwise
    # break importlib.resources there).
    return tfds_mnist.FashionMNIST.code_path

  def __init__(self, *, mirror_dir: str, **kwargs):
    self.mirror_dir = mirror_dir
    super().__init__(**kwargs)

  def _split_generators(self, dl_manager):
    # Every file is checked before any example is generated, so a bad mirror
    # fails before TFDS writes anything (its incomplete dir is then removed).
    out_dir = os.path.join(os.fspath(dl_manager.download_dir), "fashion_mnist_mirror")
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for fname, sha in FASHION_MNIST_SHA256.items():
      dst = os.path.join(out_dir, fname[:-len(".gz")])
      _decompress_verified(os.path.join(self.mirror_dir, fname), dst, sha)
      paths[fname] = dst
    return [
        tfds.core.SplitGenerator(
            name=tfds.Split.TRAIN,
            gen_kwargs=dict(num_examples=60_000,
                            data_path=paths["train-images-idx3-ubyte.gz"],
                            label_path=paths["train-labels-idx1-ubyte.gz"])),
        tfds.core.SplitGenerator(
            name=tfds.Split.TEST,
            gen_kwargs=dict(num_examples=10_000,
                            data_path=paths["t10k-images-idx3-ubyte.gz"],
                            label_path=paths["t10k-labels-idx1-ubyte.gz"])),
    ]


def _missing_files(folder: str) -> list[str]:
  return [f for f in FASHION_MNIST_SHA256
          if not os.path.isfile(os.path.join(folder, f))]


def _prepare_from_mirror(data_dir: str, folder: str) -> None:
  builder = FashionMNISTMirror(mirror_dir=folder, data_dir=data_dir)
  # The decompressed IDX files only live for the preparation.
  with tempfile.TemporaryDirectory(prefix="jaxcnn_fmnist_") as scratch:
    builder.download_and_prepare(
        download_dir=scratch,
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))


def _how_to_get(name: str) -> str:
  lines = [
      "How to get it:",
      f"  - on a machine with internet: `tfds build {name} --data_dir=DIR` (or "
      f"any tfds.load('{name}')), then copy DIR/{name} into the data dir above;",
  ]
  if name in MIRRORED:
    lines += [
        "  - offline: `apt-get install dataset-fashion-mnist` (IDX files in "
        f"{DEFAULT_MIRROR_DIR}),",
        f"    or put the four IDX .gz files in a folder and set {MIRROR_ENV} "
        "(or dataset.mirror_dir) to it.",
    ]
  return "\n".join(lines)


def prepare(name: str, *, data_dir: str = "", mirror_dir: str = "",
            download: bool = True) -> tfds.core.DatasetBuilder:
  """Returns a prepared TFDS builder for ``name``.

  Args:
    name: a TFDS dataset name (``'fashion_mnist'``, ``'mnist'``,
      ``'cifar10'``, ``'cats_vs_dogs'``, ``'name:version'``...).
    data_dir: TFDS data dir; '' means $TFDS_DATA_DIR or ~/tensorflow_datasets.
    mirror_dir: folder with Fashion-MNIST's four IDX .gz files; '' means
      $JAXCNN_MIRROR_DIR, then /usr/share/datasets/fashion-mnist.
    download: whether to try TFDS's download as the last resort (off makes
      an offline miss fail at once instead of after TFDS's retries).

  Returns:
    A builder whose ``as_dataset`` works with no network.

  Raises:
    DatasetNotFoundError: no prepared copy, no usable mirror, no download;
      the message lists every place searched and how to get the data.
    ChecksumError: a mirror file whose contents are not Fashion-MNIST.
  """
  data_dir = data_dir or default_data_dir()
  builder = tfds.builder(name, data_dir=data_dir)
  if builder.is_prepared():
    return builder
  searched = [f"prepared dataset: {builder.data_path} (not there)"]

  base_name = name.split(":")[0].split("/")[0]
  if base_name in MIRRORED:
    for folder in mirror_dirs(mirror_dir):
      if not os.path.isdir(folder):
        searched.append(f"mirror: {folder} (no such folder)")
        continue
      missing = _missing_files(folder)
      if missing:
        searched.append(f"mirror: {folder} (missing {', '.join(missing)})")
        continue
      _prepare_from_mirror(data_dir, folder)
      builder = tfds.builder(name, data_dir=data_dir)
      if builder.is_prepared():
        return builder
      searched.append(f"mirror: {folder} (gives version "
                      f"{FashionMNISTMirror.VERSION}, not the one asked)")
      break

  if download:
    try:
      builder.download_and_prepare()
      return builder
    except Exception as e:  # pylint: disable=broad-except
      # Any download failure (DNS, HTTP, checksum) ends in the same advice.
      searched.append(f"TFDS download: failed with {type(e).__name__}: {e}")
  else:
    searched.append("TFDS download: not tried (download=False)")
  raise DatasetNotFoundError(
      f"Dataset '{name}' is not available. Searched:\n  - "
      + "\n  - ".join(searched) + "\n" + _how_to_get(base_name))

