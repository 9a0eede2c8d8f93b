"""num_seeds=K: K independent runs in one step, seed i being the run of seed+i.

Seed i of a K-seed run is compared with the single run of seed+i on GAN-cls's smoke config
in float32 (BatchNorm, labels, the mismatched-label input). On the CPU each seed's step is its
own copy of the single-seed step, so they agree bit for bit. On accelerators vmap turns the
per-seed convolutions and matmuls into batched ones that XLA may sum in another order, so float32
rounding differs, and Adam turns a rounding difference in a near-zero gradient into up to a
step's size: leaves are compared to 5e-4 of their scale, as tests/test_parallel.py justifies
for 1 against 4 devices. Measured after 4 steps: at most 7.6e-5 of scale (G's BatchNorm_1
bias, seed 1); the MLP 'gan' agrees to 2e-5. SGAN's 4-step smoke run is chaotic in float32
across summation orders (see test_parallel.py): there, seed 0 differs by up to 0.27 of a
leaf's scale (G's Dense_0 bias) and its losses by 6e-5, so SGAN is checked here for what a
K-seed run adds (its seeds' labeled subsets, resume), not for float32 equality.
"""

import json
import os
from unittest import mock

import chex
import jax
import numpy as np
import pytest
from test_train import load_config, read_metrics, straight_and_interrupted_runs

from gan_jax import checks, data, evaluation, train
from gan_jax.run import Run
from gan_jax.setup import Setup
from gan_jax.step import build_step


def _leaves(state) -> dict:
  """Every leaf of a state by key path (the states of two runs hold different module objects)."""
  return {
    jax.tree_util.keystr(p): np.asarray(x)
    for p, x in jax.tree_util.tree_leaves_with_path(jax.device_get(state))
  }


def _scaled(tree, reference):
  """Each leaf over its largest magnitude in `reference` (one tolerance for params and Adam's moments)."""
  return jax.tree.map(
    lambda x, r: np.asarray(x, np.float64) / max(float(np.abs(r).max()), 1e-30), tree, reference
  )


def _steps(config, workdir):
  """The run's fresh state after `train.num_steps` steps of its (jitted) train step."""
  run = Run(config, str(workdir))
  run.checkpointer.close()
  step = jax.jit(
    build_step(
      config, run.setup.generator, run.setup.discriminator, run.setup.mesh, run.setup.seeds
    ).train_step
  )
  state = run.state
  for _ in range(config.train.num_steps):
    state, metrics = step(state, run.batches)
  return run, jax.device_get(state), jax.device_get(metrics)


def test_k_seeds_skip_the_lazy_terms_on_the_other_steps(tmp_path):
  """The lazy update is chosen by lax.cond on the step number, which every seed shares: unbatched
  under the seeds' vmap (on accelerators), it stays a branch. A per-seed step would make it a select that runs R1's
  extra backward pass at every step."""
  config = load_config('gan')
  config.num_seeds = 2
  config.loss.d_terms = {'bce_real': 1.0, 'bce_fake': 1.0, 'r1': 10.0}
  config.loss.hparams.lazy_every = 2
  run = Run(config, str(tmp_path))
  run.checkpointer.close()
  step = build_step(
    config, run.setup.generator, run.setup.discriminator, run.setup.mesh, run.setup.seeds
  ).train_step
  assert 'cond[' in str(jax.make_jaxpr(step)(run.state, run.batches))


def test_seed_i_of_a_k_seed_run_is_the_single_run_of_seed_plus_i(tmp_path):
  config = load_config('gan_cls')
  config.seed, config.num_seeds = 3, 2
  run, state, metrics = _steps(config, tmp_path / 'seeds')
  assert state.step.shape == (2,) and metrics['d_loss'].shape == (2,)
  initial = jax.device_get(run.setup.seeds.split(run.state))
  for i in range(2):
    single_config = load_config('gan_cls')
    single_config.seed = 3 + i
    single_run, single_state, single_metrics = _steps(single_config, tmp_path / f'seed_{i}')
    # The same initial state, bit for bit: vmap draws the same random numbers per seed.
    chex.assert_trees_all_equal(_leaves(initial[i]), _leaves(single_run.state))
    seed_state, single_state = (
      _leaves(jax.tree.map(lambda x, i=i: x[i], state)),
      _leaves(single_state),
    )
    if jax.default_backend() == 'cpu':  # one unrolled copy of the step per seed
      chex.assert_trees_all_equal(seed_state, single_state)
    else:
      chex.assert_trees_all_close(
        _scaled(seed_state, single_state), _scaled(single_state, single_state), atol=5e-4, rtol=0
      )
    chex.assert_trees_all_close(
      {k: v[i] for k, v in metrics.items()}, single_metrics, atol=1e-6, rtol=1e-5
    )


