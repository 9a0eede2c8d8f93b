"""The training step: `d_steps` D updates then one G update, and the compiled form the loop runs.

`build_step` is the one public way to get the compiled step; the loop and `--mode=bench` both
call it. Everything the step knows of the system comes from `losses.Objective`.
"""

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from ml_collections import ConfigDict

from gan_jax import data, losses, parallel
from gan_jax.seeds import Seeds
from gan_jax.state import GANState, NetState

# Independent random streams folded from the run's base key.
DATA_STREAM, LABELED_STREAM, STEP_STREAM = 1, 2, 3
# With K seeds, device_data's axes over the seeds: each seed draws from its own index pools
# (its labeled subset is its own); the images and labels are shared.
SEED_AXES = {'images': None, 'labels': None, 'real_indices': 0, 'labeled_indices': 0}


class StepKeys(NamedTuple):
  """The keys of one step: batch order, labeled-batch order, and this step's noise and dropout."""
  data: jax.Array
  labeled: jax.Array
  step: jax.Array


def step_keys(rng: jax.Array, step: jax.Array) -> StepKeys:
  return StepKeys(jax.random.fold_in(rng, DATA_STREAM), jax.random.fold_in(rng, LABELED_STREAM),
                  jax.random.fold_in(jax.random.fold_in(rng, STEP_STREAM), step))


def cast_floating(tree, dtype):
  """The floating-point leaves of `tree` cast to `dtype` (no-ops where they already are)."""
  return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


@dataclasses.dataclass(frozen=True)
class StepSpec:
  """What the step needs besides the state and the data, fixed for a run."""
  generator: nn.Module
  discriminator: nn.Module
  objective: losses.Objective
  batch_size: int
  labeled_batch_size: int
  latent_dim: int
  d_steps: int
  simultaneous: bool  # G is scored by D before D's update of this step
  bfloat16: bool
  batch_sharding: NamedSharding

  @classmethod
  def from_config(cls, config: ConfigDict, generator: nn.Module, discriminator: nn.Module,
                  mesh: Mesh) -> 'StepSpec':
    return cls(generator, discriminator, losses.Objective(config.loss), config.data.batch_size,
               config.data.labeled_batch_size or config.data.batch_size, config.model.latent_dim,
               config.train.d_steps, config.train.update_order == 'simultaneous',
               config.model.compute_dtype == 'bfloat16', parallel.batch_sharding(mesh))

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


def gather(spec: StepSpec, device_data: dict, pool: str, key: jax.Array, index: jax.Array,
           size: int) -> losses.Batch:
  """Batch `index` of the pool `pool` (indices into the on-device images), as [-1, 1] images."""
  idx = device_data[pool][data.batch_indices(key, index, device_data[pool].shape[0], size)]
  return spec.shard(data.to_unit_range(device_data['images'][idx])), spec.shard(device_data['labels'][idx])


def discriminate(spec: StepSpec, params, batch_stats, inputs: dict[str, losses.Batch],
                 key: jax.Array) -> tuple[dict[str, losses.DiscOutput], Any]:
  """D in training mode on each named input; returns its outputs and new BatchNorm statistics."""
  names = sorted(inputs)
  if not batch_stats:
    # No BatchNorm, so one concatenated pass gives the same logits as separate ones, faster.
    images = jnp.concatenate([inputs[n][0] for n in names])
    labels = jnp.concatenate([inputs[n][1] for n in names])
    logits, features = spec.to_float32(spec.discriminator.apply(
        {'params': spec.compute(params)}, spec.compute(images), labels, train=True,
        rngs={'dropout': key}))
    bounds = np.cumsum([inputs[n][0].shape[0] for n in names])[:-1]
    return {n: losses.DiscOutput(l, f, inputs[n][1]) for n, l, f in
            zip(names, jnp.split(logits, bounds), jnp.split(features, bounds))}, batch_stats
  # With BatchNorm, each input is normalised by its own batch statistics, as in the papers.
  outputs = {}
  for i, n in enumerate(names):
    images, labels = inputs[n]
    (logits, features), mutated = spec.discriminator.apply(
        {'params': spec.compute(params), 'batch_stats': batch_stats}, spec.compute(images), labels,
        train=True, rngs={'dropout': jax.random.fold_in(key, i)}, mutable=['batch_stats'])
    batch_stats = mutated['batch_stats']
    outputs[n] = losses.DiscOutput(*spec.to_float32((logits, features)), labels)
  return outputs, batch_stats


