"""Bad input caught before anything is compiled or written: one line naming the field.

Every config field has a declared domain in `FIELDS` (type, range or choices), checked by one
generic checker; a field the table does not know is an error. The relations between fields
follow in `check_config`, those with the data in `check_data` (once it is loaded), and the
image size against the model in `check_image_shape`.
"""

from collections.abc import Mapping
import json
import os
import tempfile
from typing import Any

import jax
from ml_collections import ConfigDict

from gan_jax import augment, losses, models
from gan_jax.domains import show
from gan_jax.errors import BadInput
from gan_jax.fields import BEFORE, INT32_MAX, RESUMABLE, check_fields


def active_terms(config: ConfigDict, test) -> list[str]:
  """The loss terms (dotted names) with a weight > 0 for which `test(term)` holds."""
  return [
    f'loss.{side}.{name}'
    for side, terms in (('d_terms', losses.D_TERMS), ('g_terms', losses.G_TERMS))
    for name, weight in config.loss[side].items()
    if weight and test(terms[name])
  ]


def label_terms(config: ConfigDict) -> list[str]:
  """The loss terms (dotted names) with a weight > 0 that read the labeled subset."""
  return active_terms(config, lambda term: 'labeled' in term.needs)


def check_sigmoid_head(config: ConfigDict) -> None:
  """Terms on a real/fake sigmoid head need a D built with one (off by default)."""
  terms = active_terms(config, lambda term: term.reads_head)
  name = config.model.discriminator
  if not terms or config.model.d_kwargs.get('sigmoid_head', False):
    return  # a D without the field refuses model.d_kwargs.sigmoid_head when built
  having = [n for n, m in models.DISCRIMINATORS.items() if 'sigmoid_head' in models.model_fields(m)]
  if name in having:
    raise BadInput(
      f"{terms[0]} reads D's real/fake sigmoid head: set model.d_kwargs.sigmoid_head=True "
      f'(model.discriminator={name!r} has it off by default)'
    )
  raise BadInput(
    f"{terms[0]} reads D's real/fake sigmoid head, which model.discriminator={name!r} lacks; use "
    f'model.discriminator={" or ".join(map(repr, having))} with model.d_kwargs.sigmoid_head=True'
  )


def check_augment_target(config: ConfigDict) -> None:
  """ADA tunes the probability of data.augment's transforms from D's logits on real images."""
  target = config.data.augment_target
  if not target:
    return
  if not augment.parse_policy(config.data.augment):
    raise BadInput(
      f'data.augment_target={target} adapts how often data.augment applies, but '
      f'data.augment={config.data.augment!r} is off; set it too, e.g. {augment.REFERENCE_POLICY!r}'
    )
  if 'real' not in losses.outputs_needed(config.loss.d_terms, losses.D_TERMS):
    raise BadInput(
      f"data.augment_target={target} reads D's logits on the real batch, which no term of "
      f'loss.d_terms={show(config.loss.d_terms)} scores'
    )


def check_config(config: ConfigDict) -> None:
  """Raises a one-line ValueError naming the first bad field, before anything is built."""
  check_fields(config)
  last_seed = config.seed + config.num_seeds - 1
  if last_seed > INT32_MAX:
    raise BadInput(
      f'seed={config.seed} with num_seeds={config.num_seeds} goes past '
      f'{INT32_MAX}: seeds seed .. seed+num_seeds-1 must fit an int32'
    )
  if config.train.num_steps * config.train.d_steps > INT32_MAX:  # D's batch index is an int32
    raise BadInput(
      f'train.num_steps={config.train.num_steps} times train.d_steps='
      f'{config.train.d_steps} must be at most {INT32_MAX}'
    )
  name, images = config.data.name, config.data.folder
  if images and name != 'folder':
    raise BadInput(
      f"data.folder={images!r} is only read with data.name='folder', not data.name={name!r}"
    )
  if name == 'folder' and not (images and os.path.isdir(images)):
    raise BadInput(
      f"data.name='folder' needs data.folder=PATH, a folder of images; "
      f'data.folder={images!r} is {"not a folder" if images else "not set"}'
    )
  if not any(config.loss.d_terms.values()):
    raise BadInput(
      f'loss.d_terms={show(config.loss.d_terms)} must give a term a weight > 0: D would not train'
    )
  check_sigmoid_head(config)
  check_augment_target(config)
  # Host work (logs, grids, saves, evals) happens between calls, so its periods must be whole calls.
  per_call = config.train.steps_per_call
  for field, value in (
    ('train.log_every', config.train.log_every),
    ('train.sample_every', config.train.sample_every),
    ('train.checkpoint_every', config.train.checkpoint_every),
    ('eval.every', config.eval.every),
  ):
    if value % per_call:
      raise BadInput(f'{field}={value} must be a multiple of train.steps_per_call={per_call}')
  for field in ('batch_size', 'labeled_batch_size'):  # batches are split over the devices
    if config.data[field] % jax.device_count():
      raise BadInput(
        f'data.{field}={config.data[field]} is not divisible by the {jax.device_count()} devices'
      )