def _untrained_classifier(dataset):
  """A fixed, untrained eval classifier: the scores' bookkeeping is under test, not their values."""
  images, _ = dataset.split('train')
  params = evaluation.Classifier(10).init(jax.random.PRNGKey(0), images[:1].astype(np.float32))[
    'params'
  ]
  return evaluation.EvalClassifier(params, 10, 0.5)


def test_k_seed_run_logs_grids_and_scores_per_seed_with_mean_and_std(tmp_path):
  config = load_config('gan')
  config.num_seeds, config.eval.every = 3, 4
  with mock.patch.object(evaluation, 'load_classifier', _untrained_classifier):
    last = train.train_and_evaluate(config, str(tmp_path))

  seeds = [f'seed_{i}' for i in range(3)]
  scores = json.loads((tmp_path / 'eval.json').read_text())
  assert scores['step'] == 4
  for metric in ('fid_classifier', 'kid_classifier', 'precision', 'recall', 'class_coverage'):
    values = [scores[f'{metric}/{s}'] for s in seeds]
    assert scores[metric] == pytest.approx(np.mean(values))
    assert scores[f'{metric}/std'] == pytest.approx(np.std(values, ddof=1))
  assert len({scores[f'fid_classifier/{s}'] for s in seeds}) == 3  # three different generators
  row = [r for r in read_metrics(tmp_path) if 'd_loss' in r][-1]
  assert row['step'] == 4 and last['d_loss'] == row['d_loss']
  assert row['d_loss'] == pytest.approx(np.mean([row[f'd_loss/{s}'] for s in seeds]))
  assert {'d_loss/std', 'g_loss/std', 'd_acc_real/seed_2'} <= set(row)
  assert 'eval/fid_classifier/seed_2' in read_metrics(tmp_path)[-1]
  assert sorted(os.listdir(tmp_path / 'samples')) == seeds
  assert all(os.listdir(tmp_path / 'samples' / s) == ['step_000004.png'] for s in seeds)


@pytest.mark.parametrize('value', [0, -1])
def test_bad_num_seeds_is_one_line_error_naming_the_field(value):
  config = load_config('gan')
  config.num_seeds = value
  with pytest.raises(ValueError) as error:
    checks.check_config(config)
  assert f'num_seeds={value}' in str(error.value) and '\n' not in str(error.value)


def test_k_seed_run_resumes_exactly_with_every_seeds_labeled_subset(tmp_path):
  config = load_config('sgan')
  config.num_seeds = 2
  config.train.sample_every = 1000  # no grids: they only cost time here
  straight, interrupted = straight_and_interrupted_runs(config, tmp_path)

  resumed = Run(config, str(interrupted))
  resumed.checkpointer.close()
  expected = Run(config, str(straight))
  expected.checkpointer.close()
  chex.assert_trees_all_equal(_leaves(resumed.state), _leaves(expected.state))
  assert resumed.start_step == 4 and jax.device_get(resumed.state.step).tolist() == [4, 4]
  # The checkpoint keeps each seed's own labeled subset, the one its single run would draw.
  labels = data.load_split('mnist5k', 'train')[1]
  subsets = [data.labeled_subset(labels, config.data.num_labeled, 10, seed) for seed in (0, 1)]
  np.testing.assert_array_equal(resumed.labeled_indices, subsets)
  assert not np.array_equal(*subsets)


def test_a_shared_labeled_seed_gives_every_seed_the_references_subset(tmp_path):
  config = load_config('sgan')
  config.num_seeds, config.data.labeled_seed = 2, 1
  subsets = Setup(config, str(tmp_path / 'run')).labeled_subsets()
  labels = data.load_split('mnist5k', 'train')[1]
  shared = data.reference_labeled_subset(labels, config.data.num_labeled, 10, 1)
  np.testing.assert_array_equal(subsets, [shared, shared])
