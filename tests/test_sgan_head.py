"""SGAN's optional real/fake sigmoid head (DESIGN.md): its loss terms, the refusals when D lacks
it, the discriminator with it on and off, and a tiny run that trains it.

The loss references are written by hand from σ(x) = 1 / (1 + exp(−x)) in float64, as in
tests/test_losses.py, whose helpers these tests share.
"""

import types

import chex
import jax
import jax.numpy as jnp
from ml_collections import ConfigDict
import numpy as np
import pytest
from test_losses import BIG, MODERATE, B, N, close, disc_out, np_sigmoid, sgan_logits
from test_train import final_params, load_config, read_metrics

from gan_jax import checks, fields, losses, models, train
from gan_jax.objective import Objective
from gan_jax.step import adapt_augment_p

# Head terms: (table, D input read, hparams, value by hand, d/dx by hand, values at x = ∓100).
CASES = {
  'sigmoid_real': (
    losses.D_TERMS,
    'real',
    {},
    lambda x: -np.log(np_sigmoid(x)),
    lambda x: np_sigmoid(x) - 1.0,
    (BIG, 0.0),
  ),
  'sigmoid_real_smooth0.9': (
    losses.D_TERMS,
    'real',
    {'real_target': 0.9},
    lambda x: -0.9 * np.log(np_sigmoid(x)) - 0.1 * np.log(1 - np_sigmoid(x)),
    lambda x: np_sigmoid(x) - 0.9,
    (0.9 * BIG, 0.1 * BIG),
  ),
  'sigmoid_fake': (
    losses.D_TERMS,
    'fake',
    {},
    lambda x: -np.log(1 - np_sigmoid(x)),
    lambda x: np_sigmoid(x),
    (0.0, BIG),
  ),
  'sigmoid_gen': (
    losses.G_TERMS,
    'fake',
    {},
    lambda x: -np.log(np_sigmoid(x)),
    lambda x: np_sigmoid(x) - 1.0,
    (BIG, 0.0),
  ),
  'sigmoid_gen_minimax': (
    losses.G_TERMS,
    'fake',
    {'minimax': True},
    lambda x: np.log(1 - np_sigmoid(x)),
    lambda x: -np_sigmoid(x),
    (0.0, -BIG),
  ),
}


def term_of(case: str):
  """The named term of a case, its D input and its hparams."""
  table, name, hp, *_ = CASES[case]
  hparams = fields.default_config().loss.hparams
  hparams.update(hp)
  return table[case.removesuffix('_smooth0.9').removesuffix('_minimax')], name, hparams


def head_outputs(head_logits, class_logits=None):
  """SGAN outputs (N+1 class logits) on every D input, with the head's logits [B] as [B, 1]."""
  head = jnp.asarray(head_logits, jnp.float32)[:, None]
  logits = sgan_logits(batch=head.shape[0]) if class_logits is None else class_logits
  out = disc_out(logits)._replace(real_fake=head)
  return {'real': out, 'fake': out, 'labeled': out}


@pytest.mark.parametrize('case', sorted(CASES))
def test_closed_form(case):
  term, _, hp = term_of(case)
  value = term.fn(head_outputs(MODERATE), hp)
  chex.assert_shape(value, (B,))
  close(value, CASES[case][3](MODERATE))
  # At x = 0, σ = ½: every form is log 2 (times ±1).
  close(jnp.abs(term.fn(head_outputs(np.zeros(2)), hp)), np.full(2, np.log(2.0)))


@pytest.mark.parametrize('case', sorted(CASES))
def test_gradient_is_the_closed_form_and_skips_the_class_logits(case):
  term, name, hp = term_of(case)
  outputs = head_outputs(MODERATE)

  def loss(head, logits):
    out = outputs[name]._replace(real_fake=head, logits=logits)
    return jnp.sum(term.fn({**outputs, name: out}, hp))

  d_head, d_logits = jax.grad(loss, argnums=(0, 1))(outputs[name].real_fake, outputs[name].logits)
  close(d_head, CASES[case][4](MODERATE)[:, None])
  np.testing.assert_array_equal(d_logits, 0.0)  # the head terms read the head alone


@pytest.mark.parametrize('case', sorted(CASES))
def test_stable_at_100(case):
  term, name, hp = term_of(case)
  x = np.array([-BIG, BIG], np.float32)
  outputs = head_outputs(x, sgan_logits(batch=2, scale=BIG))
  value = term.fn(outputs, hp)
  grad = jax.grad(lambda h: jnp.sum(term.fn({name: outputs[name]._replace(real_fake=h)}, hp)))(
    outputs[name].real_fake
  )
  chex.assert_tree_all_finite((value, grad))
  close(value, CASES[case][5], rtol=1e-6, atol=1e-5)
  close(grad[:, 0], CASES[case][4](x), rtol=1e-6, atol=1e-6)


