"""Property-based tests of the input checks: any value of any field is accepted or rejected in
one line naming it, and nothing is written.

Hypothesis draws values for every field of `fields.FIELDS` (so every field of every config)
in every config and variant: valid ones and invalid ones (negative, zero, huge, NaN, wrong
types, unknown names), set as a config file built in code would set them, or given as
`--config.x=...` on the command line. Each example runs, in this process, what launch.py and
gan_jax/run.py run before anything is compiled or written: `launch.check`, then
`checks.check_data` against the mnist5k train split and `checks.check_image_shape` (shapes
only). No training, no compile. It must end in acceptance or in one ValueError line naming the
field (launch.py: exit 0, or exit 2 with one `error:` line); any other exception would be a
traceback, a bug the checks let through. A fixed number of examples from a fixed seed
(`derandomize`): CI runs the same examples every time, in about 30 s.
"""

import importlib
import itertools
import math
import os

from absl import flags
from hypothesis import HealthCheck, assume, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from ml_collections import ConfigDict
import numpy as np
import pytest

from gan_jax import checks, data, domains, fields, models
import launch

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
# Every configs/*.py but the shared defaults.
CONFIG_NAMES = tuple(
  sorted(
    name[:-3]
    for name in os.listdir(os.path.join(REPO, 'configs'))
    if name.endswith('.py') and name not in ('__init__.py', 'default.py')
  )
)


def _variants(name: str) -> list[str | None]:
  """None and every combination of the config's variants, e.g. 'bce,smoke'."""
  valid = sorted(importlib.import_module(f'configs.{name}').VARIANTS)
  return [
    None,
    *(','.join(c) for r in range(1, len(valid) + 1) for c in itertools.combinations(valid, r)),
  ]


CONFIGS = [(name, variant) for name in CONFIG_NAMES for variant in _variants(name)]
FUZZ = settings(
  max_examples=40,
  derandomize=True,
  deadline=None,
  database=None,
  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def load(name: str, variant: str | None) -> ConfigDict:
  return importlib.import_module(f'configs.{name}').get_config(variant)


# --- values ---------------------------------------------------------------------------------

HUGE = st.sampled_from([2**31, 2**31 - 1, 2**53, 2**63, 10**30])
JUNK = st.one_of(
  st.none(),
  st.booleans(),
  st.text(max_size=8),
  st.binary(max_size=4),
  st.integers(-(2**40), 2**40),
  HUGE,
  st.floats(allow_nan=True, allow_infinity=True),
  st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, -1.0, 0, '', '0', 'nan']),
  st.lists(st.integers(-3, 3), max_size=3),
  st.tuples(st.integers()),
  st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def _near(bound) -> st.SearchStrategy:
  """Values at and around a bound of a range."""
  return st.sampled_from([bound - 1, bound, bound + 1, bound * 2, -bound])


def values(domain: domains.Domain) -> st.SearchStrategy:
  """Valid and invalid values for a field of `domain`."""
  bounds = [b for b in (domain.ge, domain.gt, domain.le, domain.lt) if b is not None]
  near = [_near(b) for b in bounds]
  if domain.kind == 'int':
    typed = [
      st.integers(-3, 130),
      st.integers(-(2**63), 2**63),
      HUGE,
      *near,
      st.integers(1, 64).map(float),
    ]  # 64.0: an int's value, a float's type
  elif domain.kind == 'float':
    typed = [
      st.floats(allow_nan=True, allow_infinity=True),
      st.floats(-2, 2),
      st.integers(-2, 2),
      *[n.map(float) for n in near],
      *[st.just(b + d) for b in bounds for d in (-1e-9, 1e-9)],
    ]
  elif domain.kind == 'bool':
    typed = [st.booleans(), st.sampled_from([0, 1, 'True', 'false', math.nan])]
  elif domain.kind == 'str':
    typed = [st.text(max_size=20)]
  elif domain.kind == 'choice' and all(isinstance(c, str) for c in domain.choices):
    names = sorted(domain.choices)
    typed = [
      st.sampled_from(names),
      st.sampled_from(names).map(str.upper),
      st.sampled_from(names).map(lambda n: n + 'x'),
      st.text(max_size=10),
    ]
  elif domain.kind == 'choice':  # numbers, e.g. data.channels
    choices = sorted(domain.choices)
    typed = [st.sampled_from(choices), st.sampled_from(choices).map(float), st.integers(-1, 5)]
  elif domain.kind == 'names':
    names = st.one_of(st.sampled_from(sorted(domain.choices)), st.text(max_size=6))
    typed = [st.lists(names, max_size=4).map(','.join), st.just('')]
  elif domain.kind == 'rgb':
    channel = st.one_of(st.integers(0, 255), st.integers(-300, 300), st.floats(0, 255))
    typed = [
      st.tuples(channel, channel, channel),
      st.lists(st.integers(0, 255), max_size=4),
      st.just((255, 255, 255)),
    ]
  elif domain.kind == 'weights':
    names = st.one_of(
      st.sampled_from(sorted(domain.choices)), st.from_regex(r'[a-z_]{1,10}', fullmatch=True)
    )
    weight = values(domains.Domain('float', ge=0))
    typed = [
      st.dictionaries(names, weight, max_size=3),
      st.dictionaries(
        st.sampled_from(sorted(domain.choices)), st.floats(0, 2), min_size=1, max_size=3
      ),
    ]
  else:  # 'kwargs': only the type and finiteness are checked here; the model checks the names
    argument = st.one_of(st.integers(), st.floats(), st.booleans(), st.text(max_size=4))
    typed = [st.dictionaries(st.from_regex(r'[a-z_]{1,8}', fullmatch=True), argument, max_size=3)]
  return st.one_of(*typed, JUNK)


