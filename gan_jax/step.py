"""The training step: `d_steps` D updates then one G update, and the compiled form the loop runs.

`build_step` is the one public way to get the compiled step; the loop and `--mode=bench` both
call it. Everything the step knows of the system comes from `objective.Objective`.
"""

from collections.abc import Callable, Sequence
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from ml_collections import ConfigDict
import optax

from gan_jax import augment, losses, parallel
from gan_jax.batches import Batches, DeviceBatches, first_step, pool_sizes
from gan_jax.passes import StepSpec, augmentations, discriminate, gather, generate
from gan_jax.rng import step_keys
from gan_jax.seeds import Seeds
from gan_jax.state import GANState, NetState, ema_update


def d_loss(
  spec: StepSpec,
  params,
  batch_stats,
  inputs,
  keys: tuple[jax.Array, jax.Array],
  augment_p: jax.Array | None,
  lazy: bool,
):
  drop_key, augment_key = keys
  outputs, batch_stats = discriminate(
    spec,
    params,
    batch_stats,
    inputs,
    drop_key,
    spec.objective.gradient_inputs(lazy),
    augmentations(spec, inputs, augment_key, augment_p),
  )
  loss, parts = spec.objective.d_loss(outputs, lazy)
  # Input gradients are the loss's business only (and would give lax.cond's branches two shapes).
  return loss, (parts, {n: o._replace(input_grads=None) for n, o in outputs.items()}, batch_stats)


def lazy_loss(spec: StepSpec, params, batch_stats, inputs, keys, augment_p: jax.Array | None):
  """The lazy terms of a D update (R1, R2) from the same pass as `d_loss`'s: its inputs, keys and
  augmentations, with the input gradients those terms read."""
  drop_key, augment_key = keys
  outputs, _ = discriminate(
    spec,
    params,
    batch_stats,
    inputs,
    drop_key,
    spec.objective.gradient_inputs(True) - spec.objective.gradient_inputs(False),
    augmentations(spec, inputs, augment_key, augment_p),
  )
  return spec.objective.lazy_loss(outputs)


def d_update(
  spec: StepSpec,
  d_state: NetState,
  inputs: dict[str, losses.Batch],
  keys: tuple[jax.Array, jax.Array],
  augment_p: jax.Array | None,
  lazy: bool | jax.Array = False,
):
  """One D update; returns the new D, its loss, the terms' means, D's outputs and its gradient.
  `augment_p`: ADA's p (None: off); `lazy`: this update applies the lazy terms (R1, R2), a traced
  bool where the step decides.

  Only the lazy terms' gradient (R1's double backward) is under `lax.cond`: XLA:CPU compiles the
  weight-gradient convolutions inside a conditional's branch without canonicalising their layout
  (one took 5.2 s there against 0.064 s outside), so the update's own gradient stays outside.
  """
  (loss, (parts, outputs, batch_stats)), grads = jax.value_and_grad(
    d_loss, argnums=1, has_aux=True
  )(spec, d_state.params, d_state.batch_stats, inputs, keys, augment_p, False)
  if spec.objective.lazy_terms:
    terms = jax.value_and_grad(lazy_loss, argnums=1, has_aux=True)
    apply = lambda params: terms(spec, params, d_state.batch_stats, inputs, keys, augment_p)
    skip = lambda params: jax.tree.map(jnp.zeros_like, jax.eval_shape(apply, params))
    (lazy_value, lazy_parts), lazy_grads = jax.lax.cond(lazy, apply, skip, d_state.params)
    loss, parts = loss + lazy_value, {**parts, **lazy_parts}
    grads = jax.tree.map(jnp.add, grads, lazy_grads)
  return d_state.apply_gradients(grads=grads, batch_stats=batch_stats), loss, parts, outputs, grads


