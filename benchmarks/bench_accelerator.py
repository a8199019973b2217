r"""The accelerator suite (issue 18): one command, one JSON, under 8 minutes on one device.

Times jaxcnn's feeds and precisions on the lectures' models with
``bench_throughput.py``'s machinery (one worker process per variant, items
interleaved round by round, same-round ratios), then trains the fast recipe
(``experiments/fashion_mnist_fast.py``) to its end, and writes one JSON file
plus a markdown table:

  group          model, batch      workers and modes (rows)
  mnist_cnn      lecture 003, 64   float32: plain (tf.data, 1 step/call),
                                   device data, K steps/call, device + K
  cnn_small_bn   lecture 002, 128  the same four modes
  mnist_cnn_1024 lecture 003, 1024 float32 plain and device + K; bfloat16
                                   plain and device + K (a second worker)

Per row: images/s end to end (median and range over rounds), step time,
compile time (the worker's first call of the item minus a steady round of
it), FLOPs per step (XLA:CPU's ``cost_analysis`` of the whole train step:
XLA:GPU counts cuDNN convolutions as zero FLOPs), and MFU = achieved FLOP/s
over the chip's dense peak for the row's precision (``PEAKS``, looked up by
``jax.devices()[0].device_kind``; null with the reason where unknown, e.g.
on a CPU). Per group also the AOT lowering and compile seconds of the
one-step program (``jit(...).lower(...)``, ``.compile()``).

The fast recipe runs as ``python -m jaxcnn.main`` in a subprocess: process
wall time, training seconds (``history.json``'s ``epoch_time``), the first
epoch's extra over the later ones (compilation and caching), the first
epoch whose validation accuracy reaches 0.93 and the training seconds up
to its end, and the test accuracy (``results.json``).

``--budget_s`` (default 450) guards the total: a group is skipped when the
budget is spent or when the longest group so far would take it past the
budget, and listed under ``skipped`` with the reason (its rows too); the
fast recipe's process is stopped at the budget's end. Without TensorFlow
(jaxcnn.data) the device-data and K rows are skipped with that reason and
the plain rows run on the numpy feeder.
``--quick`` shrinks everything to a CPU smoke run (a few steps, batch 128
instead of 1024, K=2, one round, the recipe's ``quick`` option: one epoch on
6,400 images, no 0.93 expected); it is what tests/test_bench_accelerator.py runs.

  python benchmarks/bench_accelerator.py --out=/tmp/accelerator.json
  python benchmarks/bench_accelerator.py --quick --out=/tmp/quick.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import bench_throughput as bt  # noqa: E402  pylint: disable=g-import-not-at-top
import throughput_workloads as wl  # noqa: E402  pylint: disable=g-import-not-at-top

TARGET_ACCURACY = 0.93

# Dense (no structured sparsity) peak TFLOP/s per chip, by precision. float32
# on NVIDIA Ampere and later is TF32 tensor-core math: JAX's default matmul
# and convolution precision there. The first matching entry wins (substrings
# of ``device_kind``, lowercased), so the more specific names come first.
PEAKS: tuple[tuple[str, dict[str, float], str], ...] = (
    # NVIDIA H200 datasheet (H200 SXM): TF32 989 and BF16 1,979 TFLOPS "with
    # sparsity"; dense is half.
    ("h200", {"float32": 494.5, "bfloat16": 989.5, "float16": 989.5},
     "NVIDIA H200 Tensor Core GPU datasheet (SXM), dense = sparse / 2"),
    # NVIDIA H100 datasheet: H100 NVL TF32 835 / BF16 1,671 (sparse).
    ("h100 nvl", {"float32": 417.5, "bfloat16": 835.5, "float16": 835.5},
     "NVIDIA H100 Tensor Core GPU datasheet (NVL), dense = sparse / 2"),
    # NVIDIA H100 datasheet: H100 PCIe TF32 756 / BF16 1,513 (sparse).
    ("h100 pcie", {"float32": 378.0, "bfloat16": 756.5, "float16": 756.5},
     "NVIDIA H100 Tensor Core GPU datasheet (PCIe), dense = sparse / 2"),
    # NVIDIA H100 datasheet: H100 SXM TF32 989 / BF16 1,979 (sparse).
    ("h100", {"float32": 494.5, "bfloat16": 989.5, "float16": 989.5},
     "NVIDIA H100 Tensor Core GPU datasheet (SXM), dense = sparse / 2"),
    # NVIDIA A100 datasheet: TF32 156, BF16/FP16 312 (dense).
    ("a100", {"float32": 156.0, "bfloat16": 312.0, "float16": 312.0},
     "NVIDIA A100 Tensor Core GPU datasheet, dense"),
    # Google Cloud TPU system architecture pages: peak bf16 compute per chip;
    # no float32 figure is published (float32 runs as several bf16 passes).
    ("tpu v5 lite", {"bfloat16": 197.0}, "Google Cloud TPU v5e documentation, per chip"),
    ("tpu v5e", {"bfloat16": 197.0}, "Google Cloud TPU v5e documentation, per chip"),
    ("tpu v5p", {"bfloat16": 459.0}, "Google Cloud TPU v5p documentation, per chip"),
    ("tpu v5", {"bfloat16": 459.0}, "Google Cloud TPU v5p documentation, per chip"),
    ("tpu v4", {"bfloat16": 275.0}, "Google Cloud TPU v4 documentation, per chip"),
)


def peak_flops(device_kind: str, precision: str) -> tuple[float | None, str]:
  """(peak FLOP/s of one chip, source) or (None, why it is not known)."""
  kind = device_kind.lower()
  for key, peaks, source in PEAKS:
    if key in kind:
      if precision in peaks:
        return peaks[precision] * 1e12, source
      return None, f"{source}: no {precision} peak published"
  return None, f"no peak known for device_kind {device_kind!r} (CPUs have no table entry)"


def groups(quick: bool) -> list[dict[str, Any]]:
  """The suite's worker groups: model, batch, steps per round, precisions, feeds."""
  k = 2 if quick else 16
  # Steps per round: a multiple of K (every call full) within Fashion-MNIST's
  # 60,000 training images; on a GPU about one epoch each.
  return [
      {"name": "mnist_cnn", "model": "mnist_cnn", "batch": 64,
       "steps": 4 if quick else 896, "precisions": ["float32"],
       "feeds": ["device", f"k{k}", f"device_k{k}"]},
      {"name": "cnn_small_bn", "model": "cnn_small_bn", "batch": 128,
       "steps": 4 if quick else 448, "precisions": ["float32"],
       "feeds": ["device", f"k{k}", f"device_k{k}"]},
      {"name": "mnist_cnn_1024", "model": "mnist_cnn", "batch": 128 if quick else 1024,
       "steps": 2 if quick else 48, "precisions": ["float32", "bfloat16"],
       "feeds": [f"device_k{k}"]},
  ]


