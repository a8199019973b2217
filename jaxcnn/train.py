"""The one training loop: ``train_and_evaluate(config, workdir) -> (state, history)``.

Every run, end to end or on cached features (``jaxcnn.transfer``), goes
through the same three steps::

  setup = build(config, workdir)               # data, models, optimizer
  setup, state, progress = start(setup, ckpt)  # resume, else pretrained, else scratch
  state, history = fit(setup, state, progress, ckpt)

so every run resumes from the newest good checkpoint in ``workdir``, stops
cleanly on SIGTERM, stops on a NaN with the step and the last good
checkpoint, and logs to TensorBoard, ``history.json`` and a progress bar.
Metrics are fetched from the devices only at refresh points (never every
step). Everything here is a library function a notebook can call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import os
import signal
import time
from typing import Any, Iterator

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from jaxcnn import checkpoint as checkpoint_lib
from jaxcnn import config as config_lib
from jaxcnn import data as data_lib
from jaxcnn import diagnostics
from jaxcnn import models
from jaxcnn import optim
from jaxcnn import parallel
from jaxcnn import precise_bn
from jaxcnn import precision
from jaxcnn import state as state_lib
from jaxcnn import workdir as workdir_lib
from jaxcnn.data import device as device_lib
from jaxcnn.state import TrainState

# Host fetches of metrics (for the progress bar and the NaN check) happen every
# this many steps: rare enough not to stall the device queue.
REFRESH_EVERY_STEPS = 50


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN or Inf; the message has the step and the way back."""


class Preempted(SystemExit):
  """Raised after SIGTERM or SIGINT once the state is safely checkpointed."""


def is_main_process() -> bool:
  return jax.process_index() == 0


def _step(state: TrainState) -> int:
  """The global step (a population's members all share it)."""
  return int(np.asarray(parallel.to_host(state.step)).reshape(-1)[0])


@dataclasses.dataclass(frozen=True)
class Member:
  """One member of a population: its single-run config and what it trains with.

  Attributes:
    config: ``config.member_configs(config)[i]``.
    train_model: its train-step model (its own dropout rate, freeze semantics).
    tx: its optimizer (its own rate, schedule, weight decay).
    rules: its regularization rules (filled by :func:`start`).
  """
  config: ml_collections.ConfigDict
  train_model: Any
  tx: Any
  rules: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Setup:
  """What :func:`fit` trains, built once per run.

  Attributes:
    config: the validated experiment config.
    workdir: absolute path of the run's folder.
    data: batches (``jaxcnn.data.Data``, or cached features with the same
      methods: ``info``, ``steps_per_epoch``, ``train_epoch``,
      ``eval_batches``).
    model: the eval-step model.
    train_model: the train-step model (``axis_name`` set; frozen layers
      behave as Keras' ``trainable=False`` once :func:`start` has run).
    tx: the optimizer.
    rules: regularization rules by parameter path (filled by :func:`start`).
    meta: what rebuilds the model from a checkpoint (``state.abstract``).
    test_time_flip: score validation and test on image + mirror.
    members: a population's members (``training.population > 1``); empty
      for a single run. ``data`` is then a ``data.PopulationData``.
    traced_rules: a 'vmap' population varying l1/l2: the rules with every
      globally regularized path active, and those paths (their l1/l2 are
      each member's, fed to the step; ``optim.regularizers.penalty_with``).
    feed: where the step's batches come from and how many steps a call
      runs (``data.device.plan``); None: planned when :func:`fit` starts.
  """
  config: ml_collections.ConfigDict
  workdir: str
  data: Any
  model: Any
  train_model: Any
  tx: Any
  meta: dict
  rules: dict = dataclasses.field(default_factory=dict)
  test_time_flip: bool = False
  members: tuple[Member, ...] = ()
  traced_rules: tuple[dict, frozenset] | None = None
  feed: device_lib.Feed | None = None


@dataclasses.dataclass
class Progress:
  """Where a run stands: epochs done, their history, the current epoch's sums."""
  epoch: int
  history: dict[str, Any]
  partial: dict[str, float]


def build(config: ml_collections.ConfigDict, workdir: str) -> Setup:
  """Validates ``config`` and builds the data, models and optimizer.

  Nothing is written to ``workdir`` here (it is created and checked for
  writing): a run that turns out incompatible with it changes nothing.

  Raises:
    config_lib.ConfigError: the config cannot run (before anything compiles).
    workdir_lib.WriteError: the workdir cannot be made or written.
  """
  config_lib.validate(config)
  parallel.check_device_count()
  parallel.check_global_batch(config.training.batch_size)
  workdir = os.path.abspath(workdir)
  workdir_lib.check_writable(workdir)
  data = data_lib.create(config.dataset,
                         global_batch_size=config.training.batch_size,
                         seed=config.seed)
  info = data.info
  meta = {"num_classes": info.num_classes, "image_shape": list(info.image_shape),
          "steps_per_epoch": data.steps_per_epoch,
          "global_batch_size": config.training.batch_size}
  dtype = precision.compute_dtype(config.training.precision)
  members = ()
  if config.training.population > 1:
    member_configs = config_lib.member_configs(config)
    data = data_lib.PopulationData(data, [m.seed for m in member_configs])
    meta["population"] = len(member_configs)
    members = tuple(Member(
        config=m, train_model=models.create(m.model, num_classes=info.num_classes,
                                            axis_name=parallel.AXIS, dtype=dtype),
        tx=state_lib.optimizer(m, data.steps_per_epoch)) for m in member_configs)
    _check_members(config, members, info)
  return Setup(
      config=config, workdir=workdir, data=data,
      model=models.create(config.model, num_classes=info.num_classes, dtype=dtype),
      train_model=models.create(config.model, num_classes=info.num_classes,
                                axis_name=parallel.AXIS, dtype=dtype),
      tx=state_lib.optimizer(config, data.steps_per_epoch), meta=meta,
      test_time_flip=config.training.test_time_flip, members=members,
      feed=device_lib.plan(config, data))


