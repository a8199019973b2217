r"""Cost of MC dropout against single passes (issue 6's speed goal).

Lecture 004's dropout MLP (Flatten, Dropout .2, Dense 300 elu, Dropout .2,
Dense 100 elu, Dropout .2, Dense 10) on the 10,000 Fashion-MNIST test images:

  one pass        inference.predict (dropout off)
  100 passes      100 x inference.predict
  lecture loop    100 x a jitted apply with dropout on, one key each: what
                  lecture 004's Python loop does (for reference)
  predict_mc      inference.predict_mc(num_samples=100): one compiled program

The goal: predict_mc <= 1.5 x (100 passes). Timings are interleaved over
``--repeats`` rounds and the fastest round is reported (others' processes on
a shared machine only ever add time); the median is in the JSON too.

  .venv/bin/python benchmarks/bench_mc_dropout.py --out /tmp/bench_mc.json
  .venv/bin/python benchmarks/bench_mc_dropout.py --batch-size 200 --samples-per-step 5
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

FASHION_MNIST = os.environ.get("JAXCNN_MIRROR_DIR", "/usr/share/datasets/fashion-mnist")


def load_images(num_images: int) -> tuple[np.ndarray, str]:
  """The Fashion-MNIST test images standardized per pixel, or noise if absent."""
  path = os.path.join(FASHION_MNIST, "t10k-images-idx3-ubyte.gz")
  if os.path.exists(path):
    with gzip.open(path) as f:
      raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)
    x = raw.astype(np.float32) / 255.0
    x = (x - x.mean(0)) / (x.std(0) + 1e-7)  # lecture 004's per-pixel scaling
    reps = -(-num_images // len(x))
    return np.concatenate([x] * reps)[:num_images], "fashion_mnist test"
  rng = np.random.default_rng(0)
  return rng.standard_normal((num_images, 28, 28, 1), np.float32), "gaussian noise"


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", default="mlp_dropout", help="a jaxcnn.models preset")
  parser.add_argument("--num-images", type=int, default=10_000)
  parser.add_argument("--num-samples", type=int, default=100)
  parser.add_argument("--batch-size", type=int, default=1000)
  parser.add_argument("--samples-per-step", type=int, default=None)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--no-lecture-loop", action="store_true",
                      help="skip the lecture-loop reference row")
  parser.add_argument("--out", default="", help="write the results as JSON here")
  args = parser.parse_args(argv)

  import jax
  from jaxcnn import inference
  from jaxcnn import models

  images, source = load_images(args.num_images)
  model = models.create(args.model)
  variables = model.init({"params": jax.random.key(0)}, images[:1])
  rng = jax.random.key(1)
  s = args.num_samples

  def one_pass():
    return inference.predict(model, variables, images, batch_size=args.batch_size)

  def many_passes():
    for _ in range(s):
      one_pass()

  def mc():
    return inference.predict_mc(model, variables, images, num_samples=s, rng=rng,
                                batch_size=args.batch_size,
                                samples_per_step=args.samples_per_step)

  device_vars = jax.device_put(variables)
  device_images = jax.device_put(images)

  @jax.jit
  def dropout_pass(key):
    logits = model.apply(device_vars, device_images, train=False, deterministic=False,
                         rngs={"dropout": key})
    return jax.nn.softmax(logits)

  def lecture_loop():
    # Lecture 004: np.stack([model(X, training=True) for _ in range(100)]).
    probas = np.stack([np.asarray(dropout_pass(jax.random.fold_in(rng, i))) for i in range(s)])
    return probas.mean(0), probas.std(0)

  rows = {"one pass": one_pass, f"{s} passes": many_passes, "predict_mc": mc}
  if not args.no_lecture_loop:
    rows["lecture loop"] = lecture_loop
  for fn in rows.values():  # Compile everything first.
    fn()
  times = {name: [] for name in rows}
  for _ in range(args.repeats):
    for name, fn in rows.items():
      start = time.perf_counter()
      jax.block_until_ready(fn())
      times[name].append(time.perf_counter() - start)

  best = {name: min(t) for name, t in times.items()}
  base = best[f"{s} passes"]
  device = jax.devices()[0]
  print(f"{args.model} on {len(images)} {source} images, {s} samples, "
        f"{jax.local_device_count()} x {device.device_kind} ({device.platform}), "
        f"batch {args.batch_size}")
  print(f"{'':<14}{'seconds':>10}{'/ one pass':>12}{f'/ {s} passes':>14}")
  for name, t in best.items():
    print(f"{name:<14}{t:>10.3f}{t / best['one pass']:>12.1f}{t / base:>14.2f}")
  ratio = best["predict_mc"] / base
  print(f"predict_mc / {s} single passes = {ratio:.2f} (goal <= 1.5)")

  result = {
      "model": args.model, "images": len(images), "image_source": source,
      "num_samples": s, "batch_size": args.batch_size,
      "samples_per_step": args.samples_per_step,
      "device": {"platform": device.platform, "kind": device.device_kind,
                 "count": jax.local_device_count()},
      "host": {"machine": platform.machine(), "cpus": os.cpu_count(),
               "python": sys.version.split()[0]},
      "jax": jax.__version__, "repeats": args.repeats,
      "seconds_min": best,
      "seconds_median": {n: statistics.median(t) for n, t in times.items()},
      "seconds_all": times,
      "ratio_mc_to_single_passes": ratio,
  }
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
      json.dump(result, f, indent=2)
  return result


if __name__ == "__main__":
  main()
