"""Differentiable augmentation of D's inputs: DiffAugment, and ADA's adaptive probability.

DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training")
passes real and generated images through the same random transforms before D, so D cannot
memorise a small training set; every transform is differentiable, so G's gradient flows back
through it. Constants follow the reference (mit-han-lab/data-efficient-gans,
DiffAugment_pytorch.py), which like this repository takes images in [-1, 1]: 0 is mid-grey, the
fill of translation's padding and of cutout's square. Transforms run in the policy's order; the
reference's is `REFERENCE_POLICY`, colour first, so that the padding and the square stay at 0 and
contrast scales around the image's own mean.

ADA (Karras et al. 2020, "Training GANs with Limited Data") applies each transform with a
probability p that it tunes as training goes, from how sure D is of the real images
(`ada_rt`, `ada_step`).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gan_jax.errors import BadInput

Array = jax.Array

TRANSLATION_RATIO = 0.125  # shift by up to 1/8 of the image size
CUTOUT_RATIO = 0.5  # zero a square of half the image size
ADA_TARGET = 0.6  # the r_t ADA holds (Karras et al. 2020; stylegan2-ada's ada_target)
ADA_INTERVAL = 4  # steps between adjustments of p (stylegan2-ada's ada_interval)
ADA_SPEED_IMAGES = 500_000  # images it takes p to move by 1 (stylegan2-ada's ada_kimg = 500)
REFERENCE_POLICY = 'color,translation,cutout'  # DiffAugment-stylegan2's default, in its order


def _gated(key: Array, probability: float | Array, value: Array, identity) -> Array:
  """Each image's `value` with the given probability, else the parameter that leaves it be."""
  applies = jax.random.bernoulli(key, probability, (value.shape[0],))
  return jnp.where(applies.reshape((-1,) + (1,) * (value.ndim - 1)), value, identity)


def _uniform(key: Array, images: Array, low: float, high: float) -> Array:
  """One value per image, shaped to broadcast over [B, H, W, C]."""
  shape = (images.shape[0], 1, 1, 1)
  return jax.random.uniform(key, shape, images.dtype, low, high)


def _brightness(images: Array, key: Array, probability: float | Array) -> Array:
  """Adds U(-0.5, 0.5) to every pixel of an image."""
  draw, gate = jax.random.split(key)
  return images + _gated(gate, probability, _uniform(draw, images, -0.5, 0.5), 0.0)


def _saturation(images: Array, key: Array, probability: float | Array) -> Array:
  """Scales each pixel's colour around its mean over channels by U(0, 2); grey stays grey.

  Written as x + (x - mean)(factor - 1) so that factor 1 (not drawn) gives x back bit for bit.
  """
  draw, gate = jax.random.split(key)
  factor = _gated(gate, probability, _uniform(draw, images, 0.0, 2.0), 1.0)
  mean = jnp.mean(images, axis=-1, keepdims=True)
  return images + (images - mean) * (factor - 1.0)


def _contrast(images: Array, key: Array, probability: float | Array) -> Array:
  """Scales an image around its mean over pixels and channels by U(0.5, 1.5)."""
  draw, gate = jax.random.split(key)
  factor = _gated(gate, probability, _uniform(draw, images, 0.5, 1.5), 1.0)
  mean = jnp.mean(images, axis=(1, 2, 3), keepdims=True)
  return images + (images - mean) * (factor - 1.0)


def _shift(images: Array, shift: Array, axis: int) -> Array:
  """out[i] = images[i + shift] along `axis`, one shift per image; 0 where that falls outside.

  A gather rather than `jnp.roll` with a traced shift: it is vectorised over the batch and its
  gradient is the matching scatter-add.
  """
  size = images.shape[axis]
  source = jnp.arange(size)[None, :] + shift[:, None]  # [B, size]
  shape = [images.shape[0], 1, 1, 1]
  shape[axis] = size
  gathered = jnp.take_along_axis(images, jnp.clip(source, 0, size - 1).reshape(shape), axis=axis)
  inside = ((source >= 0) & (source < size)).reshape(shape)
  return jnp.where(inside, gathered, jnp.zeros((), images.dtype))