def _mode(item: str) -> str:
  return "plain" if item == "e2e" else item[len("e2e_"):]


def group_rows(group: dict[str, Any], measured: dict[str, Any]) -> list[dict[str, Any]]:
  """One row per (precision, mode) of a ``bench_throughput.bench_model`` result."""
  rows = []
  by_key = {(r["framework"], r["item"]): r for r in measured.get("rows", [])}
  for i, precision in enumerate(group["precisions"]):
    fw = "jaxcnn" if i == 0 else f"jaxcnn[{precision}]"
    info = measured.get("frameworks", {}).get(fw)
    for item in ["e2e"] + [f"e2e_{f}" for f in group["feeds"]]:
      row = {"group": group["name"], "model": group["model"], "batch_size": group["batch"],
             "precision": precision, "mode": _mode(item), "item": item,
             "what": bt.item_name(item)}
      if (fw, item) not in by_key or info is None:
        why = (measured.get("errors", {}).get(fw)
               or (item != "e2e" and measured.get("feeds_skipped")) or "not measured")
        rows.append({**row, "skipped": str(why).strip().splitlines()[-1]})
        continue
      ips = by_key[(fw, item)]["images_per_second"]
      steady = group["steps"] * group["batch"] / ips["median"]
      flops_step = info["flops_per_image"] * group["batch"]
      peak, source = peak_flops(info["device_kind"], precision)
      achieved = ips["median"] * info["flops_per_image"]
      devices = info["local_devices"]
      ratio = measured.get("ratios", {}).get(f"{fw}:{item}/e2e")
      rows.append({
          **row, "images_per_second": ips,
          "step_ms": 1e3 * group["batch"] / ips["median"],
          "compile_seconds": max(info["first_call_seconds"][item] - steady, 0.0),
          "first_call_seconds": info["first_call_seconds"][item],
          "flops_per_step": flops_step, "achieved_tflops": achieved / 1e12,
          "peak_tflops": None if peak is None else peak * devices / 1e12,
          "mfu": None if peak is None else achieved / (peak * devices),
          **({"peak_source": source} if peak is not None else {"mfu_reason": source}),
          "ratio_to_plain": ratio})
  return rows


