"""Improved GAN's MNIST networks (models/improved_gan.py) and their layers (models/weight_norm.py)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from gan_jax.models.improved_gan import ImprovedGANDiscriminator, ImprovedGANGenerator
from gan_jax.models.weight_norm import WeightNormDense

BATCH = 32
LATENT = 100
KEY = jax.random.key(0)
LABELS = jnp.zeros(BATCH, jnp.int32)


def count(tree) -> int:
  return sum(leaf.size for leaf in jax.tree.leaves(tree))


@pytest.fixture(scope='module')
def images():
  return jax.random.uniform(jax.random.key(1), (BATCH, 28, 28, 1), minval=-1, maxval=1)


@pytest.fixture(scope='module')
def d_init(images):
  """D, its variables and the init pass's (logits, features), noise on as in the reference."""
  d = ImprovedGANDiscriminator()
  init = lambda x: d.init_with_output({'params': KEY, 'dropout': KEY}, x, LABELS, train=False)
  out, variables = jax.jit(init)(images)
  return d, variables, out


@pytest.fixture(scope='module')
def g_init():
  g = ImprovedGANGenerator()
  z = jax.random.normal(jax.random.key(2), (BATCH, LATENT))
  return g, g.init({'params': KEY}, z, LABELS, train=False), z


def test_shapes_and_the_zero_fake_logit(d_init, g_init, images):
  d, variables, _ = d_init
  logits, features = d.apply(variables, images, LABELS, train=False)
  assert logits.shape == (BATCH, 11) and features.shape == (BATCH, 250)
  assert np.all(logits[:, -1] == 0)
  g, g_vars, z = g_init
  fake = g.apply(g_vars, z, LABELS, train=False)
  assert fake.shape == (BATCH, 28, 28, 1)


def test_parameter_count_is_the_references():
  """The reference's Lasagne layers: D's theta, weight_scale, b per layer (weight_scale trains in
  the last only); G's Dense without bias → BN shift (no scale) ×2, then W, b, W_scale."""
  d_sizes = [784, 1000, 500, 250, 250, 250, 10]
  d_params = sum(i * o + 2 * o for i, o in zip(d_sizes, d_sizes[1:]))
  d_fixed_scales = sum(d_sizes[1:-1])
  assert (d_params, d_params - d_fixed_scales) == (1_541_020, 1_538_770)
  g_params = 100 * 500 + 500 + 500 * 500 + 500 + 500 * 784 + 2 * 784
  assert g_params == 694_568

  images = jnp.zeros((2, 28, 28, 1))
  d_vars = jax.eval_shape(
    lambda: ImprovedGANDiscriminator().init(KEY, images, LABELS[:2], train=False)
  )
  assert count(d_vars['params']) == d_params
  fixed = sum(d_vars['params'][f'WeightNormDense_{i}']['scale'].size for i in range(5))
  assert fixed == d_fixed_scales
  g_vars = jax.eval_shape(
    lambda: ImprovedGANGenerator().init(KEY, jnp.zeros((2, LATENT)), LABELS[:2], train=False)
  )
  assert count(g_vars['params']) == g_params
  assert count(g_vars['batch_stats']) == 2 * 2 * 500  # the reference's avg_batch_mean/var


@pytest.mark.parametrize('init_scale', [1.0, 0.5])
def test_data_dependent_init_standardises_the_init_batch(init_scale):
  x = jax.random.normal(jax.random.key(3), (64, 20)) * 3 + 1
  layer = WeightNormDense(8, init_scale=init_scale)
  y, variables = layer.init_with_output(KEY, x)
  np.testing.assert_allclose(layer.apply(variables, x), y, atol=1e-5)
  np.testing.assert_allclose(jnp.mean(y, 0), 0, atol=1e-5)
  np.testing.assert_allclose(jnp.std(y, 0), init_scale, rtol=1e-4)
  # The direction keeps the reference's N(0, 0.1) draw; the scale absorbs ‖v‖ and the data.
  assert 0.07 < float(jnp.std(variables['params']['kernel'])) < 0.13


def test_a_one_image_init_gives_finite_parameters():
  """create_state's shape-only init: one zero image, so no unit varies over the batch."""
  d = ImprovedGANDiscriminator()
  init = lambda x: d.init({'params': KEY, 'dropout': KEY}, x, LABELS[:1], train=False)
  variables = jax.jit(init)(jnp.zeros((1, 28, 28, 1)))
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(variables))


