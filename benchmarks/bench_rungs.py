r"""Train-step time of named ladder rungs, side by side in one run (claims' speed rows).

Lecture 000 says max-pooling "trains much faster" than the same network
without it, and that stride-2 convolutions are "similar in speed" to
pooling. ``jaxcnn.claims`` judges such claims from this benchmark's JSON.

Each member is built as ``jaxcnn.ladder`` trains it: its config is the
ladder's ``get_config(member + options)`` (``ladder.member_config``, with
``--seeds`` a population as ``--seeds`` there), then ``train.build`` (data,
models, optimizer, feed) and ``train.start`` (initial state, freeze
semantics, regularization rules) in a throwaway workdir, and its step is the
one ``train.fit`` compiles (``train._make_train_step``), called on the
inputs ``train.fit`` feeds it (``data.device.calls`` of epoch 0: host
batches, or device rows and K-step stacks where the feed plan says so) at
the config's batch size and image shape. Each member is warmed up first
(``--warmup`` calls, their seconds recorded apart): the first call
compiles (the state placed as ``train.fit`` places it,
``parallel.replicate``, so only once); the default of 2 leaves the second
for caches to settle.
Then every round times ``--steps`` steps of each member in turn, the first
member rotating from round to round, so that load from other processes
falls on every member alike; only medians and per-round ratios are
reported: per member the median step time, per ordered pair ``a/b`` the
ratio of ``a``'s step time to ``b``'s in the same round (median, min, max,
every round). The JSON also holds XLA's FLOP count of each member's step
(``cost_analysis`` of the same program), the CPU flags, the JAX version and
the load average.

  flock /tmp/jaxcnn-heavy.lock nice -n 0 python benchmarks/bench_rungs.py \
      --config_file=experiments/regularization_ladder.py --options=overfit \
      --members=dropout_maxnorm,dropout_maxnorm_maxpool,dropout_maxnorm_strides \
      --rounds=11 --steps=24 --out=workdirs/claims/bench/pooling.json

(BENCHMARKS.md has its figures; ``--seeds=3`` times the populations the
claims' ladder trains.)

``--quick``: 2 rounds of 2 steps after two warm-up calls (a test).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import io
import itertools
import json
import os
import platform as platform_lib
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
  sys.path.insert(0, REPO)

import jax  # noqa: E402  pylint: disable=g-import-not-at-top
import numpy as np  # noqa: E402  pylint: disable=g-import-not-at-top

from jaxcnn import ladder as ladder_lib  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxcnn import parallel  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxcnn import train  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxcnn.data import device as device_lib  # noqa: E402  pylint: disable=g-import-not-at-top

# The CPU flags that decide XLA:CPU's kernels (vector width, bf16/AMX units).
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16",
             "amx_bf16", "amx_tile", "asimd", "sve")


def cpu_info() -> dict[str, Any]:
  """The CPU's model name and which of :data:`CPU_FLAGS` it has (Linux's cpuinfo)."""
  model, flags = platform_lib.processor() or platform_lib.machine(), set()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name":
          model = value.strip()
        elif key in ("flags", "Features"):
          flags |= set(value.split())
  except OSError:
    pass
  return {"model": model, "flags": [f for f in CPU_FLAGS if f in flags],
          "cpus": os.cpu_count(),
          "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
          else os.cpu_count()}


@dataclasses.dataclass
class Rung:
  """One ladder member's compiled train step, its state and its inputs.

  Attributes:
    member: the ladder member.
    config: its validated config.
    step: the step ``train.fit`` calls (donates the state: continue from
      the returned one).
    state: the current state (the initialized one until the first call).
    inputs: ``(steps, inputs)`` of the first calls of epoch 0, as
      ``data.device.calls`` gives them to ``train.fit``.
    steps_per_epoch: the config's steps per epoch.
    image_shape: the data's (H, W, C).
  """
  member: str
  config: Any
  step: Any
  state: Any
  inputs: list[tuple[int, Any]]
  steps_per_epoch: int
  image_shape: tuple[int, ...]

  def call(self, i: int) -> tuple[int, Any]:
    """Runs call ``i`` (its inputs cycled); returns (steps run, metrics)."""
    n, inputs = self.inputs[i % len(self.inputs)]
    self.state, metrics = self.step(self.state, inputs)
    return n, metrics


def build_rung(ladder: ladder_lib.Ladder, member: str, workdir: str, *, seeds: int = 0,
               overrides: dict[str, int] | None = None, calls: int = 4) -> Rung:
  """Builds ``member`` as ``jaxcnn.ladder`` + ``jaxcnn.train`` would train it.

  Args:
    ladder: the loaded ladder.
    member: one of its members.
    workdir: a scratch folder for ``train.start`` (it writes config.json).
    seeds: > 0: the member as a population of that many seeds.
    overrides: ``jaxcnn.config.shrink`` keywords (as the ladder's flags).
    calls: distinct inputs kept (the first calls of epoch 0), cycled when timing.
  """
  config = ladder_lib.member_config(ladder, member, overrides=overrides, seeds=seeds)
  # train.start prints the model summary; the benchmark prints its own lines.
  with contextlib.redirect_stdout(io.StringIO()):
    setup = train.build(config, workdir)
    with train.open_run(setup) as ckpt:
      setup, state, _ = train.start(setup, ckpt)
  step = train._make_train_step(setup)  # pylint: disable=protected-access
  state = parallel.replicate(state)  # Placed as train.fit places it: one compilation.
  inputs = list(itertools.islice(
      device_lib.calls(setup.data, 0, 0, setup.feed or device_lib.Feed()), calls))
  return Rung(member, config, step, state, inputs, setup.data.steps_per_epoch,
              tuple(setup.data.info.image_shape))


def flops_per_call(rung: Rung) -> float | None:
  """XLA's FLOP count of the rung's compiled step on its first inputs (None: unknown).

  The count is of one device's program (its share of the batch). On GPUs
  convolutions are library calls that XLA counts as zero FLOPs.
  """
  try:
    cost = rung.step.lower(rung.state, rung.inputs[0][1]).compile().cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None  # a backend without cost analysis
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  flops = (cost or {}).get("flops")
  return float(flops) if flops is not None and flops >= 0 else None


def _summary(values: Sequence[float]) -> dict[str, Any]:
  return {"median": statistics.median(values), "min": min(values), "max": max(values),
          "rounds": list(values)}


def _check_finite(member: str, metrics: Any) -> None:
  loss = np.asarray(jax.device_get(metrics["loss"]))
  if not np.all(np.isfinite(loss)):
    raise FloatingPointError(f"{member}: non-finite loss {loss} in the benchmark")


def time_rungs(rungs: Sequence[Rung], *, rounds: int, steps: int, warmup: int,
               log=print) -> dict[str, Any]:
  """Warms every rung up, then times them interleaved; returns the JSON's members/ratios."""
  members: dict[str, dict[str, Any]] = {}
  calls = {r.member: 0 for r in rungs}
  for rung in rungs:
    first = []
    for _ in range(warmup):
      t0 = time.perf_counter()
      _, metrics = rung.call(calls[rung.member])
      jax.block_until_ready(rung.state)
      first.append(time.perf_counter() - t0)
      calls[rung.member] += 1
    _check_finite(rung.member, metrics)
    members[rung.member] = {"warmup_seconds": first}
    log(f"[bench_rungs] {rung.member}: warm (first call {first[0]:.1f} s)")
  times: dict[str, list[float]] = {r.member: [] for r in rungs}
  for r in range(rounds):
    order = list(rungs[r % len(rungs):]) + list(rungs[:r % len(rungs)])
    for rung in order:
      done, metrics = 0, None
      t0 = time.perf_counter()
      while done < steps:
        n, metrics = rung.call(calls[rung.member])
        calls[rung.member] += 1
        done += n
      jax.block_until_ready(rung.state)
      times[rung.member].append((time.perf_counter() - t0) / done)
      _check_finite(rung.member, metrics)
    log(f"[bench_rungs] round {r + 1}/{rounds}: ms per step " + ", ".join(
        f"{m} {1e3 * t[-1]:.2f}" for m, t in times.items()))
  for m, t in times.items():
    members[m]["step_seconds"] = _summary(t)
  ratios = {f"{a}/{b}": _summary([x / y for x, y in zip(times[a], times[b])])
            for a, b in itertools.permutations(times, 2)}
  return {"members": members, "ratios": ratios}


def format_table(result: dict[str, Any]) -> str:
  """Markdown: per member the step time and FLOPs, then each pair's ratio."""
  lines = [f"{result['rounds']} interleaved rounds of {result['steps']} steps; "
           f"{result['backend']} ({result['devices']} x {result['device_kind']}); "
           f"CPU {result['cpu']['model']}, flags {' '.join(result['cpu']['flags']) or '-'}; "
           f"JAX {result['jax']}; load average {result['loadavg_start']} -> "
           f"{result['loadavg_end']}", "",
           "| member | ms per step (median) | min-max | GFLOP per step (XLA) |",
           "| --- | ---: | ---: | ---: |"]
  for name, m in result["members"].items():
    s, flops = m["step_seconds"], m.get("flops_per_step")
    lines.append(f"| {name} | {1e3 * s['median']:.2f} | {1e3 * s['min']:.2f}-"
                 f"{1e3 * s['max']:.2f} | {'' if flops is None else f'{flops / 1e9:.3f}'} |")
  lines += ["", "| a / b (step time, same round) | median | min-max |", "| --- | ---: | ---: |"]
  for key, s in result["ratios"].items():
    lines.append(f"| {key} | {s['median']:.2f}x | {s['min']:.2f}-{s['max']:.2f} |")
  return "\n".join(lines)


def _loadavg() -> list[float] | None:
  try:
    return [round(x, 2) for x in os.getloadavg()]
  except OSError:
    return None


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  """Runs the benchmark; prints the table, writes ``--out``, returns the JSON."""
  argv = list(sys.argv[1:] if argv is None else argv)
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config_file", required=True, help="the ladder file")
  p.add_argument("--options", default="", help="appended to every member's config string")
  p.add_argument("--members", required=True, help="comma-separated, two or more")
  p.add_argument("--rounds", type=int, default=7)
  p.add_argument("--steps", type=int, default=0,
                 help="steps timed per member per round (0: one epoch of the config)")
  p.add_argument("--warmup", type=int, default=2,
                 help="untimed calls per member first (the first two compile)")
  p.add_argument("--calls", type=int, default=4,
                 help="distinct inputs per member (epoch 0's first calls), cycled")
  p.add_argument("--seeds", type=int, default=0,
                 help="> 0: every member as a population of this many seeds")
  p.add_argument("--batch_size", type=int, default=0, help="0: the config's")
  p.add_argument("--train_examples", type=int, default=0, help="0: the config's")
  p.add_argument("--quick", action="store_true",
                 help="2 rounds of 2 steps after 2 warm-up calls (a test)")
  p.add_argument("--workdir", default="", help="scratch folder (default: a temp dir)")
  p.add_argument("--out", default="", help="write the JSON here")
  a = p.parse_args(argv)
  if a.quick:
    a.rounds, a.steps, a.warmup, a.calls = 2, a.steps or 2, 2, 2
  members = [m for m in a.members.split(",") if m]
  if len(members) < 2 or len(set(members)) != len(members):
    p.error(f"--members needs two or more different members, got {a.members!r}")
  for name in ("rounds", "warmup", "calls"):
    if getattr(a, name) < 1:
      p.error(f"--{name} must be >= 1")
  ladder = ladder_lib.load(a.config_file, options=a.options, members=members)
  overrides = {k: v for k, v in (("batch_size", a.batch_size),
                                 ("train_examples", a.train_examples)) if v}
  start = time.time()
  scratch = a.workdir or tempfile.mkdtemp(prefix="bench_rungs_")
  rungs, info = [], {}
  for m in members:
    rung = build_rung(ladder, m, os.path.join(scratch, m), seeds=a.seeds,
                      overrides=overrides, calls=a.calls)
    c = rung.config
    info[m] = {"config": ladder.config_string(m), "model": c.model.to_dict(),
               "batch_size": c.training.batch_size,
               "population": c.training.population,
               "image_shape": list(rung.image_shape),
               "steps_per_call": rung.inputs[0][0],
               "params": int(sum(x.size for x in jax.tree.leaves(rung.state.params))),
               "flops_per_step": None}
    flops = flops_per_call(rung)
    info[m]["flops_per_step"] = None if flops is None else flops / rung.inputs[0][0]
    print(f"[bench_rungs] built {m} ({ladder.config_string(m)})", flush=True)
    rungs.append(rung)
  if not a.workdir:
    shutil.rmtree(scratch, ignore_errors=True)  # config.json files; the data stay in memory
  steps = a.steps or rungs[0].steps_per_epoch
  load_start = _loadavg()
  timed = time_rungs(rungs, rounds=a.rounds, steps=steps, warmup=a.warmup,
                     log=lambda s: print(s, flush=True))
  for m in members:
    timed["members"][m] = {**info[m], **timed["members"][m]}
  result = {
      "benchmark": "bench_rungs",
      "command": shlex.join(["python", "benchmarks/bench_rungs.py", *argv]),
      "config_file": os.path.relpath(ladder.path, REPO) if ladder.path.startswith(REPO)
      else ladder.path,
      "options": a.options, "rounds": a.rounds, "steps": steps, "warmup": a.warmup,
      "seeds": a.seeds, "quick": a.quick,
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "backend": jax.default_backend(), "devices": jax.local_device_count(),
      "device_kind": jax.devices()[0].device_kind, "jax": jax.__version__,
      "jaxlib": getattr(__import__("jaxlib"), "__version__", ""),
      "xla_flags": os.environ.get("XLA_FLAGS", ""), "cpu": cpu_info(),
      "python": sys.version.split()[0],
      "loadavg_start": load_start, "loadavg_end": _loadavg(),
      **timed, "seconds": time.time() - start}
  print()
  print(format_table(result))
  if a.out:
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out + ".tmp", "w") as f:
      json.dump(result, f, indent=1)
    os.replace(a.out + ".tmp", a.out)
    print(f"\nwrote {a.out}")
  return result


if __name__ == "__main__":
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)  # Orbax's and TFDS' INFO lines
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  main()