def run_fast_recipe(args, workdir: str, timeout_s: float) -> dict[str, Any]:
  """Trains experiments/fashion_mnist_fast.py in a subprocess; its times and accuracies."""
  config = os.path.join(REPO, "experiments", "fashion_mnist_fast.py")
  config += ":quick" if args.quick else (f":{args.recipe_options}" if args.recipe_options else "")
  cmd = [sys.executable, "-m", "jaxcnn.main", f"--config={config}", f"--workdir={workdir}",
         "--config.training.progress_bar=False"]
  if args.quick and args.recipe_examples:
    cmd += [f"--config.dataset.num_train_examples={args.recipe_examples}",
            f"--config.dataset.validation_split={max(args.recipe_examples // 10, 1)}",
            f"--config.dataset.num_test_examples={args.recipe_examples}"]
  if args.tfds_data_dir:
    cmd.append(f"--config.dataset.data_dir={args.tfds_data_dir}")
  if args.data_dir:
    cmd.append(f"--config.dataset.mirror_dir={args.data_dir}")
  env = bt._worker_env(None)  # pylint: disable=protected-access
  env.pop("XLA_PYTHON_CLIENT_MEM_FRACTION", None)  # alone on the device now
  out = {"command": " ".join(cmd[1:]), "config": os.path.relpath(config, REPO)}
  start = time.perf_counter()
  try:
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=max(timeout_s, 1))
  except subprocess.TimeoutExpired:
    return {**out, "skipped": f"stopped at the budget's end after {timeout_s:.0f} s"}
  out["wall_seconds"] = time.perf_counter() - start
  if proc.returncode != 0:
    return {**out, "skipped": f"exit {proc.returncode}: "
            + (proc.stderr.strip().splitlines() or ["(no stderr)"])[-1]}
  with open(os.path.join(workdir, "history.json")) as f:
    history = json.load(f)
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  times = history["epoch_time"]
  later = times[1:]
  first_extra = times[0] - statistics.median(later) if later else None
  val = history.get("val_accuracy", [])
  reached = next((i for i, a in enumerate(val) if a >= TARGET_ACCURACY), None)
  test_acc = results.get("test_accuracy")
  return {**out, "epochs": len(times), "epoch_seconds": times,
          "train_seconds": sum(times),
          "first_epoch_extra_seconds": first_extra,
          "train_seconds_without_first_epoch_extra": (
              sum(times) - first_extra if first_extra is not None else None),
          "val_accuracy": val, "test_accuracy": test_acc,
          "images_per_second": history.get("images_per_second"),
          "val_epoch_reaching_target": None if reached is None else reached + 1,
          "train_seconds_to_val_target": (None if reached is None
                                          else sum(times[:reached + 1])),
          "test_reaches_target": None if test_acc is None else test_acc >= TARGET_ACCURACY,
          "target_accuracy": TARGET_ACCURACY, "target_expected": not args.quick}


