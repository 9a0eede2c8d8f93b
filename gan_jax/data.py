"""Datasets through tfds data sources, the label budget, scaling, and on-device batches.

Images are read whole into numpy with `tfds.data_source` (array_record, no TensorFlow),
then live on the device; batches are gathered inside the jitted step from
`batch_indices`, so no input pipeline runs on the host during training.
"""

import os

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from gan_jax import mnist5k  # noqa: F401  (registers the 'mnist5k' builder with tfds)

# Known dataset name -> number of classes.
DATASETS = {'mnist5k': 10, 'mnist': 10, 'fashion_mnist': 10}


def default_data_dir() -> str:
  """Where prepared datasets live: $TFDS_DATA_DIR if set, else ~/tensorflow_datasets."""
  return os.environ.get('TFDS_DATA_DIR') or os.path.expanduser('~/tensorflow_datasets')


def load_split(
    name: str, split: str, data_dir: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """Returns all of a split: uint8 images [N, H, W, C] and int32 labels [N].

  'mnist5k' is prepared into `data_dir` on first use (offline, a second or two); other
  datasets must already be prepared there in array_record format.
  """
  if name not in DATASETS:
    raise ValueError(
        f'Unknown dataset: {name!r}; valid choices: {", ".join(sorted(DATASETS))}'
    )
  if data_dir is None:
    data_dir = default_data_dir()
  elif not os.path.isdir(data_dir):
    raise ValueError(f'data.data_dir {data_dir!r} does not exist')

  if name == 'mnist5k':
    source = tfds.data_source(name, split=split, data_dir=data_dir)
  else:
    try:
      source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except NotImplementedError:
      # What tfds raises when the dataset is absent (it then assumes tfrecord) or only
      # prepared as tfrecord: either way there is no random-access copy to read.
      raise ValueError(
          f'dataset {name!r} is not prepared in {data_dir} in array_record format; '
          'prepare it where the network is reachable with '
          f'`tfds build {name} --file_format=array_record --data_dir={data_dir}` '
          "or use data.name='mnist5k'"
      ) from None

  # One batched read of the raw records; tfds then decodes each record with numpy.
  examples = source.__getitems__(range(len(source)))
  images = np.stack([example['image'] for example in examples])
  labels = np.array([example['label'] for example in examples], np.int32)
  return images, labels


def labeled_subset(
    labels: np.ndarray, num_labeled: int, num_classes: int, seed: int
) -> np.ndarray:
  """Sorted int32 indices of `num_labeled // num_classes` random examples per class."""
  if num_labeled <= 0 or num_labeled % num_classes:
    raise ValueError(
        f'data.num_labeled must be a positive multiple of {num_classes} (the number '
        f'of classes), got {num_labeled}'
    )
  per_class = num_labeled // num_classes
  counts = np.bincount(labels, minlength=num_classes)
  if per_class > counts.min():
    raise ValueError(
        f'data.num_labeled={num_labeled} needs {per_class} examples per class but '
        f'class {counts.argmin()} has {counts.min()}; the limit is '
        f'{counts.min() * num_classes}'
    )
  rng = np.random.default_rng(seed)
  chosen = [
      rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
      for c in range(num_classes)
  ]
  return np.sort(np.concatenate(chosen)).astype(np.int32)


def pad_to(images: np.ndarray, size: int) -> np.ndarray:
  """Centre-pads images [N, H, W, C] with zeros to [N, size, size, C]."""
  height, width = images.shape[1:3]
  if size < max(height, width):
    raise ValueError(
        f'data.image_size={size} is smaller than the {height}x{width} images'
    )
  if size == height == width:
    return images
  top, left = (size - height) // 2, (size - width) // 2
  return np.pad(
      images,
      ((0, 0), (top, size - height - top), (left, size - width - left), (0, 0)),
  )


def to_unit_range(images) -> jax.Array:
  """Maps uint8 pixels to float32 in [-1, 1] (the range of the generator's tanh)."""
  return jnp.asarray(images, jnp.float32) / 127.5 - 1.0


def batch_indices(
    key: jax.Array, step: jax.Array, pool_size: int, batch_size: int
) -> jax.Array:
  """int32[batch_size] indices into a pool of `pool_size` examples for `step`.

  A pure function of (key, step), so a resumed run sees the same batches. A pool at
  least one batch large is walked in epochs without replacement (the last
  `pool_size % batch_size` of each epoch's permutation are skipped); a smaller pool
  (e.g. 20 labels with batch 64) is sampled uniformly with replacement.
  """
  if pool_size <= 0 or batch_size <= 0:
    raise ValueError(
        f'pool_size and batch_size must be positive, got {pool_size} and {batch_size}'
    )
  if pool_size < batch_size:
    return jax.random.randint(
        jax.random.fold_in(key, step), (batch_size,), 0, pool_size, jnp.int32
    )
  steps_per_epoch = pool_size // batch_size
  perm = jax.random.permutation(jax.random.fold_in(key, step // steps_per_epoch), pool_size)
  start = (step % steps_per_epoch) * batch_size
  return lax.dynamic_slice(perm, (start,), (batch_size,)).astype(jnp.int32)
