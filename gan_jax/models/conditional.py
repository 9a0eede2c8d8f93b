"""GAN-cls (Reed et al. 2016): a matching-aware D that sees the image and its label."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax.models.layers import (
  batch_norm,
  conv_transpose,
  dcgan_init,
  quarter_size,
  spectral_norm,
)


class ConditionalGenerator(nn.Module):
  """G(z, one-hot y): Dense 1024 → Dense (H/4)·(W/4)·128 → ConvT 64 (4×4, s2) → ConvT C (s2)
  tanh, BN + ReLU between (7×7 for 28×28 images)."""

  num_classes: int = 10
  channels: int = 1
  image_shape: tuple[int, int, int] = (28, 28, 1)
  widths: tuple[int, int, int] = (1024, 128, 64)  # the first Dense, the H/4 × W/4 map, the ConvT

  @nn.compact
  def __call__(self, z: jax.Array, labels: jax.Array, train: bool) -> jax.Array:
    norm = lambda: batch_norm(use_running_average=not train)
    hidden, base, conv = self.widths
    height, width = quarter_size(self.image_shape, 'conditional')
    x = jnp.concatenate([z, jax.nn.one_hot(labels, self.num_classes, dtype=z.dtype)], axis=-1)
    x = nn.relu(norm()(nn.Dense(hidden, use_bias=False, kernel_init=dcgan_init)(x)))
    x = nn.Dense(height * width * base, use_bias=False, kernel_init=dcgan_init)(x)
    x = nn.relu(norm()(x)).reshape(-1, height, width, base)
    x = nn.relu(norm()(conv_transpose(conv, 4, 2, use_bias=False, name='ConvTranspose_0')(x)))
    return nn.tanh(conv_transpose(self.channels, 4, 2, name='ConvTranspose_1')(x))


class MatchingDiscriminator(nn.Module):
  """D(x, y): y → Dense → H×W map concatenated to x as a channel → 2 convs (4×4, s2) → Dense 1024
  → 1 logit."""

  num_classes: int = 10
  negative_slope: float = 0.2
  widths: tuple[int, ...] = (64, 128)  # the convolutions
  hidden: int = 1024
  spectral_norm: bool = False  # every layer spectrally normalised (layers.spectral_norm)

  @nn.compact
  def __call__(self, images: jax.Array, labels: jax.Array, train: bool):
    sn = spectral_norm(self.spectral_norm, train)  # no dropout or batch statistics otherwise
    act = lambda x: nn.leaky_relu(x, self.negative_slope)
    n, h, w, _ = images.shape
    y = jax.nn.one_hot(labels, self.num_classes, dtype=images.dtype)
    label_map = act(sn(nn.Dense(h * w, kernel_init=dcgan_init))(y)).reshape(n, h, w, 1)
    x = jnp.concatenate([images, label_map], axis=-1)
    for features in self.widths:
      x = act(sn(nn.Conv(features, (4, 4), (2, 2), padding='SAME', kernel_init=dcgan_init))(x))
    features = act(sn(nn.Dense(self.hidden, kernel_init=dcgan_init))(x.reshape(n, -1)))
    return sn(nn.Dense(1, kernel_init=dcgan_init))(features), features
