"""PyTorch reference of gan_jax's `sgan`, `dcgan`, `dcgan64` and `improved_gan` training steps,
for benchmarks/compare.py.

The same architectures (gan_jax/models/sgan.py, dcgan.py, radford.py, layers.py: layer sizes,
paddings, BatchNorm momentum 0.1 (flax 0.9) and eps 1e-5, dropout, leaky slopes, N(0, 0.02)
weights, zero biases, nearest upsampling), the same objectives (configs/sgan.py, dcgan.py,
dcgan64.py), Adam (2e-4, 0.5, 0.999) and the same step: one D update, then one G update that
reuses the fake batch. As in gan_jax, D sees real, fake (and labeled) images in separate passes
when it has BatchNorm (sgan, dcgan64) and in one concatenated pass when it has none (dcgan,
improved_gan); DiffAugment (gan_jax/augment.py, always applied) draws fresh transforms for every
D input, and G's EMA (with gan_jax's warm-up) follows each G update, where the system's config
has them (dcgan64). `improved_gan` is configs/improved_gan_mnist.py's MLP pair
(gan_jax/models/improved_gan.py, weight_norm.py): weight-normalised layers, Gaussian noise in D,
a fixed-zero fake logit, its labeled_classes + ½(sgan_real + sgan_fake) and feature-matching
objective, Adam with ε inside the square root (optax's eps_root), D's data-dependent
initialisation and the Polyak average (EMA) of D. The data (uint8, 5,000 images) is resident on
the device and batches are gathered there; nothing is read back per step.

  python benchmarks/torch_reference.py --system=sgan --mode=eager --steps=20 --trials=5
"""

import argparse
from collections.abc import Callable
import math
import os
import statistics
import time
from typing import NamedTuple

import torch
from torch import nn
import torch.nn.functional as F

SYSTEMS = ('sgan', 'dcgan', 'dcgan64', 'improved_gan')
# 'eager', or a torch.compile mode ('default' is torch.compile's own default).
MODES = ('eager', 'default', 'reduce-overhead', 'max-autotune-no-cudagraphs')
NUM_CLASSES, LATENT_DIM, POOL_SIZE, NUM_LABELED = 10, 100, 5000, 100


def init_weights(module: nn.Module) -> None:
  """N(0, 0.02) conv and dense weights, zero biases (flax's dcgan_init and bias default)."""
  if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
    nn.init.normal_(module.weight, 0.0, 0.02)
    if module.bias is not None:
      nn.init.zeros_(module.bias)


def batch_norm_2d(channels: int) -> nn.BatchNorm2d:
  # flax momentum 0.9 keeps 0.9 of the old statistics: PyTorch's momentum 0.1.
  return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)


class SGANGenerator(nn.Module):
  """Dense 128·8·8 → BN → up×2 → Conv 128 → BN → LReLU → up×2 → Conv 64 → BN → LReLU → Conv 1,
  tanh."""

  def __init__(self):
    super().__init__()
    self.dense = nn.Linear(LATENT_DIM, 128 * 8 * 8)
    self.norm0 = batch_norm_2d(128)
    self.blocks = nn.Sequential(
      nn.Upsample(scale_factor=2, mode='nearest'),
      nn.Conv2d(128, 128, 3, padding=1, bias=False),
      batch_norm_2d(128),
      nn.LeakyReLU(0.2),
      nn.Upsample(scale_factor=2, mode='nearest'),
      nn.Conv2d(128, 64, 3, padding=1, bias=False),
      batch_norm_2d(64),
      nn.LeakyReLU(0.2),
      nn.Conv2d(64, 1, 3, padding=1),
      nn.Tanh(),
    )

  def forward(self, z):
    return self.blocks(self.norm0(self.dense(z).view(-1, 128, 8, 8)))


