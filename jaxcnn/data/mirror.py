"""The offline Fashion-MNIST mirror: four IDX ``.gz`` files, checked, then prepared.

The Debian package ``dataset-fashion-mnist`` puts the original files in
:data:`DEFAULT_MIRROR_DIR`. Every file is decompressed and its sha256
checked BEFORE TFDS is asked to prepare anything, so a truncated, bit-flipped
or foreign file stops the run with its name (:class:`MirrorFileError`,
:class:`ChecksumError`) and nothing is written to the data dir. The verified
files are then read by :class:`FashionMNISTMirror`, TFDS's own builder with
the download replaced, so that afterwards plain
``tfds.load('fashion_mnist', data_dir=...)`` works with no network.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import zlib

import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification import mnist as tfds_mnist

from jaxcnn.data.errors import ChecksumError, MirrorFileError

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

# Sizes of the Debian package's gz files: only quoted in the message about a
# truncated file (other good copies differ by a few header bytes).
DEBIAN_GZ_BYTES = {
    "train-images-idx3-ubyte.gz": 26421856,
    "train-labels-idx1-ubyte.gz": 29491,
    "t10k-images-idx3-ubyte.gz": 4422079,
    "t10k-labels-idx1-ubyte.gz": 5125,
}

_FIX = (f"reinstall it (apt-get install --reinstall dataset-fashion-mnist) or set "
        f"dataset.mirror_dir (or {MIRROR_ENV}) to a folder with good copies; "
        "nothing was written to the data dir")


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


def missing_files(folder: str) -> list[str]:
  """The mirror files not in ``folder``."""
  return [f for f in FASHION_MNIST_SHA256
          if not os.path.isfile(os.path.join(folder, f))]


def _unreadable(src: str, error: Exception) -> MirrorFileError:
  """The error for a gz file that cannot be decompressed to its end."""
  name = os.path.basename(src)
  if isinstance(error, EOFError):
    size, debian = os.path.getsize(src), DEBIAN_GZ_BYTES[name]
    return MirrorFileError(
        f"Mirror file {src} is truncated ({size:,} bytes; the dataset-fashion-mnist "
        f"copy has {debian:,}): {_FIX}.")
  reason = getattr(error, "strerror", None) or str(error)
  what = ("cannot be read" if isinstance(error, OSError)
          and not isinstance(error, gzip.BadGzipFile) else "is not a valid gzip file")
  return MirrorFileError(f"Mirror file {src} {what} ({reason}): {_FIX}.")


def decompress_verified(src: str, dst: str) -> None:
  """Decompresses mirror file ``src`` to ``dst`` if its sha256 is the published one.

  Raises:
    MirrorFileError: ``src`` is truncated, not gzip, or cannot be read.
    ChecksumError: the decompressed bytes are not Fashion-MNIST's.
  """
  expected = FASHION_MNIST_SHA256[os.path.basename(src)]
  digest = hashlib.sha256()
  try:
    with gzip.open(src, "rb") as fin, open(dst, "wb") as fout:
      while chunk := fin.read(1 << 20):
        digest.update(chunk)
        fout.write(chunk)
  except (EOFError, zlib.error, OSError) as e:
    # gzip's own CRC and length checks catch most flipped bytes here.
    raise _unreadable(src, e) from e
  if digest.hexdigest() != expected:
    raise ChecksumError(
        f"Mirror file {src}: checksum mismatch (the sha256 of its decompressed "
        f"bytes is {digest.hexdigest()}, expected {expected}), so it is corrupt "
        f"or not Fashion-MNIST: {_FIX}.")


def verified_idx_files(folder: str, scratch: str) -> dict[str, str]:
  """Every mirror file of ``folder`` decompressed into ``scratch`` and verified.

  Returns:
    ``{gz file name: decompressed path}``.

  Raises:
    MirrorFileError, ChecksumError: the first bad file, by name.
  """
  paths = {}
  for fname in FASHION_MNIST_SHA256:
    paths[fname] = os.path.join(scratch, fname[:-len(".gz")])
    decompress_verified(os.path.join(folder, fname), paths[fname])
  return paths


class FashionMNISTMirror(tfds_mnist.FashionMNIST, skip_registration=True):
  """TFDS's Fashion-MNIST builder reading four already verified IDX files.

  Same name, version, features and splits as ``tfds.builder('fashion_mnist')``,
  so what it prepares is read back by plain ``tfds.load``. Not registered:
  ``tfds.builder('fashion_mnist')`` still gives TFDS's own downloader.

  Args:
    idx_paths: :func:`verified_idx_files`' answer.
    **kwargs: for ``tfds.core.DatasetBuilder`` (``data_dir``).
  """

  name = "fashion_mnist"

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    # TFDS's own builder file: metadata lookups (checksums, configs) then find
    # TFDS's files, not ours (an editable install of jaxcnn can otherwise
    # break importlib.resources there).
    return tfds_mnist.FashionMNIST.code_path

  def __init__(self, *, idx_paths: dict[str, str], **kwargs):
    self.idx_paths = idx_paths
    super().__init__(**kwargs)

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    paths = self.idx_paths
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


def prepare_from_mirror(data_dir: str, folder: str) -> None:
  """Prepares Fashion-MNIST in ``data_dir`` from the mirror files in ``folder``.

  Raises:
    MirrorFileError, ChecksumError: a bad file; checked before TFDS starts,
      so nothing is written to ``data_dir``.
  """
  # The decompressed IDX files only live for the preparation.
  with tempfile.TemporaryDirectory(prefix="jaxcnn_fmnist_") as scratch:
    builder = FashionMNISTMirror(idx_paths=verified_idx_files(folder, scratch),
                                 data_dir=data_dir)
    builder.download_and_prepare(
        download_dir=scratch,
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
