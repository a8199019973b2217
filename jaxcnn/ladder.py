r"""Runs a ladder: a named group of experiments, and tabulates their results.

A ladder is one config file in ``experiments/`` whose ``get_config(arg)``
builds a member from its config string (``--config=file.py:member`` works
with ``jaxcnn.main`` too) and which also defines:

* ``get_ladder(options: str = '') -> list[str]``: the members, in order;
* ``MEMBERS``: optional ``{member: (what it changes, the lecture's number)}``
  for the table;
* ``extra_metrics(member, config, workdir) -> dict[str, float]``: optional,
  numbers the training loop does not give (e.g. MC-dropout test accuracy);
  cached in ``<member>/extra.json``.

Each member trains in ``<out>/<member>/`` through
:func:`jaxcnn.train.train_and_evaluate`, sequentially and in process. A member
whose ``results.json`` is there and whose ``config.json`` equals the config
is reused, not retrained. Then ``<out>/results.md``, ``<out>/results.csv``
and ``<out>/curves.png`` (all members overlaid) are written.

Launch::

  python -m jaxcnn.ladder --config_file=experiments/fashion_mnist_mlp_activations.py \
      --out=workdirs/ladders/mlp_activations
  # the same, small: 1 epoch on 2,000 training images
  python -m jaxcnn.ladder --config_file=experiments/regularization_ladder.py \
      --out=/tmp/reg_quick --epochs=1 --train_examples=2000 --test_examples=1000
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import io
import json
import math
import os
import shutil
import sys
import time
from types import ModuleType
from typing import Any, Callable, Sequence

import ml_collections

from jaxcnn import config as config_lib

# Columns of results.csv / results.md, in order (extra metrics follow).
COLUMNS = ("member", "changes", "epochs", "train_loss", "train_accuracy",
           "val_loss", "val_accuracy", "best_epoch", "test_loss",
           "test_accuracy", "wall_time_s", "images_per_second", "lecture")

# Config keys that change only what is printed or logged, not the run: a
# finished run that differs in these alone is reused.
COSMETIC_KEYS = ("training.progress_bar", "training.log_every_steps")

TrainFn = Callable[[ml_collections.ConfigDict, str], Any]


class LadderError(ValueError):
  """A ladder that cannot run; the message says what would."""


@dataclasses.dataclass
class Ladder:
  """A loaded ladder file.

  Attributes:
    path: the config file.
    module: the loaded module.
    members: member names, in order.
    options: extra config-string options appended to every member
      (``'cifar10'`` gives ``get_config('l2,cifar10')``).
  """
  path: str
  module: ModuleType
  members: list[str]
  options: str = ""

  def config_string(self, member: str) -> str:
    return ",".join(p for p in (member, self.options) if p)

  def get_config(self, member: str) -> ml_collections.ConfigDict:
    return self.module.get_config(self.config_string(member))

  def description(self, member: str) -> tuple[str, str]:
    """(what the member changes, the lecture's number) or blanks."""
    info = getattr(self.module, "MEMBERS", {}).get(member, ("", ""))
    return (info[0], info[1]) if isinstance(info, (tuple, list)) else (str(info), "")


def resolve_path(config_file: str) -> str:
  """A config file path, or a bare name looked up in ``experiments/``."""
  if os.path.isfile(config_file):
    return config_file
  here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  candidate = os.path.join(here, "experiments", config_file.removesuffix(".py") + ".py")
  if os.path.isfile(candidate):
    return candidate
  experiments = os.path.join(here, "experiments")
  names = sorted(f[:-3] for f in os.listdir(experiments)
                 if f.endswith(".py") and not f.startswith("_")) \
      if os.path.isdir(experiments) else []
  raise LadderError(f"No ladder file '{config_file}'. Give a path or one of: "
                    f"{', '.join(names)}.")


def load(config_file: str, *, options: str = "",
         members: Sequence[str] | None = None) -> Ladder:
  """Loads a ladder file and picks its members.

  Args:
    config_file: path to the file (or its name in ``experiments/``).
    options: appended to each member's config string.
    members: a subset of the ladder's members (in the order given); None
      takes all.

  Returns:
    The :class:`Ladder`.

  Raises:
    LadderError: no such file, no ``get_ladder``, or an unknown member.
  """
  path = resolve_path(config_file)
  name = "jaxcnn_ladder_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config") or not hasattr(module, "get_ladder"):
    raise LadderError(f"{path} is not a ladder: it needs get_config(arg) and "
                      "get_ladder(options) (see jaxcnn/ladder.py).")
  all_members = list(module.get_ladder(options))
  if members:
    unknown = [m for m in members if m not in all_members]
    if unknown:
      raise LadderError(f"Unknown member(s) {', '.join(unknown)} of {path}; "
                        f"members: {', '.join(all_members)}.")
    chosen = list(members)
  else:
    chosen = all_members
  return Ladder(path=path, module=module, members=chosen, options=options)


