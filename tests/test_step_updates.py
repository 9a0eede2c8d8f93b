"""The step's update options through `step.train_step`, each against a hand-written update.

`update_order='simultaneous'`, `train.d_steps=2`, `g_terms.feature_matching` > 0,
`loss.hparams.minimax=True` and `train.g_batch='fresh'`: each on a tiny MLP GAN (4×4 images, 8 hidden units, batch 4) run
for two steps by gan_jax's step and by the reference below, which is written from the definitions
(the losses with jnp.log and jax.nn.sigmoid, not gan_jax.losses). Both networks train with plain
SGD, so an update is exactly −lr × the gradient: Adam's first steps are ±lr whatever the
gradient's size, and would hide a wrong loss with the right signs.

The reference draws its batches and noise as step.py documents them: D update i of step t reads
real batch t·d_steps + i of the data stream and noise from the first of three keys split from
fold_in(step key, i); G's update reuses the last D update's noise and real batch, or with
g_batch='fresh' draws noise from fold_in(step key, d_steps + 1) and the real batch of the same
index from a stream of its own (G_DATA_STREAM, pool 'g_real'). The MLP D has
neither dropout nor BatchNorm, so no other key reaches these numbers.

Each test also checks that the reference with the option flipped is far from the step, so that
the comparison can tell the option apart (issue 14).
"""

import functools
from typing import NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import numpy as np
import pytest
from test_equivalence import apply_train

from configs import default
from gan_jax import models, parallel
from gan_jax import rng as rng_lib
from gan_jax import state as state_lib
from gan_jax import step as step_lib
from gan_jax.batches import DeviceBatches
from gan_jax.data import batch_indices, to_unit_range
from gan_jax.passes import StepSpec

IMAGE_SHAPE = (4, 4, 1)
NUM_CLASSES = 4
POOL, BATCH, LATENT = 16, 4, 3
LR = 0.3  # SGD, G and D: large enough that one D update changes how D scores G's fakes
NUM_STEPS = 2
# Per parameter array, ‖step − reference‖ / ‖reference − initial‖ (the distance between the two
# updates, relative to the reference's). float32 rounding: under 1e-6 here (up to 5e-6 at other
# learning rates). With the option flipped in the reference, some array is 0.6 to 1.0 of its
# update away, and every array of G at least 0.23.
SAME_UPDATE = 1e-4
OTHER_UPDATE = 0.1


class Options(NamedTuple):
  """The five options, as the reference takes them."""

  simultaneous: bool = False
  d_steps: int = 1
  feature_matching: float = 0.0
  minimax: bool = False
  fresh_g_batch: bool = False


def tiny_config(options: Options):
  """The default objective (BCE, non-saturating G) on tiny MLPs with SGD, and `options`."""
  config = default.base()
  config.data.batch_size = BATCH
  config.model.generator = config.model.discriminator = 'mlp'
  config.model.latent_dim = LATENT
  config.model.g_kwargs = config.model.d_kwargs = {'hidden': 8}
  config.optimizer.g = config.optimizer.d = {'name': 'sgd', 'learning_rate': LR, 'momentum': 0.0}
  config.train.update_order = 'simultaneous' if options.simultaneous else 'alternating'
  config.train.d_steps = options.d_steps
  config.loss.g_terms = {'bce_gen': 1.0, 'feature_matching': options.feature_matching}
  config.loss.hparams.minimax = options.minimax
  config.train.g_batch = 'fresh' if options.fresh_g_batch else 'shared'
  return config


class Setup(NamedTuple):
  """What every test shares: the networks, the mesh, the data pool and the initial state."""

  generator: nn.Module
  discriminator: nn.Module
  mesh: Mesh
  batches: DeviceBatches
  state: state_lib.GANState


@pytest.fixture(scope='module')
def setup() -> Setup:
  """The models, the mesh, a pool of 16 random 4×4 images on the device and a fresh state (the
  same for every test's config: seed 0, SGD), shared by the tests."""
  config = tiny_config(Options())
  generator, discriminator = models.build(config.model, NUM_CLASSES, IMAGE_SHAPE)
  rng = np.random.default_rng(0)
  batches = DeviceBatches(
    images=rng.integers(0, 256, (POOL, *IMAGE_SHAPE), dtype=np.uint8),
    labels=rng.integers(0, NUM_CLASSES, POOL).astype(np.int32),
    pools={
      'real': np.arange(POOL, dtype=np.int32),
      'labeled': np.zeros((1,), np.int32),
      'g_real': np.arange(POOL, dtype=np.int32),
    },
  )
  mesh = parallel.make_mesh()
  # Placed as the step places its output, so that its second call does not compile again.
  replicated = parallel.replicated(mesh)
  init = functools.partial(state_lib.create_state, config, generator, discriminator, IMAGE_SHAPE)
  state = jax.jit(init, out_shardings=replicated)()
  return Setup(generator, discriminator, mesh, jax.device_put(batches, replicated), state)


