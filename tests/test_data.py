"""Tests for gan_jax.data and the mnist5k TFDS builder."""

import pathlib
import sys

from conftest import mock_tfds, offline
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from configs import default
from gan_jax import checks, data
from gan_jax.errors import BadInput


@pytest.fixture(scope='session')
def mnist5k(data_dir):
  """Prepares mnist5k once, offline and without TensorFlow; returns both splits."""
  with offline():
    splits = {split: data.load_split('mnist5k', split, data_dir) for split in ('train', 'test')}
  # TensorFlow is no dependency; where it happens to be installed, nothing may load it.
  assert 'tensorflow' not in sys.modules
  return splits


def test_mnist5k_is_prepared_as_array_record(mnist5k, data_dir):
  del mnist5k  # Prepared by the fixture.
  files = sorted(p.name for p in (pathlib.Path(data_dir) / 'mnist5k' / '1.0.0').iterdir())
  assert 'mnist5k-train.array_record-00000-of-00001' in files
  assert 'mnist5k-test.array_record-00000-of-00001' in files


@pytest.mark.parametrize('split, per_class', [('train', 400), ('test', 100)])
def test_mnist5k_split(mnist5k, split, per_class):
  images, labels = mnist5k[split]
  assert images.shape == (10 * per_class, 28, 28, 1) and images.dtype == np.uint8
  assert labels.shape == (10 * per_class,) and labels.dtype == np.int32
  np.testing.assert_array_equal(np.bincount(labels, minlength=10), [per_class] * 10)
  assert images.max() == 255
  # Every image is a digit: some ink, on a mostly black background.
  ink = (images > 127).mean(axis=(1, 2, 3))
  assert ink.min() > 0.02 and ink.max() < 0.5


def test_mnist5k_train_and_test_are_disjoint(mnist5k):
  train = {image.tobytes() for image in mnist5k['train'][0]}
  assert not any(image.tobytes() in train for image in mnist5k['test'][0])


def test_mnist5k_loads_deterministically(mnist5k, data_dir):
  images, labels = data.load_split('mnist5k', 'train', data_dir)
  np.testing.assert_array_equal(images, mnist5k['train'][0])
  np.testing.assert_array_equal(labels, mnist5k['train'][1])


def test_standard_name_reads_through_tfds_data_source(data_dir):
  with mock_tfds(num_examples=12):
    images, labels = data.load_split('mnist', 'train', data_dir)
  assert images.shape == (12, 28, 28, 1) and images.dtype == np.uint8
  assert labels.shape == (12,) and labels.dtype == np.int32
  assert labels.min() >= 0 and labels.max() < data.TFDS_DATASETS['mnist']


def test_standard_name_not_prepared_is_a_one_line_error(tmp_path):
  with pytest.raises(ValueError) as error:
    data.load_split('fashion_mnist', 'train', str(tmp_path))
  message = str(error.value)
  assert '\n' not in message
  assert "'fashion_mnist'" in message and str(tmp_path) in message
  assert '--file_format=array_record' in message and 'mnist5k' in message


def test_missing_data_dir_is_a_one_line_error(tmp_path):
  missing = str(tmp_path / 'nowhere')
  with pytest.raises(ValueError, match='data.data_dir') as error:
    data.load_split('mnist5k', 'train', missing)
  assert missing in str(error.value) and '\n' not in str(error.value)


def test_default_data_dir(monkeypatch):
  monkeypatch.setenv('TFDS_DATA_DIR', '/some/dir')
  assert data.default_data_dir() == '/some/dir'
  monkeypatch.delenv('TFDS_DATA_DIR')
  assert data.default_data_dir().endswith('tensorflow_datasets')


LABELS = np.repeat(np.arange(10), 50)[np.random.default_rng(0).permutation(500)]


def test_labeled_subset_is_balanced_sorted_and_seeded():
  indices = data.labeled_subset(LABELS, 100, 10, seed=0)
  assert indices.dtype == np.int32
  assert np.all(np.diff(indices) > 0)
  np.testing.assert_array_equal(np.bincount(LABELS[indices], minlength=10), [10] * 10)
  np.testing.assert_array_equal(indices, data.labeled_subset(LABELS, 100, 10, seed=0))
  assert not np.array_equal(indices, data.labeled_subset(LABELS, 100, 10, seed=1))


@pytest.mark.parametrize('seed', [1, 7])
def test_the_reference_labeled_subset_is_the_one_improved_gan_picks(seed):
  """openai/improved-gan's train_mnist_feature_matching.py, step by step: permute the images and
  labels with RandomState(seed_data), keep the first `count` images of each class."""
  images = np.arange(len(LABELS))  # each image by its index
  order = np.random.RandomState(seed).permutation(len(LABELS))
  trainx, trainy = images[order], LABELS[order]
  picked = np.concatenate([trainx[trainy == j][:10] for j in range(10)])
  indices = data.reference_labeled_subset(LABELS, 100, 10, seed)
  assert indices.dtype == np.int32 and np.all(np.diff(indices) > 0)
  np.testing.assert_array_equal(indices, np.sort(picked))
  assert set(indices) != set(data.labeled_subset(LABELS, 100, 10, seed))