class SGANDiscriminator(nn.Module):
  """4 × [Conv 3×3 s2 (16/32/64/128) → LReLU(0.2) → Dropout 0.25 (→ BN after the first)] →
  Dense 11."""

  batch_norm = True  # one pass per input (discriminate)

  def __init__(self):
    super().__init__()
    layers, channels = [], 1
    for i, features in enumerate((16, 32, 64, 128)):
      layers += [
        nn.Conv2d(channels, features, 3, stride=2, padding=1),
        nn.LeakyReLU(0.2),
        nn.Dropout(0.25),
      ]
      if i:
        layers.append(batch_norm_2d(features))
      channels = features
    self.features = nn.Sequential(*layers, nn.Flatten())
    self.head = nn.Linear(128 * 2 * 2, NUM_CLASSES + 1)

  def forward(self, x):
    return self.head(self.features(x))


class DCGANGenerator(nn.Module):
  """Dense 7·7·256 → BN → LReLU → ConvT 128 (5×5, s1) → ConvT 64 (s2) → ConvT 1 (s2) tanh."""

  def __init__(self):
    super().__init__()
    # gan_jax normalises the dense output per feature (before the reshape): BatchNorm1d.
    self.dense = nn.Sequential(
      nn.Linear(LATENT_DIM, 7 * 7 * 256, bias=False),
      nn.BatchNorm1d(7 * 7 * 256, eps=1e-5, momentum=0.1),
      nn.LeakyReLU(0.2),
    )
    # padding 2 (+ output_padding 1 at stride 2) gives flax's 'SAME' output sizes: 7, 14, 28.
    self.convs = nn.Sequential(
      nn.ConvTranspose2d(256, 128, 5, 1, padding=2, bias=False),
      batch_norm_2d(128),
      nn.LeakyReLU(0.2),
      nn.ConvTranspose2d(128, 64, 5, 2, padding=2, output_padding=1, bias=False),
      batch_norm_2d(64),
      nn.LeakyReLU(0.2),
      nn.ConvTranspose2d(64, 1, 5, 2, padding=2, output_padding=1),
      nn.Tanh(),
    )

  def forward(self, z):
    return self.convs(self.dense(z).view(-1, 256, 7, 7))


class DCGANDiscriminator(nn.Module):
  """Conv 64 (5×5, s2) → LReLU → Dropout 0.3 → Conv 128 (s2) → LReLU → Dropout → Dense 1."""

  batch_norm = False

  def __init__(self):
    super().__init__()
    self.net = nn.Sequential(
      nn.Conv2d(1, 64, 5, 2, padding=2),
      nn.LeakyReLU(0.2),
      nn.Dropout(0.3),
      nn.Conv2d(64, 128, 5, 2, padding=2),
      nn.LeakyReLU(0.2),
      nn.Dropout(0.3),
      nn.Flatten(),
      nn.Linear(128 * 7 * 7, 1),
    )

  def forward(self, x):
    return self.net(x)


