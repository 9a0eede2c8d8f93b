"""A TFDS builder over a folder of your own images (PNG, JPEG, WebP, BMP, GIF).

The immediate subfolders are the classes, labelled in sorted order of their names; images in
the root alone (no subfolder holding any) are one unlabeled set. Every image is decoded with
Pillow, composited on a background colour, made RGB or grayscale and resized to a square by
centre crop or letterbox; the result is stored as array_record, so `tfds.data_source` reads
it with numpy only (no TensorFlow), with a seeded, class-stratified test split.

The prepared copy lives under the data dir as the config `local_folder/<name>-<key>`, where
the key hashes the folder's path and the preprocessing options. A fingerprint of the file list,
sizes and modification times is kept in its metadata: when it no longer matches, the copy is
deleted and built again.
"""

import collections
from collections.abc import Sequence
import concurrent.futures
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import sys
from typing import Any

from etils import epath
import numpy as np
import tensorflow_datasets as tfds
import tqdm

from gan_jax.errors import BadInput
from gan_jax.images import IMAGE_EXTENSIONS, RESIZE_MODES, load_image
from gan_jax.records import read_split

BUILDER_NAME = 'local_folder'
# Unreadable files named in the warning; the rest are only counted.
NAMED_SKIPPED = 5


def split_indices(
  labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
  """Sorted (train, test) indices: per class, round(test_fraction * n) random ones are test.

  Each class with two or more examples keeps at least one in train.
  """
  rng = np.random.default_rng(seed)
  test = [np.zeros(0, np.int64)]
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    count = min(math.floor(test_fraction * len(members) + 0.5), max(len(members) - 1, 0))
    test.append(rng.choice(members, count, replace=False))
  test = np.sort(np.concatenate(test))
  return np.setdiff1d(np.arange(len(labels)), test), test


@dataclasses.dataclass
class FolderData:
  """A prepared folder: read a split with `load`."""

  name: str  # For tfds.data_source, e.g. 'local_folder/pets-0123456789'.
  data_dir: str
  class_names: list[str]  # Sorted subfolder names; empty when unlabeled.
  num_skipped: int  # Unreadable files left out.
  image_shape: tuple[int, int, int]
  num_examples: dict[str, int]  # Per split: 'train' and 'test'.

  @property
  def labeled(self) -> bool:
    return bool(self.class_names)

  @property
  def num_classes(self) -> int:
    """0 when unlabeled (every label is then 0)."""
    return len(self.class_names)

  def load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
    """All of `split`: uint8 images [N, H, W, C] and int32 labels [N]."""
    if self.num_examples.get(split) == 0:
      # tfds writes no empty split (e.g. the test split of test_fraction=0).
      return np.zeros((0,) + self.image_shape, np.uint8), np.zeros(0, np.int32)
    return read_split(self.name, split, self.data_dir, download=False)


def prepare(
  folder: str,
  data_dir: str,
  image_size: int,
  channels: int = 3,
  resize: str = 'crop',
  background: Sequence[int] = (255, 255, 255),
  test_fraction: float = 0.1,
  seed: int = 0,
) -> FolderData:
  """Builds the data set of `folder` under `data_dir`, or reuses the copy there if current."""
  if not os.path.isdir(folder):
    raise BadInput(f'data.folder={folder} does not exist')
  if channels not in (1, 3):
    raise BadInput(f'data.channels must be 1 or 3, got {channels}')
  if resize not in RESIZE_MODES:
    raise BadInput(f'data.resize must be one of {", ".join(RESIZE_MODES)}, got {resize!r}')
  if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
    raise BadInput(f'data.image_size must be a positive integer, got {image_size!r}')
  if len(background) != 3 or not all(
    isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in background
  ):
    raise BadInput(f'data.background must be 3 integers in 0..255, got {tuple(background)}')
  background = tuple(int(v) for v in background)

  folder = os.path.abspath(folder)
  files, class_names = _scan(folder)
  if not files:
    raise BadInput(
      f'data.folder={folder} has no image ({", ".join(IMAGE_EXTENSIONS)}), in its root '
      'or in subfolders'
    )
  options = {
    'image_size': image_size,
    'channels': channels,
    'resize': resize,
    'background': list(background),
    'test_fraction': test_fraction,
    'seed': seed,
  }
  key = _hash([folder, options, str(LocalFolder.VERSION)])[:10]
  slug = re.sub(r'[^A-Za-z0-9_]+', '_', os.path.basename(folder)).strip('_')[:32] or 'folder'
  config = tfds.core.BuilderConfig(name=f'{slug}-{key}', description=f'Images from {folder}.')
  fingerprint = _hash([key] + [_stat(folder, path) for path, _ in files])

  # Where tfds keeps this config; the builder itself is made only when there is data for it.
  builder_dir = os.path.join(data_dir, BUILDER_NAME, config.name, str(LocalFolder.VERSION))
  metadata = _read_metadata(builder_dir)
  if metadata is None or metadata.get('fingerprint') != fingerprint:
    if metadata is not None:
      shutil.rmtree(builder_dir)  # Stale: a file was added, removed or changed.
    examples = _decode(folder, files, class_names, image_size, channels, resize, background)
    train, test = split_indices(examples['labels'], test_fraction, seed)
    builder = LocalFolder(
      config=config,
      data_dir=data_dir,
      examples=dict(
        examples, train=train, test=test, fingerprint=fingerprint, folder=folder, options=options
      ),
    )
    builder.download_and_prepare()
    metadata = _read_metadata(builder_dir)
  return FolderData(
    name=f'{BUILDER_NAME}/{config.name}',
    data_dir=os.fspath(data_dir),
    class_names=list(metadata['class_names']),
    num_skipped=int(metadata['num_skipped']),
    image_shape=(image_size, image_size, channels),
    num_examples=dict(metadata['num_examples']),
  )


def _scan(folder: str) -> tuple[list[tuple[str, int]], list[str]]:
  """Image files as (path, class index), in a fixed order, and the class names.

  Subfolders holding images are the classes (searched recursively) and root images are then
  left out; with no such subfolder, the root images are one unlabeled set (class 0). Links are
  followed once: every real file and folder is read at most once, where it lies if that is in
  the folder, else through the first link to it in sorted order; a link to a folder already read
  (one back up the tree, or to another class) ends there.
  """
  seen = {_identity(folder)}  # (st_dev, st_ino) of every folder and file read.
  found = collections.defaultdict(list)  # Image paths by subfolder index; the root's under None.
  # (index, path) still to read: what lies in the folder first, then the links met on the way.
  queue = collections.deque()

  def first_visit(path: str) -> bool:
    try:
      identity = _identity(path)
    except OSError:  # A broken link: kept, so that it is reported as unreadable.
      return True
    if identity in seen:
      return False
    seen.add(identity)
    return True

  def visit(c: int | None, root: str, names: list[str], dirs: list[str]) -> list[str]:
    """Adds the images among `names` in `root` to `c`, queueing links; returns the dirs to walk."""
    walk = []
    images = [n for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
    for name in sorted(images) + sorted(dirs):
      path = os.path.join(root, name)
      if name.startswith('.'):
        continue
      if os.path.islink(path):
        queue.append((c, path))
      elif first_visit(path):
        if name in dirs:
          walk.append(name)
        else:
          found[c].append(path)
    return walk

  def drain() -> None:
    while queue:
      c, path = queue.popleft()
      if not first_visit(path):
        continue
      if os.path.isdir(path):
        for root, dirs, names in os.walk(path):
          dirs[:] = visit(c, root, names, dirs)
      else:
        found[c].append(path)

  with os.scandir(folder) as entries:
    is_dir = {e.name: e.is_dir() for e in entries}
  subfolders = sorted(name for name, d in is_dir.items() if d and not name.startswith('.'))
  tops = [(c, os.path.join(folder, name)) for c, name in enumerate(subfolders)]
  # Subfolders lying in the root are read before those linked there: an image's class is the
  # subfolder it lies in.
  queue.extend(sorted(tops, key=lambda top: os.path.islink(top[1])))
  drain()
  visit(None, folder, [name for name, d in is_dir.items() if not d], [])
  drain()
  classes = [c for c in range(len(subfolders)) if found[c]]
  if not classes:
    return [(path, 0) for path in found[None]], []
  if found[None]:
    _warn(
      f'data.folder={folder}: {len(found[None])} images in its root are ignored, since its '
      'subfolders are the classes'
    )
  labelled = [(path, i) for i, c in enumerate(classes) for path in found[c]]
  return labelled, [subfolders[c] for c in classes]


def _identity(path: str) -> tuple[int, int]:
  stat = os.stat(path)
  return stat.st_dev, stat.st_ino


def _stat(folder: str, path: str) -> list[Any]:
  try:
    stat = os.stat(path)
  except FileNotFoundError:  # A broken link (skipped as unreadable): the link's own.
    stat = os.lstat(path)
  return [os.path.relpath(path, folder), stat.st_size, stat.st_mtime_ns]


def _warn(message: str) -> None:
  """One line on stderr: launch.py keeps absl's logging to errors, so a log record would not show."""
  # Control characters in a file name (a newline) escaped as repr() would, like launch.printable.
  message = ''.join(c if c.isprintable() else repr(c)[1:-1] for c in message)
  print(f'warning: {message}', file=sys.stderr, flush=True)


def _hash(value: Any) -> str:
  return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _read_metadata(builder_dir: str) -> dict[str, Any] | None:
  """The metadata of a complete prepared copy (tfds renames it into place when done)."""
  path = os.path.join(builder_dir, 'metadata.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _decode(folder, files, class_names, image_size, channels, resize, background):
  """Decodes every file, skipping (and reporting) unreadable ones."""

  def load(path):
    try:
      return load_image(path, image_size, channels, resize, background)
    except Exception:  # noqa: BLE001  Pillow's plugins raise many kinds on corrupt data.
      return None

  # Pillow releases the GIL while it decodes and resizes, so threads run in parallel.
  with concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
    decoded = list(
      tqdm.tqdm(
        pool.map(load, [path for path, _ in files]),
        total=len(files),
        desc=f'preparing {os.path.basename(folder)}',
        unit='image',
        dynamic_ncols=True,
      )
    )
  skipped = [
    os.path.relpath(path, folder) for (path, _), image in zip(files, decoded) if image is None
  ]
  if len(skipped) == len(files):
    raise BadInput(f'data.folder={folder} has no readable image ({len(files)} unreadable)')
  if 2 * len(skipped) > len(files):
    raise BadInput(
      f'data.folder={folder}: {len(skipped)} of {len(files)} images are '
      f'unreadable, e.g. {", ".join(skipped[:NAMED_SKIPPED])}'
    )
  if skipped:
    more = f' and {len(skipped) - NAMED_SKIPPED} more' if len(skipped) > NAMED_SKIPPED else ''
    _warn(
      f'data.folder={folder}: skipped {len(skipped)} unreadable of {len(files)} images: '
      f'{", ".join(skipped[:NAMED_SKIPPED])}{more}'
    )
  kept = [(image, c) for image, (_, c) in zip(decoded, files) if image is not None]
  labels = np.array([c for _, c in kept], np.int64)
  # A class whose every file is unreadable has no example: drop it, renumbering the rest.
  present = np.unique(labels)
  if class_names and len(present) < len(class_names):
    class_names = [class_names[c] for c in present]
    labels = np.searchsorted(present, labels)
  return {
    'images': np.stack([image for image, _ in kept]),
    'labels': labels,
    'class_names': class_names,
    'skipped': skipped,
  }


class LocalFolder(tfds.core.GeneratorBasedBuilder):
  """Images of a local folder; built only through `prepare`, which passes the decoded data."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  # Like mnist5k: tfds 4.9.10 cannot derive `code_path` without `importlib_resources`.
  code_path = epath.Path(__file__)

  def __init__(self, *, examples: dict[str, Any] | None = None, file_format=None, **kwargs):
    self._examples = examples
    # array_record by default (tfds defaults to tfrecord): random access with numpy only.
    super().__init__(file_format=file_format or 'array_record', **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    if self._examples is None:
      raise BadInput(
        f'{self.name}/{self.builder_config.name} is not prepared in '
        f'{self._data_dir_root}: prepare it with gan_jax.folder.prepare'
      )
    e = self._examples
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          'image': tfds.features.Tensor(shape=e['images'].shape[1:], dtype=np.uint8),
          # An unlabeled set is one class, label 0 for all.
          'label': tfds.features.ClassLabel(names=e['class_names'] or ['unlabeled']),
        }
      ),
      supervised_keys=('image', 'label'),
      metadata=tfds.core.MetadataDict(
        fingerprint=e['fingerprint'],
        folder=e['folder'],
        options=e['options'],
        class_names=e['class_names'],
        labeled=bool(e['class_names']),
        num_skipped=len(e['skipped']),
        skipped=e['skipped'][:NAMED_SKIPPED],
        num_examples={split: len(e[split]) for split in ('train', 'test')},
      ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Local files only: no network.
    e = self._examples
    # tfds cannot write an empty split.
    return {
      split: self._generate_examples(e['images'], e['labels'], e[split])
      for split in ('train', 'test')
      if len(e[split])
    }

  def _generate_examples(self, images, labels, indices):
    for i in indices:
      yield int(i), {'image': images[i], 'label': int(labels[i])}
