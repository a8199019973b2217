"""The one dispatch: what each ``--mode`` does with a config and a workdir.

``jaxcnn.main`` (the command line), ``jaxcnn.ladder`` (sweeps) and notebooks
all come through :func:`run`, so a mode means the same everywhere.
"""

from __future__ import annotations

import sys
from typing import Any

import ml_collections

from jaxcnn import config as config_lib

MODES = ("train", "eval", "predict_mc", "visualize", "lr_find")

# What a config given for an existing workdir may change when evaluating,
# predicting or plotting it: where the data lives and how to batch and
# predict on this machine. Everything else (model, dataset, normalization)
# is the workdir's own config.json: the model is the one that was trained.
RUNTIME_KEYS = ("dataset.data_dir", "dataset.mirror_dir", "training.batch_size",
                "training.test_time_flip", "inference.num_samples",
                "inference.batch_size")


def user_errors() -> tuple[type[BaseException], ...]:
  """The errors a command prints as one ``error:`` line, never a traceback.

  Each says what went wrong and what would work. The training errors are
  looked up only in modules already imported: they can only come from a run
  that trained, and a command that never imported them needs no JAX.
  """
  errors = [config_lib.ConfigError, FileNotFoundError]
  for module, name in (("jaxcnn.train", "NonFiniteLossError"),
                       ("jaxcnn.checkpoint", "CheckpointMismatchError"),
                       ("jaxcnn.checkpoint", "CheckpointSaveError"),
                       ("jaxcnn.workdir", "WriteError")):
    error = getattr(sys.modules.get(module), name, None)
    if error is not None:
      errors.append(error)
  return tuple(errors)


def workdir_config(workdir: str, given: ml_collections.ConfigDict | None = None
                   ) -> ml_collections.ConfigDict:
  """The config to evaluate, predict or plot ``workdir`` with.

  Args:
    workdir: a training workdir (its ``config.json`` is the base).
    given: the command's config; only its :data:`RUNTIME_KEYS` are taken.

  Raises:
    FileNotFoundError: no ``config.json`` in ``workdir``.
  """
  from jaxcnn import state  # Orbax only when a workdir is read.
  config = state.read_config(workdir)
  if given is not None:
    for key in RUNTIME_KEYS:
      section, name = key.split(".")
      config[section][name] = given[section][name]
  return config


def run(config: ml_collections.ConfigDict, workdir: str, mode: str = "train",
        member: int | None = None) -> Any:
  """Runs one experiment in one mode.

  Args:
    config: an experiment config (``experiments/*.py:get_config()``).
    workdir: the run's folder.
    mode: one of :data:`MODES`.
    member: for the modes other than train, the member of a population
      workdir (``training.population > 1``) to use: required by predict_mc
      and visualize there; eval without it scores every member (mean ± std).

  Returns:
    ``train``: ``(state, history)``; ``eval``: the test metrics;
    ``predict_mc``: the MC-dropout report; ``visualize``: the paths written;
    ``lr_find``: the learning-rate range test's ``lr_find.Sweep`` (it trains a
    throwaway copy from the initialization and writes ``lr_find.json`` and
    ``lr_find.png`` only: the workdir's training state is left as it is).

  Raises:
    config_lib.ConfigError: an invalid config or mode.
  """
  if mode not in MODES:
    guess = config_lib.closest(mode, MODES)
    raise config_lib.ConfigError(
        f"Unknown mode {mode!r}." + (f" Did you mean {guess!r}?" if guess else "") +
        f" Modes: {', '.join(MODES)}.")
  config_lib.validate(config)
  if mode in ("train", "lr_find") and member is not None:
    raise config_lib.PopulationError(
        "--member selects a population member for --mode=eval, predict_mc or "
        "visualize; " + ("training trains every member." if mode == "train"
                         else "lr_find sweeps the config's member 0."))
  if mode == "lr_find":
    from jaxcnn import lr_find
    return lr_find.find(config, workdir)
  if mode == "train":
    if config.transfer.feature_extraction:
      from jaxcnn import transfer  # The frozen base runs once; the head trains.
      return transfer.train_head_on_features(config, workdir)
    from jaxcnn import train
    return train.train_and_evaluate(config, workdir)
  config = workdir_config(workdir, config)
  if mode == "eval":
    from jaxcnn import train
    return train.evaluate_workdir(config, workdir, member)
  if mode == "predict_mc":
    from jaxcnn import inference
    return inference.report(config, workdir, member=member)
  from jaxcnn import visualize
  return visualize.plot_workdir(config, workdir, member=member)