def doubling_widths(image_size: int, base_width: int) -> list[int]:
  """radford.py's default widths from the image down to 4×4: base_width, doubling per layer."""
  return [base_width * 2**i for i in range((image_size // 4).bit_length() - 1)]


class RadfordGenerator(nn.Module):
  """Dense 4·4·w0 → BN → ReLU → [ConvT 4×4 s2 → BN → ReLU]... → ConvT C (4×4, s2) → tanh;
  `widths` from the 4×4 map up (default: base_width doubling towards it)."""

  def __init__(self, channels=3, image_size=64, base_width=16, widths=()):
    super().__init__()
    widths = list(widths) or doubling_widths(image_size, base_width)[::-1]
    self.base = widths[0]
    self.dense = nn.Linear(LATENT_DIM, 4 * 4 * self.base, bias=False)
    layers = [batch_norm_2d(self.base), nn.ReLU()]
    # Kernel 4, stride 2, padding 1 doubles the size, as flax's 'SAME'.
    for inputs, features in zip(widths, widths[1:]):
      layers += [
        nn.ConvTranspose2d(inputs, features, 4, 2, padding=1, bias=False),
        batch_norm_2d(features),
        nn.ReLU(),
      ]
    self.convs = nn.Sequential(
      *layers, nn.ConvTranspose2d(widths[-1], channels, 4, 2, padding=1), nn.Tanh()
    )

  def forward(self, z):
    return self.convs(self.dense(z).view(-1, self.base, 4, 4))


class RadfordDiscriminator(nn.Module):
  """[Conv 4×4 s2 → (BN, not after the first) → LReLU(0.2)]... down to 4×4 → Dense 1;
  `widths` from the image down (default: base_width doubling)."""

  batch_norm = True

  def __init__(self, channels=3, image_size=64, base_width=16, widths=(), negative_slope=0.2):
    super().__init__()
    widths = list(widths) or doubling_widths(image_size, base_width)
    layers = []
    for i, (inputs, features) in enumerate(zip([channels, *widths], widths)):
      # No bias where BatchNorm follows, as gan_jax (its shift makes one redundant).
      layers.append(nn.Conv2d(inputs, features, 4, 2, padding=1, bias=not i))
      if i:
        layers.append(batch_norm_2d(features))
      layers.append(nn.LeakyReLU(negative_slope))
    self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(widths[-1] * 4 * 4, 1))

  def forward(self, x):
    return self.net(x)


class WeightNormDense(nn.Module):
  """y = g · x·v/‖v‖ + b, the norm per output unit recomputed every forward (gan_jax's
  WeightNormDense, in its order: the matmul's output divided by the norm). `train_scale=False`
  keeps g a parameter that never trains (gan_jax: behind stop_gradient); `data_init` on a call
  sets g and b so that this batch's pre-activations have mean 0 and standard deviation 1."""

  def __init__(self, inputs, features, kernel_init=None, train_scale=True, norm_epsilon=0.0):
    super().__init__()
    self.v = nn.Parameter(torch.empty(features, inputs))
    if kernel_init is None:
      nn.init.normal_(self.v, 0.0, 0.1)  # gan_jax's default kernel_init
    else:
      kernel_init(self.v)
    self.g = nn.Parameter(torch.ones(features), requires_grad=train_scale)
    self.b = nn.Parameter(torch.zeros(features))
    self.norm_epsilon = norm_epsilon

  def forward(self, x, data_init: bool = False):
    y = F.linear(x, self.v) / torch.sqrt(self.v.square().sum(1) + self.norm_epsilon)
    if data_init:
      with torch.no_grad():
        mean, std = y.mean(0), y.std(0, unbiased=False)
        std = torch.where(std > 0, std, 1.0)  # a constant unit keeps g = 1, as gan_jax
        self.g.copy_(1 / std)
        self.b.copy_(-mean / std)
    return y * self.g + self.b


class ShiftBatchNorm(nn.Module):
  """BatchNorm with a learned shift and no scale (flax's use_scale=False), eps 1e-6."""

  def __init__(self, features):
    super().__init__()
    self.norm = nn.BatchNorm1d(features, eps=1e-6, momentum=0.1, affine=False)
    self.bias = nn.Parameter(torch.zeros(features))

  def forward(self, x):
    return self.norm(x) + self.bias


class ImprovedGANGenerator(nn.Module):
  """u = Φ(z) → [Dense 500 (no bias) → BN (shift only) → softplus] × 2 → weight-normalised
  Dense H·W·C, 2σ − 1; Glorot-uniform kernels, as gan_jax's."""

  def __init__(self, widths=(500, 500), image_size=28, channels=1):
    super().__init__()
    self.shape = (channels, image_size, image_size)
    layers, inputs = [], LATENT_DIM
    for width in widths:
      dense = nn.Linear(inputs, width, bias=False)
      nn.init.xavier_uniform_(dense.weight)
      layers += [dense, ShiftBatchNorm(width), nn.Softplus()]
      inputs = width
    self.hidden = nn.Sequential(*layers)
    self.out = WeightNormDense(
      inputs, math.prod(self.shape), nn.init.xavier_uniform_, norm_epsilon=1e-6
    )

  def forward(self, z):
    x = self.out(self.hidden(torch.special.ndtr(z)))
    return (2 * torch.sigmoid(x) - 1).view(-1, *self.shape)


class ImprovedGANDiscriminator(nn.Module):
  """Noise σ 0.3 → [weight-normalised Dense (1000, 500, 250, 250, 250) → ReLU → noise σ 0.5] →
  weight-normalised Dense 10, and a constant 0 logit for 'fake'. Returns (logits, the last hidden
  layer's ReLU outputs before their noise), as gan_jax's. Fresh noise every pass, in train mode."""

  batch_norm = False  # one concatenated pass (discriminate)

  def __init__(
    self,
    num_classes=NUM_CLASSES,
    widths=(1000, 500, 250, 250, 250),
    input_noise=0.3,
    hidden_noise=0.5,
    image_size=28,
    channels=1,
  ):
    super().__init__()
    sizes = [channels * image_size * image_size, *widths]
    self.hidden = nn.ModuleList(
      WeightNormDense(inputs, features, train_scale=False)
      for inputs, features in zip(sizes, sizes[1:])
    )
    self.head = WeightNormDense(sizes[-1], num_classes)
    self.input_noise, self.hidden_noise = input_noise, hidden_noise

  def noise(self, x, stddev: float):
    return x + stddev * torch.randn_like(x) if self.training else x

  def forward(self, images, data_init: bool = False):
    x = self.noise((images.flatten(1) + 1) / 2, self.input_noise)
    for layer in self.hidden:
      features = F.relu(layer(x, data_init))
      x = self.noise(features, self.hidden_noise)
    logits = self.head(x, data_init)
    return torch.cat([logits, torch.zeros_like(logits[:, :1])], 1), features


# DiffAugment as gan_jax/augment.py (every image its own draw, probability 1; no ADA).
TRANSLATION_RATIO, CUTOUT_RATIO = 0.125, 0.5


def per_image(images, low: float, high: float):
  """One U(low, high) value per image, shaped to broadcast over [B, C, H, W]."""
  return torch.empty(len(images), 1, 1, 1, device=images.device).uniform_(low, high)


def brightness(x):
  return x + per_image(x, -0.5, 0.5)


def saturation(x):
  return x + (x - x.mean(1, keepdim=True)) * (per_image(x, 0.0, 2.0) - 1.0)


def contrast(x):
  return x + (x - x.mean((1, 2, 3), keepdim=True)) * (per_image(x, 0.5, 1.5) - 1.0)


def shift(images, offsets, dim: int):
  """out[i] = images[i + offset] along `dim`, one offset per image, 0 outside: a gather (its
  gradient a scatter-add), as gan_jax's."""
  size = images.shape[dim]
  source = torch.arange(size, device=images.device) + offsets[:, None]  # [B, size]
  shape = [len(images), 1, 1, 1]
  shape[dim] = size
  gathered = images.gather(dim, source.clamp(0, size - 1).view(shape).expand_as(images))
  return torch.where(((source >= 0) & (source < size)).view(shape), gathered, 0.0)


def translation(x):
  for dim in (2, 3):
    most = int(x.shape[dim] * TRANSLATION_RATIO + 0.5)
    x = shift(x, torch.randint(-most, most + 1, (len(x),), device=x.device), dim)
  return x


def span(batch: int, size: int, device):
  """[B, size] masks of a run of round(size / 2) around a uniform centre (clipped at borders)."""
  length = int(size * CUTOUT_RATIO + 0.5)
  start = torch.randint(0, size + 1 - length % 2, (batch, 1), device=device) - length // 2
  position = torch.arange(size, device=device)
  return (position >= start) & (position < start + length)


def cutout(x):
  batch, _, height, width = x.shape
  hole = span(batch, height, x.device)[:, :, None] & span(batch, width, x.device)[:, None, :]
  return x.masked_fill(hole[:, None], 0.0)


AUGMENTS = {
  'color': (brightness, saturation, contrast),
  'translation': (translation,),
  'cutout': (cutout,),
}


def diff_augment(images, policy: tuple[str, ...]):
  """`policy`'s transforms in its order (gan_jax's data.augment); the images if empty."""
  for name in policy:
    for transform in AUGMENTS[name]:
      images = transform(images)
  return images


def discriminate(d, *batches):
  """D's outputs on each batch: one pass each if D has BatchNorm (each batch normalised by its
  own statistics), else one concatenated pass, as gan_jax. A D that returns (logits, features)
  gives that pair per batch."""
  if d.batch_norm:
    return [d(x) for x in batches]
  out, sizes = d(torch.cat(batches)), [len(x) for x in batches]
  if isinstance(out, tuple):
    return list(zip(*(part.split(sizes) for part in out)))
  return out.split(sizes)


def log_p_real(logits):
  """log(1 − p_fake) of N+1 logits, fake class last."""
  return torch.logsumexp(logits[:, :-1], 1) - torch.logsumexp(logits, 1)


def sgan_unsupervised(real_logits, fake_logits):
  """sgan_real + sgan_fake: −log(1 − p_fake) on real images, −log p_fake on fakes."""
  return -log_p_real(real_logits).mean() - torch.log_softmax(fake_logits, 1)[:, -1].mean()


def sgan_d_loss(d, real, fake, labeled, labels):
  """sgan_labeled + sgan_real + sgan_fake; D's passes in gan_jax's order."""
  fake_logits, labeled_logits, real_logits = discriminate(d, fake, labeled, real)
  return F.cross_entropy(labeled_logits, labels) + sgan_unsupervised(real_logits, fake_logits)


def sgan_g_loss(d, fake):
  return -log_p_real(d(fake)).mean()


def dcgan_d_loss(d, real, fake):
  """bce_real + bce_fake."""
  fake_logits, real_logits = (logits.squeeze(1) for logits in discriminate(d, fake, real))
  return F.binary_cross_entropy_with_logits(
    real_logits, torch.ones_like(real_logits)
  ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))


def dcgan_g_loss(d, fake):
  logits = d(fake).squeeze(1)
  return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))  # non-saturating


