"""The stabilisation toolkit inside the step: input gradients (WGAN-GP, R1) against finite
differences of D, and of D after DiffAugment; lazy R1, the EMA of G against its closed form, and
whose passes move the running statistics (G's last pass, D's pass on real images)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train import load_config, read_metrics, straight_and_interrupted_runs

from gan_jax import augment, losses, models
from gan_jax import rng as rng_lib
from gan_jax import run as run_lib
from gan_jax import state as state_lib
from gan_jax.passes import StepSpec, apply_d, augmentations, gather
from gan_jax.rng import step_keys
from gan_jax.run import Run
from gan_jax.step import build_step, d_loss


def latest_state(config, workdir):
  """The state of the latest checkpoint in `workdir`."""
  run = Run(config, str(workdir))
  run.checkpointer.close()
  return run.state


@pytest.fixture(scope='module')
def gan_run(tmp_path_factory):
  """The vanilla GAN's smoke run: an MLP D (piecewise linear, so finite differences are exact)."""
  config = load_config('gan')
  run = Run(config, str(tmp_path_factory.mktemp('gan')))
  run.checkpointer.close()
  return config, run


def jitted_step(config, workdir):
  """The run of `config` (fresh state) and its jitted one-step function."""
  run = Run(config, str(workdir))
  run.checkpointer.close()
  return run, jax.jit(
    build_step(
      config, run.setup.generator, run.setup.discriminator, run.setup.mesh, run.setup.seeds
    ).train_step
  )


def spec_of(config, run) -> StepSpec:
  return StepSpec.from_config(config, run.setup.generator, run.setup.discriminator, run.setup.mesh)


def finite_difference_grads(fn, images: np.ndarray, eps: float = 1e-2) -> np.ndarray:
  """Central differences of the scalar fn(images) with respect to each pixel."""
  grads = np.zeros_like(images)
  for index in np.ndindex(images.shape):
    up, down = images.copy(), images.copy()
    up[index] += eps
    down[index] -= eps
    grads[index] = (fn(up) - fn(down)) / (2 * eps)
  return grads


def small_d(run, shape=(3, 3, 1)):
  """The run's MLP D on small images (it flattens any shape): its params and a jitted pass."""
  params = run.setup.discriminator.init(
    jax.random.PRNGKey(3), jnp.zeros((1, *shape)), jnp.zeros(1, jnp.int32), train=False
  )['params']
  return params


def test_input_gradients_match_finite_differences_of_d(gan_run):
  config, run = gan_run
  spec, params = spec_of(config, run), small_d(run)
  images = np.random.default_rng(0).uniform(-1, 1, (2, 3, 3, 1)).astype(np.float32)
  labels, key = jnp.zeros(2, jnp.int32), jax.random.PRNGKey(1)
  apply = jax.jit(lambda x: apply_d(spec, params, {}, x, labels, key, True)[0])
  realness_sum = lambda x: float(jnp.sum(losses.realness(apply(x)[0])))
  fd = finite_difference_grads(realness_sum, images)
  np.testing.assert_allclose(np.asarray(apply(images)[2]), fd, rtol=1e-2, atol=1e-4)
  assert np.abs(fd).max() > 1e-3  # D does depend on these pixels


