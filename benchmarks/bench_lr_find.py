"""The range test's sweep: one jitted step called per rate vs a lax.scan of all of them.

``jaxcnn.lr_find`` calls the experiment's compiled train step once per rate
and fetches each loss, so the sweep can stop once the loss blows up. The
alternative is one ``lax.scan`` over every rate (all batches stacked on the
device first, no early stop). Both run the 1cycle member of
``experiments/mlp_schedules.py`` over the same 300 batches at rates that do
not diverge (1e-5 -> 1e-2), so both take every step; the losses must agree
exactly. Rounds alternate the variants (BENCHMARKS.md, lr_find).

  PYTHONPATH=. flock /tmp/jaxcnn-heavy.lock python benchmarks/bench_lr_find.py
"""

import time

import jax
import numpy as np

from jaxcnn import config as config_lib
from jaxcnn import lr_find
from jaxcnn import parallel
from jaxcnn import state as state_lib
from jaxcnn import train

STEPS = 300
ROUNDS = 5


def main():
  config = lr_find._sweep_config(config_lib.load("experiments/mlp_schedules.py:1cycle"))
  table = lr_find.rates(1e-5, 1e-2, STEPS)
  setup = train.build(config, "/tmp/bench_lr_find")
  tx = lr_find.sweeping(setup.tx, table)
  fresh = lambda: state_lib.create(config, setup.model, tx, setup.data.info.image_shape)
  step = parallel.make_train_step(setup.train_model, tx, donate_state=False)
  batches = [b for _, b in zip(range(STEPS), lr_find._training_batches(setup.data))]
  stacked = jax.device_put(jax.tree.map(lambda *xs: np.stack(xs), *batches))
  scan = jax.jit(lambda s, bs: jax.lax.scan(step, s, bs))

  def per_step():
    return lr_find.sweep(step, fresh(), iter(batches), table, stop_factor=1e9,
                         smoothing=0.98).losses

  def scanned():
    return np.asarray(scan(fresh(), stacked)[1]["loss"])

  print("max |loss difference|:", np.abs(per_step() - scanned()).max())  # compiles both
  times = {"per_step": [], "scan": []}
  for _ in range(ROUNDS):
    for name, fn in (("per_step", per_step), ("scan", scanned)):
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  for name, values in times.items():
    print(f"{name}: median {np.median(values):.3f} s for {STEPS} steps "
          f"({', '.join(f'{v:.3f}' for v in values)})")
  print(f"per_step / scan: {np.median(times['per_step']) / np.median(times['scan']):.2f}")


if __name__ == "__main__":
  main()