def g_loss_of_fake(
  spec: StepSpec,
  fake: jax.Array,
  d_state: NetState,
  real: losses.Batch,
  labels: jax.Array,
  keys: tuple[jax.Array, jax.Array],
  augment_p: jax.Array | None,
):
  drop_key, augment_key = keys
  inputs = spec.objective.g_inputs(real, (fake, labels))
  augment = augmentations(spec, inputs, augment_key, augment_p)
  outputs, _ = discriminate(
    spec, d_state.params, d_state.batch_stats, inputs, drop_key, augment=augment
  )
  return spec.objective.g_loss(outputs)


def g_update(
  spec: StepSpec,
  g_state: NetState,
  batch_stats,
  pull_back: Callable,
  fake: jax.Array,
  scoring_d: NetState,
  real: losses.Batch,
  labels: jax.Array,
  keys: tuple[jax.Array, jax.Array],
  augment_p: jax.Array | None,
):
  """One G update through D(`fake`), pulled back to G's parameters; returns G and its metrics."""
  (loss, parts), fake_grads = jax.value_and_grad(g_loss_of_fake, argnums=1, has_aux=True)(
    spec, fake, scoring_d, real, labels, keys, augment_p
  )
  (grads,) = pull_back(fake_grads)
  g_state = g_state.apply_gradients(grads=grads, batch_stats=batch_stats)
  return g_state, {
    'g_loss': loss,
    **{f'g/{k}': v for k, v in parts.items()},
    'g_grad_norm': optax.tree.norm(grads),
    'g_param_norm': optax.tree.norm(g_state.params),
  }


def train_step(
  spec: StepSpec, state: GANState, batches: Batches, step: jax.Array | None = None
) -> tuple[GANState, dict]:
  """One step of one seed: `d_steps` D updates, then G's update on the last D update's fakes and
  real batch, or with train.g_batch='fresh' on noise and a real batch of its own (scored by D
  after the D updates, or before the last with 'simultaneous' order). `step`: the step number
  (default `state.step`), which decides the lazy terms' updates; under the seeds' vmap it must be
  unbatched, or lax.cond turns into a select that runs both forms of the update."""
  objective = spec.objective
  step = state.step if step is None else step
  keys = step_keys(state.rng, state.step)
  d_state, lazy_parts, reals = state.d, state.lazy_parts, []
  for i in range(spec.d_steps):
    z_key, drop_key, wrong_key = jax.random.split(jax.random.fold_in(keys.step, i), 3)
    d_keys = (drop_key, jax.random.fold_in(keys.augment, i))
    data_index = state.step * spec.d_steps + i
    real = gather(spec, batches, 'real', keys.data, data_index, spec.batch_size, i)
    labels = real[1]
    fake = None
    if objective.generates:
      z = spec.shard(jax.random.normal(z_key, (spec.batch_size, spec.latent_dim)))
      # G's statistics move once per step: those of its last pass are kept.
      fake, pull_back, g_batch_stats = generate(spec, state.g, state.g.batch_stats, z, labels)
    labeled = None
    if objective.uses_labels:
      labeled = gather(
        spec, batches, 'labeled', keys.labeled, data_index, spec.labeled_batch_size, i
      )
    d_fake = None if fake is None else (jax.lax.stop_gradient(fake), labels)
    d_inputs = objective.d_inputs(
      real,
      d_fake,
      labeled,
      wrong_key,
      spec.discriminator.num_classes,
      augmentations(spec, objective.d_needs, d_keys[1], state.augment_p),
    )
    d_before = d_state
    lazy = (step * spec.d_steps + i) % objective.lazy_every == 0
    d_state, loss, parts, d_outputs, grads = d_update(
      spec, d_state, d_inputs, d_keys, state.augment_p, lazy
    )
    if lazy_parts is not None:
      lazy_parts = {n: jnp.where(lazy, parts[n], v) for n, v in lazy_parts.items()}
    if state.augment_p is not None:
      reals.append(d_outputs['real'])

  metrics = {
    'd_loss': loss,
    # A lazy term as at its last application, which a log at a step without it would miss.
    **{f'd/{k}': v for k, v in {**parts, **(lazy_parts or {})}.items()},
    'd_grad_norm': optax.tree.norm(grads),
    'd_param_norm': optax.tree.norm(d_state.params),
  }
  g_state = state.g
  if objective.trains_generator:
    if spec.fresh_g_batch:
      # Its own stream of real batches, one a step, indexed as the step's last D update's.
      real = gather(spec, batches, 'g_real', keys.g_data, data_index, spec.batch_size, i)
      labels = real[1]
      z_key = jax.random.fold_in(keys.step, spec.d_steps + 1)  # 0..d_steps are the updates'
      z = spec.shard(jax.random.normal(z_key, (spec.batch_size, spec.latent_dim)))
      fake, pull_back, g_batch_stats = generate(spec, state.g, state.g.batch_stats, z, labels)
    g_state, g_metrics = g_update(
      spec,
      state.g,
      g_batch_stats,
      pull_back,
      fake,
      d_before if spec.simultaneous else d_state,
      real,
      labels,
      (jax.random.fold_in(keys.step, spec.d_steps), jax.random.fold_in(keys.augment, spec.d_steps)),
      state.augment_p,
    )
    metrics.update(g_metrics)
  metrics.update(objective.d_accuracies(d_outputs))
  g_ema = (
    None if state.g_ema is None else ema_update(state.g_ema, g_state, spec.g_ema_decay, state.step)
  )
  d_ema = (
    None if state.d_ema is None else ema_update(state.d_ema, d_state, spec.d_ema_decay, state.step)
  )
  augment_p = state.augment_p
  if augment_p is not None:
    augment_p, metrics['ada_rt'] = adapt_augment_p(spec, augment_p, reals)
    metrics['augment_p'] = augment_p
  return state.replace(
    step=state.step + 1,
    g=g_state,
    d=d_state,
    g_ema=g_ema,
    augment_p=augment_p,
    lazy_parts=lazy_parts,
    d_ema=d_ema,
  ), metrics


