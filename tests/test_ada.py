"""ADA's adaptive probability in the step (data.augment_target): p moved by `augment.ada_step` from
r_t of D's realness on the real batch, p on every image D sees, one p per seed, p through a
resume, the config error, and the step left as it was when ADA is off.

The vanilla GAN's smoke config, with two seeds (a p each) unless said otherwise: MLPs compile
fast and have no dropout, so D's logits depend only on its parameters and the (augmented) images.
"""

import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train import load_config

from gan_jax import augment, checks, losses
from gan_jax import step as step_lib
from gan_jax.objective import Objective
from gan_jax.run import Run
from gan_jax.step import build_step

TARGET = augment.ADA_TARGET


def ada_config(target=TARGET, policy='translation', lsgan=False, num_seeds=2, d_steps=1):
  config = load_config('gan')
  config.num_seeds = num_seeds
  config.train.d_steps = d_steps
  config.data.augment = policy
  config.data.augment_target = target
  if lsgan:
    config.loss.d_terms = {'lsgan_real': 1.0, 'lsgan_fake': 1.0}
    config.loss.g_terms = {'lsgan_gen': 1.0}
  return config


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """`runs(target, policy, lsgan, d_steps)` -> (run, jitted one-step function), each built once."""
  built = {}

  def get(target=TARGET, policy='translation', lsgan=False, d_steps=1):
    key = (target, policy, lsgan, d_steps)
    if key not in built:
      config = ada_config(target, policy, lsgan, d_steps=d_steps)
      run = Run(config, str(tmp_path_factory.mktemp('run')))
      run.checkpointer.close()
      step = build_step(
        config, run.setup.generator, run.setup.discriminator, run.setup.mesh, run.setup.seeds
      )
      built[key] = run, jax.jit(step.train_step)
    return built[key]

  return get


def with_d_output(state, bias, zero_kernel=False):
  """`state` with D's output bias set per seed (`zero_kernel`: every logit is then the bias)."""
  params = state.d.params
  last = params['Dense_1']
  last = {
    'kernel': jnp.zeros_like(last['kernel']) if zero_kernel else last['kernel'],
    'bias': jnp.asarray(bias, jnp.float32).reshape(last['bias'].shape),
  }
  return state.replace(d=state.d.replace(params={**params, 'Dense_1': last}))


def params_of(state):
  return jax.device_get((state.g.params, state.d.params))


def test_p_moves_by_ada_step_of_rt_on_the_real_batch(runs):
  """Seed 0's D calls every real image real (r_t = 1 > target): p rises by a batch / 500k per
  step. Seed 1's calls none real (r_t = -1): p stays at 0, clipped. One p per seed."""
  run, step = runs()
  state = with_d_output(run.state, [100.0, -100.0])
  np.testing.assert_array_equal(state.augment_p, [0.0, 0.0])
  p, batch = np.zeros(2, np.float32), run.setup.config.data.batch_size
  for _ in range(2):
    state, metrics = step(state, run.batches)
    np.testing.assert_array_equal(metrics['ada_rt'], [1.0, -1.0])
    # The same reading of D as the accuracy metric's (no logit lies on the boundary here).
    np.testing.assert_array_equal(metrics['ada_rt'], 2 * metrics['d_acc_real'] - 1)
    p = np.asarray(augment.ada_step(p, metrics['ada_rt'], TARGET, batch))
    np.testing.assert_allclose(state.augment_p, p, rtol=1e-6)
    np.testing.assert_array_equal(metrics['augment_p'], state.augment_p)
  np.testing.assert_allclose(state.augment_p, [2 * batch / 500_000, 0.0], rtol=1e-6)


def test_p_moves_by_the_real_images_of_every_d_update(runs):
  """d_steps=2: D sees two real batches a step, so p moves by 2 batches / 500k, as stylegan2-ada
  counts images (seed 0, r_t = 1); seed 1 (r_t = -1) stays at 0."""
  run, step = runs(d_steps=2)
  state, metrics = step(with_d_output(run.state, [100.0, -100.0]), run.batches)
  np.testing.assert_array_equal(metrics['ada_rt'], [1.0, -1.0])
  np.testing.assert_allclose(state.augment_p, [2 * run.setup.config.data.batch_size / 500_000, 0.0])