def apply_overrides(config: ml_collections.ConfigDict, *, epochs: int = 0,
                    train_examples: int = 0, test_examples: int = 0,
                    batch_size: int = 0) -> ml_collections.ConfigDict:
  """Shrinks a config for a small run (0 leaves a field as it is).

  A validation count larger than a tenth of ``train_examples`` is scaled down
  to that tenth, so a quick run keeps most of its examples for training.
  """
  with config.unlocked():
    if epochs:
      config.training.num_epochs = epochs
    if train_examples:
      config.dataset.num_train_examples = train_examples
      val = config.dataset.validation_split
      if val >= 1 and val > train_examples // 10:
        config.dataset.validation_split = max(1, train_examples // 10)
    if test_examples:
      config.dataset.num_test_examples = test_examples
    if batch_size:
      config.training.batch_size = batch_size
  return config


def _without_cosmetic(config: dict) -> dict:
  for key in COSMETIC_KEYS:
    section, name = key.split(".")
    config.get(section, {}).pop(name, None)
  return config


def _same_config(workdir: str, config: ml_collections.ConfigDict) -> bool | None:
  """Whether ``workdir/config.json`` equals ``config`` (None: no file).

  Keys in :data:`COSMETIC_KEYS` are not compared.
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    saved = json.load(f)
  # Through JSON both ways, so tuples and lists compare equal.
  current = json.loads(json.dumps(config_lib.to_dict(config)))
  return _without_cosmetic(saved) == _without_cosmetic(current)


def _read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def run_member(ladder: Ladder, member: str, out: str, *,
               overrides: dict[str, int] | None = None, overwrite: bool = False,
               train_fn: TrainFn | None = None) -> str:
  """Trains one member unless its finished run is already in its workdir.

  Args:
    ladder: the loaded ladder.
    member: one of ``ladder.members``.
    out: the ladder's output folder; the member trains in ``out/member``.
    overrides: keyword arguments of :func:`apply_overrides`.
    overwrite: delete a workdir whose config differs instead of failing.
    train_fn: ``(config, workdir) -> anything``; default
      :func:`default_train` (``train.train_and_evaluate``, or
      ``transfer.train_head_on_features`` for feature extraction).

  Returns:
    ``'reused'`` or ``'trained'``.

  Raises:
    LadderError: the workdir holds a run of another config (and not
      ``overwrite``).
  """
  config = apply_overrides(ladder.get_config(member), **(overrides or {}))
  config_lib.validate(config)
  workdir = os.path.join(out, member)
  same = _same_config(workdir, config)
  if same is False:
    if not overwrite:
      raise LadderError(
          f"{workdir} holds a run of a different config; pass --overwrite to "
          "retrain it there, or choose another --out.")
    shutil.rmtree(workdir)
  elif same and os.path.exists(os.path.join(workdir, "results.json")):
    _extra(ladder, member, config, workdir)
    return "reused"
  (train_fn or default_train)(config, workdir)
  _extra(ladder, member, config, workdir)
  return "trained"


def default_train(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Trains as ``jaxcnn.main --mode=train`` does (feature extraction included)."""
  # Local imports: importing JAX is slow and tests pass their own train_fn.
  if config.transfer.feature_extraction:
    from jaxcnn import transfer  # The frozen base runs once; the head trains.
    transfer.train_head_on_features(config, workdir)
  else:
    from jaxcnn import train
    train.train_and_evaluate(config, workdir)


def _extra(ladder: Ladder, member: str, config, workdir: str) -> dict[str, float]:
  """The member's extra metrics, computed once and cached in extra.json."""
  fn = getattr(ladder.module, "extra_metrics", None)
  path = os.path.join(workdir, "extra.json")
  if fn is None or not os.path.exists(os.path.join(workdir, "results.json")):
    return {}  # Extra metrics are computed from a finished run only.
  if os.path.exists(path):
    return _read_json(path)
  extra = dict(fn(ladder.config_string(member), config, workdir) or {})
  with open(path, "w") as f:
    json.dump(extra, f, indent=2)
  return extra


def _last(values: Sequence[float]) -> float:
  for v in reversed(list(values or [])):
    if v is not None and not (isinstance(v, float) and math.isnan(v)):
      return float(v)
  return float("nan")


def summarize(workdir: str) -> dict[str, Any]:
  """One row of numbers from a member's ``history.json`` and ``results.json``.

  ``train_*`` are the last epoch's running means over its batches, in train
  mode (dropout on), as Keras' ``history['accuracy']``. ``best_epoch`` is the
  1-based epoch of the highest validation accuracy (training accuracy when
  there is no validation). ``wall_time_s`` sums the epochs' times;
  ``images_per_second`` is the mean over epochs after the first (the first
  includes compilation) or the first's when there is only one.
  """
  history = _read_json(os.path.join(workdir, "history.json"))
  results = _read_json(os.path.join(workdir, "results.json"))
  val_acc = [v for v in history.get("val_accuracy", [])]
  ranked = val_acc if any(not math.isnan(v) for v in val_acc) else history["accuracy"]
  finite = [(v, i) for i, v in enumerate(ranked) if not math.isnan(v)]
  best_epoch = max(finite, key=lambda t: (t[0], -t[1]))[1] + 1 if finite else 0
  speeds = history.get("images_per_second", [])
  speed = (sum(speeds[1:]) / len(speeds[1:])) if len(speeds) > 1 else (
      speeds[0] if speeds else float("nan"))
  return {
      "epochs": len(history["loss"]),
      "train_loss": _last(history["loss"]),
      "train_accuracy": _last(history["accuracy"]),
      "val_loss": _last(history.get("val_loss", [])),
      "val_accuracy": _last(history.get("val_accuracy", [])),
      "best_epoch": best_epoch,
      "test_loss": float(results["test_loss"]),
      "test_accuracy": float(results["test_accuracy"]),
      "wall_time_s": float(sum(history.get("epoch_time", []))),
      "images_per_second": float(speed),
  }


def table(ladder: Ladder, out: str) -> list[dict[str, Any]]:
  """The results rows of every finished member of ``ladder`` in ``out``."""
  rows = []
  for member in ladder.members:
    workdir = os.path.join(out, member)
    if not os.path.exists(os.path.join(workdir, "results.json")):
      continue
    changes, lecture = ladder.description(member)
    row = {"member": member, "changes": changes, **summarize(workdir),
           "lecture": lecture}
    extra_path = os.path.join(workdir, "extra.json")
    if os.path.exists(extra_path):
      row.update(_read_json(extra_path))
    rows.append(row)
  return rows


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
  cols = list(COLUMNS)
  for row in rows:
    cols += [k for k in row if k not in cols]
  return cols


def _fmt(value: Any) -> str:
  if isinstance(value, float):
    if math.isnan(value):
      return "-"
    if value >= 100:
      return f"{value:.0f}"
    return f"{value:.4f}"
  return str(value)


def to_markdown(rows: Sequence[dict[str, Any]], title: str = "") -> str:
  """A markdown table of ``rows`` (empty columns left out)."""
  cols = [c for c in _columns(rows)
          if any(_fmt(r.get(c, "")) not in ("", "-") for r in rows)]
  lines = [f"### {title}", ""] if title else []
  lines.append("| " + " | ".join(cols) + " |")
  lines.append("|" + "|".join(" --- " for _ in cols) + "|")
  for r in rows:
    cells = [_fmt(r.get(c, "")).replace("|", "\\|") for c in cols]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
  """CSV text of ``rows`` with full-precision numbers."""
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=_columns(rows), extrasaction="ignore",
                          lineterminator="\n")
  writer.writeheader()
  for r in rows:
    writer.writerow(r)
  return buf.getvalue()


