"""What a config field may hold (`Domain`), and the check of one value against it: one line
naming the field when it is outside."""

from collections.abc import Collection, Mapping
import dataclasses
import math
import numbers
from typing import Any

from ml_collections import ConfigDict

from gan_jax.errors import BadInput


@dataclasses.dataclass(frozen=True)
class Domain:
  """What one config field may hold.

  kind: 'int' (not a bool), 'float' (finite; an int will do), 'bool', 'str', 'choice' (one
  of `choices`, of its type), 'names' (a comma-separated string of names in `choices`, '' for
  none), 'rgb' (3 integers in 0..255), 'weights' ({name in `choices`:
  float >= 0}, a loss's terms) or 'kwargs' (a dict of constructor arguments, whose names the
  model checks).
  """

  kind: str
  ge: float | None = None
  gt: float | None = None
  le: float | None = None
  lt: float | None = None
  choices: Collection[str] = ()
  optional: bool = False  # may be absent (a knob only code sets)
  note: str = ''

  def describe(self) -> str:
    names = ', '.join(map(str, sorted(self.choices, key=str)))
    what = {
      'int': 'an integer',
      'float': 'a finite number',
      'bool': 'True or False',
      'str': 'a string',
      'rgb': '3 integers in 0..255 (red, green, blue)',
      'choice': f'one of {names}',
      'names': f'comma-separated names of {names} (or empty)',
      'weights': 'a dict of {term: weight}',
      'kwargs': 'a dict of constructor arguments',
    }[self.kind]
    bounds = [
      f'{op} {bound}'
      for op, bound in (('>=', self.ge), ('>', self.gt), ('<=', self.le), ('<', self.lt))
      if bound is not None
    ]
    return ' '.join(part for part in (what, ' and '.join(bounds), self.note) if part)


def _choice_error(field: str, value: Any, choices) -> BadInput:
  return BadInput(
    f'{field}={show(value)} is not valid; valid choices: '
    f'{", ".join(sorted(map(str, choices))) or "none"}'
  )


def show(value: Any, limit: int = 80) -> str:
  """A one-line repr (a ConfigDict's own is multi-line YAML), cut at `limit` characters."""
  if isinstance(value, ConfigDict):
    value = value.to_dict()
  text = repr(value)
  return text if len(text) <= limit else text[: limit - 3] + '...'


def is_mapping(value: Any) -> bool:
  return isinstance(value, (Mapping, ConfigDict))


def _is_int(value: Any) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _in_range(value: float, domain: Domain) -> bool:
  return (
    (domain.ge is None or value >= domain.ge)
    and (domain.gt is None or value > domain.gt)
    and (domain.le is None or value <= domain.le)
    and (domain.lt is None or value < domain.lt)
  )


def _nonfinite(value: Any, field: str) -> str | None:
  """The dotted name of the first NaN or infinity in a nested value, if any."""
  if is_mapping(value):
    for key, item in value.items():
      found = _nonfinite(item, f'{field}.{key}')
      if found:
        return found
  elif isinstance(value, (list, tuple)):
    for i, item in enumerate(value):
      found = _nonfinite(item, f'{field}[{i}]')
      if found:
        return found
  elif _is_number(value) and not math.isfinite(value):
    return field
  return None


def check_value(field: str, value: Any, domain: Domain) -> None:
  """Raises a one-line ValueError if `value` is outside `domain`."""
  if domain.kind == 'choice':  # of the choice's type: True == 1, but is no channel count
    if not any(type(value) is type(c) and value == c for c in domain.choices):
      raise _choice_error(field, value, domain.choices)
    return
  if domain.kind == 'names':
    if not isinstance(value, str):
      raise BadInput(f'{field}={show(value)} must be {domain.describe()}')
    unknown = [n.strip() for n in value.split(',') if n.strip() and n.strip() not in domain.choices]
    if unknown:
      raise BadInput(
        f'{field}={show(value)}: {unknown[0]!r} is not valid; valid choices: '
        f'{", ".join(sorted(domain.choices))}'
      )
    return
  if domain.kind == 'weights':
    if not is_mapping(value):
      raise BadInput(f'{field}={show(value)} must be {domain.describe()}')
    weight = Domain('float', ge=0)
    for name, w in value.items():
      if name not in domain.choices:
        raise BadInput(
          f'{field}.{name} is not a loss term; valid choices: {", ".join(sorted(domain.choices))}'
        )
      check_value(f'{field}.{name}', w, weight)
    return
  if domain.kind == 'kwargs':
    if not (is_mapping(value) and all(isinstance(k, str) for k in value)):
      raise BadInput(f'{field}={show(value)} must be {domain.describe()}')
    bad = _nonfinite(value, field)
    if bad:
      raise BadInput(f'{bad} is not finite: a model argument must be')
    return
  valid = {
    'int': _is_int,
    'float': lambda v: _is_number(v) and math.isfinite(v),
    'bool': lambda v: isinstance(v, bool),
    'str': lambda v: isinstance(v, str),
    'rgb': lambda v: (
      isinstance(v, (list, tuple)) and len(v) == 3 and all(_is_int(c) and 0 <= c <= 255 for c in v)
    ),
  }[domain.kind]
  if not (valid(value) and (domain.kind not in ('int', 'float') or _in_range(value, domain))):
    raise BadInput(f'{field}={show(value)} must be {domain.describe()}')
