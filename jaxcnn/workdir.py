"""A training workdir's own rules: one run at a time, files written whole,
and what a resume may change.

* :func:`lock`: a run holds ``<workdir>/.lock`` (``fcntl.flock`` on a file
  naming its host and pid) while it trains. A second run stops with a clear
  message; a lock whose holder died (the kernel released it) is taken over
  with a warning.
* :func:`write_json`: a temporary file renamed over the target, so a reader
  never sees half a file and a full disk leaves no ``.tmp`` behind.
* :func:`resume_changes`: what a new command changes against the run saved
  in the workdir. Settings a resume cannot honour exactly (the data, its
  order and batching, the model, the optimizer whose state is saved) are
  refused with both values named; the others (how long to train, how often
  to evaluate and save, logging, where the data lives) apply, are printed in
  one line, and are appended to ``config_history.jsonl``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from typing import Any, Iterator

from jaxcnn import config as config_lib

LOCK_FILE = ".lock"
CONFIG_FILE = "config.json"
CONFIG_HISTORY_FILE = "config_history.jsonl"

# Settings a resumed run may change: they say how long to train, how often to
# evaluate, save and log, and where the data lives, never what is trained.
RESUMABLE_KEYS = (
    "dataset.data_dir", "dataset.mirror_dir",
    "training.num_epochs", "training.eval_every_epochs",
    "training.checkpoint_every_epochs", "training.keep_checkpoints",
    "training.keep_best", "training.best_metric", "training.progress_bar",
    "training.log_every_steps", "training.test_time_flip", "training.eval_train",
    "training.recompute_bn_stats", "inference",
    # Logging and the separate --mode=lr_find: neither changes the training.
    "training.depth_diagnostics", "lr_find",
    # Where the batches are gathered and how many steps a call runs: the same
    # batches in the same order, the same parameters (tests/test_train_device.py).
    "dataset.device_cache", "training.steps_per_call",
)


class WorkdirInUseError(config_lib.ConfigError):
  """Another run holds the workdir's lock."""


class WriteError(OSError):
  """A workdir file could not be written; the message says what to do."""

  def __str__(self) -> str:
    return self.strerror or super().__str__()  # The message, without "[Errno N]".


def check_writable(workdir: str) -> None:
  """Creates ``workdir`` if needed; fails early on a read-only or full one.

  Raises:
    WriteError: the folder could not be made, or a 4 KiB probe file could
      not be written in it.
  """
  probe = os.path.join(workdir, f".write-test-{os.getpid()}")
  try:
    os.makedirs(workdir, exist_ok=True)
    with open(probe, "w") as f:
      f.write("x" * 4096)
    os.remove(probe)
  except OSError as e:
    with contextlib.suppress(OSError):
      os.remove(probe)
    raise WriteError(e.errno, f"Workdir {workdir} is not writable ({e.strerror}); "
                     "choose another --workdir or free space there.") from None


def write_json(path: str, obj: Any) -> None:
  """Writes ``obj`` as JSON atomically (temporary file, then rename).

  Raises:
    WriteError: the write failed (a full disk, say); the temporary file is
      removed and ``path`` keeps its previous content. The message says so.
  """
  tmp = f"{path}.tmp"
  try:
    with open(tmp, "w") as f:
      json.dump(obj, f, indent=2)
    os.replace(tmp, path)
  except OSError as e:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise WriteError(e.errno, f"Could not write {path} ({e.strerror}); it keeps its "
                  "previous content. Free space in the workdir, then rerun the "
                  "same command to resume.") from None


def _holder(path: str) -> dict[str, Any]:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}


