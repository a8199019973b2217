"""The training loop: ``train_and_evaluate(config, workdir) -> (state, history)``.

Everything here is a library function a notebook can call; ``main.py`` only
parses flags and dispatches. The loop resumes from the newest good checkpoint
in ``workdir``, logs to TensorBoard, ``history.json`` and a progress bar, and
fetches metrics from the devices only at refresh points (never every step).
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from jaxcnn import checkpoint as checkpoint_lib
from jaxcnn import config as config_lib
from jaxcnn import input_pipeline
from jaxcnn import models
from jaxcnn import optim
from jaxcnn import parallel
from jaxcnn import transfer
from jaxcnn.parallel import TrainState

# Host fetches of metrics (for the progress bar and the NaN check) happen every
# this many steps: rare enough not to stall the device queue.
REFRESH_EVERY_STEPS = 50


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN or Inf; the message has the step and the way back."""


class Preempted(SystemExit):
  """Raised after a SIGTERM once the state is safely checkpointed."""


def is_main_process() -> bool:
  return jax.process_index() == 0


def _step(state: TrainState) -> int:
  return int(parallel.to_host(state.step))


def create_model(config: ml_collections.ConfigDict, num_classes: int,
                 axis_name: str | None = None):
  """Builds the linen model of ``config.model`` for ``num_classes`` outputs."""
  return models.create(config.model, num_classes=num_classes, axis_name=axis_name)


def create_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int):
  """Builds the optax chain of ``config.optimizer`` / ``config.schedule``."""
  return optim.create(config.optimizer, config.schedule,
                      steps_per_epoch=steps_per_epoch,
                      num_epochs=config.training.num_epochs,
                      freeze=tuple(config.regularization.freeze))


def create_train_state(config: ml_collections.ConfigDict, model, tx,
                       image_shape: tuple[int, ...]) -> TrainState:
  """Initializes parameters, optimizer state and keys from ``config.seed``."""
  rng = jax.random.PRNGKey(config.seed)
  init_rng, dropout_rng, state_rng = jax.random.split(rng, 3)
  dummy = jnp.zeros((1,) + tuple(image_shape), jnp.float32)
  variables = jax.jit(lambda r, d: model.init(
      {"params": r, "dropout": dropout_rng}, d, train=False))(init_rng, dummy)
  # Keras weights named by a `weights_path` override (e.g. VGG16); a no-op
  # for models without one.
  variables = models.load_pretrained(model, variables)
  params = variables["params"]
  batch_stats = variables.get("batch_stats", {})
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=batch_stats, opt_state=tx.init(params),
                    rng=state_rng, plateau=optim.init_plateau(config.schedule))


def abstract_state_from_meta(config: ml_collections.ConfigDict, meta: dict):
  """The model and an abstract TrainState matching a checkpoint's meta."""
  model = create_model(config, meta["num_classes"])
  tx = create_optimizer(config, meta["steps_per_epoch"])
  state = jax.eval_shape(
      lambda: create_train_state(config, model, tx, tuple(meta["image_shape"])))
  return model, state


def _rules(config, model, params):
  return optim.regularizers.build_rules(models.param_rules(model), params,
                                        config.regularization)


class _MetricAccumulator:
  """Sums per-step metrics fetched at refresh points; finds the first NaN."""

  def __init__(self, loss_sum=0.0, accuracy_sum=0.0, count=0):
    self.loss_sum, self.accuracy_sum, self.count = loss_sum, accuracy_sum, count
    self.pending: list[tuple[int, dict]] = []

  def add(self, step: int, metrics: dict) -> None:
    self.pending.append((step, metrics))

  def flush(self) -> list[tuple[int, dict]]:
    """Fetches pending metrics; returns them as host floats, checked finite."""
    if not self.pending:
      return []
    steps = [s for s, _ in self.pending]
    fetched = parallel.to_host([m for _, m in self.pending])
    self.pending = []
    rows = list(zip(steps, fetched))
    for step, m in rows:
      if not (math.isfinite(float(m["loss"])) and math.isfinite(float(m["grad_norm"]))):
        raise _NonFinite(step, m)
      self.loss_sum += float(m["loss"])
      self.accuracy_sum += float(m["accuracy"])
      self.count += 1
    return rows

  @property
  def loss(self) -> float:
    return self.loss_sum / max(self.count, 1)

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


