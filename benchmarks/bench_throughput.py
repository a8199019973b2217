r"""Training throughput of jaxcnn against Keras 3 (TF and JAX backends), interleaved.

Issue 5: how many images per second each framework trains, end to end, on
the same model, batch size, optimizer and data, measured in one run on a
shared, noisy machine. Every framework runs in its own worker process
(``throughput_worker.py``; Keras 3 picks its backend once per process); the
orchestrator asks them in turn for one timed item each, round after round,
rotating who goes first, so noise from other processes falls on all of them
alike. Only per-round ratios and medians are reported.

Rows per model:
  jaxcnn e2e        jaxcnn's input pipeline + pmap-ed train step + metric
                    fetches at train.py's refresh points (one epoch)
  jaxcnn pipeline   the input pipeline alone (host batches, no training)
  jaxcnn step       the train step alone, on one batch already on the device
  keras-* e2e       ``model.fit`` on the same examples in numpy
plus the machine's float32 matmul peak (GFLOP/s), XLA's FLOP count of one
training step per image, and the fraction of that peak each row reaches.

Models (``--models``, comma-separated or 'all'): mnist_cnn (lecture 003,
real Fashion-MNIST), cnn_small_bn (lecture 002), mlp_dropout (lecture 004's
Fashion-MNIST MLP), cats_dogs_cnn (lecture 003 at 150x150x3 on RANDOM images:
cats_vs_dogs cannot be had offline, and the number is a throughput only).

  .venv/bin/python benchmarks/bench_throughput.py --out /tmp/throughput.json
  .venv/bin/python benchmarks/bench_throughput.py --models all --rounds 5
  .venv/bin/python benchmarks/bench_throughput.py --frameworks jaxcnn,keras-tensorflow \
      --steps 100 --rounds 3

On a GPU machine the same command measures jaxcnn and every Keras backend
that is installed there (``keras-torch`` too); frameworks whose packages are
missing are skipped with the reason in the JSON. Where TensorFlow is missing,
jaxcnn's data comes from a numpy feeder with its pipeline's order and
normalization (``--jaxcnn-feeder``; the JSON names the one used).

``--feeds device,k8,device_k8`` adds end-to-end rows of jaxcnn fed as
``train.py`` feeds with ``dataset.device_cache='on'`` (``device``: the
training part on the device, each batch gathered inside the step) and/or
``training.steps_per_call=K`` (``kK``), timed in the same rounds as the plain
e2e, with per-round ratios against it (``jaxcnn:e2e_device/e2e``).

``--augmentation JSON`` sets jaxcnn's ``dataset.augmentation``: the e2e row
then augments in tf.data and the ``device`` feeds with ``augment_jax``
inside the step (other random draws of the same transforms), e.g.

  .venv/bin/python benchmarks/bench_throughput.py --frameworks jaxcnn \
      --feeds device,device_k8 --augmentation '{"rotation_range": 10, "zoom_range": 0.1}'

``--jaxcnn-variant NAME:VAR=VALUE[;VAR=VALUE]`` adds another jaxcnn worker
started with those environment variables (XLA_FLAGS and PYTHONPATH are
prepended to the current ones), timed in the same rounds: the way to measure
an XLA flag or a patched module against jaxcnn as it is, e.g.

  .venv/bin/python benchmarks/bench_throughput.py --frameworks jaxcnn,keras-tensorflow \
      --jaxcnn-variant "noynn:XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"

``--precision float32,bfloat16`` times jaxcnn in each ``training.precision``
in the same rounds: the first is the ``jaxcnn`` worker's, each other one a
``jaxcnn[<precision>]`` worker (e2e and step items; ratios against
``jaxcnn``), e.g.

  .venv/bin/python benchmarks/bench_throughput.py --frameworks jaxcnn \
      --precision float32,bfloat16 --rounds 5

A variant whose worker arguments hold ``--feeds`` (``bench_accelerator.py``
starts its bfloat16 worker so) also times those e2e_FEED items, with
ratios ``jaxcnn[<name>]:e2e_FEED/e2e``.

The JSON (``--out``) is rewritten after every model, so a run cut short keeps
what it measured. Worker logs are in ``--log-dir``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform as platform_lib
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, REPO)
import throughput_workloads as wl  # noqa: E402  pylint: disable=g-import-not-at-top
# Importing jaxcnn puts its XLA defaults (jaxcnn.xla_defaults) in os.environ,
# so every worker inherits them: Keras on JAX compiles with the same flags as
# jaxcnn (each worker's JSON info records XLA_FLAGS); Keras-TF runs no XLA on
# a CPU-only machine. It starts no JAX backend here.
import jaxcnn  # noqa: E402,F401  pylint: disable=g-import-not-at-top,unused-import

FRAMEWORKS = ("jaxcnn", "keras-tensorflow", "keras-jax", "keras-torch")
# What each framework needs importable (checked without importing it).
_NEEDS = {"jaxcnn": ("jax", "flax", "optax", "ml_collections"),
          "keras-tensorflow": ("keras", "tensorflow"),
          "keras-jax": ("keras", "jax"),
          "keras-torch": ("keras", "torch")}
ITEMS = {"jaxcnn": ("e2e", "pipeline", "step", "matmul")}
VARIANT_ITEMS = ("e2e", "step")
ITEM_NAMES = {"e2e": "end to end", "pipeline": "input pipeline alone",
              "step": "train step alone"}


def missing_packages(framework: str) -> list[str]:
  """The packages ``framework`` needs that are not installed."""
  return [m for m in _NEEDS[framework] if importlib.util.find_spec(m) is None]


def detect_platform() -> str:
  """'gpu' or 'cpu': JAX's default backend, asked in a throwaway process."""
  out = subprocess.run(
      [sys.executable, "-c", "import jax; print(jax.default_backend())"],
      capture_output=True, text=True, env=_worker_env(None), check=True)
  return "cpu" if out.stdout.strip().splitlines()[-1] == "cpu" else "gpu"


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
  """'NAME:VAR=VALUE[;VAR=VALUE...]' -> ('jaxcnn[NAME]', {VAR: VALUE})."""
  name, sep, assignments = text.partition(":")
  env = {}
  for item in assignments.split(";") if sep else ():
    var, eq, value = item.partition("=")
    if not eq or not var:
      break
    env[var] = value
  if not name or not env or not name.replace("_", "").replace("-", "").isalnum():
    raise ValueError(
        f"--jaxcnn-variant {text!r}: expected NAME:VAR=VALUE[;VAR=VALUE...], e.g. "
        "'noynn:XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution'.")
  return f"jaxcnn[{name}]", env