def write_outputs(ladder: Ladder, out: str, *, title: str = "",
                  plot: bool = True) -> list[dict[str, Any]]:
  """Writes ``results.md``, ``results.csv`` and ``curves.png`` into ``out``."""
  rows = table(ladder, out)
  if not rows:
    raise LadderError(f"No finished member in {out}: nothing to tabulate.")
  title = title or os.path.basename(ladder.path)
  with open(os.path.join(out, "results.md"), "w") as f:
    f.write(to_markdown(rows, title))
  with open(os.path.join(out, "results.csv"), "w") as f:
    f.write(to_csv(rows))
  if plot:
    from jaxcnn import visualize  # Local: matplotlib is only needed here.
    fig = visualize.plot_histories(
        {r["member"]: os.path.join(out, r["member"]) for r in rows},
        title=title, path=os.path.join(out, "curves.png"))
    import matplotlib.pyplot as plt
    plt.close(fig)
  return rows


def run(config_file: str, out: str, *, members: Sequence[str] | None = None,
        options: str = "", overrides: dict[str, int] | None = None,
        overwrite: bool = False, plot: bool = True,
        train_fn: TrainFn | None = None) -> list[dict[str, Any]]:
  """Trains (or reuses) every member of a ladder and writes its table.

  Args:
    config_file: the ladder's file (or its name in ``experiments/``).
    out: output folder; members train in ``out/<member>/``.
    members: a subset of members; None runs all.
    options: appended to every member's config string (e.g. ``'cifar10'``).
    overrides: :func:`apply_overrides` keywords (``epochs``,
      ``train_examples``, ``test_examples``, ``batch_size``).
    overwrite: retrain members whose workdir holds another config.
    plot: also write ``curves.png``.
    train_fn: replaces :func:`default_train` (tests).

  Returns:
    The table rows (also in ``out/results.csv``).
  """
  ladder = load(config_file, options=options, members=members)
  os.makedirs(out, exist_ok=True)
  for i, member in enumerate(ladder.members):
    t0 = time.time()
    print(f"[ladder] {i + 1}/{len(ladder.members)} {member}", flush=True)
    how = run_member(ladder, member, out, overrides=overrides,
                     overwrite=overwrite, train_fn=train_fn)
    print(f"[ladder] {member}: {how} in {time.time() - t0:.0f} s", flush=True)
  rows = write_outputs(ladder, out, plot=plot)
  print(to_markdown(rows))
  return rows


