"""l1 / l2 penalties and max-norm rules, per parameter, with Keras' meaning.

Rules are keyed by the parameter path joined with ``/`` (``'dense_1/kernel'``).
Per-layer rules come from the model (``models.param_rules(model)``, the
``kernel_regularizer`` / ``kernel_constraint`` of a Keras layer); the global
``config.regularization.l1 / l2 / max_norm`` applies to every kernel without a
per-layer rule. :func:`penalty` is added to the loss; the max-norm part is
applied after each update by :func:`jaxcnn.optim.constraints.project`.

Keras' meaning, not the lecture-000 ``1/2 λ w²`` convention: ``l2(λ)`` adds
``λ Σ w²`` (gradient ``2λw``), ``l1(λ)`` adds ``λ Σ |w|``, ``l1_l2`` both.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax.numpy as jnp

from jaxcnn.config import ConfigError, closest
from jaxcnn.optim import _config, _paths, freeze

_REGULARIZATION_KEYS = ("l1", "l2", "max_norm", "freeze")


@dataclasses.dataclass(frozen=True)
class ParamRule:
  """What constrains one parameter tensor.

  Attributes:
    l1: ``λ`` of the ``λ Σ |w|`` penalty (Keras ``regularizers.l1``).
    l2: ``λ`` of the ``λ Σ w²`` penalty (Keras ``regularizers.l2``).
    max_norm: ``r`` of the max-norm constraint (Keras ``constraints.MaxNorm``);
      0 is off.
  """
  l1: float = 0.0
  l2: float = 0.0
  max_norm: float = 0.0

  def __post_init__(self):
    for field in ("l1", "l2", "max_norm"):
      value = getattr(self, field)
      _config.number(value, f"ParamRule.{field}", minimum=0.0)
      object.__setattr__(self, field, float(value))

  @property
  def active(self) -> bool:
    """Whether the rule does anything."""
    return bool(self.l1 or self.l2 or self.max_norm)


def _is_kernel(path: str, leaf: Any) -> bool:
  return path.rsplit("/", 1)[-1] == "kernel" and jnp.ndim(leaf) >= 2


def build_rules(model_rules: Mapping[str, ParamRule] | None, params: Any,
                regularization_config: Any = None) -> dict[str, ParamRule]:
  """Merges the model's per-layer rules with the global regularization.

  Args:
    model_rules: ``{'layer/param': ParamRule}`` from the model; a per-layer rule
      replaces the global one for that parameter.
    params: the params pytree (to know the paths and which are kernels).
    regularization_config: ``config.regularization`` (``l1``, ``l2``,
      ``max_norm``, ``freeze``); None means none. The global rule goes to every
      parameter named ``kernel`` with ndim >= 2 that has no per-layer rule.
      Frozen parameters (``freeze`` patterns) get no rule: Keras neither
      regularizes nor constrains non-trainable weights.

  Returns:
    ``{'layer/param': ParamRule}`` for the parameters with an active rule.

  Raises:
    ConfigError: a per-layer rule for a path that is not a parameter (listing
      the paths), an unknown regularization key, a negative value.
  """
  reg = _config.as_dict(regularization_config, "regularization")
  _config.check_keys(reg, _REGULARIZATION_KEYS, "'regularization'",
                     "regularization")
  leaves = _paths.flatten(params)
  model_rules = dict(model_rules or {})
  for path, rule in model_rules.items():
    if path not in leaves:
      guess = closest(path, leaves)
      hint = f" Did you mean {guess!r}?" if guess else ""
      raise ConfigError(
          f"Rule for {path!r}, which is not a parameter.{hint} Parameter "
          f"paths: {', '.join(leaves)}.")
    if not isinstance(rule, ParamRule):
      raise ConfigError(f"The rule for {path!r} must be a ParamRule, got {rule!r}.")
  global_rule = ParamRule(l1=reg.get("l1", 0.0) or 0.0,
                          l2=reg.get("l2", 0.0) or 0.0,
                          max_norm=reg.get("max_norm", 0.0) or 0.0)
  frozen = freeze.frozen_paths(params, reg.get("freeze", ()))
  rules = {}
  for path, leaf in leaves.items():
    rule = model_rules.get(path)
    if rule is None and _is_kernel(path, leaf):
      rule = global_rule
    if rule is not None and rule.active and path not in frozen:
      rules[path] = rule
  return rules


def penalty(params: Any, rules: Mapping[str, ParamRule]) -> jnp.ndarray:
  """The l1/l2 penalty to add to the loss: ``Σ λ1 Σ|w| + λ2 Σ w²`` (Keras).

  Args:
    params: the params pytree.
    rules: from :func:`build_rules` (static: close over them under jit).

  Returns:
    A float32 scalar (0 without rules).
  """
  leaves = _paths.flatten(params)
  total = jnp.zeros([], jnp.float32)
  for path, rule in rules.items():
    w = leaves[path]
    if rule.l1:
      total = total + rule.l1 * jnp.sum(jnp.abs(w))
    if rule.l2:
      total = total + rule.l2 * jnp.sum(jnp.square(w))
  return total


def penalty_with(params: Any, rules: Mapping[str, ParamRule], traced: frozenset[str],
                 l1: jnp.ndarray, l2: jnp.ndarray) -> jnp.ndarray:
  """:func:`penalty` with the paths in ``traced`` weighted by ``l1``/``l2`` values.

  A population under ``vmap`` gives each member its global l1/l2 as traced
  scalars: ``rules`` must hold a rule for every such path (built with a
  non-zero global l1 and l2), and the others keep their own. A zero value
  adds an exact zero, so the result and its gradient are those of
  :func:`penalty` with the member's rules.
  """
  leaves = _paths.flatten(params)
  total = jnp.zeros([], jnp.float32)
  for path, rule in rules.items():
    w = leaves[path]
    if path in traced:
      total = total + l1 * jnp.sum(jnp.abs(w))
      total = total + l2 * jnp.sum(jnp.square(w))
      continue
    if rule.l1:
      total = total + rule.l1 * jnp.sum(jnp.abs(w))
    if rule.l2:
      total = total + rule.l2 * jnp.sum(jnp.square(w))
  return total