def generate(spec: StepSpec, g_state: NetState, batch_stats, z: jax.Array, labels: jax.Array):
  """G(z, labels) in training mode: the images, their pull-back to G's parameters, and G's new
  BatchNorm statistics (the D update's forward pass is reused for G's update)."""

  def forward(params):
    fake, mutated = spec.generator.apply({'params': spec.compute(params), 'batch_stats': batch_stats},
                                         spec.compute(z), labels, train=True, mutable=['batch_stats'])
    return fake, mutated.get('batch_stats', {})

  return jax.vjp(forward, g_state.params, has_aux=True)


def d_loss(spec: StepSpec, params, batch_stats, inputs, key):
  outputs, batch_stats = discriminate(spec, params, batch_stats, inputs, key)
  loss, parts = spec.objective.d_loss(outputs)
  return loss, (parts, outputs, batch_stats)


def d_update(spec: StepSpec, d_state: NetState, inputs: dict[str, losses.Batch], key: jax.Array):
  """One D update; returns the new D, its loss, the terms' means, D's outputs and its gradient."""
  (loss, (parts, outputs, batch_stats)), grads = jax.value_and_grad(d_loss, argnums=1, has_aux=True)(
      spec, d_state.params, d_state.batch_stats, inputs, key)
  return d_state.apply_gradients(grads=grads, batch_stats=batch_stats), loss, parts, outputs, grads


def g_loss_of_fake(spec: StepSpec, fake: jax.Array, d_state: NetState, real: losses.Batch,
                   labels: jax.Array, key: jax.Array):
  inputs = spec.objective.g_inputs(real, (fake, labels))
  outputs, _ = discriminate(spec, d_state.params, d_state.batch_stats, inputs, key)
  return spec.objective.g_loss(outputs)


def g_update(spec: StepSpec, g_state: NetState, batch_stats, pull_back: Callable, fake: jax.Array,
             scoring_d: NetState, real: losses.Batch, labels: jax.Array, key: jax.Array):
  """One G update through D(`fake`), pulled back to G's parameters; returns G and its metrics."""
  (loss, parts), fake_grads = jax.value_and_grad(g_loss_of_fake, argnums=1, has_aux=True)(
      spec, fake, scoring_d, real, labels, key)
  (grads,) = pull_back(fake_grads)
  g_state = g_state.apply_gradients(grads=grads, batch_stats=batch_stats)
  return g_state, {'g_loss': loss, **{f'g/{k}': v for k, v in parts.items()},
                   'g_grad_norm': optax.tree.norm(grads),
                   'g_param_norm': optax.tree.norm(g_state.params)}


def train_step(spec: StepSpec, state: GANState, device_data: dict) -> tuple[GANState, dict]:
  """One step of one seed: `d_steps` D updates, then G's update on the last D update's fakes
  (scored by D after that update, or before it with 'simultaneous' order)."""
  objective = spec.objective
  keys = step_keys(state.rng, state.step)
  d_state, g_batch_stats = state.d, state.g.batch_stats
  for i in range(spec.d_steps):
    z_key, drop_key, wrong_key = jax.random.split(jax.random.fold_in(keys.step, i), 3)
    data_index = state.step * spec.d_steps + i
    real = gather(spec, device_data, 'real_indices', keys.data, data_index, spec.batch_size)
    labels = real[1]
    fake = None
    if objective.generates:
      z = spec.shard(jax.random.normal(z_key, (spec.batch_size, spec.latent_dim)))
      fake, pull_back, g_batch_stats = generate(spec, state.g, g_batch_stats, z, labels)
    labeled = None
    if objective.uses_labels:
      labeled = gather(spec, device_data, 'labeled_indices', keys.labeled, data_index,
                       spec.labeled_batch_size)
    d_fake = None if fake is None else (jax.lax.stop_gradient(fake), labels)
    d_inputs = objective.d_inputs(real, d_fake, labeled, wrong_key, spec.discriminator.num_classes)
    d_before = d_state
    d_state, loss, parts, d_outputs, grads = d_update(spec, d_state, d_inputs, drop_key)

  metrics = {'d_loss': loss, **{f'd/{k}': v for k, v in parts.items()},
             'd_grad_norm': optax.tree.norm(grads), 'd_param_norm': optax.tree.norm(d_state.params)}
  g_state = state.g
  if objective.trains_generator:
    g_state, g_metrics = g_update(spec, state.g, g_batch_stats, pull_back, fake,
                                  d_before if spec.simultaneous else d_state, real, labels,
                                  jax.random.fold_in(keys.step, spec.d_steps))
    metrics.update(g_metrics)
  metrics.update(objective.d_accuracies(d_outputs))
  return GANState(step=state.step + 1, rng=state.rng, g=g_state, d=d_state), metrics


