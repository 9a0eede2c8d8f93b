"""Bad input caught before anything is compiled or written: one line naming the field."""

import json
import os
import tempfile
from typing import Any, Mapping

import jax
from ml_collections import ConfigDict

from gan_jax import data, losses, models
from gan_jax.state import OPTIMIZERS

UPDATE_ORDERS = ('alternating', 'simultaneous')
ON_NONFINITE = ('stop', 'rollback')
COMPUTE_DTYPES = ('float32', 'bfloat16')
# What a resumed run may change: how long it runs and what it writes, not what it trains.
RESUMABLE_CHANGES = frozenset({
    'train.num_steps', 'train.log_every', 'train.sample_every', 'train.checkpoint_every',
    'train.max_checkpoints', 'train.on_nonfinite', 'train.max_rollbacks',
    'train.allow_config_change', 'train.steps_per_call', 'data.data_dir', 'eval.every',
    'eval.num_samples'})
# Fields added since checkpoints were first written, with the value older checkpoints imply.
ADDED_FIELDS = {'num_seeds': 1}


def _choice_error(field: str, value: Any, choices) -> ValueError:
  return ValueError(f'{field}={value!r} is not valid; valid choices: {", ".join(sorted(choices))}')


def check_config(config: ConfigDict) -> None:
  """Raises a one-line ValueError naming the first bad field, before anything is built."""
  num_seeds = config.num_seeds
  if not (isinstance(num_seeds, int) and not isinstance(num_seeds, bool) and num_seeds >= 1):
    raise ValueError(f'num_seeds={num_seeds!r} must be an integer >= 1')
  if config.model.generator not in models.GENERATORS:
    raise _choice_error('model.generator', config.model.generator, models.GENERATORS)
  if config.model.discriminator not in models.DISCRIMINATORS:
    raise _choice_error('model.discriminator', config.model.discriminator, models.DISCRIMINATORS)
  if config.model.compute_dtype not in COMPUTE_DTYPES:
    raise _choice_error('model.compute_dtype', config.model.compute_dtype, COMPUTE_DTYPES)
  if config.data.name not in data.DATASETS:
    raise _choice_error('data.name', config.data.name, data.DATASETS)
  for side, terms in (('d_terms', losses.D_TERMS), ('g_terms', losses.G_TERMS)):
    for name, weight in config.loss[side].items():
      if name not in terms:
        raise _choice_error(f'loss.{side}.{name}', weight, terms)
  for net in ('g', 'd'):
    opt = config.optimizer[net]
    if opt.name not in OPTIMIZERS:
      raise _choice_error(f'optimizer.{net}.name', opt.name, OPTIMIZERS)
    if not opt.learning_rate > 0:
      raise ValueError(f'optimizer.{net}.learning_rate={opt.learning_rate!r} must be > 0')
  if config.train.update_order not in UPDATE_ORDERS:
    raise _choice_error('train.update_order', config.train.update_order, UPDATE_ORDERS)
  if config.train.on_nonfinite not in ON_NONFINITE:
    raise _choice_error('train.on_nonfinite', config.train.on_nonfinite, ON_NONFINITE)
  for field in ('num_steps', 'd_steps', 'steps_per_call', 'log_every', 'sample_every',
                'checkpoint_every'):
    if not config.train[field] > 0:
      raise ValueError(f'train.{field}={config.train[field]!r} must be > 0')
  if not config.eval.every >= 0:
    raise ValueError(f'eval.every={config.eval.every!r} must be >= 0 (0: only --mode=eval)')
  # Host work (logs, grids, saves, evals) happens between calls, so its periods must be whole calls.
  per_call = config.train.steps_per_call
  for field, value in (('train.log_every', config.train.log_every),
                       ('train.sample_every', config.train.sample_every),
                       ('train.checkpoint_every', config.train.checkpoint_every),
                       ('eval.every', config.eval.every)):
    if value % per_call:
      raise ValueError(f'{field}={value} must be a multiple of train.steps_per_call={per_call}')
  if not config.eval.num_samples >= 10:
    raise ValueError(f'eval.num_samples={config.eval.num_samples!r} must be >= 10')
  if not config.data.batch_size > 0:
    raise ValueError(f'data.batch_size={config.data.batch_size!r} must be > 0')
  if config.data.batch_size % jax.device_count():
    raise ValueError(f'data.batch_size={config.data.batch_size} is not divisible by the '
                     f'{jax.device_count()} devices')


def check_workdir(workdir: str) -> None:
  """A workdir must be a directory we can write, or creatable; checked without creating it."""
  path = os.path.abspath(workdir)
  if os.path.exists(path) and not os.path.isdir(path):
    raise ValueError(f'workdir={workdir!r} is a file, not a directory')
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise ValueError(f'workdir={workdir!r} cannot be created: {existing!r} is a file')
  try:  # os.access says yes to root on any file system: try for real, leaving nothing behind
    os.rmdir(tempfile.mkdtemp(dir=existing))
  except OSError as error:
    raise ValueError(f'workdir={workdir!r} is not writable: {error.strerror}') from None


def check_image_shape(config: ConfigDict, generator, image_shape) -> None:
  """The generator must produce images of the data's shape (shapes only: nothing is compiled)."""
  z = jax.ShapeDtypeStruct((1, config.model.latent_dim), 'float32')
  labels = jax.ShapeDtypeStruct((1,), 'int32')
  produced = jax.eval_shape(
      lambda z, y: generator.init_with_output(jax.random.PRNGKey(0), z, y, train=False)[0], z, labels)
  if tuple(produced.shape[1:]) != tuple(image_shape):
    raise ValueError(
        f'data.image_size={config.data.image_size}: model.generator={config.model.generator!r} '
        f'produces {"x".join(map(str, produced.shape[1:]))} images, the data is '
        f'{"x".join(map(str, image_shape))}')


def _flatten(tree: Mapping, prefix: str = '') -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      flat.update(_flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def check_resumable(saved: Mapping, config: ConfigDict, workdir: str) -> None:
  """A workdir's checkpoints belong to one run: only the fields in RESUMABLE_CHANGES may change.

  `train.allow_config_change=True` resumes anyway (the checkpoint must still fit the models).
  """
  if config.train.allow_config_change:
    return
  old = {**ADDED_FIELDS, **_flatten(saved)}
  new = {**ADDED_FIELDS, **_flatten(json.loads(config.to_json_best_effort()))}
  changed = sorted(k for k in old.keys() | new.keys()
                   if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES)
  if changed:
    diffs = ', '.join(f'{k}: {old.get(k)!r} -> {new.get(k)!r}' for k in changed)
    raise ValueError(f'workdir={workdir!r} holds checkpoints of another config ({diffs}); use '
                     'another workdir, or --config.train.allow_config_change=True to resume anyway')