def improved_gan_d_loss(d, real, fake, labeled, labels):
  """labeled_classes (the 10-way cross-entropy, the fake class left out) + ½·(sgan_real +
  sgan_fake), from one pass on [fake, labeled, real] (gan_jax's order)."""
  (fake_logits, _), (labeled_logits, _), (real_logits, _) = discriminate(d, fake, labeled, real)
  return F.cross_entropy(labeled_logits[:, :-1], labels) + 0.5 * sgan_unsupervised(
    real_logits, fake_logits
  )


def feature_matching_g_loss(d, fake, real):
  """feature_matching at weight 1/250: the squared gap in batch means of D's last hidden layer,
  summed over its 250 features and divided by them (a mean), from one pass on [fake, real]."""
  (_, fake_features), (_, real_features) = discriminate(d, fake, real)
  return (real_features.mean(0) - fake_features.mean(0)).square().mean()


# optax's adam as gan_jax's config.optimizer.{g,d} give it (their defaults, the three CNNs').
ADAM = {'learning_rate': 2e-4, 'b1': 0.5, 'b2': 0.999, 'eps': 1e-8, 'eps_root': 0.0}


class Arch(NamedTuple):
  generator: Callable[[], nn.Module]
  discriminator: Callable[[], nn.Module]
  d_loss: Callable
  g_loss: Callable
  image_size: int
  labeled: bool  # whether D's objective reads a labeled batch
  channels: int = 1
  g_reads_real: bool = False  # whether G's objective reads the real batch too (feature matching)
  # None: the networks initialise themselves, as their gan_jax twins (in their constructors).
  init: Callable[[nn.Module], None] | None = init_weights
  # The config's data.batch_size, data.augment, model.g_ema_decay, model.d_ema_decay,
  # model.d_init_batch and optimizer (G's and D's alike): TorchStep's defaults.
  batch_size: int = 64
  augment: str = ''
  g_ema_decay: float = 0.0
  d_ema_decay: float = 0.0
  d_init_batch: int = 0  # > 0: D's forward takes data_init (weight normalisation's init)
  optimizer: dict = ADAM


