"""Tests for the colour and any-size models: radford (DCGAN at 4·2^k), seed004 (write-up 004's
Keras DCGAN, layer for layer), and SGAN / GAN-cls generators sized from the data.

Shapes and layer structure come from `jax.eval_shape` (nothing compiled); only the value checks
(seed004's range and dropout, the unchanged default-size outputs) compile, at batch 2.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from ml_collections import ConfigDict
import numpy as np
import pytest

from gan_jax import models
from gan_jax.models import layers

jax.config.update('jax_disable_most_optimizations', True)

BATCH = 2
LATENT = 100


def build(
  name: str, size: int, channels: int = 3, g_kwargs=None, d_kwargs=None, discriminator: str = ''
):
  config = ConfigDict(
    {
      'generator': name,
      'discriminator': discriminator or name,
      'g_kwargs': g_kwargs or {},
      'd_kwargs': d_kwargs or {},
    }
  )
  return models.build(config, 10, (size, size, channels))


def _inputs(latent: int = LATENT):
  return jnp.zeros((BATCH, latent)), jnp.zeros(BATCH, jnp.int32)


def trace(G, D, size: int, channels: int = 3, latent: int = LATENT):
  """Shapes only: G's variables and samples, D's variables, logits and features on them."""
  z, labels = _inputs(latent)

  def forward():
    key = jax.random.key(0)
    g_vars = G.init(key, z, labels, train=False)
    fake = G.apply(g_vars, z, labels, train=False)
    d_vars = D.init(key, jnp.zeros((BATCH, size, size, channels)), labels, train=False)
    return g_vars, fake, d_vars, D.apply(d_vars, fake, labels, train=False)

  return jax.eval_shape(forward)


def _layer_recorder(records: list):
  """A flax method interceptor that logs each layer call: (kind, module, output shape)."""
  kinds = {
    nn.Dense: 'dense',
    nn.Conv: 'conv',
    layers.SubpixelConv: 'convT',
    nn.BatchNorm: 'bn',
    nn.Dropout: 'dropout',
  }

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    kind = kinds.get(type(context.module))
    if kind and context.method_name == '__call__':
      records.append((kind, context.module, out.shape))
    return out

  return interceptor


def layer_calls(module, inputs, train: bool = False) -> list:
  """The (kind, module, output shape) of each layer `module` runs on `inputs`, in order."""
  records = []

  def forward():
    with nn.intercept_methods(_layer_recorder(records)):
      key = jax.random.key(0)
      variables = module.init({'params': key, 'dropout': key}, *inputs, train=train)
      module.apply(variables, *inputs, train=train, rngs={'dropout': key}, mutable=['batch_stats'])

  jax.eval_shape(forward)
  return records[len(records) // 2 :]  # init runs the layers too: keep the apply's


def kernels(params, prefix: str) -> list:
  names = sorted((k for k in params if k.startswith(prefix)), key=lambda k: int(k.split('_')[-1]))
  return [params[k]['kernel'].shape for k in names]


def assert_one_line_error(fn, *needles):
  with pytest.raises(ValueError) as info:
    fn()
  message = str(info.value)
  assert '\n' not in message, message
  for needle in needles:
    assert needle in message, message


# ---------------------------------------------------------------- registry
def test_registry_names_and_fields():
  for name in ('radford', 'seed004'):
    assert name in models.GENERATORS and name in models.DISCRIMINATORS
    assert name not in models.CONDITIONAL_GENERATORS
  fields = lambda registry, name: models.model_fields(registry[name])
  assert fields(models.GENERATORS, 'radford') == ['base_width', 'widths']
  assert fields(models.DISCRIMINATORS, 'radford') == [
    'base_width',
    'negative_slope',
    'spectral_norm',
    'widths',
  ]
  assert fields(models.GENERATORS, 'seed004') == ['negative_slope']
  assert fields(models.DISCRIMINATORS, 'seed004') == ['dropout', 'negative_slope', 'spectral_norm']
  # Every discriminator can be spectrally normalised (model.d_kwargs.spectral_norm=True), but the
  # weight-normalised one: W/‖W‖ is already scale-free, so W/σ(W) would change nothing.
  normalised = {'improved_gan'}
  assert all(
    ('spectral_norm' in models.model_fields(d)) == (name not in normalised)
    for name, d in models.DISCRIMINATORS.items()
  )


# ---------------------------------------------------------------- radford
@pytest.mark.parametrize('channels', [1, 3])
@pytest.mark.parametrize('size', [8, 16, 32, 64, 128])
def test_radford_shapes(size, channels):
  G, D = build('radford', size, channels)
  _, fake, _, (logits, features) = trace(G, D, size, channels)
  k = int(np.log2(size // 4))
  assert fake.shape == (BATCH, size, size, channels)
  assert logits.shape == (BATCH, 1)
  assert features.shape == (BATCH, 4 * 4 * 16 * 2 ** (k - 1))  # D's widths double from 16


@pytest.mark.parametrize('size', [8, 64, 128])
def test_radford_layers_and_batchnorm_placement(size):
  """G: BN after the dense layer and every ConvT but the last; D: none after its first conv, one
  after every later conv. Widths halve (G) or double (D) with each stride-2 layer."""
  k = int(np.log2(size // 4))
  G, D = build('radford', size)
  calls = layer_calls(G, _inputs(), train=True)
  assert [kind for kind, _, _ in calls] == ['dense', 'bn'] + ['convT', 'bn'] * (k - 1) + ['convT']
  g_widths = [16 * 2**i for i in reversed(range(k))]
  convs = [shape for kind, _, shape in calls if kind == 'convT']
  assert convs == [(BATCH, 8 * 2**i, 8 * 2**i, w) for i, w in enumerate(g_widths[1:] + [3])]
  images = jnp.zeros((BATCH, size, size, 3))
  calls = layer_calls(D, (images, _inputs()[1]), train=True)
  assert [kind for kind, _, _ in calls] == ['conv'] + ['conv', 'bn'] * (k - 1) + ['dense']
  convs = [(module.use_bias, shape) for kind, module, shape in calls if kind == 'conv']
  assert convs == [
    (i == 0, (BATCH, size // 2 ** (i + 1), size // 2 ** (i + 1), 16 * 2**i)) for i in range(k)
  ]  # a bias only where no BatchNorm follows


def test_radford_explicit_widths():
  G, D = build('radford', 32, g_kwargs={'widths': (96, 48, 24)}, d_kwargs={'widths': (8, 16, 32)})
  g_vars, _, d_vars, (_, features) = trace(G, D, 32)
  assert kernels(g_vars['params'], 'ConvTranspose') == [
    (4, 4, 96, 48),
    (4, 4, 48, 24),
    (4, 4, 24, 3),
  ]
  assert g_vars['params']['Dense_0']['kernel'].shape == (LATENT, 4 * 4 * 96)
  assert kernels(d_vars['params'], 'Conv') == [(4, 4, 3, 8), (4, 4, 8, 16), (4, 4, 16, 32)]
  assert features.shape == (BATCH, 4 * 4 * 32)


@pytest.mark.parametrize('size', [48, 60, 4])
def test_radford_bad_size_raises_one_line_error(size):
  G, D = build('radford', size)
  assert_one_line_error(
    lambda: trace(G, D, size), f'data.image_size={size}', 'generator', '8, 16, 32, 64, 128'
  )
  assert_one_line_error(
    lambda: jax.eval_shape(
      lambda: D.init(
        jax.random.key(0), jnp.zeros((BATCH, size, size, 3)), _inputs()[1], train=False
      )
    ),
    f'data.image_size={size}',
    'discriminator',
    '8, 16, 32, 64, 128',
  )


@pytest.mark.parametrize('side', ['g_kwargs', 'd_kwargs'])
def test_radford_widths_mismatch_raises_one_line_error(side):
  G, D = build('radford', 64, **{side: {'widths': (64, 32)}})
  assert_one_line_error(
    lambda: trace(G, D, 64), f'model.{side}.widths=(64, 32)', 'data.image_size=64 needs 4'
  )


# ---------------------------------------------------------------- seed004
def test_seed004_layers_are_the_seeds():
  """Write-up 004: Dense 8·8·64 + BN → ConvT 128 (5×5, s1), 64 (s2), 64 (s2), 32 (s2), no bias
  → ConvT 3 (3×3, s1) tanh; D: Conv 5×5 64 (s1), 64, 64, 32 (s2) → Dense 1."""
  G, D = build('seed004', 64)
  g_vars, fake, d_vars, (logits, features) = trace(G, D, 64)
  params = g_vars['params']
  assert sorted(params) == [
    'BatchNorm_0',
    'ConvTranspose_0',
    'ConvTranspose_1',
    'ConvTranspose_2',
    'ConvTranspose_3',
    'ConvTranspose_4',
    'Dense_0',
  ]
  assert params['Dense_0']['kernel'].shape == (LATENT, 8 * 8 * 64) and 'bias' in params['Dense_0']
  assert params['BatchNorm_0']['scale'].shape == (8 * 8 * 64,)  # per unit, before the reshape
  assert kernels(params, 'ConvTranspose') == [
    (5, 5, 64, 128),
    (5, 5, 128, 64),
    (5, 5, 64, 64),
    (5, 5, 64, 32),
    (3, 3, 32, 3),
  ]
  assert all(list(params[f'ConvTranspose_{i}']) == ['kernel'] for i in range(5))
  calls = layer_calls(G, _inputs(), train=True)
  assert [(kind, shape[1:]) for kind, _, shape in calls] == [
    ('dense', (4096,)),
    ('bn', (4096,)),
    ('convT', (8, 8, 128)),
    ('convT', (16, 16, 64)),
    ('convT', (32, 32, 64)),
    ('convT', (64, 64, 32)),
    ('convT', (64, 64, 3)),
  ]
  bn = calls[1][1]
  assert (bn.momentum, bn.epsilon) == (0.99, 1e-3)  # Keras's BatchNormalization defaults
  assert fake.shape == (BATCH, 64, 64, 3)

  params = d_vars['params']
  assert sorted(params) == ['Conv_0', 'Conv_1', 'Conv_2', 'Conv_3', 'Dense_0']
  assert kernels(params, 'Conv') == [(5, 5, 3, 64), (5, 5, 64, 64), (5, 5, 64, 64), (5, 5, 64, 32)]
  assert params['Dense_0']['kernel'].shape == (8 * 8 * 32, 1)
  images = jnp.zeros((BATCH, 64, 64, 3))
  calls = layer_calls(D, (images, _inputs()[1]), train=True)
  assert [(kind, shape[1:]) for kind, _, shape in calls] == [
    ('conv', (64, 64, 64)),
    ('dropout', (64, 64, 64)),
    ('conv', (32, 32, 64)),
    ('dropout', (32, 32, 64)),
    ('conv', (16, 16, 64)),
    ('dropout', (16, 16, 64)),
    ('conv', (8, 8, 32)),
    ('dropout', (8, 8, 32)),
    ('dense', (1,)),
  ]
  assert all(module.rate == 0.3 for kind, module, _ in calls if kind == 'dropout')
  assert logits.shape == (BATCH, 1) and features.shape == (BATCH, 8 * 8 * 32)


def test_seed004_generator_rejects_other_sizes():
  G, D = build('seed004', 32)
  assert_one_line_error(lambda: trace(G, D, 32), 'data.image_size=32', "'seed004'", '64')


def test_seed004_values_and_dropout():
  """G's images lie in [-1, 1]; D's dropout changes its logits in train mode only."""
  G, D = build('seed004', 64)
  z = jax.random.normal(jax.random.key(1), (BATCH, LATENT))
  labels = jnp.zeros(BATCH, jnp.int32)
  g_vars = jax.jit(lambda: G.init(jax.random.key(0), z, labels, train=False))()
  fake = jax.jit(lambda v: G.apply(v, z, labels, train=False))(g_vars)
  assert fake.shape == (BATCH, 64, 64, 3)
  assert np.all(np.isfinite(fake)) and np.all(np.abs(fake) <= 1) and np.std(fake) > 0
  d_vars = jax.jit(lambda: D.init(jax.random.key(0), fake, labels, train=False))()

  @functools.partial(jax.jit, static_argnums=1)
  def logits(key, train):
    return D.apply(d_vars, fake, labels, train=train, rngs={'dropout': key})[0]

  keys = jax.random.split(jax.random.key(2))
  np.testing.assert_array_equal(logits(keys[0], False), logits(keys[1], False))
  np.testing.assert_array_equal(logits(keys[0], True), logits(keys[0], True))
  assert not np.allclose(logits(keys[0], True), logits(keys[1], True))


# ---------------------------------------------------------------- SGAN and GAN-cls at other sizes
def test_sgan_generator_at_64_rgb():
  G, D = build('sgan', 64)
  g_vars, fake, _, (logits, features) = trace(G, D, 64)
  assert fake.shape == (BATCH, 64, 64, 3)
  assert g_vars['params']['Dense_0']['kernel'].shape == (LATENT, 128 * 16 * 16)
  assert logits.shape == (BATCH, 11) and features.shape == (BATCH, 4 * 4 * 128)


def test_conditional_generator_at_32_rgb():
  G, D = build('conditional', 32, discriminator='matching')
  g_vars, fake, _, (logits, _) = trace(G, D, 32, latent=38)
  assert fake.shape == (BATCH, 32, 32, 3)
  assert g_vars['params']['Dense_1']['kernel'].shape == (1024, 8 * 8 * 128)
  assert logits.shape == (BATCH, 1)


@pytest.mark.parametrize('name, discriminator', [('sgan', 'sgan'), ('conditional', 'matching')])
def test_quarter_size_generators_reject_sizes_not_a_multiple_of_4(name, discriminator):
  G, D = build(name, 30, discriminator=discriminator)
  assert_one_line_error(lambda: trace(G, D, 30), 'data.image_size=30', repr(name), 'multiple of 4')


# Recorded from the generators before they were sized from image_shape: at their default sizes
# the same parameters and, bit for bit, the same images. (sum of the images in float64, the
# first three pixels of row 0, sum of all variables in float64)
DEFAULT_OUTPUTS = {
  'sgan': (
    32,
    100,
    28.3615635355236,
    [-0.010189538821578026, -0.020906561985611916, -0.017327334731817245],
    615.0158761347175,
  ),
  'conditional': (
    28,
    38,
    3.2865312578651356,
    [-0.0005340166389942169, -1.1189025826752186e-05, -0.0010446951491758227],
    14726.01066017568,
  ),
}


@pytest.mark.parametrize('name', sorted(DEFAULT_OUTPUTS))
def test_default_size_outputs_unchanged(name):
  size, latent, image_sum, pixels, variables_sum = DEFAULT_OUTPUTS[name]
  G = models.GENERATORS[name](image_shape=(size, size, 1))
  z = jax.random.normal(jax.random.key(1), (4, latent))
  labels = jnp.arange(4)
  variables = jax.jit(lambda z, y: G.init(jax.random.key(0), z, y, train=False))(z, labels)
  out = jax.jit(lambda v, z, y: G.apply(v, z, y, train=False))(variables, z, labels)
  assert out.shape == (4, size, size, 1)
  assert np.asarray(out, np.float64).sum() == image_sum
  assert np.asarray(out[0, 0, :3, 0]).tolist() == pixels
  assert sum(np.asarray(v, np.float64).sum() for v in jax.tree.leaves(variables)) == variables_sum
