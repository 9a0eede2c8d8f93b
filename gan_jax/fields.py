"""Every config field's declared domain (type, range, choices), and the one checker of them.

A field the table does not know is an error naming the valid ones; the relations between
fields, and with the data, are `checks.py`'s.
"""

from collections.abc import Collection, Mapping
import dataclasses
import math
import numbers
from typing import Any

from ml_collections import ConfigDict

from gan_jax import augment, data, images, losses, models
from gan_jax.state import OPTIMIZERS

UPDATE_ORDERS = ('alternating', 'simultaneous')
ON_NONFINITE = ('stop', 'rollback')
COMPUTE_DTYPES = ('float32', 'bfloat16')
INT32_MAX = 2**31 - 1  # seeds become int32 arrays


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
    what = {
      'int': 'an integer',
      'float': 'a finite number',
      'bool': 'True or False',
      'str': 'a string',
      'rgb': '3 integers in 0..255 (red, green, blue)',
      'names': f'comma-separated names of {", ".join(sorted(self.choices))} (or empty)',
      'weights': 'a dict of {term: weight}',
      'kwargs': 'a dict of constructor arguments',
    }[self.kind]
    bounds = [
      f'{op} {bound}'
      for op, bound in (('>=', self.ge), ('>', self.gt), ('<=', self.le), ('<', self.lt))
      if bound is not None
    ]
    return ' '.join(part for part in (what, ' and '.join(bounds), self.note) if part)


def _int(le: int = INT32_MAX, **bounds) -> Domain:
  """An integer: a count, size or period, so one an int32 holds unless said otherwise."""
  return Domain('int', le=le, **bounds)


def _float(**bounds) -> Domain:
  return Domain('float', **bounds)


def _choice(choices: Collection) -> Domain:
  return Domain('choice', choices=choices)


def _optimizer(net: str) -> dict[str, Domain]:
  return {
    f'optimizer.{net}.name': _choice(OPTIMIZERS),
    f'optimizer.{net}.learning_rate': _float(gt=0),
    f'optimizer.{net}.b1': _float(ge=0, lt=1),
    f'optimizer.{net}.b2': _float(ge=0, lt=1),
    f'optimizer.{net}.momentum': Domain('float', ge=0, lt=1, optional=True),
  }


# Every field of every config, by dotted name, in the order they are checked.
FIELDS: dict[str, Domain] = {
  'seed': _int(ge=0, le=INT32_MAX),
  'num_seeds': _int(ge=1),
  'data.name': _choice(data.DATASETS),
  'data.data_dir': Domain('str'),
  'data.image_size': _int(gt=0, le=4096),
  'data.batch_size': _int(gt=0),
  'data.num_labeled': _int(ge=0),
  'data.labeled_batch_size': _int(ge=0, note='(0: data.batch_size)'),
  'data.device_bytes': _int(ge=0, le=2**63 - 1),  # compared with a size in bytes, not an int32
  'data.channels': _choice(data.CHANNELS),
  'data.folder': Domain('str'),
  'data.resize': _choice(images.RESIZE_MODES),
  'data.background': Domain('rgb'),
  'data.test_fraction': _float(ge=0, lt=1),
  'data.augment': Domain('names', choices=augment.POLICIES),
  'data.augment_target': _float(ge=0, le=1, note="(0: off, data.augment's transforms always)"),
  'model.generator': _choice(models.GENERATORS),
  'model.discriminator': _choice(models.DISCRIMINATORS),
  'model.latent_dim': _int(gt=0),
  'model.g_kwargs': Domain('kwargs'),
  'model.d_kwargs': Domain('kwargs'),
  'model.compute_dtype': _choice(COMPUTE_DTYPES),
  'model.g_ema_decay': _float(ge=0, lt=1, note='(0: no EMA of G)'),
  'loss.d_terms': Domain('weights', choices=losses.D_TERMS),
  'loss.g_terms': Domain('weights', choices=losses.G_TERMS),
  'loss.hparams.real_target': _float(ge=0, le=1),
  'loss.hparams.minimax': Domain('bool'),
  'loss.hparams.a': _float(),
  'loss.hparams.b': _float(),
  'loss.hparams.c': _float(),
  'loss.hparams.lazy_every': _int(gt=0, note='(the lazy terms, R1 and R2, every N D steps)'),
  **_optimizer('g'),
  **_optimizer('d'),
  'train.num_steps': _int(gt=0),
  # A Python loop in the step: each D update is compiled in, so thousands would never compile.
  'train.d_steps': _int(gt=0, le=100),
  'train.steps_per_call': _int(gt=0),
  'train.update_order': _choice(UPDATE_ORDERS),
  'train.log_every': _int(gt=0),
  'train.sample_every': _int(gt=0),
  'train.checkpoint_every': _int(gt=0),
  'train.max_checkpoints': _int(gt=0),
  'train.on_nonfinite': _choice(ON_NONFINITE),
  'train.max_rollbacks': _int(ge=0),
  'train.allow_config_change': Domain('bool'),
  'eval.every': _int(ge=0, note='(0: only --mode=eval)'),
  'eval.num_samples': _int(ge=10),
  # --mode=bench's knobs (gan_jax/bench.py), set only by code.
  'bench.trials': Domain('int', ge=1, le=INT32_MAX, optional=True),
  'bench.warmup_steps': Domain('int', ge=1, le=INT32_MAX, optional=True),
  'bench.trial_seconds': Domain('float', gt=0, optional=True),
  'bench.steps_per_trial': Domain(
    'int', ge=0, le=INT32_MAX, optional=True, note='(0: sized from the warm-up)'
  ),
  'bench.roofline_size': Domain('int', ge=1, le=INT32_MAX, optional=True),
}
# Sections: dotted prefixes of the fields; one whose fields are all optional may be absent.
SECTIONS = {'.'.join(name.split('.')[:i]) for name in FIELDS for i in range(1, name.count('.') + 1)}