# --- what launch.py runs before anything is compiled or written -----------------------------


@pytest.fixture(scope='module')
def split():
  """(number of images, per-class counts) of the mnist5k train split."""
  _, labels = data.load_split('mnist5k', 'train')
  return len(labels), np.bincount(labels).tolist()


@pytest.fixture(scope='module')
def workdirs(tmp_path_factory):
  """Workdirs of each kind the checks meet: absent, empty, holding a run, a file."""
  root = tmp_path_factory.mktemp('workdirs')
  (root / 'empty').mkdir()
  (root / 'held' / 'checkpoints').mkdir(parents=True)
  (root / 'held' / 'config.json').write_text('{}\n')
  (root / 'file').write_text('not a directory\n')
  return {kind: str(root / kind) for kind in ('absent', 'empty', 'held', 'file')}


def snapshot(path: str):
  """Relative path -> mtime of everything under `path`, but not its own mtime (the writability
  probe creates and removes an empty directory in it); None if absent."""
  if not os.path.lexists(path):
    return None
  if not os.path.isdir(path):
    return os.stat(path).st_size, os.stat(path).st_mtime_ns
  return {
    os.path.relpath(full, path): os.lstat(full).st_mtime_ns
    for root, dirs, files in os.walk(path)
    for full in (os.path.join(root, name) for name in dirs + files)
  }


def preflight(config: ConfigDict, workdir: str, split) -> str | None:
  """launch.py's checks and the data relations: None if accepted, else the one-line error.

  Any other exception propagates: it would be a traceback, the bug this test looks for.
  """
  num_examples, class_counts = split
  before = snapshot(workdir)
  try:
    launch.check(config, workdir)
    if config.data.name == 'mnist5k':  # the only split prepared here
      checks.check_data(config, num_examples, class_counts)
      # The image size against the model: shapes only, of the images the data will become.
      shape = (config.data.image_size, config.data.image_size, config.data.channels)
      generator, _ = models.build(config.model, len(class_counts), shape)
      checks.check_image_shape(config, generator, shape)
    message = None
  except ValueError as error:
    message = str(error)
    assert message and '\n' not in message and 'Traceback' not in message, message
  assert snapshot(workdir) == before, 'the checks changed the workdir'
  if currently_in_test_context():  # the share of each outcome: --hypothesis-show-statistics
    event('accepted' if message is None else 'rejected')
  return message


def with_value(config: ConfigDict, field: str, value) -> ConfigDict:
  """`config` with `field` set to `value` as a config file may set it (any type)."""
  tree = config.to_dict()
  *sections, key = field.split('.')
  node = tree
  for section in sections:
    node = node.setdefault(section, {})
  node[key] = value
  try:
    return ConfigDict(tree)
  except Exception:  # noqa: BLE001  (ml_collections refuses it: no config file could hold it)
    assume(False)


def names_field(message: str, field: str) -> bool:
  return field in message or message.startswith('workdir=')


# --- the properties ---------------------------------------------------------------------------


def test_every_config_passes_the_checks(split, workdirs):
  for name, variant in CONFIGS:
    assert preflight(load(name, variant), workdirs['absent'], split) is None, (name, variant)


@pytest.mark.parametrize('field', list(fields.FIELDS))
@FUZZ
@given(drawn=st.data())
def test_any_value_of_any_field(field, drawn, split, workdirs):
  name, variant = drawn.draw(st.sampled_from(CONFIGS), label='config')
  value = drawn.draw(values(fields.FIELDS[field].domain), label='value')
  workdir = workdirs[drawn.draw(st.sampled_from(sorted(workdirs)), label='workdir')]
  message = preflight(with_value(load(name, variant), field, value), workdir, split)
  if message is not None:
    assert names_field(message, field), message


