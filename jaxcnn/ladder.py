r"""Runs a ladder: a named group of experiments, and tabulates their results.

A ladder is one config file in ``experiments/`` whose ``get_config(arg)``
builds a member from its config string (``--config=file.py:member`` works
with ``jaxcnn.main`` too) and which also defines:

* ``get_ladder(options: str = '') -> list[str]``: the members, in order;
* ``MEMBERS``: optional ``{member: (what it changes, the lecture's number)}``
  for the table;
* ``ARG``: optional, the file's :class:`jaxcnn.config.ArgSpec`; with it
  ``--options`` are checked before the first member runs;
* ``extra_metrics(member, config, workdir) -> dict[str, float]``: optional,
  numbers the training loop does not give (e.g. MC-dropout test accuracy);
  cached in ``<member>/extra.json``.

Each member trains in ``<out>/<member>/`` through :func:`jaxcnn.run.run`
(``mode='train'``, as ``jaxcnn.main`` does), sequentially and in process. A
member whose ``results.json`` is there and whose ``config.json`` equals the
config is reused, not retrained. A member whose ``transfer.source`` names
another member of the run by its basename (``'workdirs/<member>'``) starts
from that member's workdir, ``<out>/<member>``, and runs after it
(:func:`source_rung`, :func:`run_order`); with ``--seeds`` a population
source gives member i to member i (``state.from_pretrained``). Then ``<out>/results.md``,
``<out>/results.csv`` and ``<out>/curves.png`` (all members overlaid) are
written. ``--epochs``, ``--train_examples``, ``--test_examples`` and
``--batch_size`` shrink every member by :func:`jaxcnn.config.shrink`.

``--seeds=N`` trains every rung as a population of N seeds
(``training.population``, one compiled program per rung). The table then
gives each metric as mean ± std (ddof=1) with a 95% confidence interval of
the mean (Student's t with N-1 degrees of freedom), and says for each rung
whether its test accuracy differs from the first rung's beyond noise:
Welch's two-sided t-test (unequal variances) at the 5% level
(:data:`ALPHA`), the p-value shown. ``curves.png`` draws mean curves with
± std bands.

Launch::

  python -m jaxcnn.ladder --config_file=experiments/mlp_activations.py \
      --out=workdirs/ladders/mlp_activations
  # a small regularization ladder: 1 epoch on 2,000 training images
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

from absl import app
from absl import flags
from absl import logging
import ml_collections

from jaxcnn import config as config_lib
from jaxcnn import run as run_lib
from jaxcnn import workdir as workdir_lib

# Columns of results.csv / results.md, in order (extra metrics follow).
COLUMNS = ("member", "changes", "epochs", "train_loss", "train_data_loss", "train_accuracy",
           "train_eval_loss", "train_eval_accuracy",
           "val_loss", "val_accuracy", "best_epoch", "test_loss",
           "test_accuracy", "wall_time_s", "images_per_second", "lecture")

# Metrics given as mean ± std and a 95% interval for a population rung.
STAT_METRICS = ("train_loss", "train_data_loss", "train_accuracy", "train_eval_loss",
                "train_eval_accuracy", "val_loss", "val_accuracy", "test_loss",
                "test_accuracy")
# Optional columns: the history key behind each (train_data_loss only where a
# penalty made it differ from train_loss; train_eval_* with training.eval_train).
_OPTIONAL = {"train_data_loss": "data_loss", "train_eval_loss": "train_eval_loss",
             "train_eval_accuracy": "train_eval_accuracy"}
# Welch's t-test of each rung's test accuracy against the first rung's.
ALPHA = 0.05
CONFIDENCE = 0.95

# Config keys that change only what is printed or logged, not the run: a
# finished run that differs in these alone is reused.
COSMETIC_KEYS = ("training.progress_bar", "training.log_every_steps")

TrainFn = Callable[[ml_collections.ConfigDict, str], Any]


class LadderError(config_lib.ConfigError):
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
    ConfigError: ``options`` the file's ``ARG`` (its
      :class:`jaxcnn.config.ArgSpec`) rejects, before anything runs.
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
  ladder = Ladder(path=path, module=module, members=chosen, options=options)
  spec = getattr(module, "ARG", None)
  if isinstance(spec, config_lib.ArgSpec):
    for member in chosen:  # A misspelled --options fails now, not at member 1.
      spec.parse(ladder.config_string(member))
  return ladder


def _same_config(workdir: str, config: ml_collections.ConfigDict) -> bool | None:
  """Whether ``workdir/config.json`` equals ``config`` (None: no file).

  Keys in :data:`COSMETIC_KEYS` are not compared; a key the saved run
  predates counts as its default (``workdir.saved_config``).
  """
  saved = workdir_lib.saved_config(workdir)
  if saved is None:
    return None
  current = workdir_lib.flat_config(config)
  for key in COSMETIC_KEYS:
    saved.pop(key, None)
    current.pop(key, None)
  return saved == current


def _read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def source_rung(ladder: Ladder, member: str,
                  config: ml_collections.ConfigDict) -> str | None:
  """The other member of the run whose workdir ``member``'s ``transfer.source`` names.

  A source names a member by its basename (``'workdirs/transfer_digits_features'``
  names ``transfer_digits_features``); only the members this run trains
  (``ladder.members``, the ``--members`` chosen) count, so a source trained
  elsewhere (a ladder member left out) stays where the config says.
  """
  source = config.transfer.source
  if not source:
    return None
  name = os.path.basename(os.path.normpath(os.path.expanduser(source)))
  return name if name != member and name in ladder.members else None


def member_config(ladder: Ladder, member: str, *,
                  overrides: dict[str, int] | None = None,
                  seeds: int = 0, out: str | None = None) -> ml_collections.ConfigDict:
  """A rung's config: shrunk by ``overrides``, a population of ``seeds`` if > 0.

  With ``out``, a ``transfer.source`` naming another member of the run
  (:func:`source_rung`) becomes that member's workdir, ``out/<source>``.
  """
  config = config_lib.shrink(ladder.get_config(member), **(overrides or {}))
  if seeds:
    config.training.population = seeds
  source = source_rung(ladder, member, config) if out is not None else None
  if source:
    config.transfer.source = os.path.join(out, source)
  return config_lib.validate(config)


def run_order(ladder: Ladder) -> list[str]:
  """``ladder.members`` with each member after the member its source names.

  Otherwise in the order given (a stable topological sort).

  Raises:
    LadderError: members whose sources name each other in a cycle.
  """
  needs = {m: source_rung(ladder, m, ladder.get_config(m)) for m in ladder.members}
  order: list[str] = []
  while len(order) < len(ladder.members):
    ready = [m for m in ladder.members
             if m not in order and (needs[m] is None or needs[m] in order)]
    if not ready:
      cycle = [m for m in ladder.members if m not in order]
      raise LadderError("transfer.source of these members names another of them in a "
                        f"cycle: {', '.join(f'{m} <- {needs[m]}' for m in cycle)}.")
    order.append(ready[0])
  return order


def run_member(ladder: Ladder, member: str, out: str, *,
               overrides: dict[str, int] | None = None, overwrite: bool = False,
               train_fn: TrainFn | None = None, seeds: int = 0) -> str:
  """Trains one member unless its finished run is already in its workdir.

  Args:
    ladder: the loaded ladder.
    member: one of ``ladder.members``.
    out: the ladder's output folder; the member trains in ``out/member``.
    overrides: keyword arguments of :func:`jaxcnn.config.shrink`.
    overwrite: delete a workdir whose config differs instead of failing.
    train_fn: ``(config, workdir) -> anything``; default
      :func:`default_train`.
    seeds: > 0 trains the member as a population of that many seeds.

  Returns:
    ``'reused'`` or ``'trained'``.

  Raises:
    LadderError: the workdir holds a run of another config (and not
      ``overwrite``).
  """
  config = member_config(ladder, member, overrides=overrides, seeds=seeds, out=out)
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
  """Trains through the one dispatch ``jaxcnn.main --mode=train`` uses."""
  # Local import: the modes pull in JAX and TF; tabulating needs neither.
  run_lib.run(config, workdir, "train")


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
  mode (dropout on), as Keras' ``history['accuracy']``; ``train_loss``
  includes the regularization penalty (Keras' loss) and ``train_data_loss``,
  shown where it differs, is the cross-entropy alone. ``train_eval_*``
  (``training.eval_train``) score the training part in evaluation mode
  after the last epoch (dropout off, BatchNorm moving statistics). ``best_epoch`` is the
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
  row = {
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
  for col, key in _OPTIONAL.items():
    if _shown(history, col, key):
      row[col] = _last(history[key])
  if "members" in history:
    row.update(_population_stats(history, results))
  return row


def _shown(history: dict, col: str, key: str) -> bool:
  """Whether an optional column has values (data loss: only where it differs)."""
  values = history.get(key)
  if not values or all(isinstance(v, float) and math.isnan(v) for v in values):
    return False
  return col != "train_data_loss" or values != history["loss"]


def _population_stats(history: dict, results: dict) -> dict[str, Any]:
  """Mean, std, 95% interval and the members' values of each :data:`STAT_METRICS`."""
  members = history["members"]
  values = {
      "train_loss": [_last(m["loss"]) for m in members],
      "train_accuracy": [_last(m["accuracy"]) for m in members],
      "val_loss": [_last(m.get("val_loss", [])) for m in members],
      "val_accuracy": [_last(m.get("val_accuracy", [])) for m in members],
      "test_loss": list(results["test_loss_members"]),
      "test_accuracy": list(results["test_accuracy_members"]),
  }
  for col, key in _OPTIONAL.items():
    if _shown(history, col, key):
      values[col] = [_last(m.get(key, [])) for m in members]
  out: dict[str, Any] = {"seeds": len(members)}
  for metric, v in values.items():
    if any(math.isnan(x) for x in v):
      continue
    mean, std, low, high = interval(v)
    out.update({metric: mean, f"{metric}_std": std, f"{metric}_ci_low": low,
                f"{metric}_ci_high": high, f"{metric}_members": v})
  return out