def test_the_reference_labeled_subset_reads_the_images_in_their_files_order():
  """The split in an order of its own (tfds's): the reference permutes the files' order."""
  file_index = np.random.default_rng(3).permutation(len(LABELS))  # position -> file index
  in_files = np.empty_like(LABELS)
  in_files[file_index] = LABELS  # the labels as the reference reads them
  reference = data.reference_labeled_subset(in_files, 100, 10, seed=1)  # file indices
  indices = data.reference_labeled_subset(LABELS, 100, 10, 1, file_index)
  np.testing.assert_array_equal(np.sort(file_index[indices]), reference)
  with pytest.raises(ValueError, match='499 file indices for a split of 500'):
    data.reference_labeled_subset(LABELS, 100, 10, 1, file_index[:-1])


@pytest.mark.parametrize('num_labeled', [0, -10, 25])
def test_a_label_budget_that_is_no_multiple_is_refused_before_the_subset(num_labeled):
  config = default.base()
  config.loss.d_terms = {'sgan_labeled': 1.0}
  config.data.num_labeled = num_labeled
  with pytest.raises(BadInput, match='data.num_labeled'):
    checks.check_data(config, len(LABELS), np.bincount(LABELS))


def test_a_label_budget_past_the_smallest_class_is_refused():
  config = default.base()
  config.loss.d_terms = {'sgan_labeled': 1.0}
  config.data.num_labeled = 510
  with pytest.raises(BadInput, match='data.num_labeled=510.*limit is 500'):
    checks.check_data(config, len(LABELS), np.bincount(LABELS))


def test_pad_to_centres_the_image():
  images = np.full((2, 28, 28, 1), 255, np.uint8)
  padded = data.pad_to(images, 32)
  assert padded.shape == (2, 32, 32, 1) and padded.dtype == np.uint8
  assert np.all(padded[:, 2:30, 2:30] == 255)
  assert padded.sum() == images.sum()
  assert data.pad_to(images, 28) is images


def test_pad_to_rejects_smaller_size():
  with pytest.raises(ValueError, match='data.image_size=24'):
    data.pad_to(np.zeros((1, 28, 28, 1), np.uint8), 24)


def test_to_unit_range():
  pixels = np.array([0, 255], np.uint8)
  np.testing.assert_allclose(data.to_unit_range(pixels), [-1.0, 1.0], atol=1e-6)
  # Under jit XLA divides by multiplying with the reciprocal: 255 -> 1 + 1.2e-7.
  scaled = jax.jit(data.to_unit_range)(jnp.asarray(pixels))
  assert scaled.dtype == jnp.float32
  np.testing.assert_allclose(scaled, [-1.0, 1.0], atol=1e-6)


batch_indices = jax.jit(data.batch_indices, static_argnums=(2, 3))
KEY = jax.random.PRNGKey(0)


def test_batch_indices_walk_epochs_without_replacement():
  pool_size, batch_size = 10, 3  # 3 steps per epoch; 1 example skipped per epoch.
  batches = [batch_indices(KEY, jnp.int32(s), pool_size, batch_size) for s in range(6)]
  for batch in batches:
    assert batch.shape == (3,) and batch.dtype == jnp.int32
  epochs = [np.concatenate(batches[:3]), np.concatenate(batches[3:])]
  for epoch in epochs:
    assert len(set(epoch.tolist())) == 9 and epoch.min() >= 0 and epoch.max() < 10
  assert not np.array_equal(epochs[0], epochs[1])


def test_batch_indices_are_deterministic():
  step = jnp.int32(7)
  np.testing.assert_array_equal(batch_indices(KEY, step, 100, 8), batch_indices(KEY, step, 100, 8))
  assert not np.array_equal(
    batch_indices(KEY, step, 100, 8), batch_indices(jax.random.PRNGKey(1), step, 100, 8)
  )


@pytest.mark.parametrize('pool_size, repeats', [(20, 5), (50, 2)])
def test_a_small_pool_is_cycled_as_improved_gan_tiles_its_labels(pool_size, repeats):
  """20 or 50 labels in batches of 100: every batch holds each label `repeats` times, each
  run of `pool_size` a fresh permutation."""
  batches = [batch_indices(KEY, jnp.int32(s), pool_size, 100) for s in range(3)]
  for batch in batches:
    assert batch.shape == (100,) and batch.dtype == jnp.int32
    np.testing.assert_array_equal(np.bincount(batch, minlength=pool_size), repeats)
    runs = np.asarray(batch).reshape(repeats, pool_size)
    assert all(sorted(run) == list(range(pool_size)) for run in runs.tolist())
  assert len({tuple(b.tolist()) for b in batches}) == 3