@pytest.mark.parametrize('policy', ['', augment.REFERENCE_POLICY])
@pytest.mark.parametrize(
  'term, input_name', [('gradient_penalty', 'interpolated'), ('r1', 'real'), ('r2', 'fake')]
)
def test_gradient_terms_against_finite_differences(gan_run, term, input_name, policy):
  """WGAN-GP's (‖∇D(x̂)‖ − 1)² on interpolates and R1's (R2's) ½‖∇D(x)‖², each from D's input
  gradient as the step builds and scores it, against the same formula on finite differences.
  With DiffAugment, R1 and R2 take ∇ₓD(aug(x)) with respect to the images before the augmentation,
  as stylegan2-ada's Dr1 phase and DiffAugment's low-shot code do; x̂ lies between the augmented
  real and fake images and its gradient is D's own at x̂, as in DiffAugment's compare_gan code."""
  config, run = gan_run
  config = config.copy_and_resolve_references()
  config.data.augment = policy
  config.loss.d_terms = {'critic_real': 1.0, 'critic_fake': 1.0, term: 1.0}
  spec, params = spec_of(config, run), small_d(run, (8, 8, 1))  # translation by 1, cutout 4×4
  rng = np.random.default_rng(1)
  labels = jnp.zeros(3, jnp.int32)
  real, fake = ((jnp.asarray(rng.uniform(-1, 1, (3, 8, 8, 1)), jnp.float32), labels) for _ in '01')
  keys = (jax.random.PRNGKey(2), jax.random.PRNGKey(7))  # dropout, augmentation
  seen = augmentations(spec, spec.objective.d_needs, keys[1], None)
  inputs = spec.objective.d_inputs(real, fake, None, jax.random.PRNGKey(5), 10, seen)
  assert set(inputs) == {'real', 'fake', input_name}
  _, (parts, _, _) = d_loss(spec, params, {}, inputs, keys, None, lazy=True)

  d_of = seen.get(input_name, lambda v: v)  # D's view of the input: x̂ is not augmented again
  single = jax.jit(lambda v: apply_d(spec, params, {}, d_of(v), labels, keys[0], False)[0][0])
  x = np.asarray(inputs[input_name][0])
  grads = finite_difference_grads(lambda v: float(jnp.sum(losses.realness(single(v)))), x)
  norms = np.linalg.norm(grads.reshape(3, -1), axis=1)
  expected = np.mean((norms - 1) ** 2) if term == 'gradient_penalty' else np.mean(0.5 * norms**2)
  np.testing.assert_allclose(float(parts[term]), expected, rtol=2e-2)
  if term == 'gradient_penalty':  # x̂ = f + ε·(r − f) per example, r and f the images D sees
    ends = (('real', real[0]), ('fake', fake[0]))
    r, f = (np.asarray(seen.get(n, lambda v: v)(b)).reshape(3, -1) for n, b in ends)
    at = (np.arange(3), np.abs(r - f).argmax(1))  # ε read where the two differ most
    eps = ((x.reshape(3, -1) - f)[at] / (r - f)[at])[:, None]
    assert np.all((eps >= 0) & (eps <= 1))
    np.testing.assert_allclose(x.reshape(3, -1), f + eps * (r - f), atol=1e-5)


def test_lazy_r1_applies_every_k_steps_with_k_times_the_weight(gan_run, tmp_path):
  config, _ = gan_run
  config = config.copy_and_resolve_references()
  config.loss.d_terms = {'bce_real': 1.0, 'bce_fake': 1.0, 'r1': 10.0}
  config.loss.hparams.lazy_every = 2
  run, step = jitted_step(config, tmp_path)
  state, rows = run.state, []
  for _ in range(3):
    state, metrics = step(state, run.batches)
    rows.append(jax.device_get(metrics))
  for i, row in enumerate(rows):
    parts = row['d/bce_real'] + row['d/bce_fake']
    if i % 2 == 0:  # steps 0 and 2 apply R1, weighted 2 × 10
      assert row['d/r1'] > 0
      np.testing.assert_allclose(row['d_loss'], parts + 20.0 * row['d/r1'], rtol=1e-5)
    else:  # step 1 logs R1 as step 0 applied it (a log every 2 steps would show it, not 0)
      assert row['d/r1'] == rows[i - 1]['d/r1'] and np.isclose(row['d_loss'], parts, rtol=1e-6)
  assert state.lazy_parts['r1'] == rows[2]['d/r1']


