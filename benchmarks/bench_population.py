"""A population step against separate single-run steps (BENCHMARKS.md, populations).

Times one train step of M members three ways on the current backend:
``parallel.make_population_step`` in 'loop' and 'vmap' mode, and M
separately jitted single-run steps called one after the other. The same
random batch feeds every member; nothing is donated, so every variant
reads the same inputs each call. Rounds alternate the variants so that a
shared machine's load falls on all of them alike.

  python benchmarks/bench_population.py --model=mnist_cnn --members=4 --batch=64
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

from jaxcnn import config as config_lib
from jaxcnn import models
from jaxcnn import parallel
from jaxcnn import state as state_lib


def _time(fn, steps: int) -> float:
  """Seconds per call of ``fn``, after one warm-up call."""
  jax.block_until_ready(fn())
  t0 = time.perf_counter()
  out = None
  for _ in range(steps):
    out = fn()
  jax.block_until_ready(out)
  return (time.perf_counter() - t0) / steps


def main(argv=None) -> dict:
  """Runs the comparison; prints and returns ``{variant: [ms per step per round]}``."""
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--model", default="mnist_cnn")
  p.add_argument("--members", type=int, default=4)
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--steps", type=int, default=30)
  p.add_argument("--rounds", type=int, default=3)
  a = p.parse_args(argv)
  c = config_lib.defaults()
  c.model.name, c.optimizer.name, c.training.population = a.model, "adam", a.members
  members = config_lib.member_configs(config_lib.validate(c))
  model = models.create(c.model, num_classes=10)
  states = [state_lib.create(m, model, state_lib.optimizer(m, 10), (28, 28, 1))
            for m in members]
  args = [{"model": models.create(m.model, num_classes=10, axis_name=parallel.AXIS),
           "tx": state_lib.optimizer(m, 10)} for m in members]
  rng = np.random.default_rng(0)
  batch = {"image": rng.normal(size=(1, a.batch, 28, 28, 1)).astype(np.float32),
           "label": rng.integers(0, 10, (1, a.batch)).astype(np.int32)}
  stacked_batch = jax.tree.map(lambda x: np.stack([x] * a.members), batch)
  stacked = state_lib.stack(states)
  loop = parallel.make_population_step(args, mode="loop", donate_state=False)
  vmap = parallel.make_population_step(args, mode="vmap", donate_state=False)
  singles = [parallel.make_train_step(**x, donate_state=False) for x in args]
  variants = {
      "loop": lambda: loop(stacked, stacked_batch),
      "vmap": lambda: vmap(stacked, stacked_batch),
      "separate": lambda: [s(st, batch) for s, st in zip(singles, states)],
  }
  results = {k: [] for k in variants}
  for _ in range(a.rounds):
    for name, fn in variants.items():
      results[name].append(1e3 * _time(fn, a.steps))
  print(json.dumps({"backend": jax.default_backend(), "model": a.model,
                    "members": a.members, "batch": a.batch,
                    "ms_per_step": results}, indent=1))
  return results


if __name__ == "__main__":
  main()