def _write_json(path: str, obj: Any) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)  # Atomic: a reader never sees half a file.


def _empty_history(has_validation: bool) -> dict[str, list]:
  keys = ["loss", "accuracy"]
  if has_validation:
    keys += ["val_loss", "val_accuracy"]
  keys += ["lr", "epoch_time", "images_per_second"]
  return {k: [] for k in keys}


class _SigtermFlag:
  """Turns SIGTERM into a flag the loop checks between steps."""

  def __init__(self):
    self.raised = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # Not the main thread (e.g. some notebook runners).
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.raised = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> tuple[TrainState, dict[str, list]]:
  """Trains ``config`` in ``workdir``, resuming if a checkpoint is there.

  Args:
    config: an experiment config (``experiments/*.py:get_config()``).
    workdir: holds ``checkpoints/``, ``tensorboard/``, ``history.json``,
      ``config.json`` and ``results.json``.

  Returns:
    ``(state, history)``: the final TrainState and a Keras-like history dict
    of per-epoch lists (``loss``, ``accuracy``, ``val_loss``,
    ``val_accuracy``, ``lr``, ``epoch_time``, ``images_per_second``), plus
    the final ``test_loss`` and ``test_accuracy`` floats.

  Raises:
    config_lib.ConfigError: the config cannot run (before anything compiles).
    NonFiniteLossError: a NaN/Inf loss or gradient; nothing is saved after it.
    Preempted: after SIGTERM, once a checkpoint of the current step is saved.
  """
  config_lib.validate(config)
  parallel.check_device_count()
  parallel.check_global_batch(config.training.batch_size)
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  _check_writable(workdir)

  data = input_pipeline.create(config.dataset,
                               global_batch_size=config.training.batch_size,
                               seed=config.seed)
  info = data.info
  model = create_model(config, info.num_classes)
  train_model = create_model(config, info.num_classes, axis_name=parallel.AXIS)
  tx = create_optimizer(config, data.steps_per_epoch)
  state = create_train_state(config, model, tx, info.image_shape)
  if config.transfer.source or config.regularization.freeze:
    # Pretrained weights in; frozen BatchNorm on moving stats, no backward
    # pass through the frozen base.
    state, train_model = transfer.apply(config, state, tx, train_model)
  if is_main_process():
    print(models.summary(model, info.image_shape))
    print(f"Data: {info.name}, {info.num_train} train / {info.num_validation} "
          f"validation / {info.num_test} test, {data.steps_per_epoch} steps of "
          f"{config.training.batch_size} per epoch on {jax.device_count()} "
          f"device(s) ({jax.devices()[0].platform}).")
    _write_json(os.path.join(workdir, "config.json"), config_lib.to_dict(config))

  rules = _rules(config, model, state.params)
  train_step = parallel.make_train_step(
      train_model, tx,
      penalty_fn=lambda p: optim.regularizers.penalty(p, rules),
      project_fn=lambda p: optim.constraints.project(p, rules),
      label_smoothing=config.training.label_smoothing,
      pmap=not jax.config.jax_debug_nans)
  eval_step = parallel.make_eval_step(
      model, pmap=not jax.config.jax_debug_nans,
      test_time_flip=config.training.test_time_flip)

  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                                     max_to_keep=config.training.keep_checkpoints,
                                     keep_best=config.training.keep_best,
                                     best_metric=config.training.best_metric)
  has_validation = info.num_validation > 0
  history = _empty_history(has_validation)
  epoch, partial = 0, {}
  restored = ckpt.restore_latest(state)
  if restored is not None:
    state, meta = restored
    epoch, history, partial = meta["epoch"], meta["history"], meta.get("partial", {})
    print(f"Resumed from {ckpt.directory} at step {_step(state)} "
          f"(epoch {epoch} of {config.training.num_epochs} complete).")

  def meta_for(epoch_done, partial_sums=None):
    return {"epoch": epoch_done, "history": history, "partial": partial_sums or {},
            "num_classes": info.num_classes, "image_shape": list(info.image_shape),
            "steps_per_epoch": data.steps_per_epoch,
            "global_batch_size": config.training.batch_size}

  writer = _summary_writer(workdir)
  num_epochs = config.training.num_epochs
  if epoch >= num_epochs:
    print(f"Training already finished ({epoch} epochs in {workdir}); evaluating.")
  try:
    with _SigtermFlag() as sigterm:
      while epoch < num_epochs:
        state, epoch_metrics = _train_epoch(
            config, data, train_step, state, epoch, partial, tx, writer,
            sigterm, ckpt, meta_for)
        partial = {}
        epoch += 1
        row = {"loss": epoch_metrics["loss"], "accuracy": epoch_metrics["accuracy"]}
        if has_validation and (epoch % config.training.eval_every_epochs == 0
                               or epoch == num_epochs):
          val = evaluate(eval_step, state, data, "validation")
          row.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
          opt_state, plateau = optim.on_epoch_end(
              state.opt_state, state.plateau, val["loss"], config.schedule)
          state = state.replace(opt_state=opt_state, plateau=plateau)
        elif has_validation:
          row.update(val_loss=float("nan"), val_accuracy=float("nan"))
        row.update(lr=float(parallel.to_host(optim.learning_rate(state.opt_state))),
                   epoch_time=epoch_metrics["time"],
                   images_per_second=epoch_metrics["images_per_second"])
        for k, v in row.items():
          history[k].append(v)
        _log_epoch(epoch, num_epochs, row, writer)
        if is_main_process():
          _write_json(os.path.join(workdir, "history.json"), history)
        if epoch % config.training.checkpoint_every_epochs == 0 or epoch == num_epochs:
          metric = config.training.best_metric
          ckpt.save(_step(state), state, meta_for(epoch),
                    metrics={metric: row[metric]} if metric in row else None)
    test = evaluate(eval_step, state, data, "test")
    history["test_loss"], history["test_accuracy"] = test["loss"], test["accuracy"]
    print(f"Test: loss {test['loss']:.4f}, accuracy {test['accuracy']:.4f} "
          f"({test['count']} examples).")
    if is_main_process():
      _write_json(os.path.join(workdir, "history.json"), history)
      _write_json(os.path.join(workdir, "results.json"), {
          "test_loss": test["loss"], "test_accuracy": test["accuracy"],
          "test_count": test["count"], "epochs": epoch, "step": _step(state)})
      if writer is not None:
        writer.scalar("test/loss", test["loss"], _step(state))
        writer.scalar("test/accuracy", test["accuracy"], _step(state))
  finally:
    ckpt.close()
    if writer is not None:
      writer.flush()
  return state, history