def test_ema_of_g_equals_its_closed_form(tmp_path):
  """Decay 0.2, so that 4 steps see both sides of d = min(decay, (1 + t) / (10 + t)): the warm-up
  (0.1, 0.18) below the decay, then the cap (0.2 where the warm-up gives 0.25, 0.31)."""
  config = load_config('dcgan')
  config.model.g_ema_decay = 0.2
  run, step = jitted_step(config, tmp_path)
  state = run.state
  chex.assert_trees_all_equal(state.g_ema.params, state.g.params)
  expected = jax.device_get(state.g.params)
  for t in range(4):
    state, _ = step(state, run.batches)
    d = min(0.2, (1 + t) / (10 + t))
    expected = jax.tree.map(
      lambda e, g: d * e + (1 - d) * g, expected, jax.device_get(state.g.params)
    )
  chex.assert_trees_all_close(jax.device_get(state.g_ema.params), expected, rtol=1e-5, atol=1e-7)
  assert state.sampler is state.g_ema
  assert not np.allclose(jax.tree.leaves(state.g_ema.params)[0], jax.tree.leaves(state.g.params)[0])


def test_g_statistics_move_once_per_step_with_several_d_steps(tmp_path):
  """With d_steps=2, G's running statistics are those of its last pass (one momentum update)."""
  config = load_config('dcgan')
  config.train.d_steps = 2
  run, step = jitted_step(config, tmp_path)
  new_state, _ = step(run.state, run.batches)
  keys = step_keys(run.state.rng, run.state.step)
  z_key = jax.random.split(jax.random.fold_in(keys.step, 1), 3)[0]  # the last D step's noise
  z = jax.random.normal(z_key, (config.data.batch_size, config.model.latent_dim))
  _, mutated = run.setup.generator.apply(
    {'params': run.state.g.params, 'batch_stats': run.state.g.batch_stats},
    z,
    jnp.zeros(len(z), jnp.int32),
    train=True,
    mutable=['batch_stats'],
  )
  chex.assert_trees_all_close(new_state.g.batch_stats, mutated['batch_stats'], rtol=1e-5, atol=1e-6)


def test_only_the_real_pass_moves_d_statistics(tmp_path):
  """SGAN's D sees fake, labeled and real batches, each normalised by its own statistics; its
  running statistics after a step are those of the real pass alone."""
  config = load_config('sgan')
  run, step = jitted_step(config, tmp_path)
  spec = spec_of(config, run)
  new_state, _ = step(run.state, run.batches)
  keys = step_keys(run.state.rng, run.state.step)
  drop_key = jax.random.split(jax.random.fold_in(keys.step, 0), 3)[1]
  images, labels = gather(spec, run.batches, 'real', keys.data, 0, config.data.batch_size, 0)
  # 'real' is the third of the sorted inputs (fake, labeled, real): its dropout key is fold_in(·, 2).
  _, stats = apply_d(
    spec,
    run.state.d.params,
    run.state.d.batch_stats,
    images,
    labels,
    jax.random.fold_in(drop_key, 2),
    False,
  )
  chex.assert_trees_all_close(new_state.d.batch_stats, stats, rtol=1e-5, atol=1e-6)


def test_streams_are_folded_from_the_base_key_not_neighbouring_seeds():
  """Grid, fresh-sample and eval noise of seed s never reuse PRNGKey(s + i), the base key of the
  run of seed s + i (seed i of a K-seed run)."""
  streams = (rng_lib.GRID_STREAM, rng_lib.SAMPLE_STREAM, rng_lib.EVAL_STREAM)
  keys = {tuple(np.asarray(jax.random.key_data(rng_lib.stream_key(0, s))).ravel()) for s in streams}
  neighbours = {
    tuple(np.asarray(jax.random.key_data(jax.random.PRNGKey(i))).ravel()) for i in range(4)
  }
  assert len(keys) == 3 and not keys & neighbours