def test_a_pool_that_does_not_divide_the_batch_is_read_through():
  """3 examples in batches of 7: the permutations end to end, a batch straddling three."""
  stream = np.concatenate([batch_indices(KEY, jnp.int32(s), 3, 7) for s in range(3)])
  epochs = stream.reshape(7, 3).tolist()
  assert all(sorted(epoch) == [0, 1, 2] for epoch in epochs)
  assert len({tuple(epoch) for epoch in epochs}) > 1


def one_step_draw(key, step, pool_size, batch_size):
  """The plain form of a step's draw: its epochs' whole permutations made for this step alone."""
  if pool_size < batch_size:
    positions = step * batch_size + jnp.arange(batch_size)
    permute = lambda e: jax.random.permutation(jax.random.fold_in(key, e), pool_size)
    return jnp.stack([permute(p // pool_size)[p % pool_size] for p in positions.tolist()])
  steps_per_epoch = pool_size // batch_size
  perm = jax.random.permutation(jax.random.fold_in(key, step // steps_per_epoch), pool_size)
  return jax.lax.dynamic_slice(perm, ((step % steps_per_epoch) * batch_size,), (batch_size,))


@pytest.mark.parametrize(
  'pool_size, batch_size, first, count',
  [
    (60_000, 100, 0, 50),  # full MNIST, a call within one epoch
    (60_000, 100, 580, 50),  # a call across two epochs
    (1000, 64, 14, 40),  # 15 steps an epoch: three epochs, the pool's tail skipped
    (100, 100, 7, 50),  # one step an epoch (100 labels, batch 100)
    (20, 100, 5, 10),  # 20 labels, batch 100: five permutations a batch
    (3, 7, 4, 9),  # a smaller pool that does not divide the batch: batches straddle epochs
    (60_000, 100, 599, 1),  # one step, the last of its epoch
  ],
)
def test_a_calls_indices_are_each_steps_own_draw(pool_size, batch_size, first, count):
  """Each epoch's permutation made once for all the call's steps, bit for bit the draws of the
  steps one by one."""
  key = jax.random.fold_in(KEY, 3)
  call = jax.jit(data.call_indices, static_argnums=(2, 3, 4))
  drawn = call(key, jnp.int32(first), count, pool_size, batch_size)
  assert drawn.shape == (count, batch_size) and drawn.dtype == jnp.int32
  plain = [one_step_draw(key, jnp.int32(first + t), pool_size, batch_size) for t in range(count)]
  np.testing.assert_array_equal(drawn, np.stack(plain))
  np.testing.assert_array_equal(
    batch_indices(key, jnp.int32(first), pool_size, batch_size), plain[0]
  )


@pytest.mark.parametrize('image_size, channels', [(28, 1), (32, 1), (32, 3)])
def test_open_dataset_pads_and_converts_the_embedded_data(image_size, channels):
  config = default.base().data
  config.image_size, config.channels = image_size, channels
  dataset = data.open_dataset(config)
  assert dataset.labeled and dataset.num_classes == 10
  images, labels = dataset.split('test')
  raw, raw_labels = data.load_split('mnist5k', 'test')
  assert images.shape == (1000, image_size, image_size, channels)
  np.testing.assert_array_equal(labels, raw_labels)
  top = (image_size - 28) // 2
  centre = images[:, top : top + 28, top : top + 28]
  for c in range(channels):  # grey repeated into every channel, the padding black
    np.testing.assert_array_equal(centre[..., c : c + 1], raw)
  assert images.sum() == raw.sum() * channels


def test_rgb_to_grey_is_pillows_luma():
  rgb = np.random.default_rng(0).integers(0, 256, (2, 5, 5, 3), dtype=np.uint8)
  grey = data.with_channels(rgb, 1)
  expected = np.stack([np.asarray(Image.fromarray(image).convert('L')) for image in rgb])[..., None]
  assert np.abs(grey.astype(int) - expected).max() <= 1


@pytest.mark.parametrize(
  'field, value, message',
  [
    ('name', 'nope', "data.name='nope' is not valid; valid choices:"),
    ('channels', 2, 'data.channels=2 is not valid; valid choices: 1, 3'),
    ('folder', '/somewhere', "data.folder='/somewhere' is only read with data.name='folder'"),
  ],
)
def test_bad_data_fields_are_one_line_before_the_data_opens(field, value, message):
  """The config is checked once, before data.open_dataset, which then trusts it."""
  config = default.base()
  config.data[field] = value
  with pytest.raises(BadInput) as error:
    checks.check_config(config)
  assert str(error.value).startswith(message) and '\n' not in str(error.value)


def test_a_datasets_file_index_is_cut_as_its_splits_are():
  images, labels = np.zeros((10, 2, 2, 1), np.uint8), np.arange(10)
  dataset = data.Dataset(
    'mnist', ('0',), lambda split: (images, labels), 3, lambda split: np.arange(10)[::-1]
  )
  assert dataset.file_index('train').tolist() == [9, 8, 7, 6, 5, 4, 3]
  assert dataset.file_index('validation').tolist() == [2, 1, 0]
  assert dataset.split('validation')[1].tolist() == [7, 8, 9]
  assert data.Dataset('mnist5k', ('0',), lambda split: (images, labels)).file_index('train') is None