# Of the memory available, what a population's train step may plan to use:
# the rest is left to the program's code, the input pipeline and estimate error.
_POPULATION_MEMORY_FRACTION = 0.9


def _check_members(config, members, info) -> None:
  """Fails before anything compiles when the members cannot train together.

  Their states must stack (same structure and shapes), and the population's
  train step must fit in memory (``state.train_step_bytes`` per member, on
  every local device, against ``parallel.device_memory_bytes``).
  """
  model = models.create(config.model, num_classes=info.num_classes)
  states = [jax.eval_shape(lambda m=m: state_lib.create(m.config, model, m.tx, info.image_shape))
            for m in members]
  state_lib.check_stackable(states, config.population.vary)
  per_device_batch = parallel.check_global_batch(config.training.batch_size)
  per_member = jax.local_device_count() * state_lib.train_step_bytes(
      model, states[0], (per_device_batch,) + tuple(info.image_shape))
  available, source = parallel.device_memory_bytes()
  budget = _POPULATION_MEMORY_FRACTION * available
  if len(members) * per_member > budget:
    fits = int(budget // per_member)
    gib = 2.0 ** 30
    advice = (f"the largest population that fits is {fits}: set "
              f"--config.training.population={fits}" if fits >= 2 else
              "not even two members fit: lower training.batch_size or train single runs")
    raise config_lib.PopulationError(
        f"training.population={len(members)} does not fit in memory: its train step "
        f"needs an estimated {len(members) * per_member / gib:.2f} GiB "
        f"({per_member / 2**20:.1f} MiB per member at batch {config.training.batch_size}), "
        f"over {_POPULATION_MEMORY_FRACTION:.0%} of {available / gib:.2f} GiB, {source}; "
        f"{advice}.")


@contextlib.contextmanager
def open_run(setup: Setup) -> Iterator[checkpoint_lib.Checkpointer]:
  """Holds the workdir's lock and its checkpointer for one training run.

  Raises:
    workdir_lib.WorkdirInUseError: another run trains in the workdir.
  """
  t = setup.config.training
  lock = (workdir_lib.lock(setup.workdir) if is_main_process()
          else contextlib.nullcontext())  # One run's processes share a workdir.
  with lock:
    ckpt = checkpoint_lib.Checkpointer(
        os.path.join(setup.workdir, "checkpoints"), max_to_keep=t.keep_checkpoints,
        keep_best=t.keep_best, best_metric=t.best_metric)
    try:
      yield ckpt
    except BaseException:
      # The error in flight is the one to report: a close that fails too
      # (the same full disk, say) must not replace it with its own.
      with contextlib.suppress(Exception):
        ckpt.close()
      raise
    ckpt.close()


def start(setup: Setup, ckpt: checkpoint_lib.Checkpointer
          ) -> tuple[Setup, TrainState, Progress]:
  """The state to train from: resumed, else pretrained, else initialized.

  Pretrained weights (``model.weights_path``, ``transfer.source``) are read
  only when there is nothing to resume; a resume refuses settings it cannot
  honour (``workdir.resume_changes``). Then the train-step model gets the
  freeze semantics and the regularization rules are built, and the workdir
  gets its ``config.json`` (with the changes appended to its history).

  Returns:
    ``(setup, state, progress)``: the completed setup, the state, and the
    epochs already done (0 for a new run).

  Raises:
    checkpoint_lib.CheckpointMismatchError: the workdir holds another model.
    config_lib.ConfigError: a change a resume cannot honour (both values named).
  """
  config, info = setup.config, setup.data.info
  if ckpt.all_steps():
    workdir_lib.check_population(setup.workdir, config)
  scratch = _scratch(setup)
  restored = ckpt.restore_latest(scratch)
  changes = {}
  if restored is not None:
    state, meta = restored
    changes = workdir_lib.resume_changes(setup.workdir, config)
    progress = Progress(meta["epoch"], meta["history"], meta.get("partial", {}))
    _complete_history(progress.history, _empty_history(
        info.num_validation > 0, len(setup.members), _history_extras(config)))
    print(f"Resumed from {ckpt.directory} at step {_step(state)} "
          f"(epoch {progress.epoch} of {config.training.num_epochs} complete).")
    if changes:
      print("Changed on resume: " + "; ".join(
          f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items()) + ".")
  else:
    state = _pretrained(setup, scratch)
    progress = Progress(0, _empty_history(info.num_validation > 0, len(setup.members),
                                          _history_extras(config)), {})
  setup = _with_rules(setup, _member0(state).params)
  if is_main_process():
    _print_start(setup, state)
    workdir_lib.record_config(setup.workdir, config, changes, _step(state))
  return setup, state, progress


def _member0(state: TrainState) -> TrainState:
  """A single state as it is; a population's member 0."""
  return state_lib.member(state, 0) if state_lib.population_size(state) else state


def _scratch(setup: Setup) -> TrainState:
  """The initialized state: one, or the members' stacked (``state.stack``)."""
  shape = setup.data.info.image_shape
  if not setup.members:
    return state_lib.create(setup.config, setup.model, setup.tx, shape)
  return state_lib.stack([state_lib.create(m.config, setup.model, m.tx, shape)
                          for m in setup.members])


def _pretrained(setup: Setup, scratch: TrainState) -> TrainState:
  """``state.from_pretrained`` for the single state or for each member.

  Member ``i`` of a population whose ``transfer.source`` is a population
  workdir of as many members starts from the source's member ``i``
  (``state.source_member``); the source is restored once for all members.
  """
  if not setup.members:
    return state_lib.from_pretrained(setup.config, setup.model, scratch, setup.tx)
  n, sources = len(setup.members), {}
  return state_lib.stack([
      state_lib.from_pretrained(m.config, setup.model, state_lib.member(scratch, i),
                                m.tx, verbose=i == 0, member_of=(i, n), sources=sources)
      for i, m in enumerate(setup.members)])


def _with_rules(setup: Setup, params: Any) -> Setup:
  """The train models with freeze semantics and the regularization rules built."""
  patterns = setup.config.regularization.freeze
  rules = lambda c: optim.regularizers.build_rules(
      models.param_rules(setup.model), params, c.regularization)
  members = tuple(dataclasses.replace(
      m, train_model=models.freezing.train_model_for(m.train_model, params, patterns),
      rules=rules(m.config)) for m in setup.members)
  return dataclasses.replace(
      setup, members=members, traced_rules=_traced_rules(setup, params),
      train_model=models.freezing.train_model_for(setup.train_model, params, patterns),
      rules=rules(setup.config))


def _traced_rules(setup: Setup, params: Any) -> tuple[dict, frozenset] | None:
  """``Setup.traced_rules`` for a population that varies l1/l2 under 'vmap'."""
  config = setup.config
  vary = config_lib.parse_vary(config.population.vary)
  if not setup.members or not {"regularization.l1", "regularization.l2"} & set(vary):
    return None
  if config_lib.population_mode(config, jax.default_backend()) != "vmap":
    return None
  marked = config.regularization.to_dict()
  marked.update(l1=1.0, l2=1.0)  # Every global path gets a rule: the member's values.
  model_rules = models.param_rules(setup.model)
  rules = optim.regularizers.build_rules(model_rules, params, marked)
  return rules, frozenset(p for p in rules if p not in (model_rules or {}))


def _print_start(setup: Setup, state: TrainState) -> None:
  config, info, data = setup.config, setup.data.info, setup.data
  state = _member0(state)
  print(models.summary(setup.model, info.image_shape))
  if config.transfer.source or config.regularization.freeze:
    print(models.freezing.describe(setup.model, state.params,
                                   config.regularization.freeze))
  print(f"Data: {info.name}, {info.num_train} train / {info.num_validation} "
        f"validation / {info.num_test} test, {data.steps_per_epoch} steps of "
        f"{config.training.batch_size} per epoch on {jax.device_count()} "
        f"device(s) ({jax.devices()[0].platform}).")
  feed = setup.feed
  if feed is not None and (feed.device or feed.stacked):
    print("Feed: " + ", ".join(
        ([f"the training part on the device(s), batches gathered"
          f"{' and augmented' if setup.data.augmented else ''} in the step"]
         if feed.device else []) +
        ([f"{feed.steps_per_call} steps per call"] if feed.stacked else [])) + ".")
  if setup.members:
    print(f"Population: {len(setup.members)} members in one program "
          f"({config_lib.population_mode(config, jax.default_backend())} mode), "
          "varying " + (config.population.vary or
                        f"the seed ({', '.join(str(m.config.seed) for m in setup.members)})")
          + ".")


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> tuple[TrainState, dict[str, list]]:
  """Trains ``config`` in ``workdir``, resuming if a checkpoint is there.

  Args:
    config: an experiment config (``experiments/*.py:get_config()``).
    workdir: holds ``checkpoints/``, ``tensorboard/``, ``history.json``,
      ``config.json`` and ``results.json``.

  Returns:
    ``(state, history)``: the final TrainState and a Keras-like history dict
    of per-epoch lists (``loss``: the mean over the epoch's batches of the
    cross-entropy plus the regularization penalty, as Keras reports it;
    ``data_loss``: the cross-entropy alone, comparable with ``val_loss``
    and ``test_loss``; ``accuracy``, ``val_loss``, ``val_accuracy``, ``lr``,
    ``epoch_time``, ``images_per_second``; with ``training.eval_train``
    also ``train_eval_loss`` and ``train_eval_accuracy``: the training part
    scored in evaluation mode, dropout off and BatchNorm on its moving
    statistics, after the epoch), plus the final ``test_loss`` and
    ``test_accuracy`` floats. For a population
    (``training.population > 1``) the state has a leading member axis
    (``state.member(state, i)``) and the history gives each metric as the
    members' mean, ``<metric>_std`` and ``members`` (one such dict per
    member, ``test_*`` included).

  Raises:
    config_lib.ConfigError: the config cannot run (before anything compiles).
    NonFiniteLossError: a NaN/Inf loss or gradient; nothing is saved after it.
    Preempted: after SIGTERM, once a checkpoint of the current step is saved.
  """
  setup = build(config, workdir)
  with open_run(setup) as ckpt:
    setup, state, progress = start(setup, ckpt)
    return fit(setup, state, progress, ckpt)


def fit(setup: Setup, state: TrainState, progress: Progress,
        ckpt: checkpoint_lib.Checkpointer) -> tuple[TrainState, dict[str, Any]]:
  """Trains from ``progress`` to ``training.num_epochs``, then tests.

  A population (``setup.members``) trains every member in each step.

  Each epoch trains, validates (every ``eval_every_epochs``), steps the
  plateau schedule, logs and checkpoints; the test split is scored at the
  end and ``results.json`` written. A finished run is only tested again.

  Returns:
    ``(state, history)`` as :func:`train_and_evaluate`.
  """
  config = setup.config
  if setup.feed is None:
    setup = dataclasses.replace(setup, feed=device_lib.plan(config, setup.data))
  train_step = _make_train_step(setup)
  state = parallel.replicate(state)  # One compilation of the step, not two.
  eval_step = parallel.make_eval_step(
      setup.model, pmap=not jax.config.jax_debug_nans,
      test_time_flip=setup.test_time_flip)
  writer = _summary_writer(setup.workdir)
  num_epochs = config.training.num_epochs
  if progress.epoch >= num_epochs:
    print(f"Training already finished ({progress.epoch} epochs in "
          f"{setup.workdir}); evaluating.")
  depth = _depth_diagnostics(setup, writer)
  try:
    with _StopSignals() as stop_signals:
      if progress.epoch == 0 and progress.epoch < num_epochs:
        depth(state, 0)  # At initialization.
      while progress.epoch < num_epochs:
        state = _epoch(setup, state, progress, train_step, eval_step, writer,
                       stop_signals, ckpt)
        depth(state, progress.epoch)
    _warn_stale_bn(setup, state)
    _test(setup, state, progress.history, eval_step, writer, progress.epoch)
  finally:
    if writer is not None:
      writer.flush()
  return state, progress.history


def _depth_diagnostics(setup: Setup, writer):
  """``log(state, epoch)``: ``training.depth_diagnostics``' per-layer statistics.

  One fixed batch, one separate compiled call per epoch (never in the train
  step); a population's member 0. Logged to TensorBoard as
  ``depth/<layer>/<statistic>`` and appended to ``depth_diagnostics.json``.
  Does nothing when the option is off.
  """
  if not setup.config.training.depth_diagnostics:
    return lambda state, epoch: None
  images, labels = diagnostics.fixed_batch(setup.data)
  fn = diagnostics.make_depth_statistics(setup.model)
  path = os.path.join(setup.workdir, diagnostics.JSON_FILE)

  def log(state, epoch):
    stats = diagnostics.depth_statistics(setup.model, _member0(state).variables,
                                         images, labels, fn=fn)
    if is_main_process():
      diagnostics.log(writer, stats, epoch)
      rows = []
      if os.path.exists(path):  # A resumed run: its earlier epochs, this one replaced.
        with open(path) as f:
          rows = [r for r in json.load(f) if r["epoch"] != epoch]
      workdir_lib.write_json(path, rows + [{"epoch": epoch, **diagnostics.to_json(stats)}])
  return log


def _step_args(config, train_model, tx, rules) -> dict[str, Any]:
  """The arguments of ``parallel.make_train_step`` for one model."""
  return {"model": train_model, "tx": tx,
          "penalty_fn": lambda p: optim.regularizers.penalty(p, rules),
          "project_fn": lambda p: optim.constraints.project(p, rules),
          "label_smoothing": config.training.label_smoothing}


def _feed_args(feed: device_lib.Feed | None, data) -> dict[str, Any]:
  """The step's ``stacked``/``gather``/``arrays`` arguments; none for the plain feed.

  The device path uploads the training part here, once per :func:`fit`.
  """
  args = {}
  if feed is not None and feed.stacked:
    args["stacked"] = True
  if feed is not None and feed.device:
    # --debug_nans runs the step on one device (pmap=False): the data goes there.
    train_set = device_lib.DeviceTrainSet(
        data, jax.local_devices()[:1] if jax.config.jax_debug_nans else None)
    args.update(gather=train_set.gather, arrays=train_set.arrays)
  return args


def _make_train_step(setup: Setup):
  """The compiled train step: a single run's, or the population's."""
  pmap = not jax.config.jax_debug_nans
  feed = _feed_args(setup.feed, setup.data)
  if not setup.members:
    return parallel.make_train_step(
        **_step_args(setup.config, setup.train_model, setup.tx, setup.rules), pmap=pmap,
        **feed)
  mode = config_lib.population_mode(setup.config, jax.default_backend())
  members = [_step_args(m.config, m.train_model, m.tx, m.rules) for m in setup.members]
  if mode == "loop":
    return parallel.make_population_step(members, mode=mode, pmap=pmap, **feed)
  vary = config_lib.parse_vary(setup.config.population.vary)
  hparams, penalty_with = {}, None
  if "training.label_smoothing" in vary:
    hparams["label_smoothing"] = jnp.asarray(
        [m.config.training.label_smoothing for m in setup.members], jnp.float32)
  if setup.traced_rules is not None:
    for k in ("l1", "l2"):
      hparams[k] = jnp.asarray([m.config.regularization[k] for m in setup.members],
                               jnp.float32)
    rules, traced = setup.traced_rules
    penalty_with = lambda p, hp: optim.regularizers.penalty_with(
        p, rules, traced, hp["l1"], hp["l2"])
  return parallel.make_population_step(members, mode=mode, hparams=hparams,
                                       penalty_with=penalty_with, pmap=pmap, **feed)


def _epoch(setup, state, progress, train_step, eval_step, writer, signals, ckpt):
  """Trains one epoch (or its remainder), validates, logs and checkpoints."""
  config = setup.config
  num_epochs = config.training.num_epochs
  state, metrics = _train_epoch(setup, train_step, state, progress, writer,
                                signals, ckpt)
  progress.partial = {}
  progress.epoch += 1
  epoch = progress.epoch
  if epoch == num_epochs:  # Before the last validation, checkpoint and test.
    state = _recompute_bn_stats(setup, state)
  end = _population_epoch_end if setup.members else _epoch_end
  state, row = end(setup, state, progress.history, metrics, eval_step, epoch, writer)
  if is_main_process():
    workdir_lib.write_json(os.path.join(setup.workdir, "history.json"), progress.history)
  if epoch % config.training.checkpoint_every_epochs == 0 or epoch == num_epochs:
    metric = config.training.best_metric
    ckpt.save(_step(state), state, _meta(setup, progress),
              metrics={metric: row[metric]} if metric in row else None)
  return state


def _recompute_bn_stats(setup: Setup, state: TrainState) -> TrainState:
  """``training.recompute_bn_stats``: precise BN over that many training batches.

  The batches are those of the epochs after the last one (the same for the
  same seed); a population's members each take their own.
  """
  n = setup.config.training.recompute_bn_stats
  if not n or not _member0(state).batch_stats:
    return state
  pmap = not jax.config.jax_debug_nans
  first = setup.config.training.num_epochs

  def batches(member=None):
    epochs = (setup.data.train_epoch(e) for e in itertools.count(first))
    for batch in itertools.chain.from_iterable(epochs):
      yield batch if member is None else jax.tree.map(lambda x: x[member], batch)

  if not setup.members:
    state = precise_bn.recompute(setup.train_model, state, batches(), n, pmap=pmap)
  else:
    state = state_lib.stack([
        precise_bn.recompute(m.train_model, state_lib.member(state, i), batches(i), n,
                             pmap=pmap) for i, m in enumerate(setup.members)])
  if is_main_process():
    print(f"Recomputed the BatchNorm moving statistics as the mean of {n} training "
          f"batches' statistics ({n * setup.config.training.batch_size} images).")
  return state


def _warn_stale_bn(setup: Setup, state: TrainState) -> None:
  """Prints :func:`precise_bn.stale_warning` when the moving statistics are mostly initial."""
  if setup.config.training.recompute_bn_stats or not _member0(state).batch_stats:
    return
  warning = precise_bn.stale_warning(setup.train_model, _step(state))
  if warning and is_main_process():
    print(warning)
  if warning:
    logging.warning(warning)


def _validates(config, epoch: int) -> bool:
  return (epoch % config.training.eval_every_epochs == 0
          or epoch == config.training.num_epochs)


def _epoch_end(setup, state, history, metrics, eval_step, epoch, writer):
  """A single run's validation, plateau step, history row and log line."""
  config, data = setup.config, setup.data
  row = {"loss": metrics["loss"], "data_loss": metrics["data_loss"],
         "accuracy": metrics["accuracy"]}
  if data.info.num_validation > 0:
    if _validates(config, epoch):
      val = evaluate(eval_step, state, data, "validation")
      row.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
      opt_state, plateau = optim.on_epoch_end(
          state.opt_state, state.plateau, val["loss"], config.schedule)
      state = state.replace(opt_state=opt_state, plateau=plateau)
    else:
      row.update(val_loss=float("nan"), val_accuracy=float("nan"))
  if config.training.eval_train:
    train_eval = (evaluate(eval_step, state, data, "train") if _validates(config, epoch)
                  else {"loss": float("nan"), "accuracy": float("nan")})
    row.update(train_eval_loss=train_eval["loss"], train_eval_accuracy=train_eval["accuracy"])
  row.update(lr=float(parallel.to_host(optim.learning_rate(state.opt_state))),
             epoch_time=metrics["time"], images_per_second=metrics["images_per_second"])
  for k, v in row.items():
    history[k].append(v)
  _log_epoch(epoch, config.training.num_epochs, row, writer)
  return state, row


def _population_epoch_end(setup, state, history, metrics, eval_step, epoch, writer):
  """A population's epoch end: per member, then mean and std (:func:`_append_members`).

  Each member validates and steps its own plateau schedule, as its single
  run would. Returns the state and the row of member means.
  """
  config, data, n = setup.config, setup.data, len(setup.members)
  rows = [{"loss": float(metrics["loss"][i]), "data_loss": float(metrics["data_loss"][i]),
           "accuracy": float(metrics["accuracy"][i])} for i in range(n)]
  if data.info.num_validation > 0:
    if _validates(config, epoch):
      vals = evaluate_members(eval_step, state, data, "validation")
      ends = [optim.on_epoch_end(state_lib.member(state, i).opt_state,
                                 state_lib.member(state, i).plateau, v["loss"],
                                 m.config.schedule)
              for i, (v, m) in enumerate(zip(vals, setup.members))]
      state = state.replace(opt_state=_stack([e[0] for e in ends]),
                            plateau=_stack([e[1] for e in ends]))
      for r, v in zip(rows, vals):
        r.update(val_loss=v["loss"], val_accuracy=v["accuracy"])
    else:
      for r in rows:
        r.update(val_loss=float("nan"), val_accuracy=float("nan"))
  if config.training.eval_train:
    nan = {"loss": float("nan"), "accuracy": float("nan")}
    train_evals = (evaluate_members(eval_step, state, data, "train")
                   if _validates(config, epoch) else [nan] * n)
    for r, t in zip(rows, train_evals):
      r.update(train_eval_loss=t["loss"], train_eval_accuracy=t["accuracy"])
  lrs = np.asarray(parallel.to_host(optim.learning_rate(state.opt_state))).reshape(-1)
  for r, lr in zip(rows, lrs):
    r["lr"] = float(lr)
  shared = {"epoch_time": metrics["time"],
            "images_per_second": metrics["images_per_second"]}
  row = _append_members(history, rows, shared)
  _log_population_epoch(epoch, config.training.num_epochs, history, rows, shared, writer)
  return state, row


def _stack(trees: list[Any]) -> Any:
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _mean_std(values) -> tuple[float, float]:
  """Mean and sample standard deviation (ddof=1; 0 for one value); NaNs stay NaN."""
  v = np.asarray(values, np.float64)
  return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def _append_members(history: dict, rows: list[dict], shared: dict) -> dict:
  """Appends a population's epoch to ``history``; returns the row of means.

  ``history[k]`` gets the members' mean, ``history[k + '_std']`` their
  standard deviation (ddof=1), ``history['members'][i][k]`` member i's
  value; ``shared`` keys (time, speed) are appended as they are.
  """
  means = {}
  for k in rows[0]:
    mean, std = _mean_std([r[k] for r in rows])
    history[k].append(mean)
    history[k + "_std"].append(std)
    means[k] = mean
    for member_history, r in zip(history["members"], rows):
      member_history[k].append(r[k])
  for k, v in shared.items():
    history[k].append(v)
  return {**means, **shared}


def _meta(setup: Setup, progress: Progress, partial: dict | None = None) -> dict:
  return {"epoch": progress.epoch, "history": progress.history,
          "partial": partial or {}, **setup.meta}


def _test(setup, state, history, eval_step, writer, epochs):
  """Scores the test split; writes history.json, results.json, TensorBoard."""
  if setup.members:
    return _test_population(setup, state, history, eval_step, writer, epochs)
  test = evaluate(eval_step, state, setup.data, "test")
  history["test_loss"], history["test_accuracy"] = test["loss"], test["accuracy"]
  print(f"Test: loss {test['loss']:.4f}, accuracy {test['accuracy']:.4f} "
        f"({test['count']} examples).")
  _save_test(setup, state, history, writer, {
      "test_loss": test["loss"], "test_accuracy": test["accuracy"],
      "test_count": test["count"], "epochs": epochs,
      **({"feature_extraction": True} if setup.meta.get("feature_extraction") else {})},
      {"test/loss": test["loss"], "test/accuracy": test["accuracy"]})


def _save_test(setup, state, history, writer, results, scalars):
  """Writes history.json, results.json (with the step) and the test scalars."""
  if not is_main_process():
    return
  step = _step(state)
  workdir_lib.write_json(os.path.join(setup.workdir, "history.json"), history)
  workdir_lib.write_json(os.path.join(setup.workdir, "results.json"),
                         {**results, "step": step})
  if writer is not None:
    for tag, value in scalars.items():
      writer.scalar(tag, value, step)


def _test_population(setup, state, history, eval_step, writer, epochs):
  """Each member on the test split; mean and std in history and results.json."""
  tests = evaluate_members(eval_step, state, setup.data, "test")
  summary = {"population": len(tests), "vary": setup.config.population.vary,
             "seeds": [m.config.seed for m in setup.members]}
  for k in ("loss", "accuracy"):
    values = [t[k] for t in tests]
    mean_std = _mean_std(values)
    history[f"test_{k}"], history[f"test_{k}_std"] = mean_std
    summary[f"test_{k}"], summary[f"test_{k}_std"] = mean_std
    summary[f"test_{k}_members"] = values
    for member_history, v in zip(history["members"], values):
      member_history[f"test_{k}"] = v
  print(f"Test: loss {summary['test_loss']:.4f} ± {summary['test_loss_std']:.4f}, "
        f"accuracy {summary['test_accuracy']:.4f} ± {summary['test_accuracy_std']:.4f} "
        f"(mean ± std of {len(tests)} members; {tests[0]['count']} examples).")
  scalars = {f"test/{k}": summary[f"test_{k}"] for k in ("loss", "accuracy")}
  scalars.update({f"test/{k}/member_{i}": v for k in ("loss", "accuracy")
                  for i, v in enumerate(summary[f"test_{k}_members"])})
  _save_test(setup, state, history, writer,
             {**summary, "test_count": tests[0]["count"], "epochs": epochs}, scalars)


def _train_epoch(setup, train_step, state, progress, writer, signals, ckpt):
  """One epoch (or its remainder after a resume); returns state and metrics."""
  config, epoch = setup.config, progress.epoch
  steps = setup.data.steps_per_epoch
  start_step = _step(state) - epoch * steps
  partial = progress.partial
  acc = _MetricAccumulator(_sums(partial.get("loss_sum", 0.0)),
                           _sums(partial.get("accuracy_sum", 0.0)), partial.get("count", 0),
                           # A save from before data_loss existed: its loss was the data loss.
                           _sums(partial.get("data_loss_sum", partial.get("loss_sum", 0.0))))
  bar = tqdm.tqdm(total=steps, initial=start_step, desc=f"Epoch {epoch + 1}/"
                  f"{config.training.num_epochs}", unit="step",
                  disable=not (config.training.progress_bar and is_main_process()),
                  dynamic_ncols=True, leave=True)
  step = _step(state)
  feed = setup.feed or device_lib.Feed()
  t0 = time.perf_counter()
  images = 0
  try:
    # One compiled call runs `n` steps (training.steps_per_call); everything
    # below acts between calls.
    for n, inputs in device_lib.calls(setup.data, epoch, start_step, feed):
      state, metrics = train_step(state, inputs)
      step += n
      images += n * config.training.batch_size * max(len(setup.members), 1)
      acc.add(step, metrics, n if feed.stacked else 0)
      at_refresh = step // REFRESH_EVERY_STEPS > (step - n) // REFRESH_EVERY_STEPS
      if at_refresh or (signals.raised and jax.process_count() == 1):
        _refresh(acc, bar, writer, config, step, epoch * steps)
        ckpt.check()  # A save that failed in the background stops the run now.
      if _stop_requested(signals, at_refresh):
        _save_and_stop(setup, state, progress, acc, ckpt, bar, step, signals)
    _refresh(acc, bar, writer, config, step, epoch * steps)
  except _NonFinite as e:
    raise _non_finite_error(e, state, epoch, ckpt) from None
  finally:
    bar.close()  # Before any error line: never on the bar's line.
  elapsed = time.perf_counter() - t0
  return state, {"loss": acc.loss, "data_loss": acc.data_loss, "accuracy": acc.accuracy,
                 "time": elapsed,
                 "images_per_second": images / elapsed if elapsed > 0 else 0.0}


def _save_and_stop(setup, state, progress, acc, ckpt, bar, step, signals):
  """SIGTERM or SIGINT: a complete checkpoint of this step, then :class:`Preempted`."""
  ckpt.save(step, state, _meta(setup, progress, {
      "loss_sum": _json(acc.loss_sum), "accuracy_sum": _json(acc.accuracy_sum),
      "data_loss_sum": _json(acc.data_loss_sum),
      "count": acc.count}))
  ckpt.wait()
  bar.close()
  print(f"\n{signals.name}: saved a complete checkpoint at step {step} "
        f"(epoch {progress.epoch + 1}) in {ckpt.directory}; rerun the same "
        "command to resume.")
  raise Preempted(signals.exit_code)


def _non_finite_error(e, state, epoch, ckpt) -> NonFiniteLossError:
  lr = _host(parallel.to_host(optim.learning_rate(state.opt_state)))
  last = ckpt.all_steps()
  ckpt.wait()
  # A population lists every member's values.
  shown = lambda x, fmt="": (format(float(x), fmt) if np.ndim(x) == 0
                             else [format(float(v), fmt) for v in np.ravel(x)])
  return NonFiniteLossError(
      f"Non-finite loss at step {e.step} (epoch {epoch + 1}): loss="
      f"{shown(e.metrics['loss'])}, gradient norm={shown(e.metrics['grad_norm'])}, "
      f"learning rate={shown(lr, 'g')}. Nothing was saved after it; the last good "
      f"checkpoint is " + (f"step {last[-1]} in {ckpt.directory}" if last
                           else "none (no checkpoint yet)") +
      ". Lower optimizer.learning_rate, add clipping (optimizer.clipnorm), "
      "or rerun with --debug_nans to find the op.")


def _sums(value):
  """A saved metric sum: a float, or a population's list as an array."""
  return np.asarray(value, np.float64) if isinstance(value, list) else value


def _json(value):
  """A metric sum for JSON: a float, or a population's array as a list."""
  return value.tolist() if isinstance(value, np.ndarray) else value


def _host(value):
  """A fetched metric: a float for a single run, float64[members] for a population."""
  return float(value) if np.ndim(value) == 0 else np.asarray(value, np.float64)


class _MetricAccumulator:
  """Sums per-step metrics fetched at refresh points; finds the first NaN."""

  def __init__(self, loss_sum=0.0, accuracy_sum=0.0, count=0, data_loss_sum=0.0):
    self.loss_sum, self.accuracy_sum, self.count = loss_sum, accuracy_sum, count
    self.data_loss_sum = data_loss_sum
    self.pending: list[tuple[int, dict, int]] = []

  def add(self, step: int, metrics: dict, stacked: int = 0) -> None:
    """One call's metrics, ``step`` the step it ended at.

    ``stacked``: the call ran that many steps and each metric has a leading
    axis over them (``training.steps_per_call``); 0: one step's metrics.
    """
    self.pending.append((step, metrics, stacked))

  def flush(self) -> list[tuple[int, dict]]:
    """Fetches pending metrics; returns one row per step, host floats, checked finite."""
    if not self.pending:
      return []
    fetched = parallel.to_host([m for _, m, _ in self.pending])
    rows = []
    for (step, _, n), m in zip(self.pending, fetched):
      if not n:
        rows.append((step, m))
        continue
      # Step-by-step, so the NaN stop names the first bad step of the call.
      rows.extend((step - n + 1 + i, {k: v[i] for k, v in m.items()}) for i in range(n))
    self.pending = []
    for step, m in rows:
      if not (np.all(np.isfinite(m["loss"])) and np.all(np.isfinite(m["grad_norm"]))):
        raise _NonFinite(step, m)
      self.loss_sum = self.loss_sum + _host(m["loss"])
      self.data_loss_sum = self.data_loss_sum + _host(m["data_loss"])
      self.accuracy_sum = self.accuracy_sum + _host(m["accuracy"])
      self.count += 1
    return rows

  @property
  def loss(self) -> float:
    return self.loss_sum / max(self.count, 1)

  @property
  def data_loss(self) -> float:
    return self.data_loss_sum / max(self.count, 1)

  @property
  def accuracy(self) -> float:
    return self.accuracy_sum / max(self.count, 1)


class _NonFinite(Exception):
  def __init__(self, step, metrics):
    super().__init__(step)
    self.step, self.metrics = step, metrics


def evaluate(eval_step, state: TrainState, data, split: str) -> dict[str, float]:
  """Exact loss and accuracy over a whole split (padding masked out)."""
  totals = None
  for batch in data.eval_batches(split):
    sums = eval_step(state, batch)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  totals = parallel.to_host(totals)
  count = float(totals["count"])
  return {"loss": float(totals["loss"]) / count,
          "accuracy": float(totals["correct"]) / count, "count": int(count)}


def evaluate_members(eval_step, state: TrainState, data, split: str) -> list[dict]:
  """:func:`evaluate` for each member of a population, reading the split once."""
  n = state_lib.population_size(state)
  members = [state_lib.member(state, i) for i in range(n)]
  totals = [None] * n
  for batch in data.eval_batches(split):
    for i, member in enumerate(members):
      sums = eval_step(member, batch)
      totals[i] = sums if totals[i] is None else jax.tree.map(jnp.add, totals[i], sums)
  out = []
  for t in parallel.to_host(totals):
    count = float(t["count"])
    out.append({"loss": float(t["loss"]) / count,
                "accuracy": float(t["correct"]) / count, "count": int(count)})
  return out


def _history_extras(config) -> list[str]:
  """The history keys the config adds (``training.eval_train``)."""
  return ["train_eval_loss", "train_eval_accuracy"] if config.training.get(
      "eval_train", False) else []


def _complete_history(history: dict, empty: dict) -> None:
  """Gives a resumed history the keys this version logs, NaN for its past epochs.

  A checkpoint saved before a metric existed (``data_loss``) or without an
  option (``training.eval_train``) resumes with that metric missing before.
  """
  epochs = len(history.get("epoch_time", []))
  for k, v in empty.items():
    if k == "members":
      for member_history, member_empty in zip(history.get("members", []), v):
        for mk in member_empty:
          member_history.setdefault(mk, [float("nan")] * epochs)
    else:
      history.setdefault(k, [float("nan")] * epochs)


def _empty_history(has_validation: bool, population: int = 0,
                   extras: list[str] = ()) -> dict[str, list]:
  """A new history; a population's also has ``<key>_std`` and ``members``."""
  keys = ["loss", "data_loss", "accuracy", *extras]
  if has_validation:
    keys += ["val_loss", "val_accuracy"]
  keys += ["lr"]
  history = {k: [] for k in keys + ["epoch_time", "images_per_second"]}
  if population:
    history.update({f"{k}_std": [] for k in keys})
    history["members"] = [{k: [] for k in keys} for _ in range(population)]
  return history


class _StopSignals:
  """Turns SIGTERM and Ctrl-C (SIGINT) into a flag the loop checks between steps.

  The step in flight finishes and a checkpoint is saved before the run
  exits (143 for SIGTERM, 130 for SIGINT, as a shell reports them). A second
  Ctrl-C interrupts at once.
  """
  EXIT_CODES = {signal.SIGTERM: 143, signal.SIGINT: 130}

  def __init__(self):
    self.raised = False
    self.signum = signal.SIGTERM
    self._previous = {}

  def __enter__(self):
    for signum in self.EXIT_CODES:
      try:
        self._previous[signum] = signal.signal(signum, self._handle)
      except ValueError:  # Not the main thread (e.g. some notebook runners).
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    if self.raised and signum == signal.SIGINT:
      raise KeyboardInterrupt  # Asked twice: stop now, without saving.
    self.raised, self.signum = True, signum

  @property
  def name(self) -> str:
    return signal.Signals(self.signum).name

  @property
  def exit_code(self) -> int:
    return self.EXIT_CODES[self.signum]

  def __exit__(self, *exc):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)