def _train_epoch(config, data, train_step, state, epoch, partial, tx, writer,
                 sigterm, ckpt, meta_for):
  """One epoch (or its remainder after a resume); returns state and metrics."""
  steps = data.steps_per_epoch
  start = _step(state) - epoch * steps
  acc = _MetricAccumulator(partial.get("loss_sum", 0.0),
                           partial.get("accuracy_sum", 0.0), partial.get("count", 0))
  bar = tqdm.tqdm(total=steps, initial=start, desc=f"Epoch {epoch + 1}/"
                  f"{config.training.num_epochs}", unit="step",
                  disable=not (config.training.progress_bar and is_main_process()),
                  dynamic_ncols=True, leave=True)
  step = _step(state)
  t0 = time.perf_counter()
  images = 0
  try:
    for batch in data.train_epoch(epoch, start_step=start):
      state, metrics = train_step(state, batch)
      step += 1
      images += config.training.batch_size
      acc.add(step, metrics)
      at_refresh = step % REFRESH_EVERY_STEPS == 0
      if at_refresh or (sigterm.raised and jax.process_count() == 1):
        _refresh(acc, bar, writer, config, step, epoch * steps)
      if _stop_requested(sigterm, at_refresh):
        ckpt.save(step, state, meta_for(epoch, {
            "loss_sum": acc.loss_sum, "accuracy_sum": acc.accuracy_sum,
            "count": acc.count}))
        ckpt.wait()
        bar.close()
        print(f"\nSIGTERM: saved a complete checkpoint at step {step} "
              f"(epoch {epoch + 1}) in {ckpt.directory}; rerun the same "
              "command to resume.")
        raise Preempted(143)
    _refresh(acc, bar, writer, config, step, epoch * steps)
  except _NonFinite as e:
    bar.close()
    lr = float(parallel.to_host(optim.learning_rate(state.opt_state)))
    last = ckpt.all_steps()
    ckpt.wait()
    raise NonFiniteLossError(
        f"Non-finite loss at step {e.step} (epoch {epoch + 1}): loss="
        f"{float(e.metrics['loss'])}, gradient norm={float(e.metrics['grad_norm'])}, "
        f"learning rate={lr:g}. Nothing was saved after it; the last good "
        f"checkpoint is " + (f"step {last[-1]} in {ckpt.directory}" if last
                             else "none (no checkpoint yet)") +
        ". Lower optimizer.learning_rate, add clipping (optimizer.clipnorm), "
        "or rerun with --debug_nans to find the op.") from None
  bar.close()
  elapsed = time.perf_counter() - t0
  return state, {"loss": acc.loss, "accuracy": acc.accuracy, "time": elapsed,
                 "images_per_second": images / elapsed if elapsed > 0 else 0.0}


