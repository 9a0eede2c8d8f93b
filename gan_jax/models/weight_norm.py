"""Weight normalisation (Salimans & Kingma 2016) and Gaussian noise, as Improved GAN uses them."""

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp


class WeightNormDense(nn.Module):
  """Dense layer `y = g · x·v/‖v‖ + b`, the direction v and the scale g learned apart.

  With `data_init`, the call that initialises the module sets g and b from its batch so that
  the pre-activations have mean 0 and standard deviation `init_scale` per unit on that batch:
  g = init_scale / s, b = −m · init_scale / s, with m and s (no epsilon) the batch mean and
  standard deviation of x·v/‖v‖. Otherwise g starts at 1 and b at 0.

  `train_scale=False` keeps g in 'params' but behind `jax.lax.stop_gradient`: its gradient is
  zero, so Adam (no weight decay) leaves it at its initial value.
  """

  features: int
  kernel_init: Callable = nn.initializers.normal(0.1)
  train_scale: bool = True
  data_init: bool = True
  init_scale: float = 1.0
  norm_epsilon: float = 0.0  # added to ‖v‖² before the square root

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param('kernel', self.kernel_init, (x.shape[-1], self.features))
    y = x @ kernel / jnp.sqrt(jnp.sum(jnp.square(kernel), axis=0) + self.norm_epsilon)
    scale_init, bias_init = nn.initializers.ones, nn.initializers.zeros
    if self.data_init and self.is_initializing():
      mean = jnp.mean(y, axis=0)
      std = jnp.sqrt(jnp.mean(jnp.square(y - mean), axis=0))
      # A unit constant over the batch (a shape-only init on zeros, a batch of one) has no
      # scale to set: it keeps g = init_scale where the reference would divide by zero.
      std = jnp.where(std > 0, std, 1.0)
      scale_init = lambda *_: self.init_scale / std
      bias_init = lambda *_: -mean * self.init_scale / std
    scale = self.param('scale', scale_init, (self.features,))
    bias = self.param('bias', bias_init, (self.features,))
    if not self.train_scale:
      scale = jax.lax.stop_gradient(scale)
    return y * scale + bias


class GaussianNoise(nn.Module):
  """x + N(0, stddev²) noise drawn from the 'dropout' stream; the identity when deterministic."""

  stddev: float

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    if deterministic or self.stddev == 0:
      return x
    return x + self.stddev * jax.random.normal(self.make_rng('dropout'), x.shape, x.dtype)
