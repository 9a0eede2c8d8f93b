"""GAN-cls (Reed et al. 2016): a matching-aware D that sees the image and its label."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax.models.layers import batch_norm, conv_transpose, dcgan_init


class ConditionalGenerator(nn.Module):
  """G(z, one-hot y): Dense 1024 → Dense 7·7·128 → ConvT 64 (4×4, s2) → ConvT C (s2) tanh, BN + ReLU between."""
  num_classes: int = 10
  channels: int = 1
  widths: tuple[int, int, int] = (1024, 128, 64)  # the first Dense, the 7×7 map, the ConvT

  @nn.compact
  def __call__(self, z: jax.Array, labels: jax.Array, train: bool) -> jax.Array:
    norm = lambda: batch_norm(use_running_average=not train)
    hidden, base, conv = self.widths
    x = jnp.concatenate([z, jax.nn.one_hot(labels, self.num_classes, dtype=z.dtype)], axis=-1)
    x = nn.relu(norm()(nn.Dense(hidden, use_bias=False, kernel_init=dcgan_init)(x)))
    x = nn.relu(norm()(nn.Dense(7 * 7 * base, use_bias=False, kernel_init=dcgan_init)(x)))
    x = x.reshape(-1, 7, 7, base)
    x = nn.relu(norm()(conv_transpose(conv, 4, 2, use_bias=False, name='ConvTranspose_0')(x)))
    return nn.tanh(conv_transpose(self.channels, 4, 2, name='ConvTranspose_1')(x))


class MatchingDiscriminator(nn.Module):
  """D(x, y): y → Dense → H×W map concatenated to x as a channel → 2 convs (4×4, s2) → Dense 1024 → 1 logit."""
  num_classes: int = 10
  negative_slope: float = 0.2
  widths: tuple[int, ...] = (64, 128)  # the convolutions
  hidden: int = 1024

  @nn.compact
  def __call__(self, images: jax.Array, labels: jax.Array, train: bool):
    del train  # no dropout or batch statistics
    act = lambda x: nn.leaky_relu(x, self.negative_slope)
    n, h, w, _ = images.shape
    y = jax.nn.one_hot(labels, self.num_classes, dtype=images.dtype)
    label_map = act(nn.Dense(h * w, kernel_init=dcgan_init)(y)).reshape(n, h, w, 1)
    x = jnp.concatenate([images, label_map], axis=-1)
    for features in self.widths:
      x = act(nn.Conv(features, (4, 4), (2, 2), padding='SAME', kernel_init=dcgan_init)(x))
    features = act(nn.Dense(self.hidden, kernel_init=dcgan_init)(x.reshape(n, -1)))
    return nn.Dense(1, kernel_init=dcgan_init)(features), features
