"""Cross-device reductions that cost nothing when there is one device.

XLA:CPU runs an all-reduce over a single device as a real collective (a
rendezvous and a copy), a visible share of a small model's step (BENCHMARKS.md
has the profile). A mean or sum over one member is the
identity, so skipping it changes nothing mathematically; XLA compiles a
different program without the collective, whose float rounding can differ
(BatchNorm models drift in the last digits of a training run).
"""

from __future__ import annotations

from typing import Any

import jax


def pmean(tree: Any, axis_name: str) -> Any:
  """``lax.pmean`` over ``axis_name``; the identity when the axis has size 1."""
  if jax.lax.axis_size(axis_name) == 1:
    return tree
  return jax.lax.pmean(tree, axis_name)


def psum(tree: Any, axis_name: str) -> Any:
  """``lax.psum`` over ``axis_name``; the identity when the axis has size 1."""
  if jax.lax.axis_size(axis_name) == 1:
    return tree
  return jax.lax.psum(tree, axis_name)
