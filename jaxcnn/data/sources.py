"""TFDS sources: prepare a dataset once, online or from the offline mirror.

:func:`prepare` returns a prepared ``tfds`` builder. It tries, in order:

1. the dataset already prepared in ``data_dir``;
2. for ``fashion_mnist`` only, the offline mirror of the four original IDX
   ``.gz`` files (the Debian package ``dataset-fashion-mnist``; see
   ``jaxcnn.data.mirror``), verified before anything is written;
3. TFDS's normal ``download_and_prepare`` (``jaxcnn.data.download``: with
   no network it is tried once, without TFDS's minutes of retries).

``sklearn_digits`` (``jaxcnn.data.digits``, registered on import) prepares
offline from scikit-learn's own copy.

Every failure is one line that says what to do: an unknown name names the
closest registered one (:class:`UnknownDatasetError`); a bad mirror file is
named (:class:`MirrorFileError`, :class:`ChecksumError`); when all sources
fail, :class:`DatasetNotFoundError` lists every place searched and how to
get the data.
"""

from __future__ import annotations

import difflib
import os

import tensorflow_datasets as tfds
from tensorflow_datasets.core import registered as tfds_registered

from jaxcnn.data import digits  # noqa: F401  (registers the sklearn_digits builder)
from jaxcnn.data import download as download_lib
from jaxcnn.data import mirror
from jaxcnn.data.errors import (ChecksumError, DatasetNotFoundError, MirrorFileError,
                                UnknownDatasetError)
from jaxcnn.data.mirror import (DEFAULT_MIRROR_DIR, FASHION_MNIST_SHA256, MIRROR_ENV,
                                FashionMNISTMirror, mirror_dirs)

__all__ = ["DEFAULT_MIRROR_DIR", "FASHION_MNIST_SHA256", "MIRROR_ENV", "MIRRORED",
           "ChecksumError", "DatasetNotFoundError", "FashionMNISTMirror",
           "MirrorFileError", "UnknownDatasetError", "default_data_dir", "mirror_dirs",
           "prepare"]

# Datasets with an offline mirror reader.
MIRRORED = ("fashion_mnist",)
CATALOG = "https://www.tensorflow.org/datasets/catalog/overview"


def default_data_dir() -> str:
  """The TFDS data dir used when none is given: $TFDS_DATA_DIR or ~/tensorflow_datasets."""
  return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser(
      "~/tensorflow_datasets")


def _base_name(name: str) -> str:
  """``'fashion_mnist'`` of ``'fashion_mnist/config:1.0.0'``."""
  return name.split(":")[0].split("/")[0]


def _unknown_name(name: str) -> UnknownDatasetError:
  """The error for a name TFDS does not know, naming the closest one it does."""
  # No community datasets: listing those needs the network.
  known = tfds.list_builders(with_community_datasets=False)
  close = difflib.get_close_matches(_base_name(name), known, n=1, cutoff=0.6)
  hint = (f"Did you mean {close[0]!r}?" if close else
          "No registered name is close.")
  return UnknownDatasetError(
      f"Unknown dataset {name!r} (dataset.name). {hint} The names are those of "
      f"tfds.list_builders() ({CATALOG}).")


def _builder(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
  """``tfds.builder``, its errors about the name as one line each.

  Raises:
    UnknownDatasetError: an unknown name, version or builder config.
  """
  try:
    return tfds.builder(name, data_dir=data_dir)
  except tfds_registered.DatasetNotFoundError:
    raise _unknown_name(name) from None  # TFDS's message lists every dataset
  except (AssertionError, ValueError) as e:
    # A known name with an unknown version or config: TFDS says which exist,
    # after a prefix of builder arguments ('...builder_kwargs "{...}": ').
    reason = str(e).strip().splitlines()[0].rsplit('": ', 1)[-1]
    raise UnknownDatasetError(f"dataset.name={name!r}: {reason}") from e


def _try_mirrors(name: str, data_dir: str, mirror_dir: str,
                 searched: list[str]) -> tfds.core.DatasetBuilder | None:
  """Prepares ``name`` from the first mirror folder with all its files.

  Returns:
    The prepared builder, or None (``searched`` then says why).

  Raises:
    MirrorFileError, ChecksumError: a mirror file that is there but broken:
      reported, never silently skipped for the next source.
  """
  for folder in mirror_dirs(mirror_dir):
    if not os.path.isdir(folder):
      searched.append(f"mirror: {folder} (no such folder)")
      continue
    missing = mirror.missing_files(folder)
    if missing:
      searched.append(f"mirror: {folder} (missing {', '.join(missing)})")
      continue
    mirror.prepare_from_mirror(data_dir, folder)
    builder = tfds.builder(name, data_dir=data_dir)
    if builder.is_prepared():
      return builder
    searched.append(f"mirror: {folder} (gives version "
                    f"{FashionMNISTMirror.VERSION}, not the one asked)")
    return None
  return None


def _how_to_get(name: str, data_dir: str) -> str:
  """One sentence: the ways to get ``name``."""
  online = (f"with internet, run again (TFDS downloads it), or run `tfds build {name} "
            f"--data_dir=DIR` on a machine with internet and copy DIR/{name} into "
            f"{data_dir}")
  if name not in MIRRORED:
    return f"To get it: {online}."
  return (f"To get it offline: `apt-get install dataset-fashion-mnist` (the IDX files "
          f"go to {DEFAULT_MIRROR_DIR}), or set {MIRROR_ENV} (or dataset.mirror_dir) "
          f"to a folder with the four IDX .gz files; {online}.")


def prepare(name: str, *, data_dir: str = "", mirror_dir: str = "",
            download: bool = True) -> tfds.core.DatasetBuilder:
  """Returns a prepared TFDS builder for ``name``.

  Args:
    name: a TFDS dataset name (``'fashion_mnist'``, ``'mnist'``,
      ``'cifar10'``, ``'cats_vs_dogs'``, ``'name:version'``...).
    data_dir: TFDS data dir; '' means $TFDS_DATA_DIR or ~/tensorflow_datasets.
    mirror_dir: folder with Fashion-MNIST's four IDX .gz files; '' means
      $JAXCNN_MIRROR_DIR, then /usr/share/datasets/fashion-mnist.
    download: whether to try TFDS's download as the last resort.

  Returns:
    A builder whose ``as_dataset`` works with no network.

  Raises:
    UnknownDatasetError: a name (or version) TFDS does not know; the closest
      registered name is given.
    MirrorFileError: a truncated or non-gzip mirror file, by name.
    ChecksumError: a mirror file whose contents are not Fashion-MNIST.
    DatasetNotFoundError: no prepared copy, no usable mirror, no download;
      the one-line message lists every place searched and how to get the
      data.
  """
  data_dir = data_dir or default_data_dir()
  builder = _builder(name, data_dir)
  if builder.is_prepared():
    return builder
  searched = [f"prepared dataset: {builder.data_path} (not there)"]
  base_name = _base_name(name)
  if base_name in MIRRORED:
    prepared = _try_mirrors(name, data_dir, mirror_dir, searched)
    if prepared is not None:
      return prepared
  if not download:
    searched.append("TFDS download: not tried (download=False)")
  else:
    failure = download_lib.try_download(builder)
    if failure is None:
      return builder
    searched.append(failure)
  raise DatasetNotFoundError(
      f"Dataset '{name}' is not available. Searched: " + "; ".join(searched)
      + ". " + _how_to_get(base_name, data_dir))
