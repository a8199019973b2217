"""Optimizers, clipping, schedules, regularizers, constraints and freezing.

Keras 3's optimizers and hyperparameter names on optax (lecture 004)::

  tx = optim.create(config.optimizer, config.schedule,
                    steps_per_epoch=data.steps_per_epoch,
                    num_epochs=config.training.num_epochs,
                    freeze=config.regularization.freeze)
  opt_state = tx.init(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  params = optax.apply_updates(params, updates)
  params = optim.constraints.project(params, rules)       # max-norm
  ...
  lr = optim.learning_rate(opt_state)                     # log each epoch
  opt_state, plateau = optim.on_epoch_end(opt_state, plateau, val_loss,
                                          config.schedule)
"""

from jaxcnn.optim import clipping, constraints, freeze, optimizers, regularizers
from jaxcnn.optim import schedules
from jaxcnn.optim.builder import create
from jaxcnn.optim.state import hyperparams, learning_rate, set_hyperparam
from jaxcnn.optim.plateau import PlateauState, init_plateau, on_epoch_end
from jaxcnn.optim.regularizers import ParamRule, build_rules, penalty
from jaxcnn.optim.constraints import project

__all__ = [
    "create", "learning_rate", "hyperparams", "set_hyperparam",
    "PlateauState", "init_plateau", "on_epoch_end",
    "ParamRule", "build_rules", "penalty", "project",
    "clipping", "constraints", "freeze", "optimizers", "regularizers",
    "schedules",
]