ARCHS = {
  'sgan': Arch(SGANGenerator, SGANDiscriminator, sgan_d_loss, sgan_g_loss, 32, True),
  'dcgan': Arch(DCGANGenerator, DCGANDiscriminator, dcgan_d_loss, dcgan_g_loss, 28, False),
  'dcgan64': Arch(
    RadfordGenerator,
    RadfordDiscriminator,
    dcgan_d_loss,
    dcgan_g_loss,
    64,
    False,
    channels=3,
    augment='color,translation,cutout',
    g_ema_decay=0.999,
  ),
  'improved_gan': Arch(
    ImprovedGANGenerator,
    ImprovedGANDiscriminator,
    improved_gan_d_loss,
    feature_matching_g_loss,
    28,
    True,
    g_reads_real=True,
    init=None,
    batch_size=100,
    d_ema_decay=0.9999,
    d_init_batch=500,
    optimizer={**ADAM, 'learning_rate': 3e-3, 'eps': 0.0, 'eps_root': 1e-8},
  ),
}


def ema_tensors(net: nn.Module) -> list[torch.Tensor]:
  """A network's parameters and floating-point buffers (BatchNorm's running statistics): what
  gan_jax's EMAs of G and D average."""
  return [*net.parameters(), *(b for b in net.buffers() if b.is_floating_point())]