def _worker_env(keras_backend: str | None,
                extra: dict[str, str] | None = None) -> dict[str, str]:
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(
      [REPO, HERE] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  env["PYTHONUNBUFFERED"] = "1"
  # Several JAX processes share one GPU: none may take 75% of its memory.
  env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.3")
  if keras_backend:
    env["KERAS_BACKEND"] = keras_backend
  for var, value in (extra or {}).items():
    # PYTHONPATH and XLA_FLAGS extend what is set; anything else replaces it.
    if var in ("PYTHONPATH", "XLA_FLAGS") and env.get(var):
      sep = os.pathsep if var == "PYTHONPATH" else " "
      value = value + sep + env[var]
    env[var] = value
  return env


class WorkerError(RuntimeError):
  """A worker failed; the message holds its traceback or its log's tail."""


class Worker:
  """One framework's worker process and its line protocol."""

  def __init__(self, framework: str, args: list[str], log_path: str,
               extra_env: dict[str, str] | None = None):
    self.framework = framework
    self.log_path = log_path
    backend = framework.split("-", 1)[1] if framework.startswith("keras-") else None
    cmd = [sys.executable, os.path.join(HERE, "throughput_worker.py"),
           "--framework", "keras" if backend else "jaxcnn", *args]
    self._log = open(log_path, "w")
    self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=self._log, text=True,
                                 env=_worker_env(backend, extra_env), cwd=REPO)
    try:
      self.info = self._receive()["info"]
    except WorkerError:
      self.close()
      raise

  def _receive(self) -> dict[str, Any]:
    line = self.proc.stdout.readline()
    if not line:
      self.proc.wait()
      raise WorkerError(f"{self.framework} worker exited ({self.proc.returncode}); "
                        f"log tail:\n{_tail(self.log_path)}")
    msg = json.loads(line)
    if "error" in msg:
      raise WorkerError(f"{self.framework} worker failed:\n{msg['error']}")
    return msg

  def run(self, item: str) -> dict[str, Any]:
    self.proc.stdin.write(json.dumps({"cmd": "run", "item": item}) + "\n")
    self.proc.stdin.flush()
    return self._receive()

  def close(self) -> None:
    if self.proc.poll() is None:
      try:
        self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
      except (OSError, subprocess.TimeoutExpired):
        self.proc.kill()
        self.proc.wait()
    self._log.close()