def test_terms_are_declared_and_off_in_the_sgan_config():
  heads = {
    n for table in (losses.D_TERMS, losses.G_TERMS) for n, t in table.items() if t.reads_head
  }
  assert heads == {'sigmoid_real', 'sigmoid_fake', 'sigmoid_gen'}
  assert [losses.D_TERMS['sigmoid_real'].needs, losses.D_TERMS['sigmoid_fake'].needs] == [
    ('real',),
    ('fake',),
  ]
  assert losses.G_TERMS['sigmoid_gen'].needs == ('fake',)
  config = load_config('sgan', None)
  assert not (set(config.loss.d_terms) | set(config.loss.g_terms)) & heads
  assert 'sigmoid_head' not in config.model.d_kwargs


@pytest.mark.parametrize('case', ['sigmoid_real', 'sigmoid_fake', 'sigmoid_gen'])
def test_term_refuses_a_d_without_the_head(case):
  """On outputs without `real_fake` (any D but SGAN's with the head on), one line naming the term
  and the field, also while tracing under jit."""
  term, _, hp = term_of(case)
  outputs = {k: v._replace(real_fake=None) for k, v in head_outputs(MODERATE).items()}
  for fn in (lambda o: term.fn(o, hp), jax.jit(lambda o: term.fn(o, hp))):
    with pytest.raises(ValueError) as info:
      fn(outputs)
    message = str(info.value)
    assert case in message and 'model.d_kwargs.sigmoid_head=True' in message
    assert '\n' not in message


def test_objective_at_zero_weight_does_not_need_the_head():
  outputs = {k: v._replace(real_fake=None) for k, v in head_outputs(MODERATE).items()}
  d_terms = {'sgan_labeled': 1.0, 'sgan_real': 1.0, 'sgan_fake': 1.0, 'sigmoid_real': 0.0}
  hp = fields.default_config().loss.hparams
  _, parts = losses.weighted_sum(d_terms, losses.D_TERMS, outputs, hp)
  assert set(parts) == {'sgan_labeled', 'sgan_real', 'sgan_fake'}
  with pytest.raises(ValueError, match='sigmoid_real'):
    losses.weighted_sum({**d_terms, 'sigmoid_real': 0.5}, losses.D_TERMS, outputs, hp)


def test_read_outs_follow_the_head_that_the_objective_trains():
  """With the head trained by sigmoid_real and sigmoid_fake, D's accuracies and ADA's r_t read the
  head (called real above logit 0), not the softmax beside it, which here calls every image real.
  Without the head's terms they read the softmax."""
  softmax_says_real = np.zeros((B, N + 1), np.float32)
  softmax_says_real[:, -1] = -10.0
  outputs = head_outputs(MODERATE, softmax_says_real)  # the head: 2 of 5 real, 0 on the boundary
  read_outs = {}
  for terms in ({}, {'sigmoid_real': 1.0, 'sigmoid_fake': 1.0}):
    objective = Objective(head_config(terms, d_kwargs={'sigmoid_head': True}).loss)
    spec = types.SimpleNamespace(objective=objective, augment_target=0.6, batch_size=B)
    _, rt = adapt_augment_p(spec, jnp.zeros(()), [outputs['real']])
    metrics = {**objective.d_accuracies(outputs), 'rt': rt}
    read_outs[bool(terms)] = [float(metrics[k]) for k in ('d_acc_real', 'd_acc_fake', 'rt')]
  np.testing.assert_allclose(read_outs[False], [1.0, 0.0, 1.0])
  np.testing.assert_allclose(read_outs[True], [0.4, 0.6, 0.0], atol=1e-7)


# ---------------------------------------------------------------- the check before compiling
def head_config(d_terms=None, g_terms=None, discriminator='sgan', d_kwargs=None) -> ConfigDict:
  config = load_config('sgan')
  config.loss.d_terms.update(d_terms or {})
  config.loss.g_terms.update(g_terms or {})
  config.model.discriminator = discriminator
  config.model.d_kwargs = d_kwargs or {}
  return config


@pytest.mark.parametrize(
  'terms, field',
  [
    ({'d_terms': {'sigmoid_real': 1.0}}, 'loss.d_terms.sigmoid_real'),
    ({'d_terms': {'sigmoid_fake': 0.5}}, 'loss.d_terms.sigmoid_fake'),
    ({'g_terms': {'sigmoid_gen': 1.0}}, 'loss.g_terms.sigmoid_gen'),
  ],
)
def test_check_config_refuses_head_terms_without_the_head(terms, field):
  with pytest.raises(ValueError) as info:
    checks.check_config(head_config(**terms))
  message = str(info.value)
  assert message.startswith(field) and 'set model.d_kwargs.sigmoid_head=True' in message
  assert '\n' not in message
  checks.check_config(head_config(**terms, d_kwargs={'sigmoid_head': True}))


def test_check_config_names_the_discriminators_that_have_the_head():
  with pytest.raises(ValueError) as info:
    checks.check_config(head_config({'sigmoid_real': 1.0}, discriminator='dcgan'))
  message = str(info.value)
  assert "model.discriminator='dcgan' lacks" in message
  assert "model.discriminator='sgan' with model.d_kwargs.sigmoid_head=True" in message