def format_table(results: dict[str, Any]) -> str:
  """The markdown tables of a suite's JSON."""
  lines = [f"Accelerator suite on {results['device']} ({results['platform']}); "
           f"{results['rounds']} interleaved round(s); {results['seconds']:.0f} s"
           + (" (--quick: a smoke run, not a measurement)" if results["quick"] else ""), "",
           "| model, batch | precision | mode | images/s (median) | min-max | step ms | "
           "compile s | GFLOP/step | MFU | / plain |",
           "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
  for r in results["rows"]:
    head = f"| {r['model']}, {r['batch_size']} | {r['precision']} | {r['what']} |"
    if "skipped" in r:
      lines.append(f"{head} skipped: {r['skipped']} | | | | | | |")
      continue
    s = r["images_per_second"]
    mfu = "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.2f}%"
    ratio = "" if r["ratio_to_plain"] is None else f"{r['ratio_to_plain']['median']:.2f}x"
    lines.append(f"{head} {s['median']:,.0f} | {s['min']:,.0f}-{s['max']:,.0f} | "
                 f"{r['step_ms']:.3f} | {r['compile_seconds']:.2f} | "
                 f"{r['flops_per_step'] / 1e9:.2f} | {mfu} | {ratio} |")
  mfu_reasons = {r["mfu_reason"] for r in results["rows"] if r.get("mfu") is None
                 and "mfu_reason" in r}
  if mfu_reasons:
    lines += ["", "MFU n/a: " + "; ".join(sorted(mfu_reasons))]
  if results.get("aot_compile"):
    lines += ["", "| group | AOT lower s | AOT compile s |", "| --- | ---: | ---: |"]
    lines += [f"| {g} | {a['lower_seconds']:.2f} | {a['compile_seconds']:.2f} |"
              for g, a in results["aot_compile"].items()]
  fast = results.get("fast_recipe")
  if fast:
    lines += ["", f"Fast recipe ({fast['config']}): " + (
        f"skipped: {fast['skipped']}" if "skipped" in fast else
        f"{fast['epochs']} epoch(s), wall {fast['wall_seconds']:.1f} s (process start to "
        f"end), training {fast['train_seconds']:.1f} s"
        + ("" if fast["first_epoch_extra_seconds"] is None else
           f" (the first epoch {fast['first_epoch_extra_seconds']:.1f} s longer than the "
           "others: compilation, caching)")
        + (f"; validation never reached {TARGET_ACCURACY}"
           if fast["val_epoch_reaching_target"] is None else
           f"; validation >= {TARGET_ACCURACY} at epoch {fast['val_epoch_reaching_target']}, "
           f"{fast['train_seconds_to_val_target']:.1f} s of training")
        + f"; test accuracy {fast['test_accuracy']:.4f}")]
  if results["skipped"]:
    lines += ["", "Skipped:"] + [f"- {s['item']}: {s['reason']}" for s in results["skipped"]]
  return "\n".join(lines)


def main(argv=None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default="", help="write the suite's JSON here")
  parser.add_argument("--quick", action="store_true",
                      help="a CPU smoke run: few steps, small batches, the recipe's 'quick'")
  parser.add_argument("--budget_s", type=float, default=450.0,
                      help="skip groups that would end after this many seconds; the fast "
                      "recipe is stopped at it")
  parser.add_argument("--rounds", type=int, default=0, help="0: 3 (1 with --quick)")
  parser.add_argument("--groups", default="all",
                      help="comma-separated from mnist_cnn, cnn_small_bn, mnist_cnn_1024, "
                      "fast_recipe; or 'all'")
  parser.add_argument("--recipe_options", default="",
                      help="options after the fast recipe's colon, e.g. 'epochs=12'")
  parser.add_argument("--recipe_examples", type=int, default=0,
                      help="--quick only: the recipe's training images (0: its quick "
                      "option's 6,400; validation a tenth, test as many)")
  parser.add_argument("--data-dir", default=wl.DEFAULT_MIRROR_DIR,
                      help="the Fashion-MNIST IDX .gz files")
  parser.add_argument("--tfds-data-dir", default="", help="jaxcnn's TFDS data dir")
  parser.add_argument("--jaxcnn-feeder", default="auto", choices=("auto", "tfdata", "numpy"))
  parser.add_argument("--log-dir", default="", help="worker logs and the recipe's workdir")
  args = parser.parse_args(argv)
  rounds = args.rounds or (1 if args.quick else 3)
  all_groups = groups(args.quick)
  names = [g["name"] for g in all_groups] + ["fast_recipe"]
  wanted = names if args.groups == "all" else args.groups.split(",")
  for n in wanted:
    if n not in names:
      parser.error(f"--groups: unknown {n!r}; valid: {', '.join(names)}")
  log_dir = args.log_dir or tempfile.mkdtemp(prefix="bench_accelerator_")
  os.makedirs(log_dir, exist_ok=True)
  start = time.perf_counter()
  platform = bt.detect_platform()
  results: dict[str, Any] = {
      "platform": platform, "device": "?", "quick": args.quick, "rounds": rounds,
      "budget_s": args.budget_s, "rows": [], "aot_compile": {}, "groups": {},
      "fast_recipe": None, "skipped": [], "log_dir": log_dir}

  def spent() -> float:
    return time.perf_counter() - start

  # jaxcnn.data (tf.data) is what the device feeds gather from; without
  # TensorFlow the workers use the numpy feeder, which has none.
  no_tf = (importlib.util.find_spec("tensorflow") is None
           and args.jaxcnn_feeder != "tfdata") or args.jaxcnn_feeder == "numpy"
  longest = 0.0  # the longest group so far: a group that would not end in time is skipped
  for group in all_groups:
    if group["name"] not in wanted:
      continue
    if spent() + longest >= args.budget_s:
      reason = (f"budget of {args.budget_s:.0f} s spent ({spent():.0f} s)"
                if spent() >= args.budget_s else
                f"would end past the budget of {args.budget_s:.0f} s ({spent():.0f} s "
                f"spent, the longest group took {longest:.0f} s)")
      results["skipped"].append({"item": group["name"], "reason": reason})
      workers = ["jaxcnn"] + [f"jaxcnn[{p}]" for p in group["precisions"][1:]]
      results["rows"] += group_rows(group, {"errors": {fw: reason for fw in workers}})
      continue
    feeds = "" if no_tf else ",".join(group["feeds"])
    bench_args = argparse.Namespace(
        steps=group["steps"], batch_size=group["batch"], data_dir=args.data_dir,
        tfds_data_dir=args.tfds_data_dir, jaxcnn_feeder=args.jaxcnn_feeder,
        precision=",".join(group["precisions"]), feeds=feeds, rounds=rounds)
    variants = {f"jaxcnn[{p}]": {} for p in group["precisions"][1:]}
    variant_args = {f"jaxcnn[{p}]": ["--precision", p] + (["--feeds", feeds] if feeds else [])
                    for p in group["precisions"][1:]}
    group_log = os.path.join(log_dir, group["name"])
    os.makedirs(group_log, exist_ok=True)
    t0 = time.perf_counter()
    try:
      measured = bt.bench_model(group["model"], ["jaxcnn"], bench_args, platform, group_log,
                                variants, variant_args)
    except bt.WorkerError as e:
      measured = {"errors": {"jaxcnn": str(e)}}
    longest = max(longest, time.perf_counter() - t0)
    if no_tf:
      measured["feeds_skipped"] = ("device data and K steps per call feed from jaxcnn.data, "
                                   "which needs TensorFlow (not installed here, or --jaxcnn-feeder=numpy)")
    results["groups"][group["name"]] = {
        "seconds": time.perf_counter() - t0, "steps_per_round": group["steps"],
        "batch_size": group["batch"], "errors": measured.get("errors", {}),
        "matmul_gflops": measured.get("matmul_gflops")}
    results["rows"] += group_rows(group, measured)
    info = measured.get("frameworks", {}).get("jaxcnn")
    if info:
      results["device"] = f"{info['local_devices']} x {info['device_kind']}"
      results["aot_compile"][group["name"]] = info["aot_compile"]
    _write(args.out, results, spent())

  if "fast_recipe" in wanted:
    left = args.budget_s - spent()
    if left <= 0:
      reason = f"budget of {args.budget_s:.0f} s spent ({spent():.0f} s)"
      results["skipped"].append({"item": "fast_recipe", "reason": reason})
      results["fast_recipe"] = {"skipped": reason, "config": "experiments/fashion_mnist_fast.py"}
    else:
      workdir = os.path.join(log_dir, "fast_recipe")
      results["fast_recipe"] = run_fast_recipe(args, workdir, left)
      if "skipped" in results["fast_recipe"]:
        results["skipped"].append({"item": "fast_recipe",
                                   "reason": results["fast_recipe"]["skipped"]})
  for r in results["rows"]:
    if "skipped" in r and not any(s["item"] == r["group"] for s in results["skipped"]):
      results["skipped"].append({"item": f"{r['group']}/{r['precision']}/{r['mode']}",
                                 "reason": r["skipped"]})
  _write(args.out, results, spent())
  print()
  print(format_table(results))
  return results


def _write(path: str, results: dict[str, Any], seconds: float) -> None:
  results["seconds"] = seconds
  if path:
    bt._write_json(path, results)  # pylint: disable=protected-access


if __name__ == "__main__":
  main()
