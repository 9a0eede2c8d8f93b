"""Tests for gan_jax.openmoji: rendering, groups as labels and the tfds builder."""

import json
import math
import os
import sys
from unittest import mock

from conftest import offline
import numpy as np
import pytest
import tensorflow_datasets as tfds

from gan_jax import openmoji

CLASSES = [
  'smileys-emotion',
  'people-body',
  'animals-nature',
  'food-drink',
  'travel-places',
  'activities',
  'objects',
  'symbols',
  'flags',
  'extras-unicode',
  'extras-openmoji',
]
LIMIT = 200


def read(name, split, data_dir):
  source = tfds.data_source(name, split=split, data_dir=data_dir)
  examples = source.__getitems__(range(len(source)))
  return (
    np.stack([e['image'] for e in examples]),
    np.array([e['label'] for e in examples], np.int32),
  )


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  with offline():
    name, class_names = openmoji.prepare(data_dir, 16, limit=LIMIT)
  splits = {split: read(name, split, data_dir) for split in ('train', 'test')}
  return {'data_dir': data_dir, 'name': name, 'class_names': class_names, 'splits': splits}


def is_coloured(image):
  """Some pixel whose channels differ: not a grayscale image."""
  return (image.max(-1).astype(int) - image.min(-1) > 60).any()


@pytest.mark.parametrize('emoji', ['\U0001f600', [0x1F1E9, 0x1F1EA], openmoji.Emoji('\ue000', '')])
def test_render_is_coloured_on_white(emoji):
  image = openmoji.render(emoji, 32)
  assert image.shape == (32, 32, 3) and image.dtype == np.uint8
  corners = image[[0, 0, -1, -1], [0, -1, 0, -1]]
  np.testing.assert_array_equal(corners, np.full((4, 3), 255))
  assert 0.1 < (image < 250).any(-1).mean() < 0.95
  assert is_coloured(image)


def test_render_is_blank_without_a_glyph():
  np.testing.assert_array_equal(openmoji.render(' ', 16), np.full((16, 16, 3), 255))


def test_groups_are_the_classes():
  assert openmoji.class_names() == CLASSES
  sizes = openmoji.class_sizes()
  assert list(sizes) == CLASSES and min(sizes.values()) >= openmoji.MIN_CLASS_SIZE
  assert 2000 < sum(sizes.values()) == len(openmoji.emojis())
  group = {e.text: e.group for e in openmoji.emojis()}
  assert group['\U0001f600'] == 'smileys-emotion'  # Grinning face.
  assert group['\U0001f436'] == 'animals-nature'  # Dog face.
  assert group['\u2615'] == 'food-drink'  # Hot beverage: its FE0F-less form.
  assert group['\U0001f1e9\U0001f1ea'] == 'flags'  # A regional-indicator pair.
  assert '\U0001f3fb' not in group  # A skin tone swatch: 'component', too small a group.
  assert not any(e.text.startswith('\U0001f44d') and len(e.text) > 1 for e in openmoji.emojis())


def test_prepared_splits(prepared):
  assert prepared['name'] == f'openmoji/size16-limit{LIMIT}'
  assert prepared['class_names'] == CLASSES
  (train_images, train_labels), (_, test_labels) = prepared['splits'].values()
  assert train_images.shape[1:] == (16, 16, 3) and train_images.dtype == np.uint8
  assert len(train_labels) + len(test_labels) == LIMIT
  sizes = np.bincount(np.concatenate([train_labels, test_labels]), minlength=len(CLASSES))
  expected = [min(math.floor(0.1 * n + 0.5), max(n - 1, 0)) for n in sizes]
  np.testing.assert_array_equal(np.bincount(test_labels, minlength=len(CLASSES)), expected)
  assert np.mean([is_coloured(image) for image in train_images]) > 0.5
  assert 'tensorflow' not in sys.modules


def test_prepared_metadata(prepared):
  path = os.path.join(prepared['data_dir'], 'openmoji', f'size16-limit{LIMIT}', '1.0.0')
  with open(os.path.join(path, 'metadata.json')) as f:
    metadata = json.load(f)
  assert list(metadata['class_sizes']) == CLASSES and sum(metadata['class_sizes'].values()) == LIMIT
  with open(os.path.join(path, 'dataset_info.json')) as f:
    assert 'CC BY-SA 4.0' in f.read()


def test_second_prepare_reuses_the_copy(prepared):
  with mock.patch.object(openmoji, 'render', side_effect=AssertionError('rendered again')):
    assert openmoji.prepare(prepared['data_dir'], 16, limit=LIMIT) == (prepared['name'], CLASSES)


def test_registered_config_builds_through_data_source(tmp_path):
  assert {'size32', 'size64', 'size128'} <= set(openmoji.Openmoji.builder_configs)
  with offline():
    images, labels = read('openmoji/size32', 'test', str(tmp_path))
  assert images.shape[1:] == (32, 32, 3)
  np.testing.assert_array_equal(
    np.bincount(labels, minlength=len(CLASSES)),
    [math.floor(0.1 * n + 0.5) for n in openmoji.class_sizes().values()],
  )
