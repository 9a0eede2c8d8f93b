"""The optimized train step against a plain reference step on the same inputs (issue 6).

The reference is written for clarity, not speed: G's forward pass is recomputed for G's update
(gan_jax/step.py reuses the D update's pass through `jax.vjp`), D sees every input in a pass of its own
(step.py concatenates them when D has no BatchNorm), the losses are the papers' formulas written
with optax and jax.nn (not gan_jax.losses), and Adam is applied with `optax.adam` directly.

It draws its batches, noise and dropout keys exactly as step.py does (the same streams folded
from the base key and the step), so both see the same numbers. Dropout is the one exception: in
the concatenated pass step.py draws one mask for the concatenated batch, which separate passes
cannot reproduce, so where D has no BatchNorm (dcgan, gan) both steps run with D's dropout off;
with BatchNorm (sgan) D's passes are separate in both, each with its own key, and dropout stays on.
"""

import chex
import jax
import jax.numpy as jnp
import optax
import pytest
from test_train import load_config

from gan_jax import data
from gan_jax import rng as rng_lib
from gan_jax import step as step_lib
from gan_jax.run import Run

NUM_STEPS = 3
# Tolerances, float32. The two steps order their arithmetic differently (G's pass fused into its
# vjp or recomputed, D's inputs concatenated or separate), so gradients differ by rounding (~1e-6
# relative). Adam (b1 = 0.5) divides by √v: where a gradient entry is near zero, or where two
# successive ones nearly cancel in m, that rounding becomes up to a whole step of lr = 2e-4. So a
# handful of entries differ by ~1e-4 however correct the step, and parameters are compared as a
# whole: per array, ‖fast − plain‖ ≤ 5% of ‖fast − initial‖, the distance the steps moved it.
# Measured here at most 0.005% (batch 4) and 1.3% (sgan's G at batch 8, where XLA picks other
# kernels); a wrong batch, key, loss or update order moves an array as far from the reference as
# the steps moved it (~100%).
PARAM_REL_DIFF = 0.05
LOSS_RTOL = 1e-4  # later steps' losses see those parameter differences (measured up to 4e-5)
STATS_RTOL, STATS_ATOL = 1e-4, 1e-5  # BatchNorm statistics: averages, no Adam amplification


def fake_prob(logits):
  """p(fake) of N+1 logits, the fake class last."""
  return jax.nn.softmax(logits)[:, -1]


# Per system: D's loss of its outputs {name: (logits, labels)}, and G's loss of D(G(z)) logits.
REFERENCE_LOSSES = {
  # Odena 2016: labeled −log p(y|x); unlabeled real −log(1 − p_fake); fake −log p_fake.
  'sgan': (
    lambda o: (
      optax.softmax_cross_entropy_with_integer_labels(*o['labeled']).mean()
      - jnp.log(1 - fake_prob(o['real'][0])).mean()
      - jnp.log(fake_prob(o['fake'][0])).mean()
    ),
    lambda logits: -jnp.log(1 - fake_prob(logits)).mean(),
  ),
  # Radford 2016: BCE, G non-saturating −log D(G(z)).
  'dcgan': (
    lambda o: (
      optax.sigmoid_binary_cross_entropy(o['real'][0][:, 0], 1.0).mean()
      + optax.sigmoid_binary_cross_entropy(o['fake'][0][:, 0], 0.0).mean()
    ),
    lambda logits: optax.sigmoid_binary_cross_entropy(logits[:, 0], 1.0).mean(),
  ),
  # Goodfellow 2014 with one-sided label smoothing (real target 0.9).
  'gan': (
    lambda o: (
      optax.sigmoid_binary_cross_entropy(o['real'][0][:, 0], 0.9).mean()
      + optax.sigmoid_binary_cross_entropy(o['fake'][0][:, 0], 0.0).mean()
    ),
    lambda logits: optax.sigmoid_binary_cross_entropy(logits[:, 0], 1.0).mean(),
  ),
}


def apply_train(module, params, batch_stats, *args, key=None):
  """A network in training mode; returns its output and its updated BatchNorm statistics."""
  rngs = {'dropout': key} if key is not None else {}
  if not batch_stats:
    return module.apply({'params': params}, *args, train=True, rngs=rngs), batch_stats
  out, mutated = module.apply(
    {'params': params, 'batch_stats': batch_stats},
    *args,
    train=True,
    rngs=rngs,
    mutable=['batch_stats'],
  )
  return out, mutated['batch_stats']


def adam_update(net, grads, opt_config, batch_stats):
  tx = optax.adam(opt_config.learning_rate, b1=opt_config.b1, b2=opt_config.b2)
  updates, opt_state = tx.update(grads, net.opt_state, net.params)
  return net.replace(
    step=net.step + 1,
    params=optax.apply_updates(net.params, updates),
    opt_state=opt_state,
    batch_stats=batch_stats,
  )


