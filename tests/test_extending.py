"""README "Extending gan_jax": a loss term and a pair of models added from outside the package.

A term is one entry of `losses.D_TERMS` (or `G_TERMS`); a model is one entry of
`models.GENERATORS` (or `DISCRIMINATORS`). Nothing else changes: the config names them.
"""

import flax.linen as nn
import jax
import numpy as np
import pytest
from test_train import load_config

from gan_jax import losses, models, train
from gan_jax.run import Run
from gan_jax.step import build_step
from gan_jax.writers import read_metrics


def hinge_real(logits: jax.Array) -> jax.Array:
  """max(0, 1 − D(x)) (Lim & Ye 2017), per example."""
  return jax.nn.relu(1.0 - logits)


class ToyGenerator(nn.Module):
  """z → Dense H·W·C → tanh."""

  image_shape: tuple[int, int, int] = (28, 28, 1)

  @nn.compact
  def __call__(self, z, labels, train: bool):
    del labels, train
    return nn.tanh(nn.Dense(int(np.prod(self.image_shape)))(z)).reshape(-1, *self.image_shape)


class ToyDiscriminator(nn.Module):
  """Flattened image → one logit; zero-initialised, so every logit starts at exactly 0."""

  num_classes: int = 10

  @nn.compact
  def __call__(self, images, labels, train: bool):
    del labels, train
    features = images.reshape(images.shape[0], -1)
    return nn.Dense(1, kernel_init=nn.initializers.zeros)(features), features


@pytest.fixture
def extended(monkeypatch):
  """The toy term and models registered, as a user's own module would do on import."""
  monkeypatch.setitem(
    losses.D_TERMS,
    'toy_hinge_real',
    losses.Term(
      needs=('real',),
      fn=lambda outputs, hp: hinge_real(outputs['real'].logits[..., 0]),
      boundary=lambda hp: 0.0,
    ),
  )
  monkeypatch.setitem(models.GENERATORS, 'toy', ToyGenerator)
  monkeypatch.setitem(models.DISCRIMINATORS, 'toy', ToyDiscriminator)
  config = load_config('gan')
  config.model.generator = config.model.discriminator = 'toy'
  config.loss.d_terms = {'toy_hinge_real': 1.0, 'bce_fake': 1.0}
  return config


def test_a_term_and_models_added_from_outside_train(extended, tmp_path):
  run = Run(extended, str(tmp_path / 'step'))
  run.checkpointer.close()
  assert isinstance(run.setup.generator, ToyGenerator) and isinstance(
    run.setup.discriminator, ToyDiscriminator
  )
  step = jax.jit(
    build_step(
      extended, run.setup.generator, run.setup.discriminator, run.setup.mesh, run.setup.seeds
    ).train_step
  )
  _, metrics = step(run.state, run.batches)
  # D's logits start at 0: hinge 1 on real, BCE log 2 on fake, and D calls nothing real.
  assert float(metrics['d/toy_hinge_real']) == 1.0
  np.testing.assert_allclose(metrics['d/bce_fake'], np.log(2), rtol=1e-6)
  assert float(metrics['d_acc_real']) == 0.0 and float(metrics['d_acc_fake']) == 1.0

  last = train.train_and_evaluate(extended, str(tmp_path / 'run'))
  rows = read_metrics(str(tmp_path / 'run'))
  assert [r['step'] for r in rows] == [2, 4]
  assert last['d/toy_hinge_real'] < 1.0  # D learned to push real logits up
  assert all(np.isfinite(v) for v in last.values())


def test_an_unregistered_term_is_refused_before_anything_runs(tmp_path):
  config = load_config('gan')
  config.loss.d_terms = {'toy_hinge_real': 1.0, 'bce_fake': 1.0}
  with pytest.raises(ValueError, match=r'loss\.d_terms\.toy_hinge_real.*valid choices: .*bce_fake'):
    Run(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()