def interval(values: Sequence[float], confidence: float = CONFIDENCE
             ) -> tuple[float, float, float, float]:
  """``(mean, std, low, high)``: std with ddof=1, and the t interval of the mean.

  The interval is ``mean ± t_{(1+confidence)/2, n-1} * std / sqrt(n)``
  (Student's t, ``scipy.stats.t``); with one value it is the value itself.
  """
  import numpy as np
  from scipy import stats
  v = np.asarray(values, np.float64)
  mean = float(v.mean())
  if v.size < 2:
    return mean, 0.0, mean, mean
  std = float(v.std(ddof=1))
  half = float(stats.t.ppf((1 + confidence) / 2, v.size - 1)) * std / math.sqrt(v.size)
  return mean, std, mean - half, mean + half


def welch(a: Sequence[float], b: Sequence[float]) -> float:
  """The two-sided p-value of Welch's t-test (unequal variances) of ``a`` vs ``b``.

  NaN when it is undefined (fewer than 2 values in either, or both without
  spread); ``scipy.stats.ttest_ind(a, b, equal_var=False)``.
  """
  from scipy import stats
  if len(a) < 2 or len(b) < 2:
    return float("nan")
  import numpy as np
  if np.std(a) == 0 and np.std(b) == 0:
    return 0.0 if np.mean(a) != np.mean(b) else float("nan")
  return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def add_significance(rows: list[dict[str, Any]], metric: str = "test_accuracy"
                     ) -> list[dict[str, Any]]:
  """Adds ``vs_first`` to each population row after the first: Welch's p of
  ``metric`` against the first row's, and whether it is below :data:`ALPHA`."""
  first = rows[0].get(f"{metric}_members") if rows else None
  if not first:
    return rows
  for row in rows[1:]:
    values = row.get(f"{metric}_members")
    if not values:
      continue
    p = welch(values, first)
    row[f"{metric}_p_vs_first"] = p
    row["vs_first"] = ("-" if math.isnan(p) else
                       f"{'differs' if p < ALPHA else 'within noise'} (p={p:.3g})")
  return rows


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
  return add_significance(rows)


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


