"""Tests for gan_jax.models: the registry's G/D pairs, shapes, labels, gradients, BatchNorm.

Each pair is initialised once (module-scoped fixture) and every computation on it is one of
three jitted functions (init, eval forward, train forward + backward), so a pair costs three
compilations. `jax_disable_most_optimizations` (also set by conftest.py; repeated so the file
stands alone) cuts building the four fixtures from ~31 s to ~12 s on a 2-core CPU.
"""

import dataclasses
import functools
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
from ml_collections import ConfigDict
import numpy as np
import pytest

from gan_jax import models
from gan_jax.models import layers

jax.config.update('jax_disable_most_optimizations', True)

NUM_CLASSES = 10
BATCH = NUM_CLASSES  # one example per class, so every label row of a label embedding is used
BN_EPSILON = 1e-5


@dataclasses.dataclass(frozen=True)
class Pair:
  generator: str
  discriminator: str
  image_size: int
  latent_dim: int
  num_logits: int
  num_features: int
  conditional: bool
  bn_in_g: int  # how many BatchNorm layers each network has
  bn_in_d: int


# The pairs the configs use (configs/{gan,dcgan,sgan,gan_cls}.py), at their image sizes.
PAIRS = {
  'mlp': Pair('mlp', 'mlp', 28, 100, 1, 128, False, 0, 0),
  'dcgan': Pair('dcgan', 'dcgan', 28, 100, 1, 7 * 7 * 128, False, 3, 0),
  'sgan': Pair('sgan', 'sgan', 32, 100, NUM_CLASSES + 1, 2 * 2 * 128, False, 3, 3),
  'conditional': Pair('conditional', 'matching', 28, 38, 1, 1024, True, 3, 0),
}


def model_config(pair: Pair, g_kwargs=None, d_kwargs=None) -> ConfigDict:
  return ConfigDict(
    {
      'generator': pair.generator,
      'discriminator': pair.discriminator,
      'g_kwargs': g_kwargs or {},
      'd_kwargs': d_kwargs or {},
    }
  )


def build(
  pair: Pair, num_classes: int = NUM_CLASSES, channels: int = 1, image_size: int = 0, **kwargs
):
  """G and D of `pair` as a run builds them, for data of this many classes and channels."""
  size = image_size or pair.image_size
  return models.build(model_config(pair, **kwargs), num_classes, (size, size, channels))


def _bn_recorder(records: list):
  """A flax method interceptor that logs each BatchNorm call: (module, input, output)."""

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if isinstance(context.module, nn.BatchNorm) and context.method_name == '__call__':
      records.append((context.module, args[0], out))
    return out

  return interceptor


@dataclasses.dataclass
class Fixture:
  pair: Pair
  G: nn.Module
  D: nn.Module
  g_vars: Any
  d_vars: Any
  z: jax.Array
  labels: jax.Array
  images: jax.Array
  eval_fn: Any  # (g_vars, d_vars, z, labels, images) -> (G(z, y), D(x, y)) in eval mode
  train: dict  # train-mode outputs, gradients and BatchNorm records (see _train_pass)


def _train_pass(G, D, epsilons, g_vars, d_vars, z, labels, images, key):
  """Train mode: G(z, y) and D(x, y) with a random linear loss on each output, and gradients.

  The loss weights each output entry by its own random number, so BatchNorm in training mode
  cannot cancel it (a plain sum of a BatchNorm'd layer's outputs has zero gradient upstream).
  Each BatchNorm's (input, output) is returned; its epsilon, a Python float read from the module
  instance at trace time, goes to `epsilons[net]`.
  """
  g_key, d_key, drop_key = jax.random.split(key, 3)

  def g_loss(params):
    records = []
    with nn.intercept_methods(_bn_recorder(records)):
      fake, mutated = G.apply(
        {**g_vars, 'params': params}, z, labels, train=True, mutable=['batch_stats']
      )
    weights = jax.random.normal(g_key, fake.shape)
    epsilons['G'] = [m.epsilon for m, _, _ in records]
    bn = [(x, y) for _, x, y in records]
    return jnp.sum(weights * fake), (fake, mutated, bn)

  def d_loss(params):
    records = []
    with nn.intercept_methods(_bn_recorder(records)):
      (logits, features), mutated = D.apply(
        {**d_vars, 'params': params},
        images,
        labels,
        train=True,
        rngs={'dropout': drop_key},
        mutable=['batch_stats'],
      )
    weights = jax.random.normal(d_key, logits.shape)
    epsilons['D'] = [m.epsilon for m, _, _ in records]
    bn = [(x, y) for _, x, y in records]
    return jnp.sum(weights * logits), (logits, features, mutated, bn)

  (_, g_aux), g_grads = jax.value_and_grad(g_loss, has_aux=True)(g_vars['params'])
  (_, d_aux), d_grads = jax.value_and_grad(d_loss, has_aux=True)(d_vars['params'])
  return g_aux, g_grads, d_aux, d_grads