def parameter_count(net: nn.Module) -> int:
  return sum(p.numel() for p in net.parameters())


class RootAdam(torch.optim.Optimizer):
  """optax's adam with ε inside the square root: θ ← θ − lr·m̂ / (√(v̂ + eps_root) + eps).

  torch.optim.Adam has only the outer ε, m̂ / (√v̂ + ε): no setting of it gives Improved GAN's
  m̂ / √(v̂ + 1e-8) (the two differ where v̂ is near 1e-8), so this is Adam written out, in foreach
  ops as torch.optim.Adam's foreach form. A torch.optim.Optimizer so that torch.compile treats it
  as torch's own: its zero_grad is a graph break that keeps G's forward out of D's loss graph
  (traced inline, D's backward freed the graph that G's backward needs). The state, step counts
  included (tensors: an int recompiles at every value), is made here, not on the first step.
  Parameters that do not train (requires_grad False) are left out.
  """

  def __init__(self, params, lr, betas, eps=0.0, eps_root=0.0):
    params = [p for p in params if p.requires_grad]
    super().__init__(params, {'lr': lr, 'betas': betas, 'eps': eps, 'eps_root': eps_root})
    for p in params:
      self.state[p] = {
        'step': torch.zeros((), device=p.device),
        'exp_avg': torch.zeros_like(p),
        'exp_avg_sq': torch.zeros_like(p),
      }

  @torch.no_grad()
  def step(self):
    for group in self.param_groups:
      (b1, b2), params = group['betas'], group['params']
      grads = [p.grad for p in params]
      steps, m, v = ([self.state[p][k] for p in params] for k in ('step', 'exp_avg', 'exp_avg_sq'))
      torch._foreach_add_(steps, 1)
      torch._foreach_lerp_(m, grads, 1 - b1)
      torch._foreach_mul_(v, b2)
      torch._foreach_addcmul_(v, grads, grads, 1 - b2)
      m_correction, v_correction = torch._foreach_pow(b1, steps), torch._foreach_pow(b2, steps)
      for correction in (m_correction, v_correction):  # 1 − β^t
        torch._foreach_neg_(correction)
        torch._foreach_add_(correction, 1)
      denominator = torch._foreach_div(v, v_correction)  # v̂
      torch._foreach_add_(denominator, group['eps_root'])
      torch._foreach_sqrt_(denominator)
      if group['eps']:
        torch._foreach_add_(denominator, group['eps'])
      updates = torch._foreach_div(m, denominator)
      torch._foreach_div_(updates, m_correction)  # m̂ / (√(v̂ + eps_root) + eps)
      torch._foreach_mul_(updates, -group['lr'])
      torch._foreach_add_(params, updates)