def _choice_error(field: str, value: Any, choices) -> ValueError:
  return ValueError(
    f'{field}={show(value)} is not valid; valid choices: '
    f'{", ".join(sorted(map(str, choices))) or "none"}'
  )


def show(value: Any, limit: int = 80) -> str:
  """A one-line repr (a ConfigDict's own is multi-line YAML), cut at `limit` characters."""
  if isinstance(value, ConfigDict):
    value = value.to_dict()
  text = repr(value)
  return text if len(text) <= limit else text[: limit - 3] + '...'


def _is_mapping(value: Any) -> bool:
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
  if _is_mapping(value):
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
      raise ValueError(f'{field}={show(value)} must be {domain.describe()}')
    unknown = [n.strip() for n in value.split(',') if n.strip() and n.strip() not in domain.choices]
    if unknown:
      raise ValueError(
        f'{field}={show(value)}: {unknown[0]!r} is not valid; valid choices: '
        f'{", ".join(sorted(domain.choices))}'
      )
    return
  if domain.kind == 'weights':
    if not _is_mapping(value):
      raise ValueError(f'{field}={show(value)} must be {domain.describe()}')
    weight = Domain('float', ge=0)
    for name, w in value.items():
      if name not in domain.choices:
        raise ValueError(
          f'{field}.{name} is not a loss term; valid choices: {", ".join(sorted(domain.choices))}'
        )
      check_value(f'{field}.{name}', w, weight)
    return
  if domain.kind == 'kwargs':
    if not (_is_mapping(value) and all(isinstance(k, str) for k in value)):
      raise ValueError(f'{field}={show(value)} must be {domain.describe()}')
    bad = _nonfinite(value, field)
    if bad:
      raise ValueError(f'{bad} is not finite: a model argument must be')
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
    raise ValueError(f'{field}={show(value)} must be {domain.describe()}')


def _leaves(tree, prefix: str = '') -> dict[str, Any]:
  """Dotted name -> value, down to the fields of `FIELDS` (a dict-valued field is one leaf)."""
  flat = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if _is_mapping(value) and value and name not in FIELDS:
      flat.update(_leaves(value, f'{name}.'))
    else:  # an empty section too: it may be unknown
      flat[name] = value
  return flat


def unknown_field_error(name: str) -> ValueError:
  """'x.y is not a config field; valid fields of x: ...' (or of the loss terms)."""
  if not name.isprintable():  # a key drawn with a newline must not break the one-line error
    name = name.encode('unicode_escape').decode()
  if name in FIELDS or name in SECTIONS:  # optional, and absent from this config
    return ValueError(
      f'{name} is not set in this config, so it cannot be overridden; set it in the config file'
    )
  section, _, key = name.rpartition('.')
  kind = FIELDS[section].kind if section in FIELDS else None
  if kind == 'weights' and key in FIELDS[section].choices:  # reached as a section: `r1.x`
    return ValueError(f'{name} is a loss weight, a number: it has no fields')
  if kind == 'weights':
    return ValueError(
      f'{name} is not a loss term; valid choices: {", ".join(sorted(FIELDS[section].choices))}'
    )
  if kind == 'kwargs':  # reached as a section: `spectral_norm.x`
    return ValueError(f'{name} is a model argument: set it whole, --config.{name}=VALUE')
  while section and section not in SECTIONS:
    section = section.rpartition('.')[0]
  prefix = f'{section}.' if section else ''
  valid = sorted({f[len(prefix) :].split('.')[0] for f in FIELDS if f.startswith(prefix)})
  return ValueError(
    f'{name} is not a config field; valid fields of {section or "the config"}: {", ".join(valid)}'
  )


def check_fields(config: ConfigDict) -> None:
  """Every field known (`FIELDS`), present unless optional, and within its domain."""
  values = _leaves(config)
  for name, value in values.items():
    if name in SECTIONS:
      if not _is_mapping(value):
        raise ValueError(f'{name}={show(value)} must be a section: a dict of its fields')
    elif name not in FIELDS:
      raise unknown_field_error(name)
  for name, domain in FIELDS.items():
    if name in values:
      check_value(name, values[name], domain)
    elif not domain.optional:
      raise ValueError(f'{name} is missing from the config')
