"""The whole training state of a GAN run, as one pytree."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training import train_state
from ml_collections import ConfigDict


class NetState(train_state.TrainState):
  """One network: params, optimizer state and BatchNorm running statistics ({} if none)."""
  batch_stats: Any


class GANState(struct.PyTreeNode):
  """G and D, the global step and the run's base key (each step folds the step number in)."""
  step: jax.Array
  rng: jax.Array
  g: NetState
  d: NetState


def apply_inference(module: nn.Module, net: NetState, *inputs):
  """`module` in inference mode (BatchNorm running statistics, no dropout) with `net`'s variables."""
  return module.apply({'params': net.params, 'batch_stats': net.batch_stats}, *inputs, train=False)


OPTIMIZERS = {
    'adam': lambda c: optax.adam(c.learning_rate, b1=c.b1, b2=c.b2),
    'sgd': lambda c: optax.sgd(c.learning_rate, momentum=c.get('momentum') or None),
    'rmsprop': lambda c: optax.rmsprop(c.learning_rate),
}


def make_optimizer(config: ConfigDict) -> optax.GradientTransformation:
  return OPTIMIZERS[config.name](config)


def _init_net(module: nn.Module, tx: optax.GradientTransformation, key: jax.Array, *inputs) -> NetState:
  variables = module.init({'params': key, 'dropout': key}, *inputs, train=False)
  return NetState.create(apply_fn=module.apply, params=variables['params'], tx=tx,
                         batch_stats=variables.get('batch_stats', {}))


def create_state(config: ConfigDict, generator: nn.Module, discriminator: nn.Module,
                 image_shape: tuple[int, int, int], seed: int | jax.Array | None = None) -> GANState:
  """A fresh state from `seed` (default `config.seed`); jit, vmap over seeds, or eval_shape it."""
  key = jax.random.PRNGKey(config.seed if seed is None else seed)
  g_key, d_key = jax.random.split(jax.random.fold_in(key, 0))
  z = jnp.zeros((1, config.model.latent_dim), jnp.float32)
  labels = jnp.zeros((1,), jnp.int32)
  images = jnp.zeros((1, *image_shape), jnp.float32)
  return GANState(
      step=jnp.zeros((), jnp.int32),
      rng=key,
      g=_init_net(generator, make_optimizer(config.optimizer.g), g_key, z, labels),
      d=_init_net(discriminator, make_optimizer(config.optimizer.d), d_key, images, labels),
  )