def adapt_augment_p(spec: StepSpec, p: jax.Array, reals: Sequence[losses.DiscOutput]):
  """ADA's p after a step, and r_t over the step's D updates: the mean sign of D's realness on
  the real batch of each (augmented, and before that update), as stylegan2-ada reads its
  'signs/real' over an interval. Realness is the objective's, measured from its decision boundary,
  as the accuracy metrics read it. p moves by the real images D saw, a batch per update."""
  realness = jnp.concatenate([spec.objective.realness(real) for real in reals])
  rt = augment.ada_rt(realness - spec.objective.threshold)
  # stylegan2-ada adjusts p every 4 steps (ada_interval), from the signs on those steps' real
  # batches, by their images; every step, from and by this step's, is the same rate.
  return augment.ada_step(p, rt, spec.augment_target, spec.batch_size * len(reals)), rt


def watch_step(step_fn: Callable, state: GANState, batches: Batches, watch: dict):
  """`step_fn` that also remembers, on the device, the first step whose metrics were not finite.

  Checking on the host each step would sync every step; this keeps the step asynchronous and
  still names the exact step and terms when the watch is read (at logs and saves).
  """
  state, metrics = step_fn(state, batches)
  finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves(metrics)]))
  first = (watch['step'] < 0) & ~finite
  step = jnp.max(state.step)  # a K-seed state holds K equal steps
  watch = {
    'step': jnp.where(first, step, watch['step']),
    'metrics': jax.tree.map(lambda old, new: jnp.where(first, new, old), watch['metrics'], metrics),
  }
  return state, metrics, watch


def scan_steps(
  step_fn: Callable,
  order_call: Callable,
  num_steps: int,
  state: GANState,
  batches: Batches,
  watch: dict,
):
  """`num_steps` watched steps as one `lax.scan`, their batches ordered first (`order_call`);
  returns the state, the last metrics, the watch."""
  batches = order_call(state, batches, num_steps)
  if num_steps == 1:
    return watch_step(step_fn, state, first_step(batches), watch)

  def body(carry, sliced):
    state, metrics, watch = watch_step(step_fn, carry[0], batches.of_step(sliced), carry[1])
    return (state, watch), metrics

  (state, watch), metrics = jax.lax.scan(
    body, (state, watch), xs=batches.per_step(), length=num_steps
  )
  return state, jax.tree.map(lambda m: m[-1], metrics), watch


