"""The improved-GAN system end to end (configs/improved_gan_mnist.py:smoke, on mnist5k): D
initialised on training images, its Polyak average scored, a validation split held out."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_train import load_config, read_metrics

from gan_jax import data, train
from gan_jax.run import Run
from gan_jax.state import Averaged, NetState, ema_update

VALIDATION = 400


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory, classifier):
  """A 4-step run with an evaluation at its end and 400 training images held out (its eval
  classifier is the session's, trained once with optimizations on); G's update draws its own
  noise and real batch, as the reference's does (train.g_batch='fresh')."""
  workdir = tmp_path_factory.mktemp('improved_gan')
  config = load_config('improved_gan_mnist')
  config.data.validation = VALIDATION
  config.train.g_batch = 'fresh'
  config.eval.every = 4
  train.train_and_evaluate(config, str(workdir))
  run = Run(config, str(workdir))
  run.checkpointer.close()
  return config, workdir, run


def test_the_smoke_run_trains_and_scores_both_splits(smoke_run):
  config, workdir, _ = smoke_run
  row = read_metrics(workdir)[-2]
  assert {'d/labeled_classes', 'd/sgan_real', 'd/sgan_fake', 'g/feature_matching'} <= set(row)
  scores = json.loads((workdir / 'eval.json').read_text())
  assert {'d_test_accuracy', 'd_validation_accuracy'} <= set(scores)
  assert 'd_validation_accuracy' in (workdir / 'report.md').read_text()


def test_validation_images_are_held_out_of_training(smoke_run):
  config, _, run = smoke_run
  dataset = data.open_dataset(config.data)
  whole, _ = dataset.read('train')
  train_images, _ = dataset.split('train')
  held_out, _ = dataset.split('validation')
  assert len(held_out) == VALIDATION and len(train_images) == len(whole) - VALIDATION
  np.testing.assert_array_equal(np.concatenate([train_images, held_out]), whole)
  assert run.setup.image_shape == whole.shape[1:] and run.batches.images.shape[0] == len(
    train_images
  )
  # Every pool, G's own included, indexes the training images alone.
  assert set(run.batches.pools) == {'real', 'labeled', 'g_real'}
  assert all(int(pool.max()) < len(train_images) for pool in run.batches.pools.values())


def test_d_is_initialised_on_training_images(smoke_run):
  """Weight normalisation's data-dependent init through the run: the first layer's scale and bias
  make its pre-activations on the init batch, seen with the input noise σ 0.3 of the init pass,
  centred with unit spread. The pass's own noise draw is not recoverable here, so its scales are
  compared with those of fresh draws on the same images and directions."""
  config, _, run = smoke_run
  images = run.setup.init_images(config.seed)
  assert images.shape == (config.model.d_init_batch, 28, 28, 1)
  # The same draw for the same seed, another for another seed.
  np.testing.assert_array_equal(images, run.setup.init_images(config.seed))
  assert not np.array_equal(images, run.setup.init_images(config.seed + 1))
  layer = run.states.at(0).d.params['WeightNormDense_0']
  x = (images.reshape(len(images), -1) + 1) / 2
  kernel = np.asarray(layer['kernel'])
  direction = kernel / np.linalg.norm(kernel, axis=0)
  scale, bias = np.asarray(layer['scale']), np.asarray(layer['bias'])
  # g = 1 / std of the noisy pre-activations over the batch: the mean log-scale over the 1,000
  # units of 50 fresh draws, each within a few of their own spread (a blank-image init, g = 1,
  # would read 0; one without the noise about 0.5 higher, the draws spread about 0.01).
  rng = np.random.default_rng(0)
  draws = [
    -np.log(((x + 0.3 * rng.standard_normal(x.shape)) @ direction).std(0)).mean() for _ in range(50)
  ]
  assert abs(np.log(scale).mean() - np.mean(draws)) < 4 * np.std(draws) + 1e-3
  # b = −g · mean: on the clean images the mean over units is what the noise left, near 0.
  y = x @ direction * scale + bias
  assert abs(y.mean(0).mean()) < 0.05 and np.median(np.abs(y.mean(0))) < 0.25


def test_d_ema_is_the_warmed_up_average_of_d(smoke_run):
  _, _, run = smoke_run
  state = run.state
  assert state.d_ema is not None and state.classifier is state.d_ema
  leaves = lambda tree: jax.tree.leaves(tree)
  assert any(
    not np.array_equal(a, b) for a, b in zip(leaves(state.d_ema.params), leaves(state.d.params))
  )
  net = NetState.create(
    apply_fn=None, params={'w': jnp.full(3, 2.0)}, tx=optax.sgd(0.1), batch_stats={}
  )
  ema = Averaged({'w': jnp.zeros(3)}, {})
  # At update 0 the warm-up gives (1 + 0) / (10 + 0) = 0.1 < 0.9999: 0.1·0 + 0.9·2.
  np.testing.assert_allclose(ema_update(ema, net, 0.9999, jnp.int32(0)).params['w'], 1.8)
  # Late in a run the decay itself: 0.9999·0 + 1e-4·2.
  late = ema_update(ema, net, 0.9999, jnp.int32(10**7)).params['w']
  np.testing.assert_allclose(late, 2e-4, rtol=1e-3)  # 1 − 0.9999 in float32: 1.00017e-4
