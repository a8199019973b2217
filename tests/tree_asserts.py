"""Assertions on pytrees shared by the tests that compare a fast path with the plain one."""

import jax
import numpy as np


def assert_trees_close(a, b, *, rtol: float, atol: float) -> None:
  """``a`` and ``b`` have one structure and every leaf agrees within ``rtol``/``atol``.

  A failure names the leaf's path (``['params']['conv2d']['kernel']``).
  """
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol,
                               err_msg=jax.tree_util.keystr(path))