def main(argv: Sequence[str] | None = None) -> None:
  """Command line: ``python -m jaxcnn.ladder --config_file=... --out=...``."""
  import argparse
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config_file", required=True,
                      help="ladder file, or its name in experiments/")
  parser.add_argument("--out", required=True, help="output folder")
  parser.add_argument("--members", default="",
                      help="comma-separated subset of members (default: all)")
  parser.add_argument("--options", default="",
                      help="appended to every member's config string, e.g. cifar10")
  parser.add_argument("--epochs", type=int, default=0)
  parser.add_argument("--train_examples", type=int, default=0)
  parser.add_argument("--test_examples", type=int, default=0)
  parser.add_argument("--batch_size", type=int, default=0)
  parser.add_argument("--overwrite", action="store_true")
  parser.add_argument("--no_plot", action="store_true")
  parser.add_argument("--table_only", action="store_true",
                      help="only tabulate the finished members")
  args = parser.parse_args(argv)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  members = [m for m in args.members.split(",") if m] or None
  if args.table_only:
    ladder = load(args.config_file, options=args.options, members=members)
    print(to_markdown(write_outputs(ladder, args.out, plot=not args.no_plot)))
    return
  run(args.config_file, args.out, members=members, options=args.options,
      overrides=dict(epochs=args.epochs, train_examples=args.train_examples,
                     test_examples=args.test_examples, batch_size=args.batch_size),
      overwrite=args.overwrite, plot=not args.no_plot)


if __name__ == "__main__":
  main(sys.argv[1:])