def _is_stat_column(col: str) -> bool:
  return any(col.startswith(m + "_") and col != m for m in STAT_METRICS) or col in (
      "test_accuracy_p_vs_first",) or col.endswith("_members")


def _cell(row: dict[str, Any], col: str) -> str:
  """A table cell; a population's metric as ``mean ± std [low, high]``."""
  if col in STAT_METRICS and f"{col}_std" in row:
    return (f"{_fmt(row[col])} ± {_fmt(row[col + '_std'])} "
            f"[{_fmt(row[col + '_ci_low'])}, {_fmt(row[col + '_ci_high'])}]")
  return _fmt(row.get(col, ""))


def to_markdown(rows: Sequence[dict[str, Any]], title: str = "") -> str:
  """A markdown table of ``rows`` (empty columns left out).

  A population rung's metrics read ``mean ± std [95% interval]``; its std,
  interval and member columns are in the CSV only.
  """
  cols = [c for c in _columns(rows) if not _is_stat_column(c)
          and any(_fmt(r.get(c, "")) not in ("", "-") for r in rows)]
  lines = [f"### {title}", ""] if title else []
  if any("seeds" in r for r in rows):
    lines += [f"Mean ± std over seeds [{CONFIDENCE:.0%} t interval of the mean]; "
              "vs_first: Welch's two-sided t-test of test accuracy against the "
              f"first rung, 'differs' when p < {ALPHA}.", ""]
  lines.append("| " + " | ".join(cols) + " |")
  lines.append("|" + "|".join(" --- " for _ in cols) + "|")
  for r in rows:
    cells = [_cell(r, c).replace("|", "\\|") for c in cols]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
  """CSV text of ``rows`` with full-precision numbers."""
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=_columns(rows), extrasaction="ignore",
                          lineterminator="\n")
  writer.writeheader()
  for r in rows:
    writer.writerow({k: ";".join(map(repr, v)) if isinstance(v, list) else v
                     for k, v in r.items()})
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
        train_fn: TrainFn | None = None, seeds: int = 0) -> list[dict[str, Any]]:
  """Trains (or reuses) every member of a ladder and writes its table.

  Args:
    config_file: the ladder's file (or its name in ``experiments/``).
    out: output folder; members train in ``out/<member>/``.
    members: a subset of members; None runs all.
    options: appended to every member's config string (e.g. ``'cifar10'``).
    overrides: :func:`jaxcnn.config.shrink` keywords (``epochs``,
      ``train_examples``, ``test_examples``, ``batch_size``).
    overwrite: retrain members whose workdir holds another config.
    plot: also write ``curves.png``.
    train_fn: replaces :func:`default_train` (tests).
    seeds: > 0 trains every rung as a population of that many seeds.

  Returns:
    The table rows (also in ``out/results.csv``).
  """
  ladder = load(config_file, options=options, members=members)
  os.makedirs(out, exist_ok=True)
  for i, member in enumerate(run_order(ladder)):
    t0 = time.time()
    print(f"[ladder] {i + 1}/{len(ladder.members)} {member}", flush=True)
    how = run_member(ladder, member, out, overrides=overrides,
                     overwrite=overwrite, train_fn=train_fn, seeds=seeds)
    print(f"[ladder] {member}: {how} in {time.time() - t0:.0f} s", flush=True)
  rows = write_outputs(ladder, out, plot=plot)
  print(to_markdown(rows))
  return rows


