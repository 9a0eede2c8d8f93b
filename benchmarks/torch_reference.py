"""PyTorch reference of gan_jax's `sgan`, `dcgan` and `dcgan64` training steps, for
benchmarks/compare.py.

The same architectures (gan_jax/models/sgan.py, dcgan.py, radford.py, layers.py: layer sizes,
paddings, BatchNorm momentum 0.1 (flax 0.9) and eps 1e-5, dropout, leaky slopes, N(0, 0.02)
weights, zero biases, nearest upsampling), the same objectives (configs/sgan.py, dcgan.py,
dcgan64.py), Adam (2e-4, 0.5, 0.999) and the same step: one D update, then one G update that
reuses the fake batch. As in gan_jax, D sees real, fake (and labeled) images in separate passes
when it has BatchNorm (sgan, dcgan64) and in one concatenated pass when it has none (dcgan);
DiffAugment (gan_jax/augment.py, always applied) draws fresh transforms for every D input, and
G's EMA (with gan_jax's warm-up) follows each G update, where the system's config has them
(dcgan64). The data (uint8, 5,000 images) is resident on the device and batches are gathered
there; nothing is read back per step.

  python benchmarks/torch_reference.py --system=sgan --mode=eager --steps=20 --trials=5
"""

import argparse
from collections.abc import Callable
import os
import statistics
import time
from typing import NamedTuple

import torch
from torch import nn
import torch.nn.functional as F

SYSTEMS = ('sgan', 'dcgan', 'dcgan64')
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
  """D's logits on each batch: one pass each if D has BatchNorm (each batch normalised by its
  own statistics), else one concatenated pass, as gan_jax."""
  if d.batch_norm:
    return [d(x) for x in batches]
  return d(torch.cat(batches)).split(len(batches[0]))


def log_p_real(logits):
  """log(1 − p_fake) of N+1 logits, fake class last."""
  return torch.logsumexp(logits[:, :-1], 1) - torch.logsumexp(logits, 1)


def sgan_d_loss(d, real, fake, labeled, labels):
  """sgan_labeled + sgan_real + sgan_fake; D's passes in gan_jax's order."""
  fake_logits, labeled_logits, real_logits = discriminate(d, fake, labeled, real)
  return (
    F.cross_entropy(labeled_logits, labels)
    - log_p_real(real_logits).mean()
    - torch.log_softmax(fake_logits, 1)[:, -1].mean()
  )


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


class Arch(NamedTuple):
  generator: Callable[[], nn.Module]
  discriminator: Callable[[], nn.Module]
  d_loss: Callable
  g_loss: Callable
  image_size: int
  labeled: bool  # whether D's objective reads a labeled batch
  channels: int = 1
  # The config's data.augment and model.g_ema_decay: TorchStep's defaults.
  augment: str = ''
  g_ema_decay: float = 0.0


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
}


def ema_tensors(net: nn.Module) -> list[torch.Tensor]:
  """A network's parameters and floating-point buffers (BatchNorm's running statistics): what
  gan_jax's EMA of G averages."""
  return [*net.parameters(), *(b for b in net.buffers() if b.is_floating_point())]


def parameter_count(net: nn.Module) -> int:
  return sum(p.numel() for p in net.parameters())


class TorchStep:
  """One system's training step in PyTorch, eager or under torch.compile, ready to time.

  `augment`, `g_ema_decay` (None: the system's) and `g_kwargs`/`d_kwargs` (constructor arguments,
  as gan_jax's model.g_kwargs/d_kwargs) follow the config; compare.py passes its values.
  """

  def __init__(
    self,
    system: str,
    mode: str = 'eager',
    device: str = 'cpu',
    batch_size: int = 64,
    seed: int = 0,
    *,
    augment: str | None = None,
    g_ema_decay: float | None = None,
    g_kwargs: dict | None = None,
    d_kwargs: dict | None = None,
  ):
    if system not in ARCHS:
      raise ValueError(f'system={system!r} is not valid; valid choices: {", ".join(SYSTEMS)}')
    if mode not in MODES:
      raise ValueError(f'mode={mode!r} is not valid; valid choices: {", ".join(MODES)}')
    torch.manual_seed(seed)
    self.arch, size = ARCHS[system], ARCHS[system].image_size
    self.device, self.batch_size = torch.device(device), batch_size
    self.g = self.arch.generator(**(g_kwargs or {})).to(self.device)
    self.d = self.arch.discriminator(**(d_kwargs or {})).to(self.device)
    augment = self.arch.augment if augment is None else augment
    self.policy = tuple(name.strip() for name in augment.split(',') if name.strip())
    if not set(self.policy) <= set(AUGMENTS):
      raise ValueError(f'augment={augment!r}: valid policies are {", ".join(AUGMENTS)}')
    self.g_ema_decay = self.arch.g_ema_decay if g_ema_decay is None else g_ema_decay
    for net in (self.g, self.d):
      net.apply(init_weights)
      net.train()
    adam = dict(lr=2e-4, betas=(0.5, 0.999))
    self.g_opt = torch.optim.Adam(self.g.parameters(), **adam)
    self.d_opt = torch.optim.Adam(self.d.parameters(), **adam)
    # Resident data, as gan_jax's: uint8 images and labels, a labeled subset of 100.
    self.images = torch.randint(
      0, 256, (POOL_SIZE, self.arch.channels, size, size), dtype=torch.uint8, device=self.device
    )
    self.labels = torch.randint(0, NUM_CLASSES, (POOL_SIZE,), device=self.device)
    if self.g_ema_decay:
      self.g_ema = [t.detach().clone() for t in ema_tensors(self.g)]
      # A tensor, not an int: torch.compile would recompile for every new value of an int.
      self.ema_updates = torch.zeros((), device=self.device)
    # The whole step is compiled: both forwards, their backwards and the Adam updates. Shapes
    # are static (dynamic=False): left automatic, a recompile made DiffAugment's sizes symbolic
    # and Inductor failed on them (`cannot determine truth value of Relational`).
    self.step_fn = (
      self._step if mode == 'eager' else torch.compile(self._step, mode=mode, dynamic=False)
    )

  def _batch(self, pool: int):
    index = torch.randint(0, pool, (self.batch_size,), device=self.device)
    return self.images[index].float() / 127.5 - 1.0, self.labels[index]

  def _step(self):
    real, _ = self._batch(POOL_SIZE)
    labeled = self._batch(NUM_LABELED) if self.arch.labeled else ()
    z = torch.randn(self.batch_size, LATENT_DIM, device=self.device)
    fake = self.g(z)

    augment = lambda images: diff_augment(images, self.policy)  # fresh draws for each input

    self.d_opt.zero_grad(set_to_none=True)
    self.arch.d_loss(self.d, augment(real), augment(fake.detach()), *labeled).backward()
    self.d_opt.step()

    self.g_opt.zero_grad(set_to_none=True)
    self.arch.g_loss(self.d, augment(fake)).backward()  # the fake batch of D's update, as gan_jax
    self.g_opt.step()
    if self.g_ema_decay:
      self._update_ema()

  @torch.no_grad()
  def _update_ema(self):
    """ema ← d·ema + (1 − d)·G, d = min(decay, (1 + t) / (10 + t)) at update t (gan_jax's
    ema_update, its warm-up included)."""
    t = self.ema_updates
    decay = torch.clamp((1 + t) / (10 + t), max=self.g_ema_decay)
    for average, current in zip(self.g_ema, ema_tensors(self.g)):
      average.lerp_(current, 1 - decay)
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
  parser.add_argument('--batch_size', type=int, default=64)
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