def _stop_requested(signals, at_refresh: bool) -> bool:
  """Whether every process agrees to stop now (SIGTERM reached any of them).

  One process alone cannot stop: checkpoint saves are collective. With
  several processes the flag is exchanged at refresh points only.
  """
  if jax.process_count() == 1:
    return signals.raised
  if not at_refresh:
    return False
  from jax.experimental import multihost_utils
  flags = multihost_utils.process_allgather(np.asarray(signals.raised))
  return bool(np.any(flags))


def _refresh(acc, bar, writer, config, step, epoch_start_step):
  rows = acc.flush()
  if not rows:
    return
  bar.update(step - epoch_start_step - bar.n)
  bar.set_postfix(loss=_spread(acc.loss, ".4f"), accuracy=_spread(acc.accuracy, ".4f"))
  if writer is not None:
    every = config.training.log_every_steps
    for s, m in rows:
      if s % every == 0:
        for k in ("loss", "data_loss", "accuracy", "grad_norm", "loss_scale"):
          if k in m:  # loss_scale: float16 only (jaxcnn.precision)
            _scalars(writer, f"train/{k}", m[k], s)


def _spread(value, fmt: str) -> str:
  """``'0.1234'``, or a population's ``'0.1234±0.0056'`` (mean ± std)."""
  if np.ndim(value) == 0:
    return format(float(value), fmt)
  mean, std = _mean_std(value)
  return f"{mean:{fmt}}±{std:{fmt}}"


