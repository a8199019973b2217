"""The train state: what it holds, how it starts, how a workdir's is rebuilt.

A run starts as big_vision's do (``train.start``): from the workdir's
checkpoint if there is one, else from pretrained weights
(:func:`from_pretrained`: ``model.weights_path``, ``transfer.source``), else
from :func:`create`'s initialization. :func:`create` reads no file, so
:func:`abstract` (shape inference for restoring) never touches a weights
file: a finished workdir reloads with its ``.h5`` gone.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxcnn import checkpoint as checkpoint_lib
from jaxcnn import config as config_lib
from jaxcnn import models
from jaxcnn import optim
from jaxcnn import precision


@dataclasses.dataclass(frozen=True)
class TrainState:
  """Everything a resumed run needs, as one pytree (saved whole by Orbax).

  Attributes:
    step: global optimizer steps taken.
    params: trainable parameters.
    batch_stats: BatchNorm moving statistics ({} if the model has none).
    opt_state: Optax state, learning rate and schedule count included.
    rng: base PRNG key (raw uint32[2]); per-step keys are folded from it.
    plateau: reduce-on-plateau state (a small pytree; empty when unused).
    loss_scale: float16's dynamic loss scale (``precision.DynamicScale``:
      ``scale`` and ``fin_steps``); ``()`` in float32 and bfloat16, where it
      is no child of the pytree at all (see :func:`_flatten`).
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array
  plateau: Any
  loss_scale: Any = ()

  def replace(self, **changes) -> "TrainState":
    """A copy with ``changes`` (as flax.struct dataclasses have)."""
    return dataclasses.replace(self, **changes)

  @property
  def variables(self) -> dict[str, Any]:
    """``{'params': ..., 'batch_stats': ...}`` for ``model.apply``."""
    out = {"params": self.params}
    if self.batch_stats:
      out["batch_stats"] = self.batch_stats
    return out


_FIELDS = ("step", "params", "batch_stats", "opt_state", "rng", "plateau")


def _flatten(state: TrainState):
  """The fields as pytree children; ``loss_scale`` only when it holds one.

  Orbax saves and restores by these key paths and refuses a tree with one
  more node, even an empty one: without a loss scale the state is the
  six-field tree of earlier jaxcnn, so their checkpoints restore and a float32
  checkpoint is what it was.
  """
  scaled = not (isinstance(state.loss_scale, tuple) and not state.loss_scale)
  names = _FIELDS + (("loss_scale",) if scaled else ())
  return [(jax.tree_util.GetAttrKey(n), getattr(state, n)) for n in names], scaled


def _unflatten(scaled: bool, children) -> TrainState:
  return TrainState(*children) if scaled else TrainState(*children, loss_scale=())


jax.tree_util.register_pytree_with_keys(
    TrainState, _flatten, _unflatten,
    flatten_func=lambda s: (lambda kv, aux: ([v for _, v in kv], aux))(*_flatten(s)))


def optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int):
  """The optax chain of ``config.optimizer`` / ``config.schedule`` / freeze."""
  return optim.create(config.optimizer, config.schedule,
                      steps_per_epoch=steps_per_epoch,
                      num_epochs=config.training.num_epochs,
                      freeze=tuple(config.regularization.freeze))


def create(config: ml_collections.ConfigDict, model, tx,
           input_shape: tuple[int, ...]) -> TrainState:
  """A freshly initialized state from ``config.seed``; reads no file.

  Args:
    config: the experiment config (``seed``, ``schedule``).
    model: the linen model.
    tx: the optax transformation.
    input_shape: one example's shape (no batch axis).
  """
  rng = jax.random.PRNGKey(config.seed)
  init_rng, dropout_rng, state_rng = jax.random.split(rng, 3)
  dummy = jnp.zeros((1,) + tuple(input_shape), jnp.float32)
  variables = jax.jit(lambda r, d: model.init(
      {"params": r, "dropout": dropout_rng}, d, train=False))(init_rng, dummy)
  return from_variables(config, variables, tx, step_rng=state_rng)


def from_variables(config: ml_collections.ConfigDict, variables: Any, tx, *,
                   step_rng: jax.Array | None = None) -> TrainState:
  """A step-0 state around ``variables`` with a fresh optimizer state."""
  if step_rng is None:
    step_rng = jax.random.split(jax.random.PRNGKey(config.seed), 3)[2]
  params = variables["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get("batch_stats", {}),
                    opt_state=tx.init(params), rng=step_rng,
                    plateau=optim.init_plateau(config.schedule),
                    loss_scale=precision.initial_loss_scale(config))


