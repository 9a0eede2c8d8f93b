"""Improved GAN's MNIST networks (Salimans et al. 2016, openai/improved-gan
train_mnist_feature_matching.py): a weight-normalised MLP D with Gaussian noise and N + 1 logits,
the 'fake' one fixed at 0, and a batch-normalised MLP G."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_jax.models.layers import batch_norm
from gan_jax.models.weight_norm import GaussianNoise, WeightNormDense


class ImprovedGANGenerator(nn.Module):
  """u ~ U[0, 1]^d → [Dense 500 → BN → softplus] × 2 → weight-normalised Dense H·W·C sigmoid.

  gan_jax draws z ~ N(0, 1); u = Φ(z), the normal CDF, is exactly uniform, the reference's
  noise. The BatchNorm has a learned shift but no scale, eps 1e-6 (the reference's; the
  codebase's is 1e-5), and comes before the softplus. The reference always normalises with
  batch statistics (and never updates its running averages); here train=False uses the
  running averages, as every gan_jax G does. The last layer's g trains from 1, with no
  data-dependent init (the reference's `l2normalize`).
  """

  image_shape: tuple[int, int, int] = (28, 28, 1)
  widths: tuple[int, ...] = (500, 500)

  @nn.compact
  def __call__(self, z: jax.Array, labels: jax.Array, train: bool) -> jax.Array:
    del labels  # unconditional
    x = jax.scipy.stats.norm.cdf(z)
    # Lasagne's default Dense init; no bias, BatchNorm's shift replaces it.
    glorot = nn.initializers.glorot_uniform()
    for width in self.widths:
      x = nn.Dense(width, use_bias=False, kernel_init=glorot)(x)
      x = batch_norm(use_running_average=not train, use_scale=False, epsilon=1e-6)(x)
      x = nn.softplus(x)
    x = WeightNormDense(
      math.prod(self.image_shape), kernel_init=glorot, data_init=False, norm_epsilon=1e-6
    )(x)
    return (2 * nn.sigmoid(x) - 1).reshape((z.shape[0], *self.image_shape))


class ImprovedGANDiscriminator(nn.Module):
  """Gaussian noise 0.3 → [weight-normalised Dense (1000, 500, 250, 250, 250) ReLU → noise 0.5]
  → weight-normalised Dense N, then a constant 0 logit for 'fake' (index N).

  The fixed fake logit makes D(real) = Z / (Z + 1) with Z = Σ_k exp(l_k). Images in [-1, 1]
  become (x + 1) / 2 in [0, 1] (the reference's pixels are uint8 / 256, these uint8 / 255).
  `features` are the last hidden layer's ReLU outputs before their noise, the layer the
  reference matches. Only the output layer's scale g trains; every layer is initialised from
  the batch D.init is given (WeightNormDense), with the noise on when `init_noise`, as the
  reference's init pass runs it, whatever `train` says.
  """

  num_classes: int = 10
  widths: tuple[int, ...] = (1000, 500, 250, 250, 250)
  input_noise: float = 0.3
  hidden_noise: float = 0.5
  init_noise: bool = True

  @nn.compact
  def __call__(self, images: jax.Array, labels: jax.Array, train: bool):
    del labels
    deterministic = not (train or (self.init_noise and self.is_initializing()))
    x = (images.reshape(images.shape[0], -1) + 1) / 2
    x = GaussianNoise(self.input_noise)(x, deterministic)
    for width in self.widths:
      features = nn.relu(WeightNormDense(width, train_scale=False)(x))
      x = GaussianNoise(self.hidden_noise)(features, deterministic)
    logits = WeightNormDense(self.num_classes)(x)
    logits = jnp.concatenate([logits, jnp.zeros_like(logits[:, :1])], axis=-1)
    return logits, features
