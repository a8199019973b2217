"""Per-parameter regularization rules from the layers' Keras-style specs."""

from __future__ import annotations

from jaxcnn.models import sequential
from jaxcnn.optim.regularizers import ParamRule


def param_rules(model: sequential.Sequential) -> dict[str, ParamRule]:
  """Rules of the layers' ``kernel_/bias_regularizer`` and ``_constraint``.

  Args:
    model: a model from :func:`jaxcnn.models.create` or ``build``.

  Returns:
    ``{'dense_1/kernel': ParamRule(l1, l2, max_norm), ...}`` for every
    parameter whose layer sets a rule (others are absent; the global
    ``config.regularization`` is merged later by
    ``optim.regularizers.build_rules``).
  """
  rules = {}
  for spec in model.layers:
    for param, rule in (("kernel", spec.kernel_rule), ("bias", spec.bias_rule)):
      if rule:
        rules[f"{spec.name}/{param}"] = ParamRule(l1=rule.l1, l2=rule.l2,
                                                  max_norm=rule.max_norm)
  return rules
