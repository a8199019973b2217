"""Augmentation per batch: the tf.data path against augment_jax (BENCHMARKS.md).

Two ways to augment ``--batches`` batches of ``--batch`` uint8 images
(28x28x1 by default, random pixels: the cost does not depend on them):

* ``tf.data``: what ``data.pipeline`` does with augmentation on: the images
  in memory, ``augment.build``'s function mapped per example
  (``num_parallel_calls=AUTOTUNE``, seeded by (seed, epoch, position)),
  batched, prefetched, iterated as numpy with the autotuner off.
* ``jax``: the images on the device, one jitted call per batch that slices
  the batch and augments it with ``augment_jax`` (keys from (seed, epoch,
  position)), as a device-resident train step would; calls are dispatched
  back to back and waited for at the end.

Rounds alternate the two so that a shared machine's load falls on both;
per-round ratios are reported.

  python benchmarks/bench_augment.py --batch=128 --batches=40 --rounds=7
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf

from jaxcnn import experiment_bases
from jaxcnn.data import augment, augment_jax
from jaxcnn.data.reader import AUTOTUNE

PRESETS = {
    "lecture003": experiment_bases.CATS_VS_DOGS_AUGMENTATION,
    "digits": experiment_bases.DIGITS_AUGMENTATION,
}


def tf_data_variant(images: np.ndarray, cfg, batch: int, seed: int = 0):
  """A function running one tf.data epoch; returns seconds per batch after the first."""
  fn = augment.build(cfg)
  positions = np.arange(len(images), dtype=np.int64)
  labels = np.zeros(len(images), np.int32)

  def run(epoch: int) -> float:
    base = tf.constant([seed, epoch], tf.int64)

    def aug(image, label, position):
      s = tf.random.experimental.stateless_fold_in(base, position)
      return fn(tf.cast(image, tf.float32), s), label

    ds = tf.data.Dataset.from_tensor_slices((images, labels, positions))
    ds = ds.map(aug, num_parallel_calls=AUTOTUNE).batch(batch, drop_remainder=True)
    options = tf.data.Options()
    options.autotune.enabled = False
    it = ds.prefetch(2).with_options(options).as_numpy_iterator()
    next(it)  # pipeline start-up, not per-batch cost
    t0 = time.perf_counter()
    n = sum(1 for _ in it)
    return (time.perf_counter() - t0) / n
  return run


def jax_variant(images: np.ndarray, cfg, batch: int, seed: int = 0):
  """A function running one device epoch; returns seconds per batch after the first."""
  fn = augment_jax.build(cfg)
  on_device = jax.device_put(images)

  @jax.jit
  def step(all_images, epoch, i):
    x = jax.lax.dynamic_slice_in_dim(all_images, i * batch, batch)
    positions = i * batch + jnp.arange(batch)
    return fn(x, augment_jax.example_keys(seed, epoch, positions))

  steps = len(images) // batch

  def run(epoch: int) -> float:
    jax.block_until_ready(step(on_device, epoch, 0))
    t0 = time.perf_counter()
    out = [step(on_device, epoch, i) for i in range(1, steps)]
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / (steps - 1)
  return run


def main(argv=None) -> dict:
  """Runs the comparison; prints and returns the per-round figures."""
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--preset", choices=sorted(PRESETS), default="lecture003")
  p.add_argument("--fill_mode", default=None, help="override the preset's fill mode")
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--batches", type=int, default=40)
  p.add_argument("--rounds", type=int, default=7)
  p.add_argument("--size", type=int, default=28)
  p.add_argument("--channels", type=int, default=1)
  p.add_argument("--json", default="")
  args = p.parse_args(argv)
  cfg = dict(PRESETS[args.preset])
  if args.fill_mode:
    cfg["fill_mode"] = args.fill_mode
  images = np.random.default_rng(0).integers(
      0, 256, (args.batch * args.batches, args.size, args.size, args.channels), np.uint8)
  variants = {"tf.data": tf_data_variant(images, cfg, args.batch),
              "jax": jax_variant(images, cfg, args.batch)}
  for run in variants.values():  # compile / trace once
    run(0)
  ms = {name: [] for name in variants}
  for r in range(args.rounds):
    order = list(variants) if r % 2 == 0 else list(variants)[::-1]
    for name in order:
      ms[name].append(1e3 * variants[name](r + 1))
  ratios = [t / j for t, j in zip(ms["tf.data"], ms["jax"])]
  result = {
      "preset": args.preset, "config": cfg, "batch": args.batch,
      "image": [args.size, args.size, args.channels], "batches": args.batches,
      "backend": jax.default_backend(), "devices": jax.device_count(),
      "ms_per_batch": ms,
      "median_ms_per_batch": {k: statistics.median(v) for k, v in ms.items()},
      "tf_over_jax_per_round": ratios,
      "median_tf_over_jax": statistics.median(ratios),
  }
  print(json.dumps(result, indent=1))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=1)
  return result


if __name__ == "__main__":
  main()