def with_variables(state: TrainState, variables: Any, tx) -> TrainState:
  """``state`` with new weights and an optimizer state fresh for them."""
  params = variables["params"]
  return state.replace(params=params,
                       batch_stats=variables.get("batch_stats", state.batch_stats),
                       opt_state=tx.init(params))


def from_pretrained(config: ml_collections.ConfigDict, model, state: TrainState,
                    tx, *, verbose: bool = True,
                    member_of: tuple[int, int] | None = None,
                    sources: dict[str, Any] | None = None) -> TrainState:
  """``state`` with the pretrained weights the config names, read once.

  ``model.weights_path`` (a Keras file for the whole model, e.g. VGG16's)
  loads first, then ``config.transfer.source`` (a jaxcnn workdir or a Keras
  weights file) copies the layers ``config.transfer.layers`` selects. A state
  with neither is returned unchanged.

  A source workdir that holds a population gives one member's weights:
  ``transfer.source_member`` when it is set (>= 0), else, for member ``i``
  of a population of the source's size (``member_of=(i, n)``), member ``i``
  (seed-matched: fine-tuning seed ``i`` continues the source's seed ``i``).

  Args:
    config: the single-run config (a population member's own).
    model: the linen model.
    state: the initialized state.
    tx: the optax transformation (its state is made fresh for the weights).
    verbose: print what was copied.
    member_of: ``(i, n)`` when ``state`` is member ``i`` of a population of
      ``n`` (``train.start`` builds a population's members one by one).
    sources: a dict to keep restored source workdirs in, so a population
      reads its source once (the caller's, for one build).

  Raises:
    FileNotFoundError: no such file or workdir.
    models.freezing.TransferError: the source does not fit (each layer and
      shape that differs is listed), or leaves a frozen layer random; a
      population source without a member this run can take (the message
      names ``transfer.source_member`` and the source's population size).
    models.KerasWeightsError: a ``weights_path`` file that does not fit.
  """
  if not (model.weights_path or config.transfer.source):
    return state
  variables = models.load_pretrained(model, state.variables)
  if config.transfer.source:
    source = _read_source(config.transfer, model, variables, member_of,
                          {} if sources is None else sources)
    frozen = models.freezing.frozen_layers(model, state.params,
                                           config.regularization.freeze)
    variables, lines = models.pretrained.transfer(
        source, model, variables, layers=config.transfer.layers, frozen=frozen)
    if verbose and jax.process_index() == 0:
      print("\n".join(lines))
  return with_variables(state, variables, tx)


def _read_source(transfer: ml_collections.ConfigDict, model, variables,
                 member_of: tuple[int, int] | None,
                 sources: dict[str, Any]) -> "models.pretrained.Source":
  path = os.path.expanduser(transfer.source)
  if os.path.isdir(path):
    if path not in sources:
      sources[path] = _restore(path)[1]
    state = sources[path]
    n = population_size(state)
    j = source_member(path, n, transfer.source_member, member_of)
    if j is None:
      return models.pretrained.variables_source(
          f"jaxcnn workdir {path}", jax.device_get(state.variables))
    return models.pretrained.variables_source(
        f"jaxcnn workdir {path} (member {j} of its population of {n})",
        jax.device_get(stack_member_variables(state, j)))
  if os.path.isfile(path):
    if transfer.source_member > 0:
      raise models.freezing.TransferError(
          f"transfer.source_member={transfer.source_member}, but transfer.source "
          f"{path!r} is a weights file, not a population workdir: leave "
          "transfer.source_member at -1.")
    return models.pretrained.keras_source(path, model, variables)
  raise FileNotFoundError(
      f"transfer.source {path!r} does not exist. Give a jaxcnn workdir (with "
      "config.json and checkpoints/) or a Keras weights file (.h5 or "
      ".weights.h5); VGG16's ImageNet base is published at "
      f"{models.vgg16.NOTOP_WEIGHTS_URL}")


