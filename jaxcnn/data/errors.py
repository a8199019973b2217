"""The data errors a user can fix; each message says what is wrong and what to do.

They subclass the types ``jaxcnn.run.user_errors()`` prints as one ``error:``
line: ``ConfigError`` for a config value that cannot work, and
``FileNotFoundError`` for data that is not there or not usable (a broken
file means the usable data was not found). Messages are one line.
"""

from __future__ import annotations

from jaxcnn import config as config_lib


class UnknownDatasetError(config_lib.ConfigError):
  """``dataset.name`` is no TFDS dataset (or asks a version or config it lacks)."""


class DatasetNotFoundError(FileNotFoundError):
  """No prepared copy, no mirror and no download; the message says where it looked."""


class BrokenDataError(FileNotFoundError):
  """A data file that is there but cannot be read; the message names it."""


class MirrorFileError(BrokenDataError):
  """A Fashion-MNIST mirror file that is truncated or not a valid gzip file."""


class ChecksumError(MirrorFileError, ValueError):
  """A mirror file whose decompressed bytes are not the published dataset.

  Also a ValueError, as it was before it was a MirrorFileError.
  """


class PreparedDataError(BrokenDataError):
  """A prepared TFDS dataset whose files are corrupt or truncated."""
