"""Claims: verdicts from seeds' values, against scipy's Welch test by hand."""

import dataclasses
import json
import os

import numpy as np
import pytest
from scipy import stats

from jaxcnn import claims
from jaxcnn import ladder


def claim(kind="better", rungs=("a", "b"), **kw):
  return claims.Claim(lecture="004", words="a beats b", ladder="l", command="cmd",
                      kind=kind, rungs=rungs, **kw)


def test_better_is_reproduced_only_beyond_noise_and_the_right_way():
  a, b = [0.90, 0.91, 0.92], [0.85, 0.86, 0.85]
  verdict, text = claims.verdict(claim(), {"a": a, "b": b})
  p = stats.ttest_ind(a, b, equal_var=False).pvalue
  assert p < 0.05 and verdict == claims.REPRODUCED and f"p={p:.2g}" in text
  assert claims.verdict(claim(), {"a": b, "b": a})[0] == claims.NOT_REPRODUCED
  noisy = {"a": [0.90, 0.86, 0.88], "b": [0.87, 0.89, 0.88]}
  assert claims.verdict(claim(), noisy)[0] == claims.INCONCLUSIVE
  # Lower is better for a loss: the same numbers read the other way.
  assert claims.verdict(claim(higher_is_better=False), {"a": b, "b": a})[0] == claims.REPRODUCED


def test_ranking_needs_every_neighbouring_pair_and_fails_on_one_reversal():
  ranked = {"x": [3.0, 3.1, 3.05], "y": [2.0, 2.1, 2.05], "z": [1.0, 1.1, 1.05]}
  c = claim("ranking", ("x", "y", "z"))
  assert claims.verdict(c, ranked)[0] == claims.REPRODUCED
  tie = dict(ranked, y=[1.0, 3.1, 2.0])
  assert claims.verdict(c, tie)[0] == claims.INCONCLUSIVE
  reversed_pair = dict(ranked, z=[4.0, 4.1, 4.05])
  verdict, text = claims.verdict(c, reversed_pair)
  assert verdict == claims.NOT_REPRODUCED and "y - z = -" in text


def test_as_good_speed_and_single_seed_rules():
  same = {"a": [0.88, 0.89, 0.87], "b": [0.885, 0.875, 0.89]}
  assert claims.verdict(claim("as_good"), same)[0] == claims.REPRODUCED
  apart = {"a": [0.80, 0.81, 0.80], "b": [0.90, 0.91, 0.90]}
  assert claims.verdict(claim("as_good"), apart)[0] == claims.NOT_REPRODUCED
  times = {"a": 10.0, "b": 45.0}
  assert claims.verdict(claim("faster"), {}, times)[0] == claims.REPRODUCED
  assert claims.verdict(claim("faster"), {}, {"a": 10.0, "b": 15.0})[0] == claims.INCONCLUSIVE
  assert claims.verdict(claim("as_fast"), {}, {"a": 10.0, "b": 12.0})[0] == claims.REPRODUCED
  assert claims.verdict(claim(), {"a": [0.9], "b": [0.1]})[0] == claims.INCONCLUSIVE
  with pytest.raises(ValueError, match="compares two rungs"):
    claim("better", ("a", "b", "c"))


def ratio(low, high, median=None, rounds=7):
  """A benchmark's slow/fast ratio summary, as bench_rungs.py writes it."""
  median = (low + high) / 2 if median is None else median
  return {"median": median, "min": low, "max": high, "rounds": [median] * rounds}


