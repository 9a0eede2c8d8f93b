"""DCGAN (Radford et al. 2016) at any square size 4·2^k: 4×4 maps, 4×4 stride-2 convolutions.

A train step at 64×64 RGB, batch 64 (G forward and backward, D forward and backward on real
and fake) costs, by XLA's cost analysis, about base_width²·35 MFLOP: 543 GFLOP at the paper's
base_width=128 (G 1024-512-256-128), 35.8 at 32, 9.6 at 16, 2.7 at 8. The default 16
(G 128-64-32-16, D 16-32-64-128) runs 1.6× as many steps per second as the 32×32 SGAN step
(25.5 GFLOP) on two CPU cores while keeping 16 channels at 32×32 for the last upsampling; 8
is twice as fast again but leaves G about 150k parameters.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax

from gan_jax.errors import BadInput
from gan_jax.models.layers import batch_norm, conv_transpose, dcgan_init, spectral_norm


def num_doublings(height: int, width: int, side: str) -> int:
  """k of a square size 4·2^k (k >= 1), or a one-line ValueError naming data.image_size."""
  k = max(height // 4, 1).bit_length() - 1
  if height != width or k < 1 or height != 4 * 2**k:
    size = height if height == width else f'{height}x{width}'
    raise BadInput(
      f"data.image_size={size} is not valid for model.{side}='radford': valid "
      'sizes are square, 4·2^k: 8, 16, 32, 64, 128, ...'
    )
  return k


def layer_widths(widths: Sequence[int], default: list[int], field: str) -> list[int]:
  """`widths` if given (one per stride-2 layer, as many as `default`), else `default`."""
  if not widths:
    return default
  if len(widths) != len(default):
    raise BadInput(
      f'{field}={tuple(widths)} has {len(widths)} widths; data.image_size='
      f'{4 * 2 ** len(default)} needs {len(default)}, one per stride-2 layer'
    )
  return list(widths)


class RadfordGenerator(nn.Module):
  """Dense 4·4·w0 → BN → ReLU → (k−1) × [ConvT 4×4 s2 → BN → ReLU] → ConvT C 4×4 s2 → tanh."""

  channels: int = 3
  image_shape: tuple[int, int, int] = (64, 64, 3)
  base_width: int = 16  # the last hidden map's width; it doubles towards the 4×4 map
  widths: tuple[int, ...] = ()  # explicit widths from the 4×4 map up; empty: from base_width

  @nn.compact
  def __call__(self, z: jax.Array, labels: jax.Array, train: bool) -> jax.Array:
    del labels
    k = num_doublings(*self.image_shape[:2], 'generator')
    default = [self.base_width * 2**i for i in reversed(range(k))]
    base, *widths = layer_widths(self.widths, default, 'model.g_kwargs.widths')
    norm = lambda: batch_norm(use_running_average=not train)
    # No bias before BatchNorm: its shift makes one redundant.
    x = nn.Dense(4 * 4 * base, use_bias=False, kernel_init=dcgan_init)(z)
    x = nn.relu(norm()(x.reshape(-1, 4, 4, base)))
    for i, features in enumerate(widths):
      x = conv_transpose(features, 4, 2, use_bias=False, name=f'ConvTranspose_{i}')(x)
      x = nn.relu(norm()(x))
    return nn.tanh(conv_transpose(self.channels, 4, 2, name=f'ConvTranspose_{len(widths)}')(x))


class RadfordDiscriminator(nn.Module):
  """k × [Conv 4×4 s2 → (BN, not after the first) → LReLU(0.2)] down to 4×4 → Dense 1 logit."""

  num_classes: int = 10  # unconditional: the labels are ignored
  base_width: int = 16  # the first conv's width; it doubles as the resolution halves
  widths: tuple[int, ...] = ()  # explicit widths from the image down; empty: from base_width
  negative_slope: float = 0.2
  spectral_norm: bool = False  # every layer spectrally normalised (layers.spectral_norm)

  @nn.compact
  def __call__(self, images: jax.Array, labels: jax.Array, train: bool):
    del labels
    sn = spectral_norm(self.spectral_norm, train)
    k = num_doublings(*images.shape[1:3], 'discriminator')
    default = [self.base_width * 2**i for i in range(k)]
    widths = layer_widths(self.widths, default, 'model.d_kwargs.widths')
    x = images
    for i, features in enumerate(widths):
      # The paper leaves BatchNorm out of D's input layer; elsewhere it makes a bias redundant.
      x = sn(
        nn.Conv(
          features, (4, 4), (2, 2), padding=((1, 1), (1, 1)), use_bias=not i, kernel_init=dcgan_init
        )
      )(x)
      if i:
        x = batch_norm(use_running_average=not train)(x)
      x = nn.leaky_relu(x, self.negative_slope)
    features = x.reshape(x.shape[0], -1)
    return sn(nn.Dense(1, kernel_init=dcgan_init))(features), features