# The command line's flags, defined by :func:`define_flags`.
FLAGS = flags.FLAGS
_FLAG_NAMES = ("config_file", "out", "members", "options", "epochs",
               "train_examples", "test_examples", "batch_size", "overwrite",
               "no_plot", "table_only", "seeds")


def define_flags() -> None:
  """Defines the command line's flags on absl's global ``FLAGS``, once.

  Defined on demand rather than at import: a process that imports this
  module (a test, a notebook next to ``jaxcnn.main``) keeps its own flags,
  and ``python -m jaxcnn.ladder`` (this file as ``__main__``) cannot collide
  with a later ``import jaxcnn.ladder``.
  """
  if "config_file" in FLAGS:
    return
  flags.DEFINE_string("config_file", None, "Ladder file, or its name in experiments/.")
  flags.DEFINE_string("out", None, "Output folder; members train in <out>/<member>/.")
  flags.DEFINE_list("members", [], "Comma-separated subset of members (default: all).")
  flags.DEFINE_string("options", "",
                      "Appended to every member's config string, e.g. cifar10.")
  flags.DEFINE_integer("epochs", 0, "Epochs of every member (0: the file's).",
                       lower_bound=0)
  flags.DEFINE_integer("train_examples", 0, "Training examples read (0: the file's); "
                       "a larger validation count is cut to a tenth of them.",
                       lower_bound=0)
  flags.DEFINE_integer("test_examples", 0, "Test examples (0: the file's).",
                       lower_bound=0)
  flags.DEFINE_integer("batch_size", 0, "Global batch (0: the file's).", lower_bound=0)
  flags.DEFINE_bool("overwrite", False,
                    "Retrain members whose workdir holds another config.")
  flags.DEFINE_bool("no_plot", False, "Do not write curves.png.")
  flags.DEFINE_bool("table_only", False, "Only tabulate the finished members.")
  flags.DEFINE_integer("seeds", 0, "Train every rung as a population of this many "
                       "seeds (mean ± std, intervals, Welch's t-test); 0: the file's.",
                       lower_bound=0)


