"""Pieces the generators and discriminators share."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

# DCGAN (Radford et al. 2016) initialises conv and dense weights from N(0, 0.02).
dcgan_init = nn.initializers.normal(0.02)

# eps 1e-5 as in the papers (the PyTorch SGAN reference passes 0.8 as eps by mistake);
# momentum 0.9 is PyTorch's default running-average rate, so statistics age alike.
batch_norm = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)


def upsample_nearest(x: jax.Array, factor: int = 2) -> jax.Array:
  """Nearest-neighbour upsampling of NHWC images by an integer factor.

  A broadcast and a reshape, which XLA fuses; `jax.image.resize` builds a general
  gather-based kernel that is far slower for this special case.
  """
  n, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, factor, w, factor, c))
  return x.reshape(n, h * factor, w * factor, c)