def test_spectral_norm_gives_each_kernel_a_largest_singular_value_of_one():
  """After enough power iterations (one per training call), σ estimated for each of D's kernels
  is its largest singular value, so W / σ has a largest singular value of 1."""
  config = load_config('dcgan')
  config.model.d_kwargs = {'spectral_norm': True}
  _, discriminator = models.build(config.model, 10, (28, 28, 1))
  images = jax.random.normal(jax.random.PRNGKey(0), (4, 28, 28, 1))
  labels = jnp.zeros(4, jnp.int32)
  variables = discriminator.init(
    {'params': jax.random.PRNGKey(1), 'dropout': jax.random.PRNGKey(2)}, images, labels, train=False
  )

  @jax.jit
  def power_iteration(stats):
    _, mutated = discriminator.apply(
      {'params': variables['params'], 'batch_stats': stats},
      images,
      labels,
      train=True,
      rngs={'dropout': jax.random.PRNGKey(3)},
      mutable=['batch_stats'],
    )
    return mutated['batch_stats']

  stats = variables['batch_stats']
  for _ in range(200):
    stats = power_iteration(stats)
  # Inference mode leaves the vectors as they are.
  _, unchanged = discriminator.apply(
    {'params': variables['params'], 'batch_stats': stats},
    images,
    labels,
    train=False,
    mutable=['batch_stats'],
  )
  chex.assert_trees_all_equal(unchanged['batch_stats'], stats)
  sigmas = {}
  for path, sigma in jax.tree_util.tree_leaves_with_path(stats):
    name = jax.tree_util.keystr(path)
    if name.endswith("sigma']"):
      layer = name.split("['")[2].split('/')[0]  # e.g. Conv_1
      kernel = np.asarray(variables['params'][layer]['kernel'])
      sigmas[layer] = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[
        0
      ] / float(sigma)
  assert set(sigmas) == {'Conv_0', 'Conv_1', 'Dense_0'}
  np.testing.assert_allclose(list(sigmas.values()), 1.0, rtol=2e-3)


def test_resume_is_bitwise_with_every_option_on(tmp_path, monkeypatch):
  """Spectral norm (its vectors in the checkpoint), EMA of G, DiffAugment with ADA, hinge, lazy
  R1 and D's decaying learning rate (its count in the checkpoint): an interrupted and resumed run
  ends where the straight one does, bit for bit. ADA's p starts at 0.5 here: from 0, its 4 steps
  would reach 6.4e-5 at most and transform no image."""
  config = load_config('gan')  # MLPs: the options are under test, not the networks
  config.model.d_kwargs = {'spectral_norm': True}
  config.model.g_ema_decay = 0.99
  config.data.augment = augment.REFERENCE_POLICY
  config.data.augment_target = 0.6  # ADA's p, in the state
  config.loss.d_terms = {'hinge_real': 1.0, 'hinge_fake': 1.0, 'r1': 1.0}
  config.loss.g_terms = {'critic_gen': 1.0}
  config.loss.hparams.lazy_every = 2
  config.optimizer.d.linear_decay = 0.5
  fresh = lambda *args: state_lib.create_state(*args).replace(augment_p=jnp.float32(0.5))
  monkeypatch.setattr(run_lib, 'create_state', fresh)
  straight, interrupted = straight_and_interrupted_runs(config, tmp_path)
  states = [jax.device_get(latest_state(config, path)) for path in (straight, interrupted)]
  leaves = [
    {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(s)}
    for s in states
  ]
  chex.assert_trees_all_equal(*leaves)
  assert states[0].g_ema is not None and 'SpectralNorm_0' in states[0].d.batch_stats
  # p stayed near 0.5, where DiffAugment changes the images D sees.
  p = [row['augment_p'] for path in (straight, interrupted) for row in read_metrics(path)]
  assert min(p) > 0.4
  images = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (8, 28, 28, 1)), jnp.float32)
  policy = augment.parse_policy(config.data.augment)
  seen = augment.diff_augment(images, jax.random.PRNGKey(0), policy, states[0].augment_p)
  assert not np.array_equal(seen, images)
  assert any('g_ema' in k for k in leaves[0]) and any('/u' in k for k in leaves[0])