@pytest.mark.parametrize("kind,low,high,expected", [
    # 'faster' (MUCH_FASTER = 2): the whole range at or above 2x; all at or below 1x.
    ("faster", 2.0, 3.5, claims.REPRODUCED),
    ("faster", 1.8, 3.5, claims.INCONCLUSIVE),     # a round below 2x
    ("faster", 1.2, 1.9, claims.INCONCLUSIVE),     # faster, not much faster
    ("faster", 0.9, 1.1, claims.INCONCLUSIVE),     # straddles 1x
    ("faster", 0.5, 1.0, claims.NOT_REPRODUCED),   # never faster
    # 'as_fast' (AS_FAST = 1.5): within [1/1.5, 1.5] throughout; entirely outside.
    ("as_fast", 0.7, 1.4, claims.REPRODUCED),
    ("as_fast", 1 / 1.5, 1.5, claims.REPRODUCED),  # the bounds themselves
    ("as_fast", 1.3, 1.7, claims.INCONCLUSIVE),    # straddles 1.5x
    ("as_fast", 0.5, 0.8, claims.INCONCLUSIVE),    # straddles 1/1.5
    ("as_fast", 1.6, 9.0, claims.NOT_REPRODUCED),  # the slow rung always > 1.5x
    ("as_fast", 0.1, 0.6, claims.NOT_REPRODUCED),  # the "fast" rung always > 1.5x slower
    ("as_fast", 0.5, 2.0, claims.INCONCLUSIVE),    # straddles both bounds
])
def test_speed_verdict_from_the_ratio_range_over_rounds(kind, low, high, expected):
  assert claims.speed_verdict(kind, low, high) == expected
  verdict, text = claims.verdict(claim(kind), {}, ratio=ratio(low, high))
  assert verdict == expected
  assert f"b / a step time = {(low + high) / 2:.2f}x median" in text
  assert f"{low:.2f}-{high:.2f}x over 7 interleaved rounds (benchmark)" in text


def test_a_benchmark_wins_over_the_one_timing_fallback():
  times = {"a": 10.0, "b": 45.0}  # one timing: 4.5x, reproduced ...
  assert claims.verdict(claim("faster"), {}, times)[0] == claims.REPRODUCED
  assert "fallback" in claims.verdict(claim("faster"), {}, times)[1]
  # ... but the interleaved rounds straddle 2x.
  assert claims.verdict(claim("faster"), {}, times, ratio(1.5, 4.5))[0] == claims.INCONCLUSIVE
  with pytest.raises(ValueError, match="only .* claims name one"):
    claim("better", benchmark="bench/x.json")
  with pytest.raises(ValueError, match="not a speed claim"):
    claims.speed_verdict("better", 1.0, 2.0)


def test_speed_row_from_a_benchmark_json(tmp_path):
  bench = {"rounds": 3, "steps": 24, "backend": "cpu", "jax": "0.10.2",
           "cpu": {"flags": ["avx2", "avx512f"]},
           "members": {"a": {"step_seconds": {"median": 0.010}},
                       "b": {"step_seconds": {"median": 0.035}}},
           "ratios": {"b/a": ratio(3.2, 3.8, 3.5, rounds=3), "a/b": ratio(0.26, 0.31, 0.29, 3)}}
  os.makedirs(tmp_path / "bench")
  (tmp_path / "bench" / "p.json").write_text(json.dumps(bench))
  c = claim("faster", benchmark="bench/p.json", benchmark_command="python benchmarks/x.py")
  row = claims.evaluate(c, str(tmp_path))  # no ladder runs needed: the JSON alone
  assert row["verdict"] == claims.REPRODUCED
  assert row["result"] == ("train step time, median of 3 interleaved rounds of 24 steps "
                           "(cpu, CPU flags avx2 avx512f, JAX 0.10.2): a: 10.0 ms; b: 35.0 ms")
  assert row["statistic"] == ("b / a step time = 3.50x median, 3.20-3.80x over 3 "
                              "interleaved rounds (benchmark)")
  assert "- bench/p.json: `python benchmarks/x.py`" in claims.to_markdown([row])
  gone = claims.evaluate(dataclasses.replace(c, benchmark="bench/none.json"), str(tmp_path))
  assert gone["verdict"] == claims.NOT_RUN and "none.json" in gone["result"]


def write_population(workdir, val_acc, train_acc, test_acc):
  """A population workdir's history.json / results.json, as train writes them."""
  os.makedirs(workdir)
  members = [{"loss": [1.0, 0.5], "accuracy": [0.5, t], "val_accuracy": [0.4, v],
              "val_loss": [1.0, 0.6]} for v, t in zip(val_acc, train_acc)]
  history = {"loss": [1.0, 0.5], "accuracy": [0.5, float(np.mean(train_acc))],
             "val_accuracy": [0.4, float(np.mean(val_acc))], "val_loss": [1.0, 0.6],
             "epoch_time": [30.0, 10.0, 10.0], "images_per_second": [1.0, 2.0, 2.0],
             "members": members}
  results = {"test_loss": 0.5, "test_loss_members": [0.5] * len(test_acc),
             "test_accuracy": float(np.mean(test_acc)), "test_accuracy_members": test_acc}
  with open(os.path.join(workdir, "history.json"), "w") as f:
    json.dump(history, f)
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f)