def with_d_bias(state, d_bias: float):
  """`state` with `d_bias` added to D's output bias (below 0: D calls everything fake)."""
  params = state.d.params
  output = {**params['Dense_1'], 'bias': params['Dense_1']['bias'] + d_bias}
  return state.replace(d=state.d.replace(params={**params, 'Dense_1': output}))


def run_step(config, setup, state):
  """`NUM_STEPS` steps of gan_jax's train step; returns the state and each step's metrics."""
  spec = StepSpec.from_config(config, setup.generator, setup.discriminator, setup.mesh)
  step = jax.jit(functools.partial(step_lib.train_step, spec))
  metrics = []
  for _ in range(NUM_STEPS):
    state, m = step(state, setup.batches)
    metrics.append(m)
  return state, metrics


def log_sigmoid(x):
  """log σ(x), from the definition (the tests' logits are moderate)."""
  return jnp.log(jax.nn.sigmoid(x))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def reference_step(
  generator, discriminator, options: Options, g_params, d_params, rng, step, batches
):
  """One step from the definitions: `options.d_steps` D updates (BCE) on batches and noise of
  their own, then G's update on the last one's fakes, scored by D after that update (or before
  it, `simultaneous`), or on noise and a real batch of its own (`fresh_g_batch`). G's loss: −log D(G(z)), or log(1 − D(G(z))) with `minimax`, plus
  `feature_matching` × ‖mean f(x) − mean f(G(z))‖² on D's features f. Returns the new G and D
  parameters and the last D loss and G's loss."""
  data_key = jax.random.fold_in(rng, rng_lib.DATA_STREAM)
  step_key = jax.random.fold_in(jax.random.fold_in(rng, rng_lib.STEP_STREAM), step)

  def d_out(params, images, labels):
    return apply_train(discriminator, params, {}, images, labels)[0]  # (logits [B, 1], features)

  def fakes(params, z, labels):
    return apply_train(generator, params, {}, z, labels)[0]

  for i in range(options.d_steps):
    z_key, _, _ = jax.random.split(jax.random.fold_in(step_key, i), 3)
    index = step * options.d_steps + i
    idx = batches.pools['real'][batch_indices(data_key, index, POOL, BATCH)]
    real, labels = to_unit_range(batches.images[idx]), batches.labels[idx]
    z = jax.random.normal(z_key, (BATCH, LATENT))
    fake = fakes(g_params, z, labels)

    def d_loss(params):
      real_logits = d_out(params, real, labels)[0][:, 0]
      fake_logits = d_out(params, fake, labels)[0][:, 0]
      return -jnp.mean(log_sigmoid(real_logits)) - jnp.mean(log_sigmoid(-fake_logits))

    d_before = d_params
    d_value, d_grads = jax.value_and_grad(d_loss)(d_params)
    d_params = jax.tree.map(lambda p, g: p - LR * g, d_params, d_grads)

  scoring = d_before if options.simultaneous else d_params
  if options.fresh_g_batch:
    g_data_key = jax.random.fold_in(rng, rng_lib.G_DATA_STREAM)
    idx = batches.pools['g_real'][batch_indices(g_data_key, index, POOL, BATCH)]
    real, labels = to_unit_range(batches.images[idx]), batches.labels[idx]
    z = jax.random.normal(jax.random.fold_in(step_key, options.d_steps + 1), (BATCH, LATENT))

  def g_loss(params):
    fake_logits, fake_features = d_out(scoring, fakes(params, z, labels), labels)
    fake_logits = fake_logits[:, 0]
    if options.minimax:
      loss = jnp.mean(jnp.log(1 - jax.nn.sigmoid(fake_logits)))
    else:
      loss = -jnp.mean(log_sigmoid(fake_logits))
    if options.feature_matching:
      real_features = d_out(scoring, real, labels)[1]
      gap = jnp.mean(real_features, axis=0) - jnp.mean(fake_features, axis=0)
      loss += options.feature_matching * jnp.sum(gap**2)
    return loss

  g_value, g_grads = jax.value_and_grad(g_loss)(g_params)
  g_params = jax.tree.map(lambda p, g: p - LR * g, g_params, g_grads)
  return g_params, d_params, {'d_loss': d_value, 'g_loss': g_value}


