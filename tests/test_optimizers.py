"""The optimizers a config names (gan_jax.state.make_optimizer): the learning rate's linear decay
in closed form, counted in each net's own updates, and no change to the optimizer state of runs
without it (their checkpoints keep restoring)."""

import jax
import jax.numpy as jnp
from ml_collections import ConfigDict
import numpy as np
import optax
from test_train import load_config

from gan_jax import models
from gan_jax.state import create_state, learning_rate, make_optimizer

PARAMS = {'w': jnp.zeros(3)}


def step_sizes(tx: optax.GradientTransformation, num_updates: int) -> list[float]:
  """The size of each of `num_updates` updates of a unit gradient: SGD's learning rate."""
  opt_state, sizes = tx.init(PARAMS), []
  for _ in range(num_updates):
    updates, opt_state = tx.update({'w': jnp.ones(3)}, opt_state, PARAMS)
    sizes.append(-float(updates['w'][0]))
  return sizes


def sgd(learning_rate: float, linear_decay: float) -> ConfigDict:
  return ConfigDict({'name': 'sgd', 'learning_rate': learning_rate, 'linear_decay': linear_decay})


def test_the_rate_falls_linearly_to_zero_over_the_last_fraction_of_the_run():
  """lr 0.3 for 8 updates, the last half decaying: constant for updates 0-3, then 0.3·(8 − c)/4,
  the shape of the first Improved GAN code's lr·min(3 − epoch/100, 1) over its last third."""
  sizes = step_sizes(make_optimizer(sgd(0.3, 0.5), num_steps=8), 9)
  np.testing.assert_allclose(sizes, [0.3] * 5 + [0.225, 0.15, 0.075, 0.0], rtol=1e-6)
  # Without a decay, the rate is the constant it was before the field existed.
  np.testing.assert_allclose(step_sizes(make_optimizer(sgd(0.3, 0.0), num_steps=8), 9), 0.3)


def test_a_run_without_a_decay_keeps_its_optimizer_state():
  """A constant rate stays a float: Adam's state has no schedule count, so a checkpoint written
  before the field existed restores into it."""
  config = ConfigDict(
    {'name': 'adam', 'learning_rate': 1e-3, 'b1': 0.5, 'b2': 0.999, 'eps': 1e-8, 'eps_root': 0.0}
  )
  without_field = jax.tree.structure(make_optimizer(config, 100).init(PARAMS))
  assert without_field == jax.tree.structure(optax.adam(1e-3).init(PARAMS))
  config.linear_decay = 0.0
  assert jax.tree.structure(make_optimizer(config, 100).init(PARAMS)) == without_field
  config.linear_decay = 0.5  # a schedule counts its updates in the state
  assert jax.tree.structure(make_optimizer(config, 100).init(PARAMS)) != without_field


def test_d_decays_over_its_own_updates():
  """With train.d_steps=2, D updates twice a step: its decay spans 2·num_steps updates, G's
  num_steps, so both reach 0 at the run's last step."""
  config = load_config('gan')
  config.train.num_steps, config.train.d_steps = 4, 2
  for net in ('g', 'd'):
    config.optimizer[net].update({'name': 'sgd', 'learning_rate': 0.1, 'linear_decay': 0.5})
  generator, discriminator = models.build(config.model, 10, (28, 28, 1))
  state = create_state(config, generator, discriminator, (28, 28, 1))
  np.testing.assert_allclose(step_sizes(state.g.tx, 5), [0.1] * 3 + [0.05, 0.0], rtol=1e-6)
  np.testing.assert_allclose(
    step_sizes(state.d.tx, 9), [0.1] * 5 + [0.075, 0.05, 0.025, 0.0], rtol=1e-6
  )


def test_first_commit_variant_has_the_reference_first_codes_rate():
  """configs/improved_gan_mnist.py:first_commit: at the start of each epoch (600 steps) the rate
  is bb3d27b's 0.001·min(3 − epoch/100, 1), for G and D, and D is scored unaveraged."""
  config = load_config('improved_gan_mnist', 'first_commit')
  assert config.model.d_ema_decay == 0.0 and config.train.num_steps == 180_000
  for net in ('g', 'd'):
    schedule = learning_rate(config.optimizer[net], config.train.num_steps)
    for epoch in (0, 150, 200, 201, 250, 299, 300):
      expected = 1e-3 * min(3 - epoch / 100, 1)
      np.testing.assert_allclose(schedule(600 * epoch), expected, rtol=1e-5, atol=1e-9)
