"""Orbax behind one small interface: save, resume, skip what is broken.

Each checkpoint step holds two items: ``state`` (the whole TrainState pytree)
and ``meta`` (JSON: epoch, history, what is needed to rebuild the model).
Saves are asynchronous; :meth:`Checkpointer.close` waits for them.

Every save records the SHA-256 of the state's values in ``meta``; a restore
recomputes it. A step that cannot be restored (a killed save, a truncated
file, a flipped bit the digest catches) is moved aside to
``<dir>/corrupt/<step>-<time>`` with a warning and the previous good step is
used: it is never deleted, and its step number is never silently overwritten
by the resumed run. A save that fails (a full disk) raises
:class:`CheckpointSaveError` at the next save or at :meth:`Checkpointer.close`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging as logging_std
import os
import shutil
import time
from typing import Any

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

preservation_policy = checkpoint_managers.preservation_policy


class _QuietMissingItemMetadata(logging_std.Filter):
  """Drops Orbax's warning that an item has no ``_CHECKPOINT_METADATA``.

  Orbax writes that file once per step, not per item, yet looks for it in
  every item folder on restore and warns, on every resume of every workdir,
  about a file that is not meant to be there.
  """

  def filter(self, record: logging_std.LogRecord) -> bool:
    return not (record.getMessage().startswith("Metadata file does not exist:")
                and record.getMessage().endswith("_CHECKPOINT_METADATA"))


logging_std.getLogger("absl").addFilter(_QuietMissingItemMetadata())


def _to_local(tree: Any) -> Any:
  """One local copy of each (replicated) global array of a restored tree."""
  if jax.process_count() == 1:
    return tree
  return jax.tree.map(
      lambda x: x.addressable_data(0) if isinstance(x, jax.Array) else x, tree)


class CheckpointMismatchError(ValueError):
  """A checkpoint whose tree does not fit the model it is restored into."""


class CheckpointSaveError(OSError):
  """A save failed (a full disk, say); the message names the last good step."""


class CorruptCheckpointError(ValueError):
  """A step whose restored values do not match the digest saved with them."""


DIGEST_KEY = "state_sha256"


def tree_digest(tree: Any) -> str:
  """SHA-256 of every leaf's dtype, shape and bytes, in tree order.

  Saved in a step's ``meta`` and checked on restore: a flipped bit in a data
  file that Orbax and TensorStore read without complaint still changes it.
  """
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(jax.device_get(_to_local(tree))):
    array = np.ascontiguousarray(np.asarray(leaf))
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def _abstract(tree: Any) -> Any:
  """Shape/dtype structs for restoring on this machine's devices.

  A checkpoint written on any number of devices restores on any other: the
  step is pmap-ed with the state unreplicated, so nothing is per-device. One
  process restores onto its first device; several restore a global array
  replicated over all devices (Orbax reads it once per host), which
  :func:`_to_local` then turns back into one local copy.
  """
  if jax.process_count() > 1:
    mesh = jax.sharding.Mesh(jax.devices(), ("all",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  else:
    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def tree_differences(expected: Any, found: Any) -> list[str]:
  """Lists missing, unexpected and mismatched-shape leaves between two trees."""
  def name(key):
    # Orbax's metadata turns dataclasses and named tuples into dicts: compare
    # paths by their plain names so both spellings of a field agree.
    for attr in ("name", "key", "idx"):
      if hasattr(key, attr):
        return str(getattr(key, attr))
    return str(key)

  def flat(tree):
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(name(k) for k in path): getattr(leaf, "shape", None)
            for path, leaf in leaves}
  want, got = flat(expected), flat(found)
  problems = [f"missing {k}" for k in sorted(want.keys() - got.keys())]
  problems += [f"unexpected {k}" for k in sorted(got.keys() - want.keys())]
  problems += [f"shape {k}: checkpoint {tuple(got[k])} vs model {tuple(want[k])}"
               for k in sorted(want.keys() & got.keys())
               if want[k] is not None and got[k] is not None
               and tuple(want[k]) != tuple(got[k])]
  return problems


def _saved_tree(item_dir: str) -> Any:
  """The shapes and structure stored in a checkpoint item, read from metadata."""
  with ocp.StandardCheckpointer() as reader:
    metadata = reader.metadata(item_dir)
  tree = getattr(metadata, "item_metadata", metadata)
  tree = getattr(tree, "tree", tree)
  if tree is None:
    raise ValueError(f"No readable tree metadata in {item_dir}.")
  return tree


class Checkpointer:
  """Saves every N epochs, keeps the last K, resumes from the latest good one.

  Args:
    directory: where the step folders live (``<workdir>/checkpoints``).
    max_to_keep: how many recent steps to keep; the latest is never removed.
    keep_best: also keep this many best steps by ``best_metric`` (0 = off).
    best_metric: 'val_accuracy' (higher is better) or 'val_loss' (lower).
  """

  def __init__(self, directory: str, *, max_to_keep: int = 3, keep_best: int = 0,
               best_metric: str = "val_accuracy"):
    self.directory = os.path.abspath(directory)
    self.best_metric = best_metric
    # Any-of: the latest N (what resume needs) OR the best K. Orbax's own
    # best_fn + max_to_keep would delete the newest step when it is not
    # among the best, and resume would go back in time.
    policies = [preservation_policy.LatestN(n=max(1, max_to_keep))]
    if keep_best:
      sign = -1.0 if best_metric == "val_loss" else 1.0
      policies.append(preservation_policy.BestN(
          get_metric_fn=lambda m: sign * float(m[best_metric]), n=keep_best,
          keep_checkpoints_without_metrics=False))
    self._options = ocp.CheckpointManagerOptions(
        create=True, enable_async_checkpointing=True,
        preservation_policy=preservation_policy.AnyPreservationPolicy(policies))
    self._manager = self._new_manager()

  def _new_manager(self) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(self.directory, options=self._options,
                                 item_names=("state", "meta"))

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def read_meta(self, step: int) -> dict:
    """The JSON ``meta`` item of ``step`` (epoch, history, model shapes)."""
    return self._manager.restore(step, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))["meta"]

  def save(self, step: int, state: Any, meta: dict,
           metrics: dict[str, float] | None = None) -> None:
    """Starts an asynchronous save of ``state`` and ``meta`` at ``step``.

    ``metrics`` (e.g. ``{'val_accuracy': 0.91}``) rank the step for
    ``keep_best``; a step saved without them (mid-epoch) is kept only while
    it is among the latest.
    """
    if metrics is not None and any(v != v for v in metrics.values()):
      metrics = None  # NaN (no validation this epoch) cannot rank.
    self.check()  # A failed earlier save stops the run here, not later.
    meta = {**meta, DIGEST_KEY: tree_digest(state)}
    if jax.process_count() > 1:
      # pmap's replicated outputs are host-local; Orbax writes global arrays.
      state = jax.tree.map(
          lambda x: ocp.utils.fully_replicated_host_local_array_to_global_array(x)
          if isinstance(x, jax.Array) else x, state)
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        metrics=metrics, force=True)

  def wait(self) -> None:
    """Blocks until every started save is complete on disk."""
    self._manager.wait_until_finished()

  def check(self) -> None:
    """Raises :class:`CheckpointSaveError` if a finished async save failed."""
    try:
      self._manager.check_for_errors()
    except Exception as e:  # noqa: BLE001 - any failure of a save is fatal.
      steps = self.all_steps()
      raise CheckpointSaveError(
          f"Saving a checkpoint in {self.directory} failed ({type(e).__name__}: "
          f"{str(e).splitlines()[0] if str(e) else ''}); training stopped. The "
          "last complete checkpoint is " + (f"step {steps[-1]}" if steps else "none") +
          ". Free space there, then rerun the same command to resume.") from None

  def close(self) -> None:
    """Waits for the saves in flight, then raises if one of them failed."""
    try:
      self._manager.wait_until_finished()
      self.check()
    except CheckpointSaveError:
      raise
    except Exception as e:  # noqa: BLE001 - a save that failed while finishing.
      raise CheckpointSaveError(
          f"Saving a checkpoint in {self.directory} failed ({type(e).__name__}: "
          f"{str(e).splitlines()[0] if str(e) else ''}). Free space there, then "
          "rerun the same command to resume.") from None
    finally:
      with contextlib.suppress(Exception):  # Its error, if any, is reported above.
        self._manager.close()

  def restore_latest(self, target_state: Any) -> tuple[Any, dict] | None:
    """Restores the newest restorable step into the structure of ``target_state``.

    Broken steps are moved aside with a warning and older ones tried.

    Returns:
      ``(state, meta)``, or None when no step exists.

    Raises:
      CheckpointMismatchError: the checkpoint was written for another model
        (the message lists missing, unexpected and mismatched entries).
    """
    for step in reversed(self.all_steps()):
      try:
        return self.restore(step, target_state)
      except CheckpointMismatchError:
        raise
      except Exception as e:  # noqa: BLE001 - any read failure means broken.
        self._quarantine(step, e)
    return None

  def restore(self, step: int, target_state: Any) -> tuple[Any, dict]:
    """Restores one step; raises if it is unreadable or does not fit."""
    meta = self.read_meta(step)
    saved_tree = _saved_tree(os.path.join(self.directory, str(step), "state"))
    problems = tree_differences(target_state, saved_tree)
    if problems:
      raise CheckpointMismatchError(
          f"Checkpoint step {step} in {self.directory} does not fit this "
          f"model:\n  " + "\n  ".join(problems[:50]) +
          ("\n  ..." if len(problems) > 50 else "") +
          "\nUse another --workdir for a changed model.")
    restored = _to_local(self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(_abstract(target_state))))["state"])
    saved_digest = meta.get(DIGEST_KEY)  # Absent in checkpoints of older jaxcnn.
    if saved_digest is not None and tree_digest(restored) != saved_digest:
      raise CorruptCheckpointError(
          f"step {step}'s restored values do not match the SHA-256 saved with them")
    return restored, meta

  def _quarantine(self, step: int, error: Exception) -> None:
    src = os.path.join(self.directory, str(step))
    dst_dir = os.path.join(self.directory, "corrupt")
    os.makedirs(dst_dir, exist_ok=True)
    dst = os.path.join(dst_dir, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
    logging.warning(
        "Checkpoint step %d in %s cannot be restored (%s: %s); moved it to %s "
        "and trying the previous step.", step, self.directory,
        type(error).__name__, str(error).splitlines()[0] if str(error) else "",
        dst)
    print(f"WARNING: checkpoint step {step} is unreadable "
          f"({type(error).__name__}); moved to {dst}, using an older step.")
    if os.path.exists(src):
      shutil.move(src, dst)
    self._manager.close()
    self._manager = self._new_manager()
