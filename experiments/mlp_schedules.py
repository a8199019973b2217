r"""Lecture 004's learning-rate schedules, every one on the same Fashion-MNIST MLP.

Model: ``mlp`` preset with elu + he_normal (300-100-10), per-pixel
standardized inputs, SGD with lr0 = 0.01, batch 32, 5,000 validation images,
20 epochs (past the piecewise boundaries). Each member changes the schedule
only, with the lecture's parameters:
power ``lr0 / (1 + t/s)`` with ``decay=1e-4`` per step (s = 10,000 steps),
exponential ``lr0 * 0.1**(epoch/20)``, piecewise 0.01 / 0.005 / 0.001 at
epochs 5 and 15, performance ``ReduceLROnPlateau(factor=0.5, patience=5)``,
and 1cycle (momentum 0.95 -> 0.85 -> 0.95) whose peak is the
learning-rate range test's suggestion, as the lecture picks it:

  python -m jaxcnn.main --config=experiments/mlp_schedules.py:1cycle \
      --workdir=workdirs/lr_find/mlp_schedules_1cycle --mode=lr_find

swept 1e-5 -> 10 in 500 steps (x1.028 per step) on the member's own data,
model and SGD (momentum 0.9; the schedule replaced by the sweep), seed 0: the
smoothed loss is lowest at rate 0.0373 and the sweep stopped at 0.176 (4x
the best loss); Geron's rule (10x below the turning point) suggests 0.0037.
So ``1cycle`` goes 0.00037 -> 0.0037 -> 0.00037 (lr0 = peak / 10, Geron's
``OneCycleScheduler`` default). Its earlier guess of 0.01 -> 0.05 -> 0.01
diverged (above the turning point); ``1cycle_low`` keeps 0.001 -> 0.01 ->
0.001, a peak between the suggestion and the turning point.

Launch:
  python -m jaxcnn.ladder --config_file=experiments/mlp_schedules.py --out=workdirs/ladders/mlp_schedules

The lecture gives no numbers (exponential, performance and 1cycle are said
to work well; 1cycle converges fastest).
"""

from jaxcnn import config as config_lib
from jaxcnn import experiment_bases

# --mode=lr_find's suggested peak for the 1cycle member (the command in the
# docstring; the sweep ignores the member's own rates, so it stays reproducible).
LR_FIND_SUGGESTION = 0.0037
MEMBERS = {
    "constant": ("constant 0.01", ""),
    "power": ("power: 0.01 / (1 + step/10000)", ""),
    "exponential": ("exponential: 0.01 * 0.1**(epoch/20)", "works well"),
    "piecewise": ("piecewise 0.01 / 0.005 / 0.001 at epochs 5, 15", ""),
    "plateau": ("performance: x0.5 after 5 epochs without val_loss gain",
                "works well"),
    "1cycle": ("1cycle 0.00037 -> 0.0037 (lr_find) -> 0.00037, momentum 0.95 -> 0.85",
               "converges fastest"),
    "1cycle_low": ("1cycle 0.001 -> 0.01 -> 0.001, momentum 0.95 -> 0.85",
                   "converges fastest"),
}
_SCHEDULE = {
    "constant": dict(name="constant"),
    "power": dict(name="power", s=10_000.0, c=1.0, unit="step"),
    "exponential": dict(name="exponential", s=20.0, decay_rate=0.1, unit="epoch"),
    "piecewise": dict(name="piecewise", boundaries=(5, 15),
                      values=(0.01, 0.005, 0.001), unit="epoch"),
    "plateau": dict(name="plateau", factor=0.5, patience=5),
    # The peak is --mode=lr_find's suggestion (see the docstring).
    "1cycle": dict(name="1cycle", max_learning_rate=LR_FIND_SUGGESTION),
    "1cycle_low": dict(name="1cycle", max_learning_rate=0.01),
}
ARG = config_lib.ArgSpec(__file__, members=MEMBERS, default_member="constant")


def get_ladder(options: str = "") -> list[str]:
  del options
  return list(MEMBERS)


def get_config(arg: str = "constant"):
  member = ARG.parse(arg).member
  config = experiment_bases.lecture004_mlp("mlp_elu", num_epochs=20)
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.01
  if member.startswith("1cycle"):
    config.optimizer.momentum = 0.9  # Cycled 0.95 -> 0.85 -> 0.95 by 1cycle.
  if member == "1cycle":
    config.optimizer.learning_rate = LR_FIND_SUGGESTION / 10
  if member == "1cycle_low":
    config.optimizer.learning_rate = 0.001
  config.schedule = config_lib.ml_collections.ConfigDict(_SCHEDULE[member])
  config.lock()
  return config