def make_reference_step(config, system, generator, discriminator):
  """A plain `step(state, batches) -> (state, metrics)`: d_steps D updates, then G's."""
  d_loss_of, g_loss_of = REFERENCE_LOSSES[system]
  batch_size, latent_dim = config.data.batch_size, config.model.latent_dim

  def batch(batches, pool, key, index, size):
    pool = batches.pools[pool]
    idx = pool[data.batch_indices(key, index, pool.shape[0], size)]
    return data.to_unit_range(batches.images[idx]), batches.labels[idx]

  def run_d(params, batch_stats, inputs, key):
    """D on each input in its own pass, in step.py's (sorted) order and with its dropout keys;
    the running statistics are those of the pass on real images."""
    outputs, new_stats = {}, batch_stats
    for i, name in enumerate(sorted(inputs)):
      images, labels = inputs[name]
      (logits, _), stats = apply_train(
        discriminator, params, batch_stats, images, labels, key=jax.random.fold_in(key, i)
      )
      outputs[name] = (logits, labels)
      if name == 'real':
        new_stats = stats
    return outputs, new_stats

  def step(state, batches):
    rng = state.rng
    data_key = jax.random.fold_in(rng, rng_lib.DATA_STREAM)
    labeled_key = jax.random.fold_in(rng, rng_lib.LABELED_STREAM)
    step_key = jax.random.fold_in(jax.random.fold_in(rng, rng_lib.STEP_STREAM), state.step)
    d, g_stats = state.d, state.g.batch_stats
    for i in range(config.train.d_steps):
      z_key, drop_key, _ = jax.random.split(jax.random.fold_in(step_key, i), 3)
      index = state.step * config.train.d_steps + i
      real, labels = batch(batches, 'real', data_key, index, batch_size)
      z = jax.random.normal(z_key, (batch_size, latent_dim))
      fake, g_stats = apply_train(generator, state.g.params, g_stats, z, labels)
      inputs = {'real': (real, labels), 'fake': (fake, labels)}
      if system == 'sgan':
        inputs['labeled'] = batch(
          batches,
          'labeled',
          labeled_key,
          index,
          config.data.labeled_batch_size or batch_size,
        )

      def d_loss_fn(params):
        outputs, stats = run_d(params, d.batch_stats, inputs, drop_key)
        return d_loss_of(outputs), stats

      (d_loss, d_stats), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(d.params)
      d = adam_update(d, d_grads, config.optimizer.d, d_stats)

    def g_loss_fn(params):
      fake, _ = apply_train(generator, params, state.g.batch_stats, z, labels)  # recomputed
      outputs, _ = run_d(
        d.params,
        d.batch_stats,
        {'fake': (fake, labels)},
        jax.random.fold_in(step_key, config.train.d_steps),
      )
      return g_loss_of(outputs['fake'][0])

    g_loss, g_grads = jax.value_and_grad(g_loss_fn)(state.g.params)
    g = adam_update(state.g, g_grads, config.optimizer.g, g_stats)
    return state.replace(step=state.step + 1, g=g, d=d), {'d_loss': d_loss, 'g_loss': g_loss}

  return step


@pytest.mark.parametrize('system', sorted(REFERENCE_LOSSES))
def test_optimized_step_matches_plain_reference(system, tmp_path):
  config = load_config(system)
  config.data.batch_size = 4  # small: the arithmetic is under test here, not the speed
  run = Run(config, str(tmp_path))
  run.checkpointer.close()
  generator, discriminator = run.setup.generator, run.setup.discriminator
  if not run.state.d.batch_stats and 'dropout' in discriminator.__dataclass_fields__:
    discriminator = discriminator.clone(dropout=0.0)  # see the module docstring
  optimized = jax.jit(
    step_lib.build_step(
      config, generator, discriminator, run.setup.mesh, run.setup.seeds
    ).train_step
  )
  reference = jax.jit(make_reference_step(config, system, generator, discriminator))

  fast = plain = run.state
  for _ in range(NUM_STEPS):
    fast, fast_metrics = optimized(fast, run.batches)
    plain, plain_metrics = reference(plain, run.batches)
    for name in ('d_loss', 'g_loss'):
      chex.assert_trees_all_close(fast_metrics[name], plain_metrics[name], rtol=LOSS_RTOL)

  assert int(fast.step) == int(plain.step) == NUM_STEPS
  for net in ('g', 'd'):
    fast_net, plain_net, initial = getattr(fast, net), getattr(plain, net), getattr(run.state, net)
    chex.assert_trees_all_close(
      fast_net.batch_stats, plain_net.batch_stats, rtol=STATS_RTOL, atol=STATS_ATOL
    )
    relative = jax.tree_util.tree_map_with_path(
      lambda path, f, p, i: (
        jax.tree_util.keystr(path),
        float(jnp.linalg.norm(f - p) / jnp.linalg.norm(f - i)),
      ),
      fast_net.params,
      plain_net.params,
      initial.params,
    )
    ratios = jax.tree.leaves(relative, is_leaf=lambda x: isinstance(x, tuple))
    far = [(name, r) for name, r in ratios if not r <= PARAM_REL_DIFF]
    assert not far, f'{net} parameters differ by over {PARAM_REL_DIFF:.0%} of their update: {far}'