def parse_flags(argv: Sequence[str]) -> list[str]:
  """Defines and parses the flags; a bad flag is one line, not a traceback.

  Args:
    argv: ``sys.argv``-like: the program name, then flags.

  Returns:
    The arguments that are not flags (the program name first).
  """
  define_flags()
  for name in _FLAG_NAMES:  # In process, a second parse starts from defaults.
    FLAGS[name].unparse()
  try:
    return FLAGS(list(argv))
  except flags.Error as e:
    print(f"error: {e}\nPass --helpfull for the flags.", file=sys.stderr)
    sys.exit(2)


def main(argv: Sequence[str]) -> None:
  """The command line, once :func:`parse_flags` has parsed the flags.

  ``python -m jaxcnn.ladder`` runs it through ``absl.app.run``; in process,
  ``main(parse_flags(['ladder', '--config_file=...', '--out=...']))``.

  Args:
    argv: the arguments that are not flags; only the program name is valid.

  Raises:
    SystemExit: 1 after printing, as one line, an error that says what
      would run (``run.user_errors``).
  """
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS["verbosity"].present:
    # Orbax and TFDS log every save and read at INFO; the progress lines and
    # the table are the output. -v 0 brings the INFO logs back.
    logging.set_verbosity(logging.WARNING)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  try:
    _main()
  except Exception as e:  # pylint: disable=broad-except
    if not isinstance(e, run_lib.user_errors()):
      raise
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


def _main() -> None:
  """Runs or tabulates the ladder the parsed flags name."""
  missing = [f"--{n}" for n in ("config_file", "out") if not FLAGS[n].value]
  if missing:
    raise LadderError(f"Missing {' and '.join(missing)}; usage: python -m jaxcnn.ladder "
                      "--config_file=experiments/<ladder>.py --out=<folder>.")
  members = FLAGS.members or None
  if FLAGS.table_only:
    ladder = load(FLAGS.config_file, options=FLAGS.options, members=members)
    print(to_markdown(write_outputs(ladder, FLAGS.out, plot=not FLAGS.no_plot)))
    return
  run(FLAGS.config_file, FLAGS.out, members=members, options=FLAGS.options,
      overrides=dict(epochs=FLAGS.epochs, train_examples=FLAGS.train_examples,
                     test_examples=FLAGS.test_examples, batch_size=FLAGS.batch_size),
      overwrite=FLAGS.overwrite, plot=not FLAGS.no_plot, seeds=FLAGS.seeds)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