def _scalars(writer, tag: str, value, step: int) -> None:
  """One scalar; a population's mean under ``tag`` and each member's under
  ``tag/member_<i>``."""
  if np.ndim(value) == 0:
    writer.scalar(tag, float(value), step)
    return
  writer.scalar(tag, _mean_std(value)[0], step)
  for i, v in enumerate(np.asarray(value).reshape(-1)):
    writer.scalar(f"{tag}/member_{i}", float(v), step)


def _log_epoch(epoch, num_epochs, row, writer):
  text = " - ".join(f"{k}: {v:.4g}" for k, v in row.items())
  if is_main_process():
    print(f"Epoch {epoch}/{num_epochs} - {text}")
  logging.info("epoch %d: %s", epoch, text)
  if writer is not None:
    for k, v in row.items():
      if not (isinstance(v, float) and math.isnan(v)):
        writer.scalar(f"epoch/{k}", v, epoch)


def _log_population_epoch(epoch, num_epochs, history, rows, shared, writer):
  """Prints mean ± std of each metric; TensorBoard gets mean, std and members."""
  parts = [f"{k}: {history[k][-1]:.4g} ± {history[k + '_std'][-1]:.2g}" for k in rows[0]]
  parts += [f"{k}: {v:.4g}" for k, v in shared.items()]
  text = " - ".join(parts)
  if is_main_process():
    print(f"Epoch {epoch}/{num_epochs} - {text}")
  logging.info("epoch %d: %s", epoch, text)
  if writer is None:
    return
  for k in rows[0]:
    values = [r[k] for r in rows]
    if not any(math.isnan(v) for v in values):
      _scalars(writer, f"epoch/{k}", np.asarray(values), epoch)
      writer.scalar(f"epoch/{k}_std", history[k + "_std"][-1], epoch)
  for k, v in shared.items():
    writer.scalar(f"epoch/{k}", v, epoch)


