"""Pieces the generators and discriminators share."""

from collections.abc import Callable
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gan_jax.errors import BadInput

# DCGAN (Radford et al. 2016) initialises conv and dense weights from N(0, 0.02).
dcgan_init = nn.initializers.normal(0.02)

# eps 1e-5 as in the papers (the PyTorch SGAN reference passes 0.8 as eps by mistake);
# momentum 0.9 is PyTorch's default running-average rate, so statistics age alike.
batch_norm = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)


def quarter_size(image_shape: tuple[int, ...], generator: str) -> tuple[int, int]:
  """The base map (H/4, W/4) of a generator that doubles it twice; a one-line ValueError if
  the images are not a multiple of 4."""
  height, width = image_shape[:2]
  if height % 4 or width % 4:
    raise BadInput(
      f'data.image_size={height} is not valid for model.generator={generator!r}: '
      'it must be a multiple of 4'
    )
  return height // 4, width // 4


def spectral_norm(enabled: bool, train: bool) -> Callable[[nn.Module], Callable]:
  """`wrap(layer)`: the layer itself, or (`enabled`) its spectral normalisation (Miyato et al.
  2018), the kernel divided by its largest singular value. One power iteration per training call
  refines that estimate; its vector u lives in 'batch_stats' (so in checkpoints) and moves in
  training mode only (the step keeps the update of D's pass on real images: once per D update).
  """

  def wrap(layer: nn.Module) -> Callable:
    if not enabled:
      return layer
    return functools.partial(nn.SpectralNorm(layer), update_stats=train)

  return wrap


def conv_transpose_low_padding(kernel_size: int, stride: int) -> int:
  """The low padding `lax.conv_transpose` uses for 'SAME' (as nn.ConvTranspose(padding='SAME'))."""
  if stride > kernel_size - 1:
    return kernel_size - 1
  return math.ceil((kernel_size + stride - 2) / 2)


def phase_taps(kernel_size: int, factor: int, low: int, zero_fill: bool):
  """For each output phase a: a 0/1 matrix [n_a, kernel_size] summing kernel taps into the
  n_a taps that phase really reads, and the input offset of its first tap.

  On the upsampled grid, tap t of output f·i + a reads position f·i + a + t − low, which holds
  input i + ⌊(a + t − low) / f⌋; with zero fill only when f divides a + t − low.
  """
  phases = []
  for a in range(factor):
    reads = {
      t: (a + t - low) // factor
      for t in range(kernel_size)
      if not zero_fill or (a + t - low) % factor == 0
    }
    first = min(reads.values())
    taps = np.zeros((max(reads.values()) - first + 1, kernel_size), np.float32)
    for t, offset in reads.items():
      taps[offset - first, t] = 1
    phases.append((taps, first))
  return phases


class SubpixelConv(nn.Module):
  """Upsampling by `factor` then a k×k stride-1 conv, computed at the input's resolution.

  The same function, parameter (`kernel`, k×k×in×out) and initialisation as
  - `fill='nearest'`: nearest-neighbour upsampling, then `nn.Conv(padding=(low, k − 1 − low))`;
  - `fill='zeros'`: `nn.ConvTranspose(strides=factor, padding='SAME')` (zero insertion), with
    `low = conv_transpose_low_padding(k, factor)`.
  Each of the factor² output phases reads only a few input pixels, so it is one small conv of
  the input with the kernel's taps summed per phase: nearest ×2 then 3×3 costs 16 instead of 36
  multiply-adds per input pixel, and neither form needs the large-window weight gradient that
  XLA:CPU runs slowly for an upsampled or lhs-dilated convolution.
  """

  features: int
  kernel_size: int
  low: int  # padding before the first row/column of the upsampled grid
  factor: int = 2
  fill: str = 'nearest'
  use_bias: bool = True
  kernel_init: Callable = dcgan_init
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, f = self.kernel_size, self.factor
    kernel = self.param('kernel', self.kernel_init, (k, k, x.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,)) if self.use_bias else None
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    phases = phase_taps(k, f, self.low, self.fill == 'zeros')
    n, h, w, _ = x.shape
    rows = []
    for row_taps, row_first in phases:
      cols = []
      for col_taps, col_first in phases:
        phase_kernel = jnp.einsum('ut,vs,tsio->uvio', row_taps, col_taps, kernel)
        # Pad (or crop, where negative) so that output i reads input i + first + u.
        padding = [
          (-first, first + len(taps) - 1)
          for taps, first in ((row_taps, row_first), (col_taps, col_first))
        ]
        cols.append(
          jax.lax.conv_general_dilated(
            x,
            phase_kernel.astype(x.dtype),
            (1, 1),
            padding,
            dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
          )
        )
      rows.append(jnp.stack(cols, axis=3))  # [n, h, w, f (col phase), c]
    y = jnp.stack(rows, axis=2).reshape(n, h * f, w * f, self.features)  # [n, h, f, w, f, c]
    return y if bias is None else y + bias


def conv_transpose(features: int, kernel_size: int, stride: int, **kwargs) -> SubpixelConv:
  """`nn.ConvTranspose(features, (k, k), (s, s), padding='SAME')`, as a SubpixelConv."""
  return SubpixelConv(
    features,
    kernel_size,
    conv_transpose_low_padding(kernel_size, stride),
    stride,
    'zeros',
    **kwargs,
  )
