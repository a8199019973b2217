r"""The lectures' claims, put to the test on ladder runs with several seeds (speed: benchmarks).

A claim (:class:`Claim`) names the ladder runs it rests on (rungs of a
``python -m jaxcnn.ladder ... --seeds=N`` output folder), the metric, and
what the lecture says about them. :func:`verdict` turns the members' values
into one of:

- ``reproduced``: the difference goes the lecture's way and Welch's
  two-sided t-test (unequal variances, :func:`jaxcnn.ladder.welch`) puts it
  beyond noise at the 5% level (:data:`jaxcnn.ladder.ALPHA`);
- ``not reproduced``: the difference is beyond noise the other way (for an
  "as good as" claim: a difference beyond noise);
- ``inconclusive``: within noise, or fewer than two seeds.

A ranking is reproduced when every neighbouring pair is, and not
reproduced when any neighbouring pair is reversed beyond noise.

Speed claims ('faster', 'as_fast') are judged from a benchmark where the
claim names one (:attr:`Claim.benchmark`: the JSON that
``benchmarks/bench_rungs.py`` writes, which times the rungs' real train
steps side by side in interleaved rounds): the ratio of the slow rung's
step time to the fast one's, over the rounds (:func:`speed_verdict`).
"faster" is reproduced when every round's ratio is at least
:data:`MUCH_FASTER`, not reproduced when every round's is at most 1; "as
fast" is reproduced when every round's is within :data:`AS_FAST` either
way, not reproduced when every round's is outside; otherwise inconclusive.
Without a benchmark the fallback compares one training time per rung (the
ladder's ``epoch_time`` after the first epoch, made beside whatever else
ran; a population's members train in one program, so there is no per-seed
time), and the table says so.

Launch (writes the table RESULTS.md's claims section is pasted from)::

  python -m jaxcnn.claims --claims_file=experiments/claims/lectures.py \
      --root=workdirs/claims --out=workdirs/claims/claims.md

The ladders' and benchmarks' commands are each claim's ``command`` and
``benchmark_command``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import sys
from typing import Any, Sequence

from absl import app
from absl import flags

from jaxcnn import ladder as ladder_lib

# "much faster": at least this ratio of training (step) times.
MUCH_FASTER = 2.0
# "as fast": training (step) times within this ratio of each other.
AS_FAST = 1.5
SPEED_KINDS = ("faster", "as_fast")

KINDS = ("better", "ranking", "as_good", "faster", "as_fast")
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_RUN = (
    "reproduced", "not reproduced", "inconclusive", "not run")


@dataclasses.dataclass(frozen=True)
class Claim:
  """One thing a lecture says about an experiment.

  Attributes:
    lecture: the lecture's number, e.g. ``'004'``.
    words: the claim, in the lecture's words (short, English).
    ladder: the ladder's output folder, relative to the claims root (the
      table names ``benchmark`` instead where the claim has one).
    command: the command that made the runs.
    kind: 'better' (``rungs[0]`` beats ``rungs[1]``), 'ranking' (best
      first), 'as_good' (no difference beyond noise), 'faster' (``rungs[0]``
      trains at least :data:`MUCH_FASTER` times faster than ``rungs[1]``),
      'as_fast' (within :data:`AS_FAST`).
    rungs: the ladder members compared; ``'member:metric'`` compares that
      member's own ``metric`` (MC dropout against the same run's single pass).
    metric: what is compared per seed (see :func:`member_values`).
    higher_is_better: False for losses and gaps.
    scale: the runs' scale, as said in the table (data, epochs, seeds).
    why: the reason a claim does not hold here, where it can be shown (the
      table prints it only when the verdict is not 'reproduced').
    benchmark: speed kinds only: a ``benchmarks/bench_rungs.py`` JSON,
      relative to the claims root, whose members include both rungs; the
      verdict then comes from its per-round step-time ratios
      (:func:`speed_verdict`). Empty: the one-timing fallback from the
      ladder's runs.
    benchmark_command: the command that writes ``benchmark``.
  """
  lecture: str
  words: str
  ladder: str
  command: str
  kind: str
  rungs: tuple[str, ...]
  metric: str = "test_accuracy"
  higher_is_better: bool = True
  scale: str = ""
  why: str = ""
  benchmark: str = ""
  benchmark_command: str = ""

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"Claim kind {self.kind!r} is not one of {KINDS}.")
    if self.benchmark and self.kind not in SPEED_KINDS:
      raise ValueError(f"A benchmark times steps: only {SPEED_KINDS} claims name one, "
                       f"not a {self.kind!r} claim.")
    if len(self.rungs) < 2 or (self.kind != "ranking" and len(self.rungs) != 2):
      raise ValueError(f"A {self.kind!r} claim compares "
                       f"{'two or more' if self.kind == 'ranking' else 'two'} rungs, "
                       f"got {self.rungs}.")


def _read(path: str) -> dict:
  with open(path) as f:
    return json.load(f)


def member_values(workdir: str, metric: str) -> list[float]:
  """Per seed, ``metric`` of a finished ladder member's workdir.

  ``metric`` is a ``results.json`` key (``test_accuracy``, ``test_loss``,
  ``mc_dropout_test_accuracy`` of the rung's ``extra.json``), or a
  ``history.json`` key taken at the last epoch (``val_accuracy``) or at
  epoch k with ``@k`` (``val_accuracy@1``, 1-based); ``a-b`` is the
  difference of two of them (``train_eval_accuracy-val_accuracy``, the
  generalization gap). A single run gives one value.
  """
  if "-" in metric:
    a, b = metric.split("-", 1)
    return [x - y for x, y in zip(member_values(workdir, a), member_values(workdir, b))]
  name, _, epoch = metric.partition("@")
  results = _read(os.path.join(workdir, "results.json"))
  if not epoch and name in results:
    members = results.get(f"{name}_members")
    return [float(v) for v in members] if members else [float(results[name])]
  extra_path = os.path.join(workdir, "extra.json")
  if not epoch and os.path.exists(extra_path) and name in _read(extra_path):
    extra = _read(extra_path)
    members = extra.get(f"{name}_members")
    return [float(v) for v in members] if members else [float(extra[name])]
  history = _read(os.path.join(workdir, "history.json"))
  runs = history.get("members") or [history]
  if name not in runs[0]:
    raise KeyError(f"{workdir} has no metric {name!r} (history: {sorted(runs[0])}; "
                   f"results: {sorted(results)}).")
  index = int(epoch) - 1 if epoch else -1
  return [float(r[name][index]) for r in runs]


def training_time(workdir: str) -> float:
  """Seconds of training after the first epoch (the first compiles), else all."""
  times = _read(os.path.join(workdir, "history.json"))["epoch_time"]
  return float(sum(times[1:]) if len(times) > 1 else sum(times))


@dataclasses.dataclass(frozen=True)
class Comparison:
  """One pair of rungs: the mean difference (the claim's way) and Welch's p."""
  better: str
  worse: str
  difference: float
  p: float

  @property
  def verdict(self) -> str:
    if math.isnan(self.p) or self.p >= ladder_lib.ALPHA:
      return INCONCLUSIVE
    return REPRODUCED if self.difference > 0 else NOT_REPRODUCED

  def text(self) -> str:
    p = "p n/a" if math.isnan(self.p) else f"p={self.p:.2g}"
    return f"{self.better} - {self.worse} = {self.difference:+.4f} ({p})"


def compare(a: Sequence[float], b: Sequence[float], names: tuple[str, str],
            higher_is_better: bool = True) -> Comparison:
  """``a`` vs ``b`` as the claim "``a`` is better": sign and Welch's p."""
  sign = 1.0 if higher_is_better else -1.0
  diff = sign * (sum(a) / len(a) - sum(b) / len(b))
  return Comparison(names[0], names[1], diff, ladder_lib.welch(list(a), list(b)))


def speed_verdict(kind: str, low: float, high: float) -> str:
  """A speed claim's verdict from the slow/fast time ratio's range over rounds.

  Args:
    kind: 'faster' or 'as_fast'.
    low: the smallest per-round ratio (slow rung's time / fast rung's).
    high: the largest.

  Returns:
    'faster': reproduced when the whole range is >= :data:`MUCH_FASTER`, not
    reproduced when it is all <= 1, else inconclusive. 'as_fast': reproduced
    when the whole range is within :data:`AS_FAST` either way, not
    reproduced when it lies entirely outside (all above ``AS_FAST`` or all
    below ``1 / AS_FAST``), else inconclusive.
  """
  if kind == "faster":
    return (REPRODUCED if low >= MUCH_FASTER else
            NOT_REPRODUCED if high <= 1.0 else INCONCLUSIVE)
  if kind == "as_fast":
    if 1 / AS_FAST <= low and high <= AS_FAST:
      return REPRODUCED
    return NOT_REPRODUCED if low > AS_FAST or high < 1 / AS_FAST else INCONCLUSIVE
  raise ValueError(f"{kind!r} is not a speed claim kind {SPEED_KINDS}.")


def verdict(claim: Claim, values: dict[str, list[float]],
            times: dict[str, float] | None = None,
            ratio: dict[str, Any] | None = None) -> tuple[str, str]:
  """``(verdict, statistic)`` of ``claim`` given each rung's per-seed values.

  Args:
    claim: the claim.
    values: rung -> its seeds' values of ``claim.metric``.
    times: rung -> training seconds ('faster' and 'as_fast' claims without a
      benchmark: the one-timing fallback).
    ratio: the benchmark's slow/fast step-time ratio (``median``, ``min``,
      ``max``, ``rounds``), which a speed claim is judged on when given.
  """
  if claim.kind in SPEED_KINDS:
    fast, slow = claim.rungs
    if ratio is not None:
      text = (f"{slow} / {fast} step time = {ratio['median']:.2f}x median, "
              f"{ratio['min']:.2f}-{ratio['max']:.2f}x over {len(ratio['rounds'])} "
              f"interleaved rounds (benchmark)")
      return speed_verdict(claim.kind, ratio["min"], ratio["max"]), text
    one = times[slow] / times[fast]
    text = (f"{slow} / {fast} training time = {one:.2f}x (fallback: one timing per "
            f"rung, no benchmark)")
    # One timing is a range of one value: the same rule.
    return speed_verdict(claim.kind, one, one), text
  if min(len(values[r]) for r in claim.rungs) < 2:
    return INCONCLUSIVE, "fewer than two seeds: no test"
  if claim.kind == "as_good":
    c = compare(values[claim.rungs[0]], values[claim.rungs[1]], claim.rungs[:2],
                claim.higher_is_better)
    return (NOT_REPRODUCED if c.verdict != INCONCLUSIVE else REPRODUCED), (
        c.text() + (", beyond noise" if c.verdict != INCONCLUSIVE else ", within noise"))
  pairs = [compare(values[a], values[b], (a, b), claim.higher_is_better)
           for a, b in zip(claim.rungs, claim.rungs[1:])]
  verdicts = [c.verdict for c in pairs]
  if NOT_REPRODUCED in verdicts:
    result = NOT_REPRODUCED
  elif all(v == REPRODUCED for v in verdicts):
    result = REPRODUCED
  else:
    result = INCONCLUSIVE
  return result, "; ".join(c.text() for c in pairs)


def _mean_std(values: Sequence[float]) -> str:
  mean, std, low, high = ladder_lib.interval(values)
  if len(values) < 2:
    return f"{mean:.4f} (1 seed)"
  return f"{mean:.4f} ± {std:.4f} [{low:.4f}, {high:.4f}]"


def _rung(spec: str) -> tuple[str, str]:
  """``'member'`` or ``'member:metric'`` (one rung's own metric, e.g. MC dropout's)."""
  member, _, metric = spec.partition(":")
  return member, metric


def _evaluate_benchmark(claim: Claim, root: str) -> dict[str, Any]:
  """A speed claim's row from its benchmark JSON (``root/claim.benchmark``)."""
  path = os.path.join(root, claim.benchmark)
  row = {"lecture": claim.lecture, "claim": claim.words, "ladder": claim.benchmark,
         "command": claim.benchmark_command, "scale": claim.scale, "why": claim.why}
  if not os.path.exists(path):
    return {**row, "result": f"missing: {path}", "verdict": NOT_RUN, "statistic": ""}
  bench = _read(path)
  members = bench["members"]
  missing = [r for r in claim.rungs if r not in members]
  if missing:
    return {**row, "result": f"missing: {', '.join(missing)} in {path} (members: "
            f"{', '.join(members)})", "verdict": NOT_RUN, "statistic": ""}
  fast, slow = claim.rungs
  result, statistic = verdict(claim, {}, ratio=bench["ratios"][f"{slow}/{fast}"])
  flags = " ".join(bench.get("cpu", {}).get("flags", [])) or "-"
  shown = "; ".join(f"{r}: {1e3 * members[r]['step_seconds']['median']:.1f} ms"
                    for r in claim.rungs)
  return {**row, "result": f"train step time, median of {bench['rounds']} interleaved "
          f"rounds of {bench['steps']} steps ({bench['backend']}, CPU flags {flags}, "
          f"JAX {bench['jax']}): {shown}", "verdict": result, "statistic": statistic}


def evaluate(claim: Claim, root: str) -> dict[str, Any]:
  """One table row for ``claim``: from its benchmark, else the runs under ``root/claim.ladder``."""
  if claim.benchmark:
    return _evaluate_benchmark(claim, root)
  folder = os.path.join(root, claim.ladder)
  missing = [r for r in claim.rungs
             if not os.path.exists(os.path.join(folder, _rung(r)[0], "results.json"))]
  row = {"lecture": claim.lecture, "claim": claim.words, "ladder": claim.ladder,
         "command": claim.command,
         "scale": claim.scale, "why": claim.why}
  if missing:
    return {**row, "result": f"missing: {', '.join(missing)} in {folder}",
            "verdict": NOT_RUN, "statistic": ""}
  values = {r: member_values(os.path.join(folder, _rung(r)[0]), _rung(r)[1] or claim.metric)
            for r in claim.rungs}
  times = {r: training_time(os.path.join(folder, _rung(r)[0])) for r in claim.rungs}
  result, statistic = verdict(claim, values, times)
  if claim.kind in SPEED_KINDS:
    return {**row, "result": "training time after epoch 1, one timing per rung "
            "(fallback, no benchmark): " + "; ".join(f"{r}: {times[r]:.0f} s"
                                                    for r in claim.rungs),
            "verdict": result, "statistic": statistic}
  shown = (f"{r}: {_mean_std(values[r])}" for r in claim.rungs)
  return {**row, "result": f"{claim.metric}, n={len(values[claim.rungs[0]])}: "
          + "; ".join(shown), "verdict": result, "statistic": statistic}


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
  """The claims table, one row per claim, then each experiment's command and scale."""
  lines = ["| lecture | claim | runs | result: mean ± std [95% CI] | verdict "
           "| statistic (Welch's t-test; speed: time ratio) |",
           "| --- | --- | --- | --- | --- | --- |"]
  experiments: dict[str, tuple[str, str]] = {}
  for r in rows:
    experiments.setdefault(r["ladder"], (r["command"], r["scale"]))
    # The reason shown goes with a claim that did not hold, never with one that did.
    why = r.get("why") if r["verdict"] in (NOT_REPRODUCED, INCONCLUSIVE) else ""
    verdict_cell = r["verdict"] + (f": {why}" if why else "")
    lines.append(f"| {r['lecture']} | {r['claim']} | {r['ladder']} | {r['result']} | "
                 f"**{verdict_cell}** | {r['statistic']} |")
  lines += ["", "Runs (each rung a population of seeds; `jaxcnn.ladder --seeds`) and "
            "benchmarks (`benchmarks/bench_rungs.py`: the rungs' train steps timed in "
            "interleaved rounds):", ""]
  lines += [f"- {name}: `{command}` ({scale})" for name, (command, scale) in experiments.items()]
  return "\n".join(lines) + "\n"


def load_claims(path: str) -> list[Claim]:
  """The ``CLAIMS`` list of a claims file (``experiments/claims/lectures.py``)."""
  if not os.path.isfile(path):
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(here, path)
  spec = importlib.util.spec_from_file_location("jaxcnn_claims_file", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return list(module.CLAIMS)


def define_flags() -> None:
  """Defines the command line's flags on absl's global ``FLAGS``, once."""
  if "claims_file" in flags.FLAGS:
    return
  flags.DEFINE_string("claims_file", "experiments/claims/lectures.py",
                      "The file defining CLAIMS.")
  flags.DEFINE_string("root", "workdirs/claims", "Folder holding the ladders' outputs.")
  flags.DEFINE_string("out", "", "Markdown file to write (default: <root>/claims.md).")


class ClaimsError(ValueError):
  """The claims cannot be judged (no runs where they were looked for)."""


def run(claims_file: str, root: str, out: str = "") -> str:
  """Judges every claim of ``claims_file`` on the runs under ``root``.

  Writes the table to ``out`` (default ``<root>/claims.md``) and returns it.

  Raises:
    ClaimsError: ``root`` does not exist; the message lists the commands
      that make its runs and benchmarks.
  """
  claims = load_claims(claims_file)
  if not os.path.isdir(root):
    commands = "\n  ".join(dict.fromkeys(
        c.benchmark_command if c.benchmark else c.command for c in claims))
    raise ClaimsError(f"No runs under {root}: train the ladders and run the benchmarks "
                      f"first:\n  {commands}")
  text = to_markdown([evaluate(c, root) for c in claims])
  with open(out or os.path.join(root, "claims.md"), "w") as fh:
    fh.write(text)
  return text


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  try:
    print(run(f.claims_file, f.root, f.out))
  except ClaimsError as e:
    sys.exit(f"error: {e}")


def _main() -> None:
  define_flags()
  app.run(main)


if __name__ == "__main__":
  _main()
