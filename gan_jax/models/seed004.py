"""The 64×64 RGB DCGAN of write-up 004 (Keras), layer for layer, to reproduce its failure.

Its D's loss falls to 1e-4 while G's climbs past 10: G has BatchNorm only after its dense
layer, and D sees the full-resolution image through 5×5 convolutions. Keras defaults are kept
where the seed relies on them: LeakyReLU slope 0.3, glorot-uniform kernels, BatchNormalization
momentum 0.99 and epsilon 1e-3. Flax's transposed convolution is Keras's Conv2DTranspose with
the kernel flipped in space, the same model under a symmetric initialisation.
"""

import flax.linen as nn
import jax

from gan_jax.errors import BadInput
from gan_jax.models.layers import conv_transpose, spectral_norm

_keras_init = nn.initializers.glorot_uniform()

# The seed's Conv2DTranspose layers after the 8×8×64 map: (filters, kernel, stride).
_G_LAYERS = ((128, 5, 1), (64, 5, 2), (64, 5, 2), (32, 5, 2))
# The seed's Conv2D layers: (filters, kernel, stride).
_D_LAYERS = ((64, 5, 1), (64, 5, 2), (64, 5, 2), (32, 5, 2))


class Seed004Generator(nn.Module):
  """The seed's generator_model(), for 64×64 images only:

    Dense(8·8·64) → BatchNormalization → LeakyReLU → Reshape(8, 8, 64)   Dense_0, BatchNorm_0
    Conv2DTranspose(128, 5×5, s1, no bias) → LeakyReLU      8×8        ConvTranspose_0
    Conv2DTranspose(64, 5×5, s2, no bias) → LeakyReLU       16×16      ConvTranspose_1
    Conv2DTranspose(64, 5×5, s2, no bias) → LeakyReLU       32×32      ConvTranspose_2
    Conv2DTranspose(32, 5×5, s2, no bias) → LeakyReLU       64×64      ConvTranspose_3
    Conv2DTranspose(3, 3×3, s1, no bias, tanh)              64×64      ConvTranspose_4
  The BatchNorm normalises each of the 4096 dense units (it comes before the reshape).
  """

  channels: int = 3
  image_shape: tuple[int, int, int] = (64, 64, 3)
  negative_slope: float = 0.3  # Keras's LeakyReLU default

  @nn.compact
  def __call__(self, z: jax.Array, labels: jax.Array, train: bool) -> jax.Array:
    del labels
    if tuple(self.image_shape[:2]) != (64, 64):
      raise BadInput(
        f'data.image_size={self.image_shape[0]} is not valid for '
        "model.generator='seed004': it makes 64×64 images only"
      )
    act = lambda x: nn.leaky_relu(x, self.negative_slope)
    x = nn.Dense(8 * 8 * 64, kernel_init=_keras_init)(z)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3)(x)
    x = act(x).reshape(-1, 8, 8, 64)
    for i, (features, kernel, stride) in enumerate(_G_LAYERS):
      x = act(
        conv_transpose(
          features,
          kernel,
          stride,
          use_bias=False,
          kernel_init=_keras_init,
          name=f'ConvTranspose_{i}',
        )(x)
      )
    x = conv_transpose(
      self.channels,
      3,
      1,
      use_bias=False,
      kernel_init=_keras_init,
      name=f'ConvTranspose_{len(_G_LAYERS)}',
    )(x)
    return nn.tanh(x)


class Seed004Discriminator(nn.Module):
  """The seed's discriminator_model(); its sigmoid is left to the loss, which takes logits:

  Conv2D(64, 5×5, s1, same) → LeakyReLU → Dropout(0.3)   64×64      Conv_0
  Conv2D(64, 5×5, s2, same) → LeakyReLU → Dropout(0.3)   32×32      Conv_1
  Conv2D(64, 5×5, s2, same) → LeakyReLU → Dropout(0.3)   16×16      Conv_2
  Conv2D(32, 5×5, s2, same) → LeakyReLU → Dropout(0.3)   8×8        Conv_3
  Flatten → Dense(1, sigmoid)                             2048 → 1   Dense_0 (the logit)
  """

  num_classes: int = 10  # unconditional: the labels are ignored
  negative_slope: float = 0.3  # Keras's LeakyReLU default
  dropout: float = 0.3
  spectral_norm: bool = False  # every layer spectrally normalised (layers.spectral_norm)

  @nn.compact
  def __call__(self, images: jax.Array, labels: jax.Array, train: bool):
    del labels
    sn = spectral_norm(self.spectral_norm, train)
    x = images
    for features, kernel, stride in _D_LAYERS:
      x = sn(
        nn.Conv(
          features, (kernel, kernel), (stride, stride), padding='SAME', kernel_init=_keras_init
        )
      )(x)
      x = nn.Dropout(self.dropout, deterministic=not train)(nn.leaky_relu(x, self.negative_slope))
    features = x.reshape(x.shape[0], -1)
    return sn(nn.Dense(1, kernel_init=_keras_init))(features), features