def fresh_watch(metrics_shape) -> dict:
  """A watch that has seen no non-finite step."""
  return {
    'step': jnp.asarray(-1, jnp.int32),
    'metrics': jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), metrics_shape),
  }


class CompiledStep:
  """The run's step: `calls[n](state, batches, watch) -> (state, last metrics, watch)` runs n
  watched steps in one jitted call (state and watch donated), for n = 1 and steps_per_call.

  `train_step(state, batches) -> (state, metrics)` is the plain (un-jitted) step of every seed.
  """

  def __init__(
    self,
    train_step: Callable,
    steps_per_call: int,
    sharding: NamedSharding,
    order_call: Callable = lambda state, batches, num_steps: batches,
  ):
    self.train_step = train_step
    self.steps_per_call = steps_per_call
    self.sharding = sharding
    self.order_call = order_call
    # jit compiles on first use: the single-step call only where a whole call cannot run.
    self.calls = {
      n: jax.jit(functools.partial(scan_steps, train_step, order_call, n), donate_argnums=(0, 2))
      for n in {1, steps_per_call}
    }
    self.skip = jax.jit(lambda state: state.replace(step=state.step + 1), donate_argnums=0)

  def memory_bytes(self, state: GANState, batches: Batches, watch: dict) -> int:
    """Device memory one call of the largest step needs (XLA's memory analysis of the compiled
    program: arguments, outputs and temporaries). Compiling here also warms jit's cache."""
    stats = self.calls[self.steps_per_call].lower(state, batches, watch).compile().memory_analysis()
    if stats is None:  # a backend without the analysis
      return 0
    return stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes

  def new_watch(self, state: GANState, batches: Batches) -> dict:
    """A fresh watch placed like the step's output, so the step compiles once, not again on its
    second call."""
    one_step = lambda state, batches: self.train_step(state, first_step(batches))
    metrics_shape = jax.eval_shape(one_step, state, batches)[1]
    return jax.device_put(fresh_watch(metrics_shape), self.sharding)


def build_step(
  config: ConfigDict,
  generator: nn.Module,
  discriminator: nn.Module,
  mesh: Mesh,
  seeds: Seeds,
) -> CompiledStep:
  """The compiled step of `config`, mapped over the seeds of a K-seed run (`Seeds.vectorize`)."""
  spec = StepSpec.from_config(config, generator, discriminator, mesh)
  one_step = functools.partial(train_step, spec)

  def step_fn(state: GANState, batches: Batches) -> tuple[GANState, dict]:
    every_seed = seeds.vectorize(one_step, in_axes=(0, batches.seed_axes(), None))
    # Every seed is at the same step: one step number for all lets lazy updates skip their terms.
    return every_seed(state, batches, seeds.common(state.step))

  sizes = pool_sizes(config, spec.objective)

  def order_call(state: GANState, batches: Batches, num_steps: int) -> Batches:
    """The batch positions of every step of the call, drawn before its first (each epoch's
    permutation once, not once a step)."""

    def one_seed(state: GANState, batches: DeviceBatches) -> dict:
      pool_keys = step_keys(state.rng, state.step).of_pools()
      return batches.order_of_call(pool_keys, state.step, num_steps, spec.d_steps, sizes)

    def draw_order(batches: DeviceBatches) -> dict:
      order = seeds.vectorize(one_seed, in_axes=(0, batches.seed_axes()))(state, batches)
      if seeds.stacked:  # [K, n, ...] → [n, K, ...]: the scan slices the steps' axis
        order = jax.tree.map(lambda x: jnp.moveaxis(x, 0, 1), order)
      return order

    return batches.for_call(draw_order)

  return CompiledStep(step_fn, config.train.steps_per_call, parallel.replicated(mesh), order_call)