def test_every_d_layer_is_standardised_on_the_init_pass(d_init, images):
  """The init pass is a train-mode pass with the init's 'dropout' key: replayed, it gives every
  layer's pre-activations mean 0 and std 1 over the init batch."""
  d, variables, init_out = d_init
  out, state = d.apply(
    variables,
    images,
    LABELS,
    train=True,
    rngs={'dropout': KEY},
    capture_intermediates=lambda module, _: isinstance(module, WeightNormDense),
    mutable=['intermediates'],
  )
  np.testing.assert_allclose(out[0], init_out[0], atol=1e-5)
  layers = state['intermediates']
  assert len(layers) == 6
  for name, layer in layers.items():
    (pre,) = layer['__call__']
    np.testing.assert_allclose(jnp.mean(pre, 0), 0, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(jnp.std(pre, 0), 1, rtol=1e-3, err_msg=name)


def test_init_noise_follows_the_reference_or_is_off(images):
  key = {'params': KEY, 'dropout': KEY}
  noisy = ImprovedGANDiscriminator().init(key, images, LABELS, train=False)
  clean = ImprovedGANDiscriminator(init_noise=False).init(key, images, LABELS, train=False)
  noisy, clean = noisy['params']['WeightNormDense_0'], clean['params']['WeightNormDense_0']
  np.testing.assert_array_equal(noisy['kernel'], clean['kernel'])  # the same direction v
  assert not np.allclose(noisy['scale'], clean['scale'])  # set from other pre-activations


def test_inference_is_deterministic_and_train_noise_follows_the_key(d_init, images):
  d, variables, _ = d_init
  apply = lambda train, key: d.apply(variables, images, LABELS, train=train, rngs={'dropout': key})
  np.testing.assert_array_equal(apply(False, KEY)[0], apply(False, jax.random.key(9))[0])
  np.testing.assert_array_equal(apply(True, KEY)[0], apply(True, KEY)[0])
  assert not np.allclose(apply(True, KEY)[0], apply(True, jax.random.key(9))[0])
  assert not np.allclose(apply(True, KEY)[0], apply(False, KEY)[0])


def test_only_the_output_scale_of_d_trains(d_init, images):
  d, variables, _ = d_init

  def loss(params):
    logits, features = d.apply(
      {'params': params}, images, LABELS, train=True, rngs={'dropout': KEY}
    )
    return jnp.sum(jax.nn.log_softmax(logits)[:, 0]) + jnp.sum(features)

  grads = jax.jit(jax.grad(loss))(variables['params'])
  for i in range(6):
    layer = grads[f'WeightNormDense_{i}']
    assert np.any(layer['kernel'] != 0) and np.any(layer['bias'] != 0)
    assert np.any(layer['scale'] != 0) == (i == 5), i


def test_g_matches_the_reference_forward(g_init):
  """Train mode by hand: Φ(z) → [Dense (no bias) → BN (batch statistics, eps 1e-6, shift only)
  → softplus] × 2 → Dense with W·g/√(1e-6 + ‖W‖²) + b → 2σ − 1; the output in [-1, 1]."""
  g, variables, z = g_init
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables['params'])
  # Move the shift and the scale off their 0/1 start, so the check sees them act.
  p['BatchNorm_0']['bias'] += 0.3
  p['WeightNormDense_0']['scale'] *= 1.7
  p['WeightNormDense_0']['bias'] -= 0.2
  params = jax.tree.map(jnp.float32, p)
  fake, _ = g.apply(
    {'params': params, 'batch_stats': variables['batch_stats']},
    z,
    LABELS,
    train=True,
    mutable=['batch_stats'],
  )

  x = scipy.stats.norm.cdf(np.asarray(z, np.float64))
  for i in range(2):
    h = x @ p[f'Dense_{i}']['kernel']
    h = (h - h.mean(0)) / np.sqrt(h.var(0) + 1e-6) + p[f'BatchNorm_{i}']['bias']
    x = np.logaddexp(0, h)
  last = p['WeightNormDense_0']
  w = last['kernel'] * last['scale'] / np.sqrt(1e-6 + np.sum(last['kernel'] ** 2, 0))
  expected = 2 / (1 + np.exp(-(x @ w + last['bias']))) - 1
  np.testing.assert_allclose(fake.reshape(BATCH, -1), expected, atol=2e-5)
  assert np.all(np.abs(fake) <= 1)


def test_g_turns_normal_noise_into_uniform_noise(g_init):
  """The first layer sees Φ(z): with z ~ N(0, 1), U[0, 1] (mean 1/2, variance 1/12)."""
  g, variables, _ = g_init
  z = jax.random.normal(jax.random.key(4), (4096, LATENT))
  seen = []

  def spy(next_fun, args, kwargs, context):
    if context.module.name == 'Dense_0':
      seen.append(args[0])
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(spy):
    g.apply(variables, z, jnp.zeros(4096, jnp.int32), train=False)
  (u,) = seen
  np.testing.assert_allclose(u, jax.scipy.stats.norm.cdf(z), atol=1e-6)
  # 4,096 draws reach both ends of (0, 1), never past them.
  assert 0 < float(u.min()) < 0.01 and 0.99 < float(u.max()) < 1
  np.testing.assert_allclose([u.mean(), u.var()], [0.5, 1 / 12], rtol=1e-2)


def test_g_inference_uses_running_averages(g_init):
  g, variables, z = g_init
  a = g.apply(variables, z, LABELS, train=False)
  b = g.apply(variables, z[:4], LABELS[:4], train=False)
  np.testing.assert_allclose(a[:4], b, atol=1e-6)  # per example, independent of the batch