def _stop_requested(sigterm, at_refresh: bool) -> bool:
  """Whether every process agrees to stop now (SIGTERM reached any of them).

  One process alone cannot stop: checkpoint saves are collective. With
  several processes the flag is exchanged at refresh points only.
  """
  if jax.process_count() == 1:
    return sigterm.raised
  if not at_refresh:
    return False
  from jax.experimental import multihost_utils
  flags = multihost_utils.process_allgather(np.asarray(sigterm.raised))
  return bool(np.any(flags))


def _refresh(acc, bar, writer, config, step, epoch_start_step):
  rows = acc.flush()
  if not rows:
    return
  bar.update(step - epoch_start_step - bar.n)
  bar.set_postfix(loss=f"{acc.loss:.4f}", accuracy=f"{acc.accuracy:.4f}")
  if writer is not None:
    every = config.training.log_every_steps
    for s, m in rows:
      if s % every == 0:
        writer.scalar("train/loss", float(m["loss"]), s)
        writer.scalar("train/accuracy", float(m["accuracy"]), s)
        writer.scalar("train/grad_norm", float(m["grad_norm"]), s)


def _log_epoch(epoch, num_epochs, row, writer):
  text = " - ".join(f"{k}: {v:.4g}" for k, v in row.items())
  if is_main_process():
    print(f"Epoch {epoch}/{num_epochs} - {text}")
  logging.info("epoch %d: %s", epoch, text)
  if writer is not None:
    for k, v in row.items():
      if not (isinstance(v, float) and math.isnan(v)):
        writer.scalar(f"epoch/{k}", v, epoch)


def _summary_writer(workdir):
  if not is_main_process():
    return None
  from flax.metrics import tensorboard  # Imports TF's summary ops lazily.
  return tensorboard.SummaryWriter(os.path.join(workdir, "tensorboard"))


def _check_writable(workdir: str) -> None:
  probe = os.path.join(workdir, f".write-test-{os.getpid()}")
  try:
    with open(probe, "w") as f:
      f.write("x" * 4096)
    os.remove(probe)
  except OSError as e:
    raise OSError(f"Workdir {workdir} is not writable ({e.strerror}); choose "
                  "another --workdir or free space there.") from e


def evaluate_workdir(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Evaluates the latest checkpoint of ``workdir`` on the test split."""
  config_lib.validate(config)
  model, variables, _ = checkpoint_lib.load_for_inference(workdir)
  data = input_pipeline.create(config.dataset,
                               global_batch_size=config.training.batch_size,
                               seed=config.seed)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                     batch_stats=variables.get("batch_stats", {}), opt_state=(),
                     rng=jax.random.PRNGKey(0), plateau=())
  result = evaluate(parallel.make_eval_step(
      model, test_time_flip=config.training.test_time_flip), state, data, "test")
  print(f"Test: loss {result['loss']:.4f}, accuracy {result['accuracy']:.4f} "
        f"({result['count']} examples).")
  return result