def test_check_config_accepts_head_terms_at_zero_weight():
  checks.check_config(head_config({'sigmoid_real': 0.0, 'sigmoid_fake': 0.0}, {'sigmoid_gen': 0}))


# ---------------------------------------------------------------- the discriminator
IMAGES = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (B, 32, 32, 1)), jnp.float32)
LABELS = jnp.zeros(B, jnp.int32)
# SGAN's D at 32×32 with 10 classes as it is without the head: every parameter, by shape.
TREE_WITHOUT_HEAD = {
  'Conv_0': {'kernel': (3, 3, 1, 16), 'bias': (16,)},
  'Conv_1': {'kernel': (3, 3, 16, 32), 'bias': (32,)},
  'Conv_2': {'kernel': (3, 3, 32, 64), 'bias': (64,)},
  'Conv_3': {'kernel': (3, 3, 64, 128), 'bias': (128,)},
  'BatchNorm_0': {'scale': (32,), 'bias': (32,)},
  'BatchNorm_1': {'scale': (64,), 'bias': (64,)},
  'BatchNorm_2': {'scale': (128,), 'bias': (128,)},
  'Dense_0': {'kernel': (2 * 2 * 128, N + 1), 'bias': (N + 1,)},
}


def build_d(**d_kwargs):
  config = ConfigDict({'generator': 'sgan', 'discriminator': 'sgan', 'g_kwargs': {}})
  config.d_kwargs = d_kwargs
  return models.build(config, N, (32, 32, 1))[1]


@pytest.fixture(scope='module')
def with_and_without():
  """(D, its variables at key 0) with the head on, and with it off (by default and explicitly)."""
  key = jax.random.PRNGKey(0)
  nets = [build_d(sigmoid_head=True), build_d(), build_d(sigmoid_head=False)]
  return [(d, d.init(key, IMAGES, LABELS, train=False)) for d in nets]


def test_off_by_default_with_the_parameter_tree_of_today(with_and_without):
  assert 'sigmoid_head' in models.model_fields(models.DISCRIMINATORS['sgan'])
  (_, on), (d_default, default), (_, off) = with_and_without
  assert not d_default.sigmoid_head
  for variables in (default, off):
    shapes = jax.tree.map(lambda x: x.shape, variables['params'])
    assert shapes == TREE_WITHOUT_HEAD
  chex.assert_trees_all_equal(default, off)


def test_the_head_only_adds_its_dense_layer(with_and_without):
  """Same key: the head on adds `real_fake` (Dense 512 → 1); every other variable is bitwise that
  of the D without it, and so are its logits and features."""
  (d_on, on), (d_off, off) = with_and_without[:2]
  head = on['params']['real_fake']
  assert jax.tree.map(lambda x: x.shape, head) == {'kernel': (2 * 2 * 128, 1), 'bias': (1,)}
  shared = {**on, 'params': {k: v for k, v in on['params'].items() if k != 'real_fake'}}
  chex.assert_trees_all_equal(shared, off)
  for train_mode in (False, True):
    rngs = {'dropout': jax.random.PRNGKey(1)}
    kwargs = {'rngs': rngs, 'mutable': ['batch_stats']} if train_mode else {}
    out_on = d_on.apply(on, IMAGES, LABELS, train=train_mode, **kwargs)
    out_off = d_off.apply(off, IMAGES, LABELS, train=train_mode, **kwargs)
    if train_mode:
      (out_on, stats_on), (out_off, stats_off) = out_on, out_off
      chex.assert_trees_all_equal(stats_on, stats_off)
    assert len(out_off) == 2 and len(out_on) == 3
    logits, features, real_fake = out_on
    chex.assert_shape((logits, features, real_fake), [(B, N + 1), (B, 2 * 2 * 128), (B, 1)])
    chex.assert_tree_all_finite(out_on)
    chex.assert_trees_all_equal((logits, features), out_off)
    # The head is a Dense layer on the same features.
    close(real_fake, features @ head['kernel'] + head['bias'], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- a tiny run
def test_two_steps_train_the_head(tmp_path):
  """The sgan smoke config with the head and its three terms: 2 steps move the head's parameters
  (it gets gradients only from the sigmoid terms) and log each term."""
  config = head_config(
    {'sigmoid_real': 1.0, 'sigmoid_fake': 1.0},
    {'sigmoid_gen': 1.0},
    d_kwargs={'sigmoid_head': True},
  )
  config.train.num_steps = config.train.log_every = config.train.checkpoint_every = 2
  _, d_init, _ = final_params(tmp_path / 'init', config)  # a fresh run's state: the initial one
  train.train_and_evaluate(config, str(tmp_path / 'run'))
  _, d_trained, step = final_params(tmp_path / 'run', config)
  assert int(step) == 2
  for name in ('kernel', 'bias'):
    before, after = d_init['real_fake'][name], d_trained['real_fake'][name]
    assert not np.array_equal(before, after), name
  logged = read_metrics(tmp_path / 'run')[-1]
  for key in ('d/sigmoid_real', 'd/sigmoid_fake', 'g/sigmoid_gen'):
    assert np.isfinite(logged[key]) and logged[key] > 0, key