def test_values_rows_and_table_from_workdirs(tmp_path):
  root = str(tmp_path)
  write_population(os.path.join(root, "l", "a"), [0.8, 0.81, 0.82], [0.99, 0.98, 0.99],
                   [0.9, 0.91, 0.92])
  write_population(os.path.join(root, "l", "b"), [0.7, 0.71, 0.7], [0.99, 0.99, 0.98],
                   [0.85, 0.86, 0.85])
  a = os.path.join(root, "l", "a")
  assert claims.member_values(a, "test_accuracy") == [0.9, 0.91, 0.92]
  assert claims.member_values(a, "val_accuracy@1") == [0.4] * 3
  assert claims.member_values(a, "test_accuracy") == ladder.summarize(a)["test_accuracy_members"]
  np.testing.assert_allclose(claims.member_values(a, "accuracy-val_accuracy"),
                             [0.19, 0.17, 0.17])
  assert claims.training_time(a) == 20.0  # The first (compiling) epoch left out.
  gap = claim(metric="accuracy-val_accuracy", higher_is_better=False)
  row = claims.evaluate(gap, root)
  assert row["verdict"] == claims.REPRODUCED and "n=3" in row["result"]
  missing = claims.evaluate(claim(rungs=("a", "c")), root)
  assert missing["verdict"] == claims.NOT_RUN and "c" in missing["result"]
  table = claims.to_markdown([row, missing])
  assert table.count("\n") == 8 and "**reproduced**" in table and "**not run**" in table
  with pytest.raises(KeyError, match="no metric 'nope'"):
    claims.member_values(a, "nope")


def test_a_rung_can_name_its_own_metric(tmp_path):
  root = str(tmp_path)
  write_population(os.path.join(root, "l", "a"), [0.8, 0.81, 0.82], [0.9, 0.9, 0.9],
                   [0.9, 0.91, 0.92])
  c = claim("as_good", ("a:test_accuracy", "a:val_accuracy"))
  row = claims.evaluate(c, root)
  assert row["verdict"] == claims.NOT_REPRODUCED  # 0.91 vs 0.81: beyond noise.


def test_a_reason_is_printed_only_with_a_claim_that_did_not_hold():
  rows = [{"lecture": "004", "claim": c, "ladder": "l", "command": "cmd", "scale": "",
           "why": "the reason", "result": "", "verdict": v, "statistic": ""}
          for c, v in (("held", claims.REPRODUCED), ("failed", claims.NOT_REPRODUCED))]
  table = claims.to_markdown(rows)
  assert "**reproduced**" in table and "**not reproduced: the reason**" in table


def test_no_runs_yet_says_which_commands_make_them(tmp_path):
  with pytest.raises(claims.ClaimsError, match=r"No runs under .*nowhere.*\n  python -m jaxcnn"
                     r"(.|\n)*python benchmarks/bench_rungs.py"):
    claims.run("experiments/claims/lectures.py", str(tmp_path / "nowhere"))
  table = claims.run("experiments/claims/lectures.py", str(tmp_path))  # Exists, empty.
  assert table.count("**not run**") == table.count("\n| 00")
  assert (tmp_path / "claims.md").read_text() == table


def test_every_lecture_claim_names_runs_its_command_makes():
  """Each claim of experiments/claims/lectures.py: its folder is where its
  command writes, each rung is a member the command trains, and a speed
  claim's benchmark is the file its benchmark command writes."""
  for c in claims.load_claims("experiments/claims/lectures.py"):
    folder = f"workdirs/claims/{c.ladder}"
    assert f"--out={folder} " in c.command + " " or f"--workdir={folder}/" in c.command, (
        c.words, c.ladder)
    for rung in c.rungs:
      member = rung.partition(":")[0]
      if "--members=" in c.command:
        members = c.command.split("--members=")[1].split()[0].split(",")
        assert member in members, (c.words, member)
      elif "--workdir=" in c.command:
        assert f"--workdir={folder}/{member} " in c.command + " ", (c.words, member)
    if c.benchmark:
      assert f"--out=workdirs/claims/{c.benchmark}" in c.benchmark_command, c.words
      members = c.benchmark_command.split("--members=")[1].split()[0].split(",")
      assert set(c.rungs) <= set(members), c.words