def _summary_writer(workdir):
  if not is_main_process():
    return None
  from flax.metrics import tensorboard  # Imports TF's summary ops lazily.
  return tensorboard.SummaryWriter(os.path.join(workdir, "tensorboard"))


def evaluate_workdir(config: ml_collections.ConfigDict, workdir: str,
                     member: int | None = None) -> dict:
  """Evaluates the latest checkpoint of ``workdir`` on the test split.

  Args:
    config: the config to read the data with (``run.workdir_config``).
    workdir: a training workdir.
    member: a population workdir's member; None evaluates every member
      and reports their mean ± std (a single run's workdir: None or 0).

  Returns:
    ``{'loss', 'accuracy', 'count'}``; for a whole population also
    ``loss_std``, ``accuracy_std`` and ``members`` (each member's).
  """
  config_lib.validate(config)
  if member is None and config.training.population > 1:
    members = [evaluate_workdir(config, workdir, i) for i in range(config.training.population)]
    result = {"count": members[0]["count"], "members": members}
    for k in ("loss", "accuracy"):
      result[k], result[f"{k}_std"] = _mean_std([m[k] for m in members])
    print(f"Population of {len(members)}: test loss {result['loss']:.4f} ± "
          f"{result['loss_std']:.4f}, accuracy {result['accuracy']:.4f} ± "
          f"{result['accuracy_std']:.4f} (mean ± std).")
    return result
  model, variables, _ = state_lib.load_for_inference(workdir, member=member)
  data = data_lib.create(config.dataset,
                         global_batch_size=config.training.batch_size,
                         seed=config.seed)
  result = evaluate(parallel.make_eval_step(
      model, test_time_flip=config.training.test_time_flip),
      state_lib.for_evaluation(variables), data, "test")
  print(f"Test: loss {result['loss']:.4f}, accuracy {result['accuracy']:.4f} "
        f"({result['count']} examples).")
  return result
