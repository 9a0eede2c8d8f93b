"""The training-mode passes the step is made of: the batches it draws, D on its named inputs
(with input gradients where a term reads them), G with its pull-back, and DiffAugment of D's
inputs; `StepSpec` holds what they need besides the state and the data."""

from collections.abc import Callable, Mapping
import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from ml_collections import ConfigDict
import numpy as np

from gan_jax import augment, data, losses, parallel
from gan_jax.batches import Batches
from gan_jax.objective import Objective
from gan_jax.state import NetState


def cast_floating(tree, dtype):
  """The floating-point leaves of `tree` cast to `dtype` (no-ops where they already are)."""
  return jax.tree.map(
    lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
  )


@dataclasses.dataclass(frozen=True)
class StepSpec:
  """What the step needs besides the state and the data, fixed for a run."""

  generator: nn.Module
  discriminator: nn.Module
  objective: Objective
  batch_size: int
  labeled_batch_size: int
  latent_dim: int
  d_steps: int
  simultaneous: bool  # G is scored by D before D's update of this step
  fresh_g_batch: bool  # G's update draws its own noise and real batch
  bfloat16: bool
  batch_sharding: NamedSharding
  augment: tuple[str, ...]  # DiffAugment's policy, () = off
  augment_target: float  # ADA's target r_t, 0 = off (every transform on every image)
  g_ema_decay: float
  d_ema_decay: float

  @classmethod
  def from_config(
    cls, config: ConfigDict, generator: nn.Module, discriminator: nn.Module, mesh: Mesh
  ) -> 'StepSpec':
    return cls(
      generator,
      discriminator,
      Objective(config.loss),
      config.data.batch_size,
      config.data.labeled_batch_size or config.data.batch_size,
      config.model.latent_dim,
      config.train.d_steps,
      config.train.update_order == 'simultaneous',
      config.train.g_batch == 'fresh',
      config.model.compute_dtype == 'bfloat16',
      parallel.batch_sharding(mesh),
      augment.parse_policy(config.data.augment),
      config.data.augment_target,
      config.model.g_ema_decay,
      config.model.d_ema_decay,
    )

  # Mixed precision at the networks' boundary: parameters, optimizer state, BatchNorm
  # statistics, losses and metrics stay in the state's dtype (float32); with bfloat16 the layers
  # compute in bfloat16 and gradients flow back through the cast. float32 casts nothing (so a
  # float64 state stays float64 in tests).
  def compute(self, tree):
    return cast_floating(tree, jnp.bfloat16) if self.bfloat16 else tree

  def to_float32(self, tree):
    return cast_floating(tree, jnp.float32) if self.bfloat16 else tree

  def shard(self, x: jax.Array) -> jax.Array:
    return jax.lax.with_sharding_constraint(x, self.batch_sharding)


def gather(
  spec: StepSpec,
  batches: Batches,
  pool: str,
  key: jax.Array,
  index: jax.Array,
  size: int,
  d_step: int,
) -> losses.Batch:
  """Batch `index` (D update `d_step` of its step) of the pool `pool`, as [-1, 1] images: gathered
  on the device, or the one the host streamed for it."""
  images, labels = batches.batch(pool, key, index, size, d_step)
  return spec.shard(data.to_unit_range(images)), spec.shard(labels)


def apply_d(
  spec: StepSpec,
  params,
  batch_stats,
  images: jax.Array,
  labels: jax.Array,
  key: jax.Array,
  with_input_grads: bool,
  augment: Callable[[jax.Array], jax.Array] | None = None,
):
  """One training-mode pass of D on `augment(images)`: (logits, features, ∇ of the objective's
  realness w.r.t. `images` or None, the logit of D's real/fake sigmoid head or None) and the
  statistics it would update. The gradient is taken through the augmentation, with respect to the
  images before it, as stylegan2-ada's R1 (its Dr1 phase) and DiffAugment's low-shot code take it."""

  def run(images):
    if augment is not None:
      images = augment(images)
    variables = {
      'params': spec.compute(params),
      **({'batch_stats': batch_stats} if batch_stats else {}),
    }
    out, mutated = spec.discriminator.apply(
      variables,
      spec.compute(images),
      labels,
      train=True,
      rngs={'dropout': key},
      mutable=['batch_stats'],
    )
    logits, features, *head = spec.to_float32(out)  # a D with a sigmoid head gives its logit third
    head = head[0] if head else None
    realness = spec.objective.realness(losses.DiscOutput(logits, features, labels, None, head))
    return jnp.sum(realness), (logits, features, head, mutated.get('batch_stats', batch_stats))

  if not with_input_grads:
    logits, features, real_fake, new_stats = run(images)[1]
    return (logits, features, None, real_fake), new_stats
  (_, (logits, features, real_fake, new_stats)), grads = jax.value_and_grad(run, has_aux=True)(
    images
  )
  return (logits, features, grads, real_fake), new_stats