def make_optimizer(net: nn.Module, settings: dict):
  """Adam as gan_jax's config.optimizer.{g,d} (optax's names): torch.optim.Adam where it is the
  same update (eps_root 0), else RootAdam."""
  settings = {**ADAM, **settings}
  if settings.get('name', 'adam') != 'adam':
    raise ValueError(f'optimizer {settings["name"]!r}: the reference has only Adam')
  lr, betas = settings['learning_rate'], (settings['b1'], settings['b2'])
  if settings['eps_root']:
    return RootAdam(net.parameters(), lr, betas, settings['eps'], settings['eps_root'])
  return torch.optim.Adam(net.parameters(), lr=lr, betas=betas, eps=settings['eps'])


class TorchStep:
  """One system's training step in PyTorch, eager or under torch.compile, ready to time.

  The keyword arguments follow gan_jax's config (None: the system's, `Arch`): batch sizes,
  `augment`, the EMA decays, `d_init_batch`, `g_kwargs`/`d_kwargs` (constructor arguments, as
  model.g_kwargs/d_kwargs) and `g_optimizer`/`d_optimizer` (optimizer.g/d); compare.py passes
  the config's values.
  """

  def __init__(
    self,
    system: str,
    mode: str = 'eager',
    device: str = 'cpu',
    batch_size: int | None = None,
    seed: int = 0,
    *,
    labeled_batch_size: int | None = None,
    augment: str | None = None,
    g_ema_decay: float | None = None,
    d_ema_decay: float | None = None,
    d_init_batch: int | None = None,
    g_kwargs: dict | None = None,
    d_kwargs: dict | None = None,
    g_optimizer: dict | None = None,
    d_optimizer: dict | None = None,
  ):
    if system not in ARCHS:
      raise ValueError(f'system={system!r} is not valid; valid choices: {", ".join(SYSTEMS)}')
    if mode not in MODES:
      raise ValueError(f'mode={mode!r} is not valid; valid choices: {", ".join(MODES)}')
    torch.manual_seed(seed)
    self.arch, size = ARCHS[system], ARCHS[system].image_size
    self.device = torch.device(device)
    self.batch_size = batch_size or self.arch.batch_size
    self.labeled_batch_size = labeled_batch_size or self.batch_size
    self.g = self.arch.generator(**(g_kwargs or {})).to(self.device)
    self.d = self.arch.discriminator(**(d_kwargs or {})).to(self.device)
    augment = self.arch.augment if augment is None else augment
    self.policy = tuple(name.strip() for name in augment.split(',') if name.strip())
    if not set(self.policy) <= set(AUGMENTS):
      raise ValueError(f'augment={augment!r}: valid policies are {", ".join(AUGMENTS)}')
    for net in (self.g, self.d):
      if self.arch.init:
        net.apply(self.arch.init)
      net.train()
    # Resident data, as gan_jax's: uint8 images and labels, a labeled subset of 100.
    self.images = torch.randint(
      0, 256, (POOL_SIZE, self.arch.channels, size, size), dtype=torch.uint8, device=self.device
    )
    self.labels = torch.randint(0, NUM_CLASSES, (POOL_SIZE,), device=self.device)
    d_init_batch = self.arch.d_init_batch if d_init_batch is None else d_init_batch
    if d_init_batch:  # gan_jax's init pass: training images, D's noise on
      with torch.no_grad():
        self.d(self.images[:d_init_batch].float() / 127.5 - 1.0, data_init=True)
    self.g_opt = make_optimizer(self.g, g_optimizer or self.arch.optimizer)
    self.d_opt = make_optimizer(self.d, d_optimizer or self.arch.optimizer)
    decays = (
      (self.g, self.arch.g_ema_decay if g_ema_decay is None else g_ema_decay),
      (self.d, self.arch.d_ema_decay if d_ema_decay is None else d_ema_decay),
    )
    # (network, decay, its average) for each EMA the config has, started at the network.
    self.emas = [
      (net, decay, [t.detach().clone() for t in ema_tensors(net)]) for net, decay in decays if decay
    ]
    # A tensor, not an int: torch.compile would recompile for every new value of an int.
    self.ema_updates = torch.zeros((), device=self.device)
    # The whole step is compiled: both forwards, their backwards and the Adam updates. Shapes
    # are static (dynamic=False): left automatic, a recompile made DiffAugment's sizes symbolic
    # and Inductor failed on them (`cannot determine truth value of Relational`).
    self.step_fn = (
      self._step if mode == 'eager' else torch.compile(self._step, mode=mode, dynamic=False)
    )

  def _batch(self, pool: int, size: int):
    index = torch.randint(0, pool, (size,), device=self.device)
    return self.images[index].float() / 127.5 - 1.0, self.labels[index]

  def _step(self):
    real, _ = self._batch(POOL_SIZE, self.batch_size)
    labeled = self._batch(NUM_LABELED, self.labeled_batch_size) if self.arch.labeled else ()
    z = torch.randn(self.batch_size, LATENT_DIM, device=self.device)
    fake = self.g(z)

    augment = lambda images: diff_augment(images, self.policy)  # fresh draws for each input

    self.d_opt.zero_grad(set_to_none=True)
    self.arch.d_loss(self.d, augment(real), augment(fake.detach()), *labeled).backward()
    self.d_opt.step()

    self.g_opt.zero_grad(set_to_none=True)
    # The fake batch of D's update, as gan_jax; the step's real batch where G's loss reads one.
    g_real = (augment(real),) if self.arch.g_reads_real else ()
    self.arch.g_loss(self.d, augment(fake), *g_real).backward()
    self.g_opt.step()
    if self.emas:
      self._update_emas()

  @torch.no_grad()
  def _update_emas(self):
    """ema ← d·ema + (1 − d)·net, d = min(decay, (1 + t) / (10 + t)) at step t, for G and D
    (gan_jax's ema_update, its warm-up included; both count the step)."""
    t = self.ema_updates
    for net, decay, average in self.emas:
      d = torch.clamp((1 + t) / (10 + t), max=decay)
      for mean, current in zip(average, ema_tensors(net)):
        mean.lerp_(current, 1 - d)
    t += 1

  def parameter_counts(self) -> dict[str, int]:
    return {'generator': parameter_count(self.g), 'discriminator': parameter_count(self.d)}

  def time_steps(self, num_steps: int) -> float:
    """Seconds for `num_steps` steps, with one device sync at the end (none per step)."""
    self.sync()
    start = time.perf_counter()
    for _ in range(num_steps):
      self.step_fn()
    self.sync()
    return time.perf_counter() - start

  def sync(self):
    if self.device.type == 'cuda':
      torch.cuda.synchronize(self.device)