def run_reference(options: Options, setup, state):
  """`NUM_STEPS` reference steps; returns ({'g', 'd'} parameters, each step's losses)."""
  g_params, d_params, losses = state.g.params, state.d.params, []
  for t in range(NUM_STEPS):
    g_params, d_params, l = reference_step(
      setup.generator,
      setup.discriminator,
      options,
      g_params,
      d_params,
      state.rng,
      t,
      setup.batches,
    )
    losses.append(l)
  return {'g': g_params, 'd': d_params}, losses


def update_gaps(new: dict, expected: dict, initial) -> dict[str, float]:
  """Per parameter array of G and D: ‖new − expected‖ / ‖expected − initial‖."""
  new, expected, initial = jax.device_get(
    (new, expected, {'g': initial.g.params, 'd': initial.d.params})
  )
  gaps = jax.tree_util.tree_map_with_path(
    lambda path, n, e, i: np.linalg.norm(n - e) / np.linalg.norm(e - i), new, expected, initial
  )
  return {
    jax.tree_util.keystr(path): float(gap)
    for path, gap in jax.tree_util.tree_leaves_with_path(gaps)
  }


def check_against_reference(options: Options, flipped: Options, setup, d_bias: float = 0.0):
  """The step of `options` matches the reference of `options`, and not that of `flipped`."""
  initial = with_d_bias(setup.state, d_bias)
  state, metrics = run_step(tiny_config(options), setup, initial)
  new = {'g': state.g.params, 'd': state.d.params}
  assert int(state.step) == NUM_STEPS

  expected, losses = run_reference(options, setup, initial)
  gaps = update_gaps(new, expected, initial)
  far = {name: gap for name, gap in gaps.items() if not gap <= SAME_UPDATE}
  assert not far, f'parameters differ from the hand-written update by (of their update): {far}'
  for m, l in zip(metrics, losses):
    chex.assert_trees_all_close({k: m[k] for k in l}, l, rtol=1e-5)

  other, _ = run_reference(flipped, setup, initial)
  assert max(update_gaps(new, other, initial).values()) > OTHER_UPDATE, 'the option changes nothing'


def test_simultaneous_scores_g_with_d_before_its_update(setup):
  """update_order='simultaneous': G's gradient comes from D as it was before this step's D update
  (alternating: after it); D's update is the same in both orders."""
  check_against_reference(Options(simultaneous=True), Options(simultaneous=False), setup)


def test_two_d_steps_on_their_own_batches_then_g_on_the_last_fakes(setup):
  """d_steps=2: two D updates, each on its own real batch (t·2 + i) and noise (fold_in(step key,
  i)), then G's update through the last D update's noise, scored by D after both updates."""
  check_against_reference(Options(d_steps=2), Options(d_steps=1), setup)


def test_feature_matching_adds_its_weighted_gap_to_g_loss(setup):
  """feature_matching=0.5: G's loss is −log D(G(z)) + 0.5 · ‖mean f(x) − mean f(G(z))‖² on D's
  features f (Salimans et al. 2016), x the real batch of the step's D update."""
  check_against_reference(Options(feature_matching=0.5), Options(feature_matching=0.0), setup)


def test_minimax_g_minimises_log_one_minus_d(setup):
  """minimax=True: G minimises log(1 − D(G(z))) instead of −log D(G(z)). D's output bias starts
  at −2, so D calls the fakes fake (D(G(z)) ≈ 0.1), where the two gradients differ most (the
  minimax one saturates)."""
  check_against_reference(Options(minimax=True), Options(minimax=False), setup, d_bias=-2.0)


def test_fresh_g_batch_draws_gs_own_noise_and_real_batch(setup):
  """g_batch='fresh' (with feature matching, so that G's real batch counts): G's update runs on
  noise and a real batch of its own, as Salimans et al.'s reference draws them, not on the D
  update's fakes and reals; D's update is the same."""
  check_against_reference(
    Options(feature_matching=0.5, fresh_g_batch=True), Options(feature_matching=0.5), setup
  )
