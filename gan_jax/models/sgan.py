"""Semi-Supervised GAN (Odena 2016): a D with N+1 softmax logits, the last one 'fake'."""

import flax.linen as nn
import jax

from gan_jax.models.layers import SubpixelConv, batch_norm, dcgan_init, quarter_size, spectral_norm

# PyTorch's padding=1, symmetric (flax 'SAME' pads stride-2 3×3 convs unevenly).
_PAD1 = ((1, 1), (1, 1))


class SGANGenerator(nn.Module):
  """Dense 128·(H/4)·(W/4) → BN → up×2 → Conv 128 → BN → LReLU → up×2 → Conv 64 → BN → LReLU →
  Conv C tanh."""

  channels: int = 1
  image_shape: tuple[int, int, int] = (32, 32, 1)  # upsampled twice from an H/4 × W/4 map
  negative_slope: float = 0.2
  widths: tuple[int, int, int] = (128, 128, 64)  # the base map, then each upsampling conv

  @nn.compact
  def __call__(self, z: jax.Array, labels: jax.Array, train: bool) -> jax.Array:
    del labels  # the paper's G is unconditional
    norm = lambda: batch_norm(use_running_average=not train)
    base, *widths = self.widths
    height, width = quarter_size(self.image_shape, 'sgan')
    x = nn.Dense(base * height * width, kernel_init=dcgan_init)(z)
    x = norm()(x.reshape(-1, height, width, base))
    for i, features in enumerate(widths):
      # Nearest ×2 then Conv 3×3 (padding 1), computed per output phase (see SubpixelConv).
      # No bias: the BatchNorm after it subtracts the batch mean, so a bias gets no gradient.
      x = SubpixelConv(features, 3, low=1, use_bias=False, name=f'Conv_{i}')(x)
      x = nn.leaky_relu(norm()(x), self.negative_slope)
    x = nn.Conv(self.channels, (3, 3), padding=_PAD1, kernel_init=dcgan_init, name='Conv_2')(x)
    return nn.tanh(x)


class SGANDiscriminator(nn.Module):
  """4 × [Conv 3×3 s2 (16/32/64/128) → LReLU(0.2) → Dropout 0.25 (→ BN after the first)] →
  Dense N+1; with `sigmoid_head`, also Dense 1 on the same features, a real/fake logit returned
  third (the `sigmoid_*` loss terms), as both SGAN write-ups (000, 001) carry beside the softmax.
  """

  num_classes: int = 10
  negative_slope: float = 0.2
  dropout: float = 0.25
  widths: tuple[int, ...] = (16, 32, 64, 128)
  spectral_norm: bool = False  # every layer spectrally normalised (layers.spectral_norm)
  sigmoid_head: bool = False  # off: the paper's single N+1 softmax, and today's parameters

  @nn.compact
  def __call__(self, images: jax.Array, labels: jax.Array, train: bool):
    del labels
    sn = spectral_norm(self.spectral_norm, train)
    x = images
    for i, features in enumerate(self.widths):
      x = sn(nn.Conv(features, (3, 3), (2, 2), padding=_PAD1, kernel_init=dcgan_init))(x)
      x = nn.Dropout(self.dropout, deterministic=not train)(nn.leaky_relu(x, self.negative_slope))
      if i:
        x = batch_norm(use_running_average=not train)(x)
    features = x.reshape(x.shape[0], -1)
    logits = sn(nn.Dense(self.num_classes + 1, kernel_init=dcgan_init))(features)
    if not self.sigmoid_head:
      return logits, features
    # Named, so the class head keeps its name (Dense_0) and, flax deriving each layer's init key
    # from its name, its initial values: the head only adds parameters.
    real_fake = sn(nn.Dense(1, kernel_init=dcgan_init, name='real_fake'))(features)
    return logits, features, real_fake