def set_threads(threads: int | None = None) -> int:
  """Intra-op threads: as many as the CPUs this process may use (what XLA:CPU uses)."""
  threads = threads or len(os.sched_getaffinity(0))
  torch.set_num_threads(threads)
  return threads


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--system', choices=SYSTEMS, default='sgan')
  parser.add_argument('--mode', choices=MODES, default='eager')
  parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
  parser.add_argument(
    '--batch_size', type=int, default=0, help="0: the system's (64; 100 improved_gan)"
  )
  parser.add_argument('--steps', type=int, default=10, help='steps per trial')
  parser.add_argument('--trials', type=int, default=5)
  parser.add_argument('--threads', type=int, default=0, help='0: the CPUs available')
  args = parser.parse_args()
  threads = set_threads(args.threads)
  step = TorchStep(args.system, args.mode, args.device, args.batch_size)
  start = time.perf_counter()
  step.time_steps(2)  # warm-up (and compilation)
  counts = step.parameter_counts()
  print(
    f'torch {torch.__version__} {args.system} {args.mode} on {args.device}, {threads} threads: '
    f'warm-up {time.perf_counter() - start:.1f} s; parameters G {counts["generator"]:,}, '
    f'D {counts["discriminator"]:,}'
  )
  rates = [args.steps / step.time_steps(args.steps) for _ in range(args.trials)]
  print(f'steps/s median {statistics.median(rates):.2f} [{min(rates):.2f} .. {max(rates):.2f}]')


if __name__ == '__main__':
  main()
