"""Freezing by glob pattern: no update, no optimizer state, clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn import optim
from jaxcnn.config import ConfigError
from jaxcnn.optim import freeze


def _params():
  rng = np.random.default_rng(0)
  n = lambda *s: jnp.asarray(rng.normal(size=s).astype(np.float32))
  return {
      "block1_conv1": {"kernel": n(3, 3, 3, 4), "bias": n(4)},
      "block1_conv2": {"kernel": n(3, 3, 4, 4), "bias": n(4)},
      "block2_conv1": {"kernel": n(3, 3, 4, 8), "bias": n(8)},
      "dense": {"kernel": n(8, 5), "bias": n(5)},
      "dense_1": {"kernel": n(5, 2), "bias": n(2)},
  }


def _run(tx, params, grads_fn, steps=5):
  state = tx.init(params)
  update = jax.jit(tx.update)
  for _ in range(steps):
    updates, state = update(grads_fn(params), state, params)
    params = optax.apply_updates(params, updates)
  return params, state


def _state_size(state):
  return sum(np.size(x) for x in jax.tree.leaves(state))


GRADS = lambda p: jax.tree.map(lambda x: jnp.sin(x) + 0.5, p)


@pytest.mark.parametrize("opt", [dict(name="adam", weight_decay=0.1),
                                 dict(name="sgd", momentum=0.9, learning_rate=0.1),
                                 dict(name="rmsprop", momentum=0.5, centered=True)])
def test_frozen_params_do_not_move_and_hold_no_state(opt):
  params = _params()
  tx = optim.create(opt, None, steps_per_epoch=1, num_epochs=1, freeze=("block1_*",))
  new, state = _run(tx, params, GRADS)
  for layer in params:
    for name in params[layer]:
      moved = not np.array_equal(new[layer][name], params[layer][name])
      assert moved == (not layer.startswith("block1_")), (layer, name)
  # Optimizer state only for trainable params: the unfrozen optimizer keeps
  # exactly (accumulators per param) x (frozen param count) more numbers.
  unfrozen = optim.create(opt, None, steps_per_epoch=1, num_epochs=1)
  _, full_state = _run(unfrozen, params, GRADS, steps=1)
  frozen_count = sum(np.size(params[l][n]) for l in ("block1_conv1", "block1_conv2")
                     for n in ("kernel", "bias"))
  per_param = {"adam": 2, "sgd": 1, "rmsprop": 3}[opt["name"]]
  assert _state_size(full_state) - _state_size(state) == per_param * frozen_count


def test_trainable_part_follows_the_unfrozen_optimizer_on_it_alone():
  """Like Keras' trainable=False: the rest trains as if the frozen part were
  not there, global_clipnorm and weight decay included."""
  params = _params()
  opt = dict(name="adam", learning_rate=0.01, global_clipnorm=0.5, weight_decay=0.1)
  huge = lambda p: jax.tree.map(lambda x: 100.0 * jnp.cos(x), p)
  tx = optim.create(opt, None, steps_per_epoch=1, num_epochs=1,
                    freeze="block*")
  new, _ = _run(tx, params, huge)
  rest = {k: v for k, v in params.items() if not k.startswith("block")}
  alone, _ = _run(optim.create(opt, None, steps_per_epoch=1, num_epochs=1), rest, huge)
  jax.tree.map(np.testing.assert_array_equal, {k: new[k] for k in rest}, alone)


def test_glob_semantics():
  params = _params()
  assert freeze.frozen_paths(params, "dense") == {"dense/kernel", "dense/bias"}
  assert freeze.frozen_paths(params, ["*/bias"]) == {
      f"{layer}/bias" for layer in params}
  assert freeze.frozen_paths(params, ("block[2-9]_*", "dense_1/kernel")) == {
      "block2_conv1/kernel", "block2_conv1/bias", "dense_1/kernel"}
  assert freeze.frozen_paths(params, ()) == set()


def test_pattern_matching_nothing_lists_the_paths():
  tx = optim.create(dict(name="sgd"), None, steps_per_epoch=1, num_epochs=1,
                    freeze=("block3_*",))
  with pytest.raises(ConfigError, match=r"'block3_\*' matches no parameter.*"
                     r"block1_conv1/bias, block1_conv1/kernel.*dense_1/kernel"):
    tx.init(_params())
  with pytest.raises(ConfigError, match="non-empty strings"):
    optim.create(dict(name="sgd"), None, steps_per_epoch=1, num_epochs=1,
                 freeze=("",))