@pytest.fixture(scope='module', params=sorted(PAIRS))
def model(request):
  pair = PAIRS[request.param]
  G, D = build(pair)
  key = jax.random.key(0)
  z_key, x_key, init_key, train_key = jax.random.split(key, 4)
  z = jax.random.normal(z_key, (BATCH, pair.latent_dim))
  labels = jnp.arange(BATCH) % NUM_CLASSES
  images = jax.random.uniform(
    x_key, (BATCH, pair.image_size, pair.image_size, 1), minval=-1.0, maxval=1.0
  )

  @jax.jit
  def init(z, labels, images):
    rngs = {'params': init_key, 'dropout': init_key}
    return G.init(rngs, z, labels, train=False), D.init(rngs, images, labels, train=False)

  @jax.jit
  def eval_fn(g_vars, d_vars, z, labels, images):
    return G.apply(g_vars, z, labels, train=False), D.apply(d_vars, images, labels, train=False)

  g_vars, d_vars = init(z, labels, images)
  epsilons = {}
  train_fn = jax.jit(functools.partial(_train_pass, G, D, epsilons))
  g_aux, g_grads, d_aux, d_grads = train_fn(g_vars, d_vars, z, labels, images, train_key)
  train = dict(
    fake=g_aux[0],
    g_mutated=g_aux[1],
    g_bn=g_aux[2],
    g_grads=g_grads,
    logits=d_aux[0],
    features=d_aux[1],
    d_mutated=d_aux[2],
    d_bn=d_aux[3],
    d_grads=d_grads,
    epsilons=epsilons,
  )
  return Fixture(pair, G, D, g_vars, d_vars, z, labels, images, eval_fn, train)


# ---------------------------------------------------------------- shapes and ranges
def _check_image(fake, pair):
  chex.assert_shape(fake, (BATCH, pair.image_size, pair.image_size, 1))
  chex.assert_tree_all_finite(fake)
  assert float(jnp.min(fake)) >= -1.0 and float(jnp.max(fake)) <= 1.0


def _check_disc(logits, features, pair):
  chex.assert_shape(logits, (BATCH, pair.num_logits))
  chex.assert_shape(features, (BATCH, pair.num_features))
  chex.assert_tree_all_finite((logits, features))


def test_eval_mode_shapes(model):
  fake, (logits, features) = model.eval_fn(
    model.g_vars, model.d_vars, model.z, model.labels, model.images
  )
  _check_image(fake, model.pair)
  _check_disc(logits, features, model.pair)


def test_train_mode_shapes(model):
  _check_image(model.train['fake'], model.pair)
  _check_disc(model.train['logits'], model.train['features'], model.pair)


def test_batch_stats_present_exactly_where_batchnorm_is(model):
  for variables, mutated, count in (
    (model.g_vars, model.train['g_mutated'], model.pair.bn_in_g),
    (model.d_vars, model.train['d_mutated'], model.pair.bn_in_d),
  ):
    stats = variables.get('batch_stats', {})
    assert len(stats) == count
    if count:
      # Training mode moved the running averages away from their initial (0, 1).
      chex.assert_trees_all_equal_shapes(mutated['batch_stats'], stats)
      assert not all(
        np.allclose(a, b)
        for a, b in zip(jax.tree.leaves(mutated['batch_stats']), jax.tree.leaves(stats))
      )