@FUZZ
@given(
  config=st.sampled_from(CONFIGS),
  section=st.sampled_from(sorted({''} | fields.SECTIONS)),
  key=st.from_regex(r'[a-z_][a-z0-9_]{0,11}', fullmatch=True),
  value=JUNK,
)
def test_an_unknown_field_is_named_with_the_valid_ones(
  config, section, key, value, split, workdirs
):
  field = f'{section}.{key}' if section else key
  assume(
    field not in fields.FIELDS
    and field not in fields.SECTIONS
    and not any(f.startswith(field + '.') for f in fields.FIELDS)
  )
  message = preflight(with_value(load(*config), field, value), workdirs['absent'], split)
  assert message and field in message and 'not a config field; valid fields of' in message, message


@FUZZ
@given(
  config=st.sampled_from(CONFIGS),
  field=st.sampled_from([f for f, d in fields.FIELDS.items() if not d.domain.optional]),
)
def test_a_missing_field_is_named(config, field, split, workdirs):
  tree = load(*config).to_dict()
  *sections, key = field.split('.')
  node = tree
  for section in sections:
    node = node[section]
  del node[key]
  message = preflight(ConfigDict(tree), workdirs['absent'], split)
  assert message == f'{field} is missing from the config'


# --- the command line -------------------------------------------------------------------------


def parse(argv: list[str]):
  """`launch.py ARGV`'s flag parsing in this process: (config, None) or (None, error line)."""
  flag_values = flags.FlagValues()
  try:
    return launch.parse_into(flag_values, launch.define_flags(flag_values).config, argv), None
  except ValueError as error:  # launch.parse_flags turns it into 'error: LINE', exit 2
    return None, str(error)


def text_of(value) -> str:
  return repr(value) if isinstance(value, (dict, list, tuple)) else str(value)


@pytest.mark.parametrize('name', CONFIG_NAMES)
@FUZZ
@given(drawn=st.data())
def test_any_override_on_the_command_line(name, drawn, split, workdirs):
  field = drawn.draw(st.sampled_from(sorted(fields.FIELDS)), label='field')
  value = drawn.draw(
    st.one_of(values(fields.FIELDS[field].domain).map(text_of), st.text(max_size=12)), label='text'
  )
  variant = drawn.draw(st.sampled_from(_variants(name)), label='variant')
  assume('\x00' not in value)  # no command line can hold one
  config_arg = f'--config={REPO}/configs/{name}.py' + (f':{variant}' if variant else '')
  override = f'--config.{field}={value}'
  config, error = parse(['launch.py', config_arg, override])
  if error is not None:
    assert error and '\n' not in error and launch.printable(override) in error, error
    return
  message = preflight(config, workdirs['absent'], split)
  if message is not None:
    assert names_field(message, field), message


@FUZZ
@given(name=st.sampled_from(CONFIG_NAMES), variant=st.text(max_size=12))
def test_any_config_variant(name, variant, split, workdirs):
  valid = set(importlib.import_module(f'configs.{name}').VARIANTS)
  config_arg = f'--config={REPO}/configs/{name}.py:{variant}'
  config, error = parse(['launch.py', config_arg])
  given_names = {v.strip() for v in variant.split(',')} - {''}
  if given_names <= valid:
    assert error is None, error
    assert preflight(config, workdirs['absent'], split) is None
  else:
    assert error and '\n' not in error and error.startswith(launch.printable(config_arg)), error
    assert 'valid choices: ' + ', '.join(sorted(valid)) in error, error


def test_an_unknown_key_with_a_newline_is_named_on_one_line():
  """What the fuzz test found once (a nested key '\\n' under an unknown field): still one line."""
  config = load('dcgan', None)
  config['_'] = {'\n': 0}
  with pytest.raises(ValueError) as error:
    checks.check_config(config)
  assert '\n' not in str(error.value) and str(error.value).startswith('_.\\n is not a config field')


@pytest.mark.parametrize(
  'field',
  [
    f for f, d in fields.FIELDS.items() if d.domain.kind == 'int' and (d.domain.le or 0) > 2**31 - 1
  ],
)
def test_an_integer_field_past_the_int32_range(field, split, workdirs):
  """A field that no int32 holds (data.device_bytes: 16 GiB of GPU memory) takes such values."""
  config = load('sgan', None)
  limit = fields.FIELDS[field].domain.le
  for value in (2**31, 16 * 2**30, limit):
    assert preflight(with_value(config, field, value), workdirs['absent'], split) is None, value
  message = preflight(with_value(config, field, limit + 1), workdirs['absent'], split)
  assert message and message.startswith(f'{field}='), message
