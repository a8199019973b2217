"""Small helpers shared by the optim modules to read and check config sections."""

from __future__ import annotations

import numbers
from typing import Any, Iterable, Mapping

from jaxcnn.config import ConfigError, unknown_key_error


def as_dict(section: Any, what: str) -> dict[str, Any]:
  """A plain dict from a ConfigDict, a mapping or None.

  Args:
    section: an ``ml_collections.ConfigDict``, a dict, or None (empty).
    what: the section's name, for the error message.

  Returns:
    A shallow plain dict copy.

  Raises:
    ConfigError: ``section`` is neither.
  """
  if section is None:
    return {}
  if hasattr(section, "to_dict"):  # ConfigDict; resolves field references.
    return dict(section.to_dict())
  if isinstance(section, Mapping):
    return dict(section)
  raise ConfigError(f"'{what}' must be a ConfigDict or a dict, got {section!r}.")


def check_keys(given: Iterable[str], valid: Iterable[str], where: str,
               section: str, elsewhere: Mapping[str, Iterable[str]] = (),
               noun: str = "hyperparameter") -> None:
  """Raises for the first key of ``given`` that is not in ``valid``.

  Args:
    given: the keys found in the config.
    valid: the keys this choice accepts.
    where: the choice, for the message (``"optimizer 'sgd'"``).
    section: the config section, prefixed to the key (``"optimizer"``).
    elsewhere: choice name -> its keys, to say which other choices take an
      unknown key (``beta_2`` belongs to adam, adamax, nadam).
    noun: what the keys are called in that message.

  Raises:
    ConfigError: naming the key, the closest valid one and all valid ones.
  """
  valid = set(valid)
  for key in given:
    if key in valid:
      continue
    error = unknown_key_error(f"{section}.{key}", valid, where)
    owners = sorted(name for name, keys in dict(elsewhere).items() if key in keys)
    if owners:
      error = ConfigError(
          f"{error} ('{key}' is a {noun} of {', '.join(owners)}.)")
    raise error


def number(value: Any, name: str, *, minimum: float | None = 0.0,
           maximum: float | None = None, strict_min: bool = False,
           strict_max: bool = False) -> float:
  """Checks that ``value`` is a real number in a range and returns it as float.

  Raises:
    ConfigError: naming the key, the value and the valid range.
  """
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise ConfigError(f"'{name}' must be a number, got {value!r}.")
  value = float(value)
  low_ok = minimum is None or (value > minimum if strict_min else value >= minimum)
  high_ok = maximum is None or (value < maximum if strict_max else value <= maximum)
  if not (low_ok and high_ok):
    low = "" if minimum is None else f"{'>' if strict_min else '>='} {minimum:g}"
    high = "" if maximum is None else f"{'<' if strict_max else '<='} {maximum:g}"
    rng = " and ".join(part for part in (low, high) if part)
    raise ConfigError(f"'{name}' must be {rng}, got {value!r}.")
  return value


def integer(value: Any, name: str, *, minimum: int = 0) -> int:
  """Checks that ``value`` is an integer >= ``minimum`` and returns it.

  Raises:
    ConfigError: naming the key and the value.
  """
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    if isinstance(value, float) and value.is_integer():
      value = int(value)
    else:
      raise ConfigError(f"'{name}' must be an integer, got {value!r}.")
  if value < minimum:
    raise ConfigError(f"'{name}' must be >= {minimum}, got {value!r}.")
  return int(value)


def boolean(value: Any, name: str) -> bool:
  """Checks that ``value`` is a bool and returns it.

  Raises:
    ConfigError: naming the key and the value.
  """
  if not isinstance(value, bool):
    raise ConfigError(f"'{name}' must be True or False, got {value!r}.")
  return value