def test_discriminator_dropout_is_active_in_train_mode_only(model):
  """Eval mode is deterministic; D's train mode with dropout differs from eval mode."""
  _, (l1, _) = model.eval_fn(model.g_vars, model.d_vars, model.z, model.labels, model.images)
  _, (l2, _) = model.eval_fn(model.g_vars, model.d_vars, model.z, model.labels, model.images)
  np.testing.assert_array_equal(l1, l2)
  has_dropout = model.pair.discriminator in ('dcgan', 'sgan')
  has_bn = model.pair.bn_in_d > 0
  if has_dropout or has_bn:
    assert not np.allclose(model.train['logits'], l1)
  else:
    np.testing.assert_allclose(model.train['logits'], l1, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- labels
def test_label_dependence(model):
  other = (model.labels + 1) % NUM_CLASSES
  fake, (logits, _) = model.eval_fn(model.g_vars, model.d_vars, model.z, model.labels, model.images)
  fake2, (logits2, _) = model.eval_fn(model.g_vars, model.d_vars, model.z, other, model.images)
  if model.pair.conditional:
    # Every example's image and logit move when only its label changes.
    image_change = jnp.max(jnp.abs(fake - fake2), axis=(1, 2, 3))
    assert np.all(image_change > 1e-3 * float(jnp.std(fake))), image_change
    # D's label path is weak at init (label map -> one extra input channel), and one example's
    # logit can move by little: require a clear change on the batch and on most examples.
    logit_change = np.abs(np.asarray(logits - logits2))[:, 0]
    scale = float(jnp.std(logits))
    assert logit_change.mean() > 1e-2 * scale, logit_change
    assert np.mean(logit_change > 1e-3 * scale) >= 0.5, logit_change
  else:
    np.testing.assert_array_equal(fake, fake2)
    np.testing.assert_array_equal(logits, logits2)


# ---------------------------------------------------------------- gradients reach every parameter
def _grad_norms(grads):
  return {
    jax.tree_util.keystr(path): float(jnp.linalg.norm(g))
    for path, g in jax.tree_util.tree_leaves_with_path(grads)
  }


RELATIVE_FLOOR = 1e-4  # a live parameter's gradient norm, relative to the largest in the net


@pytest.mark.parametrize('net', ['G', 'D'])
def test_every_parameter_gets_a_gradient(model, net):
  """Regression (write-up 000): SGAN D's second conv was applied to the input, so the first conv
  got no gradient. Every parameter array must get a gradient well above float noise."""
  grads = model.train['g_grads' if net == 'G' else 'd_grads']
  chex.assert_tree_all_finite(grads)
  norms = _grad_norms(grads)
  top = max(norms.values())
  dead = {k: v for k, v in norms.items() if not v > RELATIVE_FLOOR * top}
  assert not dead, f'{net} parameters without gradient (largest {top:.3g}): {dead}'


def test_sgan_discriminator_convs_are_chained():
  """The same regression, structurally: conv i reads conv i-1's 16/32/64 channels, not the image."""
  _, D = build(PAIRS['sgan'])
  shapes = jax.eval_shape(
    lambda: D.init(
      jax.random.key(0), jnp.zeros((2, 32, 32, 1)), jnp.zeros(2, jnp.int32), train=False
    )
  )
  kernels = [shapes['params'][f'Conv_{i}']['kernel'].shape for i in range(4)]
  assert kernels == [(3, 3, 1, 16), (3, 3, 16, 32), (3, 3, 32, 64), (3, 3, 64, 128)]
  assert shapes['params']['Dense_0']['kernel'].shape == (2 * 2 * 128, NUM_CLASSES + 1)


# ---------------------------------------------------------------- BatchNorm epsilon
def test_batchnorm_epsilon_in_every_model(model):
  """Every BatchNorm that runs has epsilon 1e-5 (not the PyTorch reference's 0.8), read from the
  module instances the forward pass actually called."""
  for net, count in (('G', model.pair.bn_in_g), ('D', model.pair.bn_in_d)):
    epsilons = model.train['epsilons'][net]
    assert len(epsilons) == count, net
    assert epsilons == [BN_EPSILON] * count, (net, epsilons)


def test_batchnorm_outputs_match_epsilon_1e5(model):
  """Observed: each BatchNorm's output in training mode is (x - mean) / sqrt(var + 1e-5) * scale
  + bias on its actual input, and not what epsilon 0.8 would give."""
  for net, key, variables in (('G', 'g_bn', model.g_vars), ('D', 'd_bn', model.d_vars)):
    params = variables['params']
    for i, (x, y) in enumerate(model.train[key]):
      bn = params[f'BatchNorm_{i}']
      x = np.asarray(x, np.float64)
      axes = tuple(range(x.ndim - 1))
      mean, var = x.mean(axes), x.var(axes)
      expect = lambda eps: (x - mean) / np.sqrt(var + eps) * bn['scale'] + bn['bias']
      np.testing.assert_allclose(
        y, expect(BN_EPSILON), rtol=1e-3, atol=1e-3, err_msg=f'{net} BatchNorm_{i}'
      )
      if np.median(var) < 0.1:  # where 0.8 would be visible at all
        assert not np.allclose(y, expect(0.8), rtol=1e-3, atol=1e-3)


def test_layers_batch_norm_normalises_small_variance_input():
  """layers.batch_norm on a constant-variance input: std sqrt(v / (v + eps)) -> ~0.95 for v = 1e-4
  with eps 1e-5, ~0.011 with 0.8."""
  v = 1e-4
  x = np.sqrt(v) * np.where(np.arange(64) % 2, 1.0, -1.0)  # mean 0, variance exactly v
  x = jnp.asarray(np.tile(x[:, None], (1, 3)), jnp.float32)
  bn = layers.batch_norm(use_running_average=False)
  variables = bn.init(jax.random.key(0), x)
  y, _ = bn.apply(variables, x, mutable=['batch_stats'])
  np.testing.assert_allclose(jnp.std(y, axis=0), np.sqrt(v / (v + BN_EPSILON)), rtol=1e-3)
  assert bn.epsilon == BN_EPSILON and bn.momentum == 0.9


# ---------------------------------------------------------------- registry
def test_registry_holds_the_config_pairs():
  for pair in PAIRS.values():
    assert pair.generator in models.GENERATORS
    assert pair.discriminator in models.DISCRIMINATORS


@pytest.mark.parametrize('side', ['generator', 'discriminator'])
def test_unknown_name_raises_value_error(side):
  config = model_config(PAIRS['mlp'])
  config[side] = 'no_such_model'
  with pytest.raises(ValueError) as info:
    models.build(config, NUM_CLASSES, (28, 28, 1))
  message = str(info.value)
  assert f'model.{side}=' in message and 'no_such_model' in message
  for name in models.GENERATORS if side == 'generator' else models.DISCRIMINATORS:
    assert name in message


def test_data_fields_come_from_the_data():
  """num_classes, channels and image_shape reach each module that declares them."""
  for pair in PAIRS.values():
    G, D = build(pair, num_classes=7, channels=3, image_size=16)
    for module in (G, D):
      fields = set(module.__dataclass_fields__)
      for name, value in (('num_classes', 7), ('channels', 3), ('image_shape', (16, 16, 3))):
        if name in fields:
          assert getattr(module, name) == value


def test_kwargs_from_the_config_reach_the_modules():
  G, D = build(PAIRS['dcgan'], g_kwargs={'widths': (32, 16, 8)}, d_kwargs={'dropout': 0.0})
  assert G.widths == (32, 16, 8) and D.dropout == 0.0
  params = G.init(jax.random.PRNGKey(0), jnp.zeros((1, 100)), jnp.zeros(1, jnp.int32), train=False)[
    'params'
  ]
  assert params['Dense_0']['kernel'].shape == (100, 7 * 7 * 32)
  assert params['ConvTranspose_1']['kernel'].shape == (5, 5, 16, 8)


@pytest.mark.parametrize(
  'side, kwargs_field', [('g_kwargs', 'model.g_kwargs'), ('d_kwargs', 'model.d_kwargs')]
)
def test_unknown_kwarg_names_the_model_and_its_fields(side, kwargs_field):
  with pytest.raises(ValueError) as info:
    build(PAIRS['sgan'], **{side: {'hiden': 64}})
  message = str(info.value)
  module = models.GENERATORS['sgan'] if side == 'g_kwargs' else models.DISCRIMINATORS['sgan']
  assert f'{kwargs_field}.hiden is not a field of' in message and "'sgan'" in message
  assert '\n' not in message
  for field in models.model_fields(module):
    assert field in message
  assert 'num_classes' not in message  # set by the data, not by the config


@pytest.mark.parametrize('name', sorted(PAIRS))
def test_channels_and_classes_follow_the_config(name):
  """Shape-only (eval_shape, nothing compiled): 3-channel images and 5 classes."""
  pair = PAIRS[name]
  size, classes = pair.image_size, 5
  G, D = build(pair, num_classes=classes, channels=3)
  z, labels = jnp.zeros((2, pair.latent_dim)), jnp.zeros(2, jnp.int32)

  def forward():
    key = jax.random.key(0)
    g_vars = G.init(key, z, labels, train=False)
    fake = G.apply(g_vars, z, labels, train=False)
    d_vars = D.init(key, fake, labels, train=False)
    return fake, D.apply(d_vars, fake, labels, train=False)[0]

  fake, logits = jax.eval_shape(forward)
  assert fake.shape == (2, size, size, 3)
  assert logits.shape == (2, classes + 1 if name == 'sgan' else 1)


# ---------------------------------------------------------------- layers
def _upsample_nearest(x, factor):
  return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


# (kernel, factor, fill): the models' layers (sgan 3/2 nearest; dcgan 5/1 and 5/2, gan_cls 4/2
# zeros) and the corners of the phase arithmetic (1×1 kernels, factor 3, even kernels).
SUBPIXEL_CASES = [
  (3, 2, 'nearest'),
  (3, 3, 'nearest'),
  (1, 2, 'nearest'),
  (4, 2, 'nearest'),
  (5, 1, 'zeros'),
  (5, 2, 'zeros'),
  (4, 2, 'zeros'),
  (5, 3, 'zeros'),
  (2, 2, 'zeros'),
]


@pytest.mark.parametrize('kernel_size, factor, fill', SUBPIXEL_CASES)
def test_subpixel_conv_equals_upsample_then_conv(kernel_size, factor, fill):
  """Same outputs and gradients (parameters and input) as the direct form, to f32 rounding."""
  x = jax.random.normal(jax.random.key(0), (2, 5, 6, 3))
  if fill == 'nearest':
    low = (kernel_size - 1) // 2
    direct = nn.Conv(4, (kernel_size,) * 2, padding=[(low, kernel_size - 1 - low)] * 2)
    direct_fn = lambda v, x: direct.apply(v, _upsample_nearest(x, factor))
  else:
    low = layers.conv_transpose_low_padding(kernel_size, factor)
    direct = nn.ConvTranspose(4, (kernel_size,) * 2, (factor,) * 2, padding='SAME')
    direct_fn = direct.apply
  subpixel = layers.SubpixelConv(4, kernel_size, low, factor, fill)
  variables = subpixel.init(jax.random.key(1), x)
  # A nonzero bias, so that its placement is checked too.
  variables = jax.tree.map(lambda p: p + 0.1, variables)
  chex.assert_trees_all_equal_shapes(
    variables,
    direct.init(jax.random.key(1), x if fill == 'zeros' else _upsample_nearest(x, factor)),
  )
  out = subpixel.apply(variables, x)
  chex.assert_shape(out, (2, 5 * factor, 6 * factor, 4))
  np.testing.assert_allclose(out, direct_fn(variables, x), rtol=1e-5, atol=1e-6)
  loss = lambda fn: lambda v, x: jnp.sum(jnp.sin(3 * fn(v, x)))
  grads = jax.grad(loss(subpixel.apply), (0, 1))(variables, x)
  chex.assert_trees_all_close(
    grads, jax.grad(loss(direct_fn), (0, 1))(variables, x), rtol=1e-4, atol=1e-4
  )


def test_subpixel_conv_reads_fewer_taps():
  """Nearest ×2 then 3×3: each output phase is a 2×2 conv of the input (16 taps, not 36)."""
  phases = layers.phase_taps(3, 2, low=1, zero_fill=False)
  assert [taps.shape for taps, _ in phases] == [(2, 3), (2, 3)]
  # Phase 0 reads inputs i-1 (tap 0) and i (taps 1+2); phase 1 reads i (taps 0+1) and i+1 (tap 2).
  np.testing.assert_array_equal(phases[0][0], [[1, 0, 0], [0, 1, 1]])
  np.testing.assert_array_equal(phases[1][0], [[1, 1, 0], [0, 0, 1]])
  assert [first for _, first in phases] == [-1, 0]


def test_dropout_alone_makes_train_mode_random_on_a_batchnorm_free_d():
  """DCGAN's D has no BatchNorm: train and eval mode differ by dropout only, which two keys
  show (and dropout=0 removes)."""
  images = jax.random.normal(jax.random.PRNGKey(0), (4, 28, 28, 1))
  labels = jnp.zeros(4, jnp.int32)
  for rate, differs in ((0.3, True), (0.0, False)):
    _, d = build(PAIRS['dcgan'], d_kwargs={'dropout': rate})
    variables = d.init(jax.random.PRNGKey(1), images, labels, train=False)
    assert 'batch_stats' not in variables
    run = lambda key: d.apply(variables, images, labels, train=True, rngs={'dropout': key})[0]
    evaluated = d.apply(variables, images, labels, train=False)[0]
    assert (not np.allclose(run(jax.random.PRNGKey(2)), run(jax.random.PRNGKey(3)))) == differs
    assert np.allclose(run(jax.random.PRNGKey(2)), evaluated) != differs