def source_member(path: str, population: int, chosen: int,
                  member_of: tuple[int, int] | None = None) -> int | None:
  """Which member of a source workdir a run (or a run's member) starts from.

  Args:
    path: the source workdir, for the messages.
    population: the source's members (``population_size``; 0: a single run).
    chosen: ``transfer.source_member`` (-1: not set).
    member_of: ``(i, n)`` for member ``i`` of a population of ``n``; None
      for a single run.

  Returns:
    The source member's index, or None for a single-run source.

  Raises:
    models.freezing.TransferError: a member named that the source does not
      have; a population source and no member named, where the run is not
      a population of the source's size.
  """
  key = "transfer.source_member"
  if not population:
    if chosen > 0:
      raise models.freezing.TransferError(
          f"{key}={chosen}, but transfer.source {path!r} holds a single run, not a "
          f"population: leave {key} at -1 (or 0).")
    return None
  if chosen >= population:
    raise models.freezing.TransferError(
        f"{key}={chosen} is out of range: transfer.source {path!r} holds a population "
        f"of {population} members; choose 0 to {population - 1}.")
  if chosen >= 0:
    return chosen
  if member_of is not None and member_of[1] == population:
    return member_of[0]
  if member_of is None:
    raise models.freezing.TransferError(
        f"transfer.source {path!r} holds a population of {population} members: name "
        f"the one to start from with {key}=j (0 to {population - 1}), or train a "
        f"population of {population} (training.population={population}), whose "
        f"member i starts from the source's member i.")
  raise models.freezing.TransferError(
      f"transfer.source {path!r} holds a population of {population} members, but this "
      f"run trains {member_of[1]}: train training.population={population} (member i "
      f"starts from the source's member i), or start every member from one source "
      f"member with {key}=j (0 to {population - 1}).")


def abstract(config: ml_collections.ConfigDict, meta: dict) -> tuple[Any, TrainState]:
  """The model and an abstract TrainState matching a checkpoint's ``meta``.

  The model computes in the run's ``training.precision`` (float32 for a
  config saved before the key existed).
  """
  model = models.create(config.model, num_classes=meta["num_classes"],
                        dtype=precision.compute_dtype(precision.name(config)))
  shape = tuple(meta["image_shape"])
  if config.get("training", {}).get("population", 1) > 1:
    members = config_lib.member_configs(config)
    return model, jax.eval_shape(lambda: stack([
        create(m, model, optimizer(m, meta["steps_per_epoch"]), shape) for m in members]))
  tx = optimizer(config, meta["steps_per_epoch"])
  target = jax.eval_shape(lambda: create(config, model, tx, shape))
  return model, target


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """Reads the config a workdir was trained with (``config.json``)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"No config.json in {workdir}: not a jaxcnn workdir, or training "
        "never started there. Train first with python -m jaxcnn.main "
        f"--config=experiments/<name>.py --workdir={workdir}")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def load_for_inference(workdir: str, step: int | None = None,
                       member: int | None = None):
  """Loads a trained model for prediction on this machine's devices.

  Args:
    workdir: a training workdir (holds ``config.json`` and ``checkpoints/``).
    step: a checkpoint step; None takes the latest restorable one.
    member: the member of a population workdir (``training.population > 1``)
      to load; required there, and only 0 or None for a single run.

  Returns:
    ``(model, variables, config)``; ``variables`` holds ``params`` and, if the
    model has BatchNorm, ``batch_stats``. For a member, ``config`` is its
    single-run config (``config.member_configs``).

  Raises:
    FileNotFoundError: the workdir has no config or no checkpoint.
    config.PopulationError: a population workdir without a valid ``member``,
      or a member of a single run other than 0.
  """
  model, state, config = _restore(workdir, step)
  return (model, *_select_member(state, config, workdir, member))


def _restore(workdir: str, step: int | None = None) -> tuple[Any, TrainState, Any]:
  """``(model, state, config)`` of a workdir's checkpoint (the latest: step None)."""
  config = read_config(workdir)
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
  try:
    steps = ckpt.all_steps()
    if not steps:
      raise FileNotFoundError(
          f"No checkpoint in {ckpt.directory}: train first (python -m "
          f"jaxcnn.main --config=... --workdir={workdir}).")
    if step is not None and step not in steps:
      raise FileNotFoundError(
          f"No checkpoint step {step} in {ckpt.directory}; steps: {steps}.")
    model, target = abstract(config, ckpt.read_meta(steps[-1] if step is None else step))
    if step is None:
      restored = ckpt.restore_latest(target)
      if restored is None:
        raise FileNotFoundError(f"No restorable checkpoint in {ckpt.directory}.")
      state = restored[0]
    else:
      state = ckpt.restore(step, target)[0]
  finally:
    ckpt.close()
  return model, state, config