def _translation(images: Array, key: Array, probability: float | Array) -> Array:
  """Shifts by up to 1/8 of the height and of the width (integer pixels), zero padded."""
  batch = images.shape[0]
  rows, cols, gate = jax.random.split(key, 3)
  for axis, draw in ((1, rows), (2, cols)):
    most = int(images.shape[axis] * TRANSLATION_RATIO + 0.5)
    shift = jax.random.randint(draw, (batch,), -most, most + 1)
    # The same gate key for both axes: an image is translated or not, not per axis.
    images = _shift(images, _gated(gate, probability, shift, 0), axis)
  return images


def _span(key: Array, batch: int, size: int) -> Array:
  """[B, size] masks of a run of round(size / 2) positions around a uniform centre.

  As in the reference, the centre may lie anywhere in the image, so the run is clipped at the
  border about half the time.
  """
  length = int(size * CUTOUT_RATIO + 0.5)
  centre = jax.random.randint(key, (batch,), 0, size + 1 - length % 2)
  start = (centre - length // 2)[:, None]
  position = jnp.arange(size)[None, :]
  return (position >= start) & (position < start + length)


def _cutout(images: Array, key: Array, probability: float | Array) -> Array:
  """Zeroes one square of half the image's height and width at a random place."""
  batch, height, width, _ = images.shape
  rows, cols, gate = jax.random.split(key, 3)
  hole = _span(rows, batch, height)[:, :, None] & _span(cols, batch, width)[:, None, :]
  hole = _gated(gate, probability, hole, False)
  return jnp.where(hole[..., None], jnp.zeros((), images.dtype), images)


Transform = Callable[[Array, Array, float | Array], Array]
_TRANSFORMS: dict[str, tuple[Transform, ...]] = {
  'color': (_brightness, _saturation, _contrast),
  'translation': (_translation,),
  'cutout': (_cutout,),
}
POLICIES = tuple(_TRANSFORMS)


def parse_policy(text: str) -> tuple[str, ...]:
  """'color,translation,cutout' -> ('color', 'translation', 'cutout'); '' -> ()."""
  names = tuple(name.strip() for name in text.split(',') if name.strip())
  unknown = [name for name in names if name not in _TRANSFORMS]
  if unknown:
    raise BadInput(
      f'data.augment={text!r}: unknown {", ".join(unknown)}; '
      f'valid choices: {", ".join(sorted(POLICIES))}'
    )
  return names


def diff_augment(
  images: Array, key: Array, policy: tuple[str, ...], probability: float | Array = 1.0
) -> Array:
  """DiffAugment of [B, H, W, C] images in [-1, 1]: `policy`'s transforms, in its order.

  Every image draws its own parameters. With `probability` < 1 each elementary transform
  (brightness, saturation and contrast count separately, as in ADA) is applied to each image
  with that probability; it may be traced, for ADA's adaptive p. Returns `images` itself when
  the policy is empty.
  """
  if not policy:
    return images
  transforms = [transform for name in policy for transform in _TRANSFORMS[name]]
  for transform, subkey in zip(transforms, jax.random.split(key, len(transforms))):
    images = transform(images, subkey, probability)
  return images


def ada_rt(real_logits: Array) -> Array:
  """ADA's overfitting heuristic r_t = E[sign(D(x))] over real images.

  `real_logits` are D's realness logits on real images (> 0: called real); 1 means D is sure
  of every training image, a sign of overfitting.
  """
  return jnp.mean(jnp.sign(real_logits))


def ada_step(
  p: float | Array,
  rt: float | Array,
  target: float,
  images_seen: int,
  speed_images: int = ADA_SPEED_IMAGES,
) -> Array:
  """ADA's update of p after `images_seen` real images (batch size x steps since the last one).

  p moves towards more augmentation when r_t > target and less when below, at a fixed speed
  of 1 per `speed_images` images, as in stylegan2-ada's training loop. That loop clips at 0
  only; here p is also kept <= 1, as it is a probability.
  """
  return jnp.clip(p + jnp.sign(rt - target) * images_seen / speed_images, 0.0, 1.0)