@contextlib.contextmanager
def lock(workdir: str) -> Iterator[None]:
  """Holds ``<workdir>/.lock`` for the duration of a training run.

  Raises:
    WorkdirInUseError: a live run holds it (its host, pid and start time are
      named).
  """
  path = os.path.join(workdir, LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EAGAIN, errno.EACCES):
        raise
      h = _holder(path)
      raise WorkdirInUseError(
          f"Workdir {workdir} is in use by another run (pid {h.get('pid', '?')} on "
          f"{h.get('host', '?')}, since {h.get('since', '?')}). Wait for it to "
          "finish, or use another --workdir.") from None
    stale = _holder(path)
    if stale.get("pid") not in (None, os.getpid()):
      print(f"WARNING: took over the lock of {workdir} left by pid {stale['pid']} "
            f"on {stale.get('host', '?')} (that run ended without releasing it).")
    record = json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                         "since": time.strftime("%Y-%m-%d %H:%M:%S")})
    os.ftruncate(fd, 0)
    os.pwrite(fd, record.encode(), 0)
    try:
      yield
    finally:
      # Released by this process (an error included): nothing stale to report.
      # Only a process that dies without running this leaves its record.
      os.ftruncate(fd, 0)
  finally:
    os.close(fd)  # Closing releases the flock, as the kernel does on any exit.


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in dict(tree).items():
    if isinstance(value, dict) and value:
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
  return out


def _resumable(key: str) -> bool:
  return any(key == k or key.startswith(k + ".") for k in RESUMABLE_KEYS)


def flat_config(config: Any) -> dict[str, Any]:
  """``{'section.key': value}`` of a config, through JSON (tuples become lists)."""
  return _flat(json.loads(json.dumps(config_lib.to_dict(config))))


def saved_config(workdir: str) -> dict[str, Any] | None:
  """The run's ``config.json``, flat, or None when there is none.

  A key added to jaxcnn after the run was saved reads as its default: the
  run had that behaviour, so an old workdir still resumes (and a ladder
  still reuses its finished rung) unless the key is set otherwise now.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    saved = _flat(json.load(f))
  defaults = flat_config(config_lib.defaults())
  return {**{k: v for k, v in defaults.items()
             if k not in saved and not isinstance(v, dict)}, **saved}


def resume_changes(workdir: str, config: Any) -> dict[str, tuple[Any, Any]]:
  """What ``config`` changes against the run saved in ``workdir``.

  Args:
    workdir: a workdir with a checkpoint to resume.
    config: the new command's config.

  Returns:
    ``{key: (saved, new)}`` of the changes a resume applies (empty when
    there is no saved config).

  Raises:
    ConfigError: a change a resume cannot honour; the message names every
      such key with both values, and what to do instead.
  """
  saved = saved_config(workdir)
  if saved is None:
    return {}
  new = flat_config(config)
  changed = {k: (saved.get(k), new.get(k)) for k in sorted(saved.keys() | new.keys())
             if saved.get(k) != new.get(k)}
  refused = {k: v for k, v in changed.items() if not _resumable(k)}
  if refused:
    lines = "\n  ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in refused.items())
    raise config_lib.ConfigError(
        f"Cannot resume {workdir} with these settings changed; the run saved "
        f"there was trained with the others:\n  {lines}\nA resumed run must "
        "see the same data in the same order and the same model and optimizer. "
        "Use another --workdir (with --config.transfer.source="
        f"{workdir} to start from its weights), or drop the changes.")
  return {k: v for k, v in changed.items() if _resumable(k)}


def record_config(workdir: str, config: Any, changes: dict[str, tuple[Any, Any]],
                  step: int) -> None:
  """Writes ``config.json`` and appends the changes to the config history."""
  write_json(os.path.join(workdir, CONFIG_FILE), config_lib.to_dict(config))
  if changes:
    entry = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "step": step,
             "changes": {k: {"saved": a, "new": b} for k, (a, b) in changes.items()}}
    with open(os.path.join(workdir, CONFIG_HISTORY_FILE), "a") as f:
      f.write(json.dumps(entry) + "\n")


def check_population(workdir: str, config: Any) -> None:
  """Refuses to resume a workdir's population with another size.

  Raises:
    PopulationError: the saved run has another ``training.population``;
      both sizes are named.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return
  with open(path) as f:
    saved = json.load(f).get("training", {}).get("population", 1)
  new = config.training.population
  if saved != new:
    raise config_lib.PopulationError(
        f"Cannot resume {workdir}: its run trains a population of {saved} "
        f"member(s) (training.population={saved}), this command asks for {new}. "
        f"Rerun with --config.training.population={saved}, or use another --workdir.")
