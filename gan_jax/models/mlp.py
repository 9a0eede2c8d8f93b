"""Vanilla GAN (Goodfellow et al. 2014): one-hidden-layer MLPs."""

import math

import flax.linen as nn
import jax

from gan_jax.models.layers import spectral_norm


class MLPGenerator(nn.Module):
  """z → 128 leaky-ReLU(0.01) → H·W·C tanh."""

  image_shape: tuple[int, int, int] = (28, 28, 1)
  hidden: int = 128
  negative_slope: float = 0.01

  @nn.compact
  def __call__(self, z: jax.Array, labels: jax.Array, train: bool) -> jax.Array:
    del labels, train  # unconditional, no batch statistics
    x = nn.leaky_relu(nn.Dense(self.hidden)(z), self.negative_slope)
    x = nn.tanh(nn.Dense(math.prod(self.image_shape))(x))
    return x.reshape((z.shape[0], *self.image_shape))


class MLPDiscriminator(nn.Module):
  """H·W·C → 128 leaky-ReLU(0.01) → 1 logit."""

  num_classes: int = 10
  hidden: int = 128
  negative_slope: float = 0.01
  spectral_norm: bool = False  # every layer spectrally normalised (layers.spectral_norm)

  @nn.compact
  def __call__(self, images: jax.Array, labels: jax.Array, train: bool):
    del labels
    sn = spectral_norm(self.spectral_norm, train)
    features = nn.leaky_relu(
      sn(nn.Dense(self.hidden))(images.reshape(images.shape[0], -1)), self.negative_slope
    )
    return sn(nn.Dense(1))(features), features
