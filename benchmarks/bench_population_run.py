"""A population of N against N sequential runs, whole runs end to end (BENCHMARKS.md).

What a user compares: ``python -m jaxcnn.main ... --config.training.population=N``
once, against the same experiment run N times with seeds ``seed .. seed+N-1``,
one after the other, each its own process (startup, data, compilation and
training all counted). Rounds alternate which side goes first, so that a
shared machine's load falls on both alike. Besides the wall time of the
processes it reports the training time the runs' ``history.json`` records
(the sum of ``epoch_time``: compilation in the first epoch included,
startup, evaluation and the test split excluded).

  python benchmarks/bench_population_run.py --members=4 --epochs=1 \
      --train_examples=6000 --out=/tmp/bench_pop.json
  python benchmarks/bench_population_run.py --members=4 --model=cnn_small_bn ...
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def _run(args: list[str], workdir: str) -> tuple[float, float]:
  """Runs one ``jaxcnn.main`` process; returns (wall seconds, training seconds)."""
  t0 = time.perf_counter()
  done = subprocess.run([sys.executable, "-m", "jaxcnn.main", *args, f"--workdir={workdir}"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  if done.returncode:
    sys.exit(f"jaxcnn.main {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
  wall = time.perf_counter() - t0
  with open(os.path.join(workdir, "history.json")) as f:
    return wall, float(sum(json.load(f)["epoch_time"]))


def main(argv=None) -> dict:
  """Runs the comparison; prints and returns the per-round times and ratios."""
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", default="experiments/fashion_mnist_cnn.py")
  p.add_argument("--model", default="", help="model.name override (e.g. cnn_small_bn)")
  p.add_argument("--members", type=int, default=4)
  p.add_argument("--epochs", type=int, default=1)
  p.add_argument("--train_examples", type=int, default=6000)
  p.add_argument("--test_examples", type=int, default=1000)
  p.add_argument("--rounds", type=int, default=1)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", default="")
  a = p.parse_args(argv)
  common = [f"--config={a.config}", f"--config.training.num_epochs={a.epochs}",
            f"--config.dataset.num_train_examples={a.train_examples}",
            f"--config.dataset.num_test_examples={a.test_examples}",
            "--config.dataset.validation_split=0.1",
            "--config.training.progress_bar=False"]
  if a.model:
    common.append(f"--config.model.name={a.model}")
  rounds = []
  with tempfile.TemporaryDirectory() as tmp:
    for r in range(a.rounds):
      def population():
        return _run(common + [f"--config.seed={a.seed}",
                              f"--config.training.population={a.members}"],
                    os.path.join(tmp, f"population_{r}"))

      def sequential():
        times = [_run(common + [f"--config.seed={a.seed + i}"],
                      os.path.join(tmp, f"single_{r}_{i}")) for i in range(a.members)]
        return sum(t[0] for t in times), sum(t[1] for t in times)

      if r % 2:
        seq, pop = sequential(), population()
      else:
        pop, seq = population(), sequential()
      rounds.append({"population_wall_s": pop[0], "population_train_s": pop[1],
                     "sequential_wall_s": seq[0], "sequential_train_s": seq[1],
                     "wall_ratio": pop[0] / seq[0], "train_ratio": pop[1] / seq[1]})
      print(json.dumps({"round": r, **rounds[-1]}), flush=True)
  result = {"config": a.config, "model": a.model or "(the config's)",
            "members": a.members, "epochs": a.epochs,
            "train_examples": a.train_examples, "rounds": rounds}
  if a.out:
    with open(a.out, "w") as f:
      json.dump(result, f, indent=1)
  return result


if __name__ == "__main__":
  main()