def watch_step(step_fn: Callable, state: GANState, device_data: dict, watch: dict):
  """`step_fn` that also remembers, on the device, the first step whose metrics were not finite.

  Checking on the host each step would sync every step; this keeps the step asynchronous and
  still names the exact step and terms when the watch is read (at logs and saves).
  """
  state, metrics = step_fn(state, device_data)
  finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves(metrics)]))
  first = (watch['step'] < 0) & ~finite
  step = jnp.max(state.step)  # a K-seed state holds K equal steps
  watch = {'step': jnp.where(first, step, watch['step']),
           'metrics': jax.tree.map(lambda old, new: jnp.where(first, new, old), watch['metrics'], metrics)}
  return state, metrics, watch


def scan_steps(step_fn: Callable, num_steps: int, state: GANState, device_data: dict, watch: dict):
  """`num_steps` watched steps as one `lax.scan`; returns the state, the last metrics, the watch."""
  if num_steps == 1:
    return watch_step(step_fn, state, device_data, watch)

  def body(carry, _):
    state, metrics, watch = watch_step(step_fn, carry[0], device_data, carry[1])
    return (state, watch), metrics

  (state, watch), metrics = jax.lax.scan(body, (state, watch), length=num_steps)
  return state, jax.tree.map(lambda m: m[-1], metrics), watch


def fresh_watch(metrics_shape) -> dict:
  """A watch that has seen no non-finite step."""
  return {'step': jnp.asarray(-1, jnp.int32),
          'metrics': jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), metrics_shape)}


class CompiledStep:
  """The run's step: `calls[n](state, device_data, watch) -> (state, last metrics, watch)` runs n
  watched steps in one jitted call (state and watch donated), for n = 1 and steps_per_call.

  `train_step(state, device_data) -> (state, metrics)` is the plain (un-jitted) step of every seed.
  """

  def __init__(self, train_step: Callable, steps_per_call: int, sharding: NamedSharding):
    self.train_step = train_step
    self.steps_per_call = steps_per_call
    self.sharding = sharding
    # jit compiles on first use: the single-step call only where a whole call cannot run.
    self.calls = {n: jax.jit(functools.partial(scan_steps, train_step, n), donate_argnums=(0, 2))
                  for n in {1, steps_per_call}}
    self.skip = jax.jit(lambda state: state.replace(step=state.step + 1), donate_argnums=0)

  def new_watch(self, state: GANState, device_data: dict) -> dict:
    """A fresh watch placed like the step's output, so the step compiles once, not again on its
    second call."""
    metrics_shape = jax.eval_shape(self.train_step, state, device_data)[1]
    return jax.device_put(fresh_watch(metrics_shape), self.sharding)


def build_step(config: ConfigDict, generator: nn.Module, discriminator: nn.Module, mesh: Mesh,
               seeds: Seeds) -> CompiledStep:
  """The compiled step of `config`, vmapped over the seeds of a K-seed run."""
  spec = StepSpec.from_config(config, generator, discriminator, mesh)

  def one_step(state: GANState, device_data: dict) -> tuple[GANState, dict]:
    return train_step(spec, state, device_data)

  return CompiledStep(seeds.vectorize(one_step, in_axes=(0, SEED_AXES)),
                      config.train.steps_per_call, parallel.replicated(mesh))
