"""The whole training state of a GAN run, as one pytree."""

from typing import Any

from flax import struct
import flax.linen as nn
from flax.training import train_state
import jax
import jax.numpy as jnp
from ml_collections import ConfigDict
import optax

from gan_jax.objective import Objective
from gan_jax.rng import INIT_STREAM


class NetState(train_state.TrainState):
  """One network: params, optimizer state and BatchNorm running statistics ({} if none)."""

  batch_stats: Any


class Averaged(struct.PyTreeNode):
  """An exponential moving average of a network's parameters and BatchNorm statistics."""

  params: Any
  batch_stats: Any


class GANState(struct.PyTreeNode):
  """G and D, the global step and the run's base key (each step folds the step number in), the
  EMA of G (None unless model.g_ema_decay > 0) that samples and evaluations use, ADA's
  probability of each augmentation (None unless data.augment_target > 0), each lazy term's mean
  at its last application, which the step logs in between (None unless lazy terms are on), and
  the EMA of D (None unless model.d_ema_decay > 0) whose class head evaluation scores."""

  step: jax.Array
  rng: jax.Array
  g: NetState
  d: NetState
  g_ema: Averaged | None = None
  augment_p: jax.Array | None = None
  lazy_parts: dict[str, jax.Array] | None = None
  d_ema: Averaged | None = None

  @property
  def sampler(self) -> NetState | Averaged:
    """The G that draws samples, grids and scores: its EMA where there is one."""
    return self.g if self.g_ema is None else self.g_ema

  @property
  def classifier(self) -> NetState | Averaged:
    """The D whose class head evaluation scores: its EMA where there is one."""
    return self.d if self.d_ema is None else self.d_ema


def ema_update(ema: Averaged, net: NetState, decay: float, step: jax.Array) -> Averaged:
  """ema ← d·ema + (1 − d)·net with d = min(decay, (1 + t) / (10 + t)) at update t (counted from
  0): the usual warm-up (TensorFlow's ExponentialMovingAverage), so early averages are not
  dominated by the random initialisation."""
  d = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
  mix = lambda old, new: d * old + (1 - d) * new
  return Averaged(
    jax.tree.map(mix, ema.params, net.params), jax.tree.map(mix, ema.batch_stats, net.batch_stats)
  )


def apply_inference(module: nn.Module, net: NetState, *inputs):
  """`module` in inference mode (BatchNorm running statistics, no dropout) with `net`'s variables."""
  return module.apply({'params': net.params, 'batch_stats': net.batch_stats}, *inputs, train=False)


OPTIMIZERS = {
  'adam': lambda c, lr: optax.adam(lr, b1=c.b1, b2=c.b2, eps=c.eps, eps_root=c.eps_root),
  'sgd': lambda c, lr: optax.sgd(lr, momentum=c.get('momentum') or None),
  'rmsprop': lambda c, lr: optax.rmsprop(lr),
}


def learning_rate(config: ConfigDict, num_steps: int) -> float | optax.Schedule:
  """`config.learning_rate`, falling linearly to 0 at update `num_steps` over the last
  `config.linear_decay` of them where that is > 0 (a constant stays a float, so the optimizer's
  state, and the checkpoints of runs without a decay, keep their structure)."""
  if not config.get('linear_decay'):
    return config.learning_rate
  span = max(1, round(config.linear_decay * num_steps))
  return optax.linear_schedule(config.learning_rate, 0.0, span, transition_begin=num_steps - span)


def make_optimizer(config: ConfigDict, num_steps: int) -> optax.GradientTransformation:
  """The optimizer `config` (one of `optimizer.{g,d}`) names, for a run of `num_steps` updates."""
  return OPTIMIZERS[config.name](config, learning_rate(config, num_steps))


def _init_net(
  module: nn.Module, tx: optax.GradientTransformation, key: jax.Array, *inputs
) -> NetState:
  variables = module.init({'params': key, 'dropout': key}, *inputs, train=False)
  return NetState.create(
    apply_fn=module.apply,
    params=variables['params'],
    tx=tx,
    batch_stats=variables.get('batch_stats', {}),
  )


def create_state(
  config: ConfigDict,
  generator: nn.Module,
  discriminator: nn.Module,
  image_shape: tuple[int, int, int],
  seed: int | jax.Array | None = None,
  init_images: jax.Array | None = None,
) -> GANState:
  """A fresh state from `seed` (default `config.seed`); jit, vmap over seeds, or eval_shape it.

  `init_images`: the [-1, 1] training images D is initialised on (model.d_init_batch, for a
  data-dependent initialisation such as weight normalisation's); else one blank image.
  """
  key = jax.random.PRNGKey(config.seed if seed is None else seed)
  g_key, d_key = jax.random.split(jax.random.fold_in(key, INIT_STREAM))
  z = jnp.zeros((1, config.model.latent_dim), jnp.float32)
  images = jnp.zeros((1, *image_shape), jnp.float32) if init_images is None else init_images
  labels = jnp.zeros((images.shape[0],), jnp.int32)
  num_steps = config.train.num_steps  # D updates d_steps times a step
  g_tx = make_optimizer(config.optimizer.g, num_steps)
  d_tx = make_optimizer(config.optimizer.d, num_steps * config.train.d_steps)
  g = _init_net(generator, g_tx, g_key, z, labels[:1])
  d = _init_net(discriminator, d_tx, d_key, images, labels)
  return GANState(
    step=jnp.zeros((), jnp.int32),
    rng=key,
    g=g,
    d=d,
    g_ema=Averaged(g.params, g.batch_stats) if config.model.g_ema_decay else None,
    # ADA starts from no augmentation and raises p only once D grows sure of the real images.
    augment_p=jnp.zeros((), jnp.float32) if config.data.augment_target else None,
    lazy_parts={n: jnp.zeros((), jnp.float32) for n in Objective(config.loss).lazy_terms} or None,
    d_ema=Averaged(d.params, d.batch_stats) if config.model.d_ema_decay else None,
  )