def discriminate(
  spec: StepSpec,
  params,
  batch_stats,
  inputs: dict[str, losses.Batch],
  key: jax.Array,
  gradient_inputs=frozenset(),
  augment: Mapping[str, Callable[[jax.Array], jax.Array]] | None = None,
) -> tuple[dict[str, losses.DiscOutput], Any]:
  """D in training mode on each named input, through its `augment` (`augmentations`; none where
  absent); returns its outputs (with input gradients for `gradient_inputs`) and its new
  statistics."""
  names, augment = sorted(inputs), augment or {}
  if not batch_stats:
    # No statistics, so one concatenated pass gives the same logits as separate ones, faster.
    images = jnp.concatenate([inputs[n][0] for n in names])
    labels = jnp.concatenate([inputs[n][1] for n in names])
    bounds = np.cumsum([inputs[n][0].shape[0] for n in names])[:-1]

    def augment_each(images):
      parts = jnp.split(images, bounds)
      return jnp.concatenate([augment[n](x) if n in augment else x for n, x in zip(names, parts)])

    outputs, _ = apply_d(
      spec,
      params,
      batch_stats,
      images,
      labels,
      key,
      bool(gradient_inputs),
      augment_each if augment else None,
    )
    parts = [jnp.split(x, bounds) if x is not None else [None] * len(names) for x in outputs]
    return {
      n: losses.DiscOutput(l, f, inputs[n][1], g if n in gradient_inputs else None, h)
      for n, l, f, g, h in zip(names, *parts)
    }, batch_stats
  # With BatchNorm, each input is normalised by its own batch statistics, as in the papers. Only
  # the pass on real images updates the running statistics (and spectral norm's vectors), so that
  # D in inference mode sees the statistics of real data, updated once per D update.
  outputs, new_stats = {}, batch_stats
  for i, n in enumerate(names):
    images, labels = inputs[n]
    (logits, features, grads, real_fake), stats = apply_d(
      spec,
      params,
      batch_stats,
      images,
      labels,
      jax.random.fold_in(key, i),
      n in gradient_inputs,
      augment.get(n),
    )
    if n == spec.objective.statistics_input:
      new_stats = stats
    outputs[n] = losses.DiscOutput(logits, features, labels, grads, real_fake)
  return outputs, new_stats


def generate(spec: StepSpec, g_state: NetState, batch_stats, z: jax.Array, labels: jax.Array):
  """G(z, labels) in training mode: the images, their pull-back to G's parameters, and G's new
  BatchNorm statistics (the D update's forward pass is reused for G's update)."""

  def forward(params):
    fake, mutated = spec.generator.apply(
      {'params': spec.compute(params), 'batch_stats': batch_stats},
      spec.compute(z),
      labels,
      train=True,
      mutable=['batch_stats'],
    )
    return fake, mutated.get('batch_stats', {})

  return jax.vjp(forward, g_state.params, has_aux=True)


def augmentations(
  spec: StepSpec, names, key: jax.Array, p: jax.Array | None
) -> dict[str, Callable[[jax.Array], jax.Array]]:
  """DiffAugment of each of D's inputs `names`, real and fake alike, each with a key of its own
  (none when off): each transform with ADA's probability `p`, or on every image where `p` is None
  (ADA off). WGAN-GP's interpolates are none of them: `Objective.d_inputs` builds them
  between augmented real and fake images, which D then sees as they are."""
  if not spec.augment:
    return {}
  probability = 1.0 if p is None else p
  return {
    n: functools.partial(
      augment.diff_augment,
      key=jax.random.fold_in(key, i),
      policy=spec.augment,
      probability=probability,
    )
    for i, n in enumerate(sorted(names))
    if n != 'interpolated'
  }