def test_rt_is_the_mean_sign_over_every_d_update_of_the_step():
  """Three real batches of four: D calls none of the first real and all of the last two, so
  r_t = (-4 + 4 + 4) / 12 = 1/3 < target and p falls by 12 images' worth; the last batch alone
  (r_t = 1) would raise it."""
  objective = Objective(ada_config().loss)
  spec = types.SimpleNamespace(objective=objective, augment_target=TARGET, batch_size=4)
  real = lambda logit: losses.DiscOutput(jnp.full((4, 1), logit), jnp.zeros((4, 2)), None)
  p, rt = step_lib.adapt_augment_p(spec, jnp.float32(0.5), [real(-3.0), real(3.0), real(3.0)])
  np.testing.assert_allclose(rt, 1 / 3, rtol=1e-6)
  np.testing.assert_allclose(p, 0.5 - 12 / 500_000, rtol=1e-6)


def test_rt_reads_realness_from_the_loss_boundary(runs):
  """LSGAN's D calls an image real above (a + b) / 2 = 0.5: logits of 0.3 count as fake
  (r_t = -1), 0.7 as real (r_t = 1), as the accuracy metrics count them; the sign of the raw
  logit would give 1 for both."""
  run, step = runs(lsgan=True)
  state = with_d_output(run.state, [0.3, 0.7], zero_kernel=True)
  state, metrics = step(state, run.batches)
  np.testing.assert_array_equal(metrics['ada_rt'], [-1.0, 1.0])
  np.testing.assert_array_equal(metrics['d_acc_real'], [0.0, 1.0])
  np.testing.assert_allclose(state.augment_p, [0.0, run.setup.config.data.batch_size / 500_000])


def one_step(runs, target, policy='translation', p=None):
  """G's and D's parameters after one step from the fresh state (with ADA's p set to `p`)."""
  run, step = runs(target, policy)
  state = run.state if p is None else run.state.replace(augment_p=jnp.full(2, p, jnp.float32))
  return params_of(step(state, run.batches)[0])


def test_p_reaches_every_image_d_sees(runs):
  """At p = 0 the step is the one without augmentation, at p = 1 that of DiffAugment on every
  image (ADA off), bit for bit, for G and D: p reaches real and fake, in D's update and in G's."""
  plain, full = one_step(runs, 0.0, policy=''), one_step(runs, 0.0)
  chex.assert_trees_all_equal(one_step(runs, TARGET, p=0.0), plain)
  chex.assert_trees_all_equal(one_step(runs, TARGET, p=1.0), full)
  for net in (0, 1):  # the references differ in G and in D, so each comparison can fail
    assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, plain[net], full[net])))


def augmentations_without_p(spec, names, key, p):
  """DiffAugment of D's inputs as before ADA: `diff_augment` at its default probability."""
  assert p is None  # ADA off passes no p anywhere
  return {
    n: lambda images, i=i: augment.diff_augment(images, jax.random.fold_in(key, i), spec.augment)
    for i, n in enumerate(sorted(names))
  }


def test_off_keeps_the_state_and_the_step(runs, monkeypatch):
  """data.augment_target = 0: no p in the state or the metrics, and the step of DiffAugment
  before ADA, bit for bit."""
  run, step = runs(0.0)
  state, metrics = step(run.state, run.batches)
  assert run.state.augment_p is None and state.augment_p is None
  assert not {'augment_p', 'ada_rt'} & set(metrics)
  monkeypatch.setattr(step_lib, 'augmentations', augmentations_without_p)
  before_ada = build_step(
    run.setup.config, run.setup.generator, run.setup.discriminator, run.setup.mesh, run.setup.seeds
  )
  chex.assert_trees_all_equal(
    jax.device_get((state, metrics)),
    jax.device_get(jax.jit(before_ada.train_step)(run.state, run.batches)),
  )


@pytest.mark.parametrize(
  'field, value, message',
  [
    (
      'data.augment',
      '',
      "^data.augment_target=0.6 adapts how often data.augment applies, but data.augment='' is "
      "off; set it too, e.g. 'color,translation,cutout'$",
    ),
    ('data.augment_target', 1.5, '^data.augment_target=1.5 must be a finite number >= 0 and <= 1'),
    (
      'loss.d_terms',
      {'bce_real': 0.0, 'bce_fake': 1.0},
      "^data.augment_target=0.6 reads D's logits on the real batch, which no term of loss.d_terms=",
    ),
  ],
)
def test_config_errors_name_the_fields(field, value, message):
  config = ada_config()
  section, key = field.split('.')
  config[section][key] = value
  with pytest.raises(ValueError, match=message) as error:
    checks.check_config(config)
  assert '\n' not in str(error.value)