def check_data(config: ConfigDict, num_examples: int, class_counts) -> None:
  """The config against the loaded train split, before anything is compiled or written.

  num_examples: images in the train split; class_counts: its examples per class (its length
  is the number of classes).
  """
  name = config.data.name
  for field in ('batch_size', 'labeled_batch_size'):
    size = config.data[field]
    if size > num_examples:
      raise BadInput(
        f'data.{field}={size} is larger than the {num_examples} images of the {name!r} train split'
      )
  terms = label_terms(config)
  if not terms:
    return  # the label budget is not used
  num_labeled, num_classes = config.data.num_labeled, len(class_counts)
  reason = f'{terms[0]} reads labeled examples'
  if not num_classes:
    raise BadInput(f'data.name={name!r} has no labels, but {reason}')
  if num_labeled <= 0 or num_labeled % num_classes:
    raise BadInput(
      f'data.num_labeled={num_labeled} must be a positive multiple of '
      f'{num_classes} (the number of classes): {reason}'
    )
  per_class, fewest = num_labeled // num_classes, min(class_counts)
  if per_class > fewest:
    smallest = list(class_counts).index(fewest)
    raise BadInput(
      f'data.num_labeled={num_labeled} needs {per_class} examples per class but '
      f'class {smallest} has {fewest}; the limit is {fewest * num_classes}'
    )


def check_workdir(workdir: str) -> None:
  """A workdir must be a directory we can write, or creatable; checked without creating it."""
  path = os.path.abspath(workdir)
  if os.path.exists(path) and not os.path.isdir(path):
    raise BadInput(f'workdir={workdir!r} is a file, not a directory')
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise BadInput(f'workdir={workdir!r} cannot be created: {existing!r} is a file')
  try:  # os.access says yes to root on any file system: try for real, leaving nothing behind
    os.rmdir(tempfile.mkdtemp(dir=existing))
  except OSError as error:
    raise BadInput(f'workdir={workdir!r} is not writable: {error.strerror}') from None


def check_image_shape(config: ConfigDict, generator, image_shape) -> None:
  """The generator must produce images of the data's shape (shapes only: nothing is compiled)."""
  z = jax.ShapeDtypeStruct((1, config.model.latent_dim), 'float32')
  labels = jax.ShapeDtypeStruct((1,), 'int32')
  init = lambda z, y: generator.init_with_output(jax.random.PRNGKey(0), z, y, train=False)[0]
  produced = jax.eval_shape(init, z, labels)
  if tuple(produced.shape[1:]) != tuple(image_shape):
    raise BadInput(
      f'data.image_size={config.data.image_size}: model.generator={config.model.generator!r} '
      f'produces {"x".join(map(str, produced.shape[1:]))} images, the data is '
      f'{"x".join(map(str, image_shape))}'
    )


def _flatten(tree: Mapping, prefix: str = '') -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      flat.update(_flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def check_resumable(saved: Mapping, config: ConfigDict, workdir: str) -> None:
  """A workdir's checkpoints belong to one run: only the resumable fields (`fields.RESUMABLE`) may
  change; a field added since the checkpoints were written counts as its `fields.BEFORE` value.

  `train.allow_config_change=True` resumes anyway (the checkpoint must still fit the models).
  """
  if config.train.allow_config_change:
    return
  old = {**BEFORE, **_flatten(saved)}
  new = {**BEFORE, **_flatten(json.loads(config.to_json_best_effort()))}
  changed = sorted(
    k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and k not in RESUMABLE
  )
  if changed:
    diffs = ', '.join(f'{k}: {old.get(k)!r} -> {new.get(k)!r}' for k in changed)
    raise BadInput(
      f'workdir={workdir!r} holds checkpoints of another config ({diffs}); use '
      'another workdir, or --config.train.allow_config_change=True to resume anyway'
    )


def check_memory(config: ConfigDict, needed: int, capacity: int) -> None:
  """The compiled step must fit one device: `needed` bytes (XLA's estimate) against `capacity`."""
  if needed > capacity:
    raise BadInput(
      f'data.batch_size={config.data.batch_size}: the training step needs about '
      f'{needed / 2**30:.1f} GiB of device memory, the device has '
      f'{capacity / 2**30:.1f} GiB; lower data.batch_size (or the model widths)'
    )
