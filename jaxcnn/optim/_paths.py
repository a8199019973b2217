"""Parameter paths as users see them: ``'dense_1/kernel'``, ``'block1_conv1/bias'``."""

from __future__ import annotations

from typing import Any

import jax


def key_str(key: Any) -> str:
  """One path component (dict key, attribute or index) as a string."""
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def path_str(path: tuple[Any, ...]) -> str:
  """A ``jax.tree_util`` key path joined with ``/``."""
  return "/".join(key_str(k) for k in path)


def flatten(params: Any) -> dict[str, Any]:
  """``{'layer/name': leaf}`` for every leaf of a params pytree, in tree order."""
  leaves, _ = jax.tree_util.tree_flatten_with_path(params)
  return {path_str(path): leaf for path, leaf in leaves}


def map_with_path(fn, params: Any) -> Any:
  """``jax.tree.map`` where ``fn`` gets ``('layer/name', leaf)``."""
  return jax.tree_util.tree_map_with_path(lambda p, x: fn(path_str(p), x), params)
