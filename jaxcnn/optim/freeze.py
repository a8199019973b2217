"""Freezing parameters by path pattern (lecture 003: VGG16 transfer learning).

Patterns are shell-style globs (``fnmatch``: ``*``, ``?``, ``[1-4]``), matched
case-sensitively against the parameter path ``'layer/param'`` *or any leading
part of it*, so a layer name freezes the whole layer:

- ``'block1_*'`` freezes every parameter of ``block1_conv1``, ``block1_conv2``;
- ``'block[1-4]_*'`` freezes VGG16 blocks 1 to 4 (block 5 stays trainable);
- ``'dense'`` freezes ``dense/kernel`` and ``dense/bias`` but not ``dense_1``;
- ``'*/bias'`` freezes every bias.

Frozen parameters get a zero update (``optax.set_to_zero``) and, because they
are masked out of the optimizer through ``optax.partition``, no optimizer
state (no momentum, no accumulators). A pattern that matches nothing is an
error listing the parameter paths, raised when the optimizer is initialised
(``tx.init(params)``), the first moment the paths are known.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Iterable

import optax

from jaxcnn.config import ConfigError
from jaxcnn.optim import _paths

TRAINABLE, FROZEN = "trainable", "frozen"


def normalize(patterns: str | Iterable[str] | None) -> tuple[str, ...]:
  """The patterns as a tuple of non-empty strings (a lone string is one pattern).

  Raises:
    ConfigError: a pattern that is not a non-empty string.
  """
  if patterns is None:
    return ()
  if isinstance(patterns, str):
    patterns = (patterns,)
  patterns = tuple(patterns)
  for p in patterns:
    if not isinstance(p, str) or not p:
      raise ConfigError(
          f"Freeze patterns must be non-empty strings (globs like 'block1_*'); "
          f"got {p!r} in {patterns!r}.")
  return patterns


def _matches(path: str, pattern: str) -> bool:
  parts = path.split("/")
  return any(fnmatch.fnmatchcase("/".join(parts[:k]), pattern)
             for k in range(1, len(parts) + 1))


def frozen_paths(params: Any, patterns: str | Iterable[str] | None) -> set[str]:
  """The paths of the parameters matched by ``patterns``.

  Args:
    params: the params pytree.
    patterns: glob patterns (see the module docstring).

  Returns:
    The set of matched ``'layer/param'`` paths.

  Raises:
    ConfigError: a pattern matches no parameter; the message lists the paths.
  """
  patterns = normalize(patterns)
  paths = list(_paths.flatten(params))
  frozen = set()
  for pattern in patterns:
    hits = {p for p in paths if _matches(p, pattern)}
    if not hits:
      raise ConfigError(
          f"Freeze pattern {pattern!r} matches no parameter. Patterns are "
          f"globs matched against the parameter paths (or their leading "
          f"layer names); the paths are: {', '.join(paths)}.")
    frozen |= hits
  return frozen


def labels(params: Any, patterns: str | Iterable[str] | None) -> Any:
  """A pytree like ``params`` of ``'trainable'`` / ``'frozen'`` labels."""
  frozen = frozen_paths(params, patterns)
  return _paths.map_with_path(
      lambda path, _: FROZEN if path in frozen else TRAINABLE, params)


def partition(tx: optax.GradientTransformation,
              patterns: str | Iterable[str] | None
              ) -> optax.GradientTransformation:
  """``tx`` for the trainable params, a zero update for the frozen ones.

  Args:
    tx: the optimizer for the trainable parameters.
    patterns: glob patterns of the parameters to freeze.

  Returns:
    ``tx`` itself when nothing is frozen, else an ``optax.partition``.
  """
  patterns = normalize(patterns)
  if not patterns:
    return tx
  return optax.partition({TRAINABLE: tx, FROZEN: optax.set_to_zero()},
                         lambda params: labels(params, patterns))
