"""DCGAN (Radford et al. 2016), in the 28×28 form of the TensorFlow DCGAN tutorial."""

import flax.linen as nn
import jax

from gan_jax.models.layers import batch_norm, conv_transpose, dcgan_init, spectral_norm


class DCGANGenerator(nn.Module):
  """Dense 7·7·256 → BN → LReLU → ConvT 128 (5×5, s1) → ConvT 64 (s2) → ConvT C (s2) tanh."""

  channels: int = 1
  negative_slope: float = 0.2
  widths: tuple[int, int, int] = (256, 128, 64)  # the 7×7 map, then each ConvT but the last

  @nn.compact
  def __call__(self, z: jax.Array, labels: jax.Array, train: bool) -> jax.Array:
    del labels
    act = lambda x: nn.leaky_relu(x, self.negative_slope)
    base, *widths = self.widths
    # No bias before BatchNorm: its shift makes one redundant.
    x = nn.Dense(7 * 7 * base, use_bias=False, kernel_init=dcgan_init)(z)
    x = act(batch_norm(use_running_average=not train)(x)).reshape(-1, 7, 7, base)
    for i, (features, stride) in enumerate(zip(widths, (1, 2))):
      x = conv_transpose(features, 5, stride, use_bias=False, name=f'ConvTranspose_{i}')(x)
      x = act(batch_norm(use_running_average=not train)(x))
    return nn.tanh(conv_transpose(self.channels, 5, 2, name='ConvTranspose_2')(x))


class DCGANDiscriminator(nn.Module):
  """Conv 64 (5×5, s2) → LReLU → Dropout 0.3 → Conv 128 (s2) → LReLU → Dropout → Dense 1."""

  num_classes: int = 10
  negative_slope: float = 0.2
  dropout: float = 0.3
  widths: tuple[int, ...] = (64, 128)
  spectral_norm: bool = False  # every layer spectrally normalised (layers.spectral_norm)

  @nn.compact
  def __call__(self, images: jax.Array, labels: jax.Array, train: bool):
    del labels
    sn = spectral_norm(self.spectral_norm, train)
    x = images
    for features in self.widths:
      x = sn(nn.Conv(features, (5, 5), (2, 2), padding='SAME', kernel_init=dcgan_init))(x)
      x = nn.Dropout(self.dropout, deterministic=not train)(nn.leaky_relu(x, self.negative_slope))
    features = x.reshape(x.shape[0], -1)
    return sn(nn.Dense(1, kernel_init=dcgan_init))(features), features
