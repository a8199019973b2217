"""Reading and setting the hyperparameters kept in an optimizer state (``opt_state``).

:func:`jaxcnn.optim.create` wraps the whole update rule in
``optax.inject_hyperparams``, so the rate in force lives in the state
(``opt_state.hyperparams['learning_rate']``): it is checkpointed with it, can
be logged, and the plateau schedule can change it between epochs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

_STATES = (optax.InjectStatefulHyperparamsState, optax.InjectHyperparamsState)


def _is_inject(node: Any) -> bool:
  return isinstance(node, _STATES)


def _inject_state(opt_state: Any, name: str) -> Any:
  nodes = jax.tree.leaves(opt_state, is_leaf=_is_inject)
  for node in nodes:
    if _is_inject(node) and name in node.hyperparams:
      return node
  raise ValueError(
      f"No '{name}' hyperparameter in this optimizer state; expected the state "
      "of a transformation built by jaxcnn.optim.create (optax.inject_hyperparams).")


def hyperparams(opt_state: Any) -> dict[str, jax.Array]:
  """All injected hyperparameters in force (learning_rate; 1cycle's momentum)."""
  return dict(_inject_state(opt_state, "learning_rate").hyperparams)


def learning_rate(opt_state: Any) -> jax.Array:
  """The learning rate in force.

  That is the rate of the most recent update (at epoch end: the rate used in
  that epoch, what Keras' History logs as ``learning_rate``); before the first
  update, the first rate; after :func:`jaxcnn.optim.on_epoch_end` cut it on a
  plateau, the new rate that the next updates will use.

  Args:
    opt_state: the state of a transformation from :func:`jaxcnn.optim.create`
      (it may sit inside a larger state, e.g. an ``optax.chain``).
  """
  return jnp.asarray(_inject_state(opt_state, "learning_rate").hyperparams[
      "learning_rate"])


def set_hyperparam(opt_state: Any, name: str, value: Any) -> Any:
  """A copy of ``opt_state`` with injected hyperparameter ``name`` set to ``value``.

  Only a hyperparameter given as a number (not a schedule) keeps the new
  value: a scheduled one is recomputed at the next update.
  """
  target = _inject_state(opt_state, name)

  def replace(node):
    if node is not target:
      return node
    old = node.hyperparams[name]
    new = jnp.asarray(value, dtype=jnp.result_type(old)).reshape(jnp.shape(old))
    return node._replace(hyperparams={**node.hyperparams, name: new})

  return jax.tree.map(replace, opt_state, is_leaf=_is_inject)