def _select_member(state: TrainState, config, workdir: str, member: int | None):
  """``(variables, config)`` of a single run, or of a population's ``member``."""
  n = population_size(state)
  if not n:
    if member not in (None, 0):
      raise config_lib.PopulationError(
          f"{workdir} holds a single run, not a population: drop --member={member} "
          "(or pass 0).")
    return state.variables, config
  if member is None or not 0 <= member < n:
    raise config_lib.PopulationError(
        f"{workdir} holds a population of {n} members; choose one with "
        f"--member=i, i from 0 to {n - 1}" + (f" (got {member})." if member is not None
                                               else "."))
  return stack_member_variables(state, member), config_lib.member_configs(config)[member]


def stack_member_variables(state: TrainState, i: int) -> dict[str, Any]:
  """Member ``i``'s ``variables`` from a population state."""
  return member(state, i).variables


def for_evaluation(variables: Any) -> TrainState:
  """A state holding only ``variables``, for the eval step."""
  return TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                    batch_stats=variables.get("batch_stats", {}), opt_state=(),
                    rng=jax.random.PRNGKey(0), plateau=())


def stack(states: list[TrainState]) -> TrainState:
  """A population state: ``states`` stacked on a leading member axis.

  Raises:
    config.PopulationError: the members' states differ in structure or
      shapes (:func:`check_stackable`).
  """
  check_stackable(states)
  return jax.tree.map(lambda *xs: jnp.stack(xs), *states)


def check_stackable(states: list[Any], vary: str = "") -> None:
  """Fails unless every state (or abstract state) has member 0's structure and shapes.

  Args:
    states: the members' states, concrete or from ``jax.eval_shape``.
    vary: ``population.vary``, named in the message.

  Raises:
    config.PopulationError: a varied setting changes the parameters or the
      optimizer state (e.g. a weight decay of 0 keeps no decay step).
  """
  def layout(s):
    return jax.tree.structure(s), jax.tree.leaves(jax.tree.map(lambda x: tuple(x.shape), s))
  first = layout(states[0])
  for i, s in enumerate(states[1:], 1):
    if layout(s) != first:
      raise config_lib.PopulationError(
          f"Population member {i}'s train state differs in structure or shapes "
          f"from member 0's: population.vary{f' ({vary!r})' if vary else ''} changes "
          "the parameters or the optimizer state (e.g. 0 turns a weight decay or a "
          "momentum off, with its state); vary values that are all zero or all non-zero.")


def train_step_bytes(model, state: TrainState, batch_shape: tuple[int, ...]) -> int:
  """Estimated memory of one train step of one model on one device, in bytes.

  The state twice (the step's input and its output), the gradients (one
  more set of parameters) and every layer's train-mode output twice (kept
  for the backward pass, and its gradient). No compilation: shapes come from
  ``jax.eval_shape``. On the models of ``models.presets`` this lands within
  a few percent of XLA's own ``memory_analysis()`` of the compiled step
  (tests/test_population.py checks it stays within a factor of two).

  Args:
    model: the linen model.
    state: the train state, concrete or abstract (``jax.eval_shape``).
    batch_shape: one device's image batch, ``(batch, H, W, C)``.
  """
  def nbytes(tree):
    return sum(int(np.prod(x.shape)) * jnp.dtype(x.dtype).itemsize
               for x in jax.tree.leaves(tree))

  def forward(variables, images):
    return model.apply(variables, images, train=True,
                       rngs={"dropout": jax.random.PRNGKey(0)},
                       mutable=["batch_stats", "intermediates"],
                       capture_intermediates=True)

  _, captured = jax.eval_shape(
      forward, state.variables, jax.ShapeDtypeStruct(tuple(batch_shape), jnp.float32))
  return 2 * nbytes(state) + nbytes(state.params) + 2 * nbytes(captured["intermediates"])


def member(state: TrainState, i: int) -> TrainState:
  """Member ``i`` of a population state (the leading axis dropped)."""
  return jax.tree.map(lambda x: x[i], state)


def population_size(state: TrainState) -> int:
  """The members of a population state (its step's leading axis); 0 for a single state."""
  return int(jnp.shape(state.step)[0]) if jnp.ndim(state.step) else 0