def _tail(path: str, lines: int = 30) -> str:
  try:
    with open(path) as f:
      return "".join(f.readlines()[-lines:])
  except OSError:
    return "(no log)"


def _summary(values: list[float]) -> dict[str, Any]:
  return {"median": statistics.median(values), "min": min(values), "max": max(values),
          "rounds": values}


def item_name(item: str) -> str:
  """The words of an item, e.g. 'end to end, device data, 8 steps/call'."""
  if item in ITEM_NAMES:
    return ITEM_NAMES[item]
  words = [ITEM_NAMES["e2e"]]
  for part in item.split("_")[1:]:
    words.append("device data" if part == "device" else f"{part[1:]} steps/call")
  return ", ".join(words)


def bench_model(name: str, frameworks: list[str], args, platform: str,
                log_dir: str, variants: dict[str, dict[str, str]] | None = None,
                variant_args: dict[str, list[str]] | None = None) -> dict[str, Any]:
  """Starts the workers of one model, times them interleaved, stops them.

  ``variants`` maps 'jaxcnn[NAME]' to extra environment variables: more
  jaxcnn workers (e.g. other XLA flags), timed in the same rounds;
  ``variant_args`` maps some of them to extra worker arguments (e.g.
  ``--precision bfloat16``).
  """
  variants = variants or {}
  variant_args = variant_args or {}
  workload = wl.get(name)
  steps = args.steps or (workload.gpu_steps if platform == "gpu" else workload.cpu_steps)
  batch = args.batch_size or workload.batch_size
  common = ["--model", name, "--steps", str(steps), "--batch-size", str(batch),
            "--data-dir", args.data_dir, "--tfds-data-dir", args.tfds_data_dir]
  jaxcnn_args = common + ["--feeder", args.jaxcnn_feeder]
  precisions = getattr(args, "precision", "float32").split(",")
  if precisions[0] != "float32":
    jaxcnn_args += ["--precision", precisions[0]]
  feeds = [f for f in getattr(args, "feeds", "").split(",") if f]
  if getattr(args, "augmentation", ""):
    jaxcnn_args += ["--augmentation", args.augmentation]
  main_items = ITEMS["jaxcnn"] + tuple(f"e2e_{f}" for f in feeds)
  examples_path = os.path.join(log_dir, f"{name}-train.npz")
  result: dict[str, Any] = {
      "workload": {**workload.__dict__, "image_shape": list(workload.image_shape)},
      "batch_size": batch, "steps_per_round": steps, "images_per_round": steps * batch,
      "frameworks": {}, "errors": {}}
  workers: dict[str, Worker] = {}
  try:
    print(f"[{name}] starting jaxcnn ({steps} steps of {batch} per round)", flush=True)
    try:
      workers["jaxcnn"] = Worker("jaxcnn", jaxcnn_args + ["--save-examples", examples_path]
                                 + (["--feeds", ",".join(feeds)] if feeds else []),
                                 os.path.join(log_dir, f"{name}-jaxcnn.log"))
    except WorkerError as e:
      result["errors"]["jaxcnn"] = str(e)
      raise
    info = workers["jaxcnn"].info
    spec_path = os.path.join(log_dir, f"{name}-model.json")
    with open(spec_path, "w") as f:
      json.dump({"examples": examples_path,
                 **{k: info[k] for k in ("layers", "image_shape", "output_units")}}, f)
    for fw in [f for f in frameworks if f != "jaxcnn"] + list(variants):
      print(f"[{name}] starting {fw}", flush=True)
      fw_args = (common + ["--keras-model", spec_path] if fw.startswith("keras-")
                 else jaxcnn_args + variant_args.get(fw, []))
      try:
        workers[fw] = Worker(fw, fw_args, os.path.join(log_dir, f"{name}-{fw}.log"),
                             variants.get(fw))
        if fw in variants:
          print(f"[{name}] {fw} runs {workers[fw].info['jaxcnn_file']}", flush=True)
      except WorkerError as e:
        result["errors"][fw] = str(e)
        print(f"[{name}] {fw} skipped: {str(e).strip().splitlines()[-1]}", flush=True)
    for fw, w in workers.items():
      result["frameworks"][fw] = {k: v for k, v in w.info.items() if k != "layers"}

    order = list(workers)
    samples: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
      rotated = order[r % len(order):] + order[:r % len(order)]
      for fw in rotated:
        items = (VARIANT_ITEMS + _variant_feed_items(variant_args.get(fw, []))
                 if fw in variants else
                 main_items if fw == "jaxcnn" else ITEMS.get(fw, ("e2e",)))
        for item in items:
          out = workers[fw].run(item)
          value = out["gflops"] if item == "matmul" else out["images"] / out["seconds"]
          samples.setdefault((fw, item), []).append(value)
      line = ", ".join(f"{fw} {samples[(fw, 'e2e')][-1]:,.0f}" for fw in order)
      print(f"[{name}] round {r + 1}/{args.rounds}: images/s {line}", flush=True)
  finally:
    for w in workers.values():
      w.close()
    if os.path.exists(examples_path):
      os.remove(examples_path)  # up to ~200 MB on a GPU run

  flops = result["frameworks"]["jaxcnn"]["flops_per_image"]
  result["flops_per_image"] = flops
  result["matmul_gflops"] = _summary(samples.pop(("jaxcnn", "matmul")))
  result["rows"] = [{"framework": fw, "item": item, "images_per_second": _summary(v)}
                    for (fw, item), v in samples.items()]
  result["ratios"] = {}
  for mine in [fw for fw in order if fw.startswith("jaxcnn")]:
    for other in order:
      if other != mine and not (other.startswith("jaxcnn[") and mine == "jaxcnn"):
        per_round = [a / b for a, b in zip(samples[(mine, "e2e")], samples[(other, "e2e")])]
        result["ratios"][f"{mine}/{other}"] = _summary(per_round)
  for item in main_items[len(ITEMS["jaxcnn"]):]:
    per_round = [a / b for a, b in zip(samples[("jaxcnn", item)], samples[("jaxcnn", "e2e")])]
    result["ratios"][f"jaxcnn:{item}/e2e"] = _summary(per_round)
  for fw in variants:
    for item in _variant_feed_items(variant_args.get(fw, [])):
      if (fw, item) in samples:
        per_round = [a / b for a, b in zip(samples[(fw, item)], samples[(fw, "e2e")])]
        result["ratios"][f"{fw}:{item}/e2e"] = _summary(per_round)
  return result


def _variant_feed_items(worker_args: list[str]) -> tuple[str, ...]:
  """The e2e_FEED items of a variant worker started with ``--feeds`` in its arguments."""
  if "--feeds" not in worker_args:
    return ()
  feeds = worker_args[worker_args.index("--feeds") + 1]
  return tuple(f"e2e_{f}" for f in feeds.split(",") if f)


def add_peak_fractions(results: dict[str, Any]) -> float:
  """The machine's peak (best matmul of the run) and each row's share of it."""
  peak = max(m["matmul_gflops"]["max"] for m in results["models"].values()
             if "matmul_gflops" in m)
  for m in results["models"].values():
    for row in m.get("rows", []):
      if row["item"] != "pipeline":  # the pipeline does no model FLOPs
        row["fraction_of_peak"] = (row["images_per_second"]["median"] *
                                   m["flops_per_image"] / 1e9 / peak)
  return peak


def format_table(results: dict[str, Any]) -> str:
  """Markdown tables: throughput rows, then the interleaved ratios."""
  peak = results["matmul_peak_gflops"]
  lines = [f"Platform: {results['platform']} ({results['device']}); float32 matmul "
           f"peak {peak:,.0f} GFLOP/s; {results['rounds']} interleaved rounds.", "",
           "| model | framework | measure | images/s (median) | min-max | "
           "MFLOP/image | % of matmul peak |",
           "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
  for name, m in results["models"].items():
    if "rows" not in m:
      continue
    for row in m["rows"]:
      s = row["images_per_second"]
      frac = row.get("fraction_of_peak")
      lines.append(
          f"| {name} | {row['framework']} | {item_name(row['item'])} | "
          f"{s['median']:,.0f} | {s['min']:,.0f}-{s['max']:,.0f} | "
          f"{m['flops_per_image'] / 1e6:.1f} | "
          f"{'' if frac is None else f'{100 * frac:.1f}%'} |")
  lines += ["", "| model | ratio (end to end, same round) | median | min-max |",
            "| --- | --- | ---: | ---: |"]
  for name, m in results["models"].items():
    for key, s in m.get("ratios", {}).items():
      lines.append(f"| {name} | {key} | {s['median']:.2f}x | "
                   f"{s['min']:.2f}-{s['max']:.2f} |")
  errors = {f"{n}/{fw}": e for n, m in results["models"].items()
            for fw, e in m.get("errors", {}).items()}
  errors.update({f"*/{fw}": why for fw, why in results.get("skipped", {}).items()})
  if errors:
    lines += ["", "Not measured:"]
    lines += [f"- {k}: {str(v).strip().splitlines()[-1]}" for k, v in errors.items()]
  return "\n".join(lines)


def main(argv=None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--models", default="mnist_cnn",
                      help=f"comma-separated, or 'all': {', '.join(wl.WORKLOADS)}")
  parser.add_argument("--frameworks", default="auto",
                      help=f"comma-separated from {', '.join(FRAMEWORKS)}; 'auto': "
                      "every one installed (jaxcnn always)")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--steps", type=int, default=0,
                      help="train steps per timed round (0: the model's default)")
  parser.add_argument("--batch-size", type=int, default=0, help="0: the lecture's")
  parser.add_argument("--data-dir", default=wl.DEFAULT_MIRROR_DIR,
                      help="the Fashion-MNIST IDX .gz files")
  parser.add_argument("--tfds-data-dir", default="",
                      help="jaxcnn's TFDS data dir ('' = $TFDS_DATA_DIR or ~/tensorflow_datasets)")
  parser.add_argument("--jaxcnn-variant", action="append", default=[],
                      metavar="NAME:VAR=VALUE[;VAR=VALUE]",
                      help="another jaxcnn worker with these environment variables "
                      "(XLA_FLAGS and PYTHONPATH are prepended to the current ones), "
                      "timed in the same rounds; repeatable")
  parser.add_argument("--jaxcnn-feeder", default="auto", choices=("auto", "tfdata", "numpy"),
                      help="jaxcnn's e2e/pipeline data: 'tfdata' is jaxcnn.data; "
                      "'numpy' a numpy feeder with its order and normalization (for "
                      "machines without TensorFlow); 'auto' the first that can run")
  parser.add_argument("--precision", default="float32",
                      help="comma-separated training.precision values (float32, "
                      "bfloat16, float16): the first is the jaxcnn worker's, each "
                      "other one a jaxcnn[<precision>] worker timed in the same rounds")
  parser.add_argument("--feeds", default="",
                      help="extra jaxcnn e2e rows, comma-separated: 'device' (training "
                      "data on the device), 'kK' (K steps per compiled call), "
                      "'device_kK'; e.g. device,k8,device_k8")
  parser.add_argument("--augmentation", default="",
                      help="jaxcnn's dataset.augmentation as JSON, e.g. "
                      "'{\"rotation_range\": 10, \"horizontal_flip\": true}': the "
                      "jaxcnn e2e row augments in tf.data, the 'device' feeds with "
                      "augment_jax in the step (Keras rows stay unaugmented: use "
                      "--frameworks jaxcnn)")
  parser.add_argument("--log-dir", default="", help="worker logs (default: a temp dir)")
  parser.add_argument("--out", default="", help="write the results as JSON here")
  args = parser.parse_args(argv)
  if args.rounds < 1:
    parser.error("--rounds must be >= 1")
  names = list(wl.WORKLOADS) if args.models == "all" else args.models.split(",")
  for n in names:
    wl.get(n)
  wanted = FRAMEWORKS if args.frameworks == "auto" else tuple(args.frameworks.split(","))
  for fw in wanted:
    if fw not in FRAMEWORKS:
      parser.error(f"unknown framework {fw!r}; valid: {', '.join(FRAMEWORKS)}")
  if "jaxcnn" not in wanted:
    wanted = ("jaxcnn",) + wanted  # every ratio is against jaxcnn
  skipped = {fw: f"not installed: {', '.join(missing_packages(fw))}"
             for fw in wanted if missing_packages(fw)}
  if "jaxcnn" in skipped:
    raise SystemExit(f"jaxcnn cannot run here ({skipped['jaxcnn']}).")
  frameworks = [fw for fw in wanted if fw not in skipped]
  for fw, why in skipped.items():
    print(f"{fw}: skipped ({why})", flush=True)

  try:
    variants = dict(parse_variant(v) for v in args.jaxcnn_variant)
  except ValueError as e:
    parser.error(str(e))
  precisions = args.precision.split(",")
  for p in precisions:
    if p not in ("float32", "bfloat16", "float16"):
      parser.error(f"--precision {p!r}: use float32, bfloat16 or float16")
  variant_args = {f"jaxcnn[{p}]": ["--precision", p] for p in precisions[1:]}
  variants.update({name: {} for name in variant_args})
  platform = detect_platform()
  log_dir = args.log_dir or tempfile.mkdtemp(prefix="bench_throughput_")
  os.makedirs(log_dir, exist_ok=True)
  start = time.time()
  results: dict[str, Any] = {
      "platform": platform, "rounds": args.rounds, "frameworks": frameworks,
      "variants": variants, "precision": precisions,
      "skipped": skipped, "log_dir": log_dir,
      "host": {"machine": platform_lib.machine(), "cpus": os.cpu_count(),
               "python": sys.version.split()[0]},
      "models": {}}
  for n in names:
    try:
      results["models"][n] = bench_model(n, frameworks, args, platform, log_dir, variants,
                                         variant_args)
    except WorkerError as e:
      results["models"][n] = {"errors": {"jaxcnn": str(e)}}
      print(f"[{n}] failed: {e}", file=sys.stderr, flush=True)
    results["seconds"] = time.time() - start
    if _finish(results) and args.out:
      _write_json(args.out, results)  # after every model: a cut-short run keeps its data
  if not _finish(results):
    raise SystemExit(f"No model could be measured; worker logs in {log_dir}.")
  print()
  print(format_table(results))
  return results


def _finish(results: dict[str, Any]) -> bool:
  """Fills in the device and the peak fractions; False if nothing was measured."""
  measured = [m for m in results["models"].values() if "rows" in m]
  if not measured:
    return False
  first = measured[0]["frameworks"]["jaxcnn"]
  results["device"] = f"{first['local_devices']} x {first['device_kind']}"
  results["matmul_peak_gflops"] = add_peak_fractions(results)
  return True


def _write_json(path: str, obj: Any) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump(obj, f, indent=2)
  os.replace(path + ".tmp", path)


if __name__ == "__main__":
  main()
