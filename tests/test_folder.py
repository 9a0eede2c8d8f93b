"""Tests for gan_jax.folder: decoding, resizing, the split, the cache, links, bad input, and
its warnings as launch.py prints them."""

import os
import pathlib
import sys
from unittest import mock

from conftest import offline
import numpy as np
from PIL import Image
import pytest
from test_reliability import QUIET, launch, launch_env, stderr_lines

from gan_jax import folder, images

RED, BLUE, WHITE, GREEN = (255, 0, 0), (0, 0, 255), (255, 255, 255), (0, 255, 0)
PER_CLASS = 10


def halves(path, size=(40, 20), mode='RGB'):
  """Saves an image whose left half is red and right half blue."""
  pixels = np.zeros((size[1], size[0], 3), np.uint8)
  pixels[:, : size[0] // 2] = RED
  pixels[:, size[0] // 2 :] = BLUE
  Image.fromarray(pixels).convert(mode).save(path)
  return path


def solid(path, colour, size=(24, 16), **save_kwargs):
  Image.new('RGB', size, colour).save(path, **save_kwargs)
  return path


def write_classes(root: pathlib.Path) -> None:
  """Two classes of PER_CLASS readable images each, in every format and mode, plus junk."""
  apples, bananas = root / 'apples', root / 'bananas'
  apples.mkdir(parents=True)
  bananas.mkdir()
  Image.new('RGBA', (24, 16), RED + (128,)).save(apples / 'rgba.png')
  Image.new('L', (16, 24), 90).save(apples / 'gray.png')
  palette = Image.new('P', (20, 20), 1)
  palette.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
  palette.save(apples / 'palette.png', transparency=0)
  Image.fromarray(np.full((16, 16), 40000, np.uint16)).save(apples / 'deep.png')
  Image.new('LA', (16, 16), (60, 200)).save(apples / 'la.png')
  Image.new('CMYK', (16, 16), (0, 200, 200, 0)).save(apples / 'cmyk.jpg')
  solid(apples / 'photo.jpeg', (180, 20, 20))
  solid(apples / 'pic.webp', (170, 40, 40), lossless=True)
  solid(apples / 'pic.BMP', (160, 50, 50))
  frames = [Image.new('RGB', (16, 16), c).convert('P') for c in ((150, 0, 0), BLUE)]
  frames[0].save(apples / 'anim.gif', save_all=True, append_images=frames[1:])
  (apples / 'corrupt.png').write_bytes(b'\x89PNG\r\n\x1a\n not really a png')
  (apples / 'notes.txt').write_text('not an image')
  for i in range(PER_CLASS):
    solid(bananas / f'{i}.png', (200, 200, 10 * i))
  solid(root / 'stray.png', GREEN)  # In the root of a labelled folder: ignored.


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  root = tmp_path_factory.mktemp('fruit')
  write_classes(root)
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  with offline():
    data = folder.prepare(str(root), data_dir, 16, test_fraction=0.2)
  splits = {split: data.load(split) for split in ('train', 'test')}
  return {'root': root, 'data_dir': data_dir, 'data': data, 'splits': splits}


def test_load_image_crop_keeps_the_centre_square(tmp_path):
  image = images.load_image(halves(tmp_path / 'h.png'), 16, resize='crop')
  assert image.shape == (16, 16, 3) and image.dtype == np.uint8
  # The crop is columns 10..30 of 40: red up to the middle, blue after it.
  np.testing.assert_allclose(image[:, :4], np.broadcast_to(RED, (16, 4, 3)), atol=2)
  np.testing.assert_allclose(image[:, 12:], np.broadcast_to(BLUE, (16, 4, 3)), atol=2)


def test_load_image_pad_letterboxes_with_the_background(tmp_path):
  image = images.load_image(halves(tmp_path / 'h.png'), 16, resize='pad', background=GREEN)
  # 40x20 becomes 16x8, centred: 4 rows of background above and below.
  for rows in (image[:4], image[12:]):
    np.testing.assert_array_equal(rows, np.broadcast_to(GREEN, rows.shape))
  np.testing.assert_allclose(image[4:12, :6], np.broadcast_to(RED, (8, 6, 3)), atol=2)
  np.testing.assert_allclose(image[4:12, 10:], np.broadcast_to(BLUE, (8, 6, 3)), atol=2)


def test_load_image_applies_exif_orientation(tmp_path):
  exif = Image.Exif()
  exif[0x0112] = 6  # Rotate 90 degrees clockwise to display: 40x20 shows as 20x40.
  pixels = np.zeros((20, 40, 3), np.uint8)
  pixels[:, :20] = RED
  pixels[:, 20:] = BLUE
  Image.fromarray(pixels).save(tmp_path / 'o.jpg', exif=exif, quality=95)
  image = images.load_image(tmp_path / 'o.jpg', 16, resize='pad', background=GREEN)
  np.testing.assert_allclose(image[:, :4], np.broadcast_to(GREEN, (16, 4, 3)), atol=3)
  np.testing.assert_allclose(image[:, 12:], np.broadcast_to(GREEN, (16, 4, 3)), atol=3)
  np.testing.assert_allclose(image[:6, 6:10], np.broadcast_to(RED, (6, 4, 3)), atol=12)


def test_load_image_grayscale(tmp_path):
  image = images.load_image(halves(tmp_path / 'h.png'), 16, channels=1, resize='pad')
  assert image.shape == (16, 16, 1)
  assert image[0, 0, 0] == 255  # White background stays white.
  np.testing.assert_allclose(image[8, 0, 0], 76, atol=1)  # The luma of pure red.


@pytest.mark.parametrize(
  'background, expected', [(WHITE, (255, 127, 127)), ((0, 0, 0), (128, 0, 0))]
)
def test_load_image_composites_alpha_on_the_background(tmp_path, background, expected):
  Image.new('RGBA', (8, 8), RED + (128,)).save(tmp_path / 'a.png')
  image = images.load_image(tmp_path / 'a.png', 8, background=background)
  np.testing.assert_allclose(image, np.broadcast_to(expected, (8, 8, 3)), atol=1)


def test_load_image_palette_transparency(tmp_path):
  palette = Image.new('P', (8, 8), 1)
  palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
  palette.paste(0, (0, 0, 4, 8))  # Left half: the transparent entry, black in the palette.
  palette.save(tmp_path / 'p.png', transparency=0)
  assert Image.open(tmp_path / 'p.png').mode == 'P'
  image = images.load_image(tmp_path / 'p.png', 8)
  np.testing.assert_array_equal(image[:, :4], np.broadcast_to(WHITE, (8, 4, 3)))
  np.testing.assert_array_equal(image[:, 4:], np.broadcast_to(BLUE, (8, 4, 3)))


def test_load_image_la_and_cmyk(tmp_path):
  Image.new('LA', (8, 8), (0, 0)).save(tmp_path / 'la.png')
  np.testing.assert_array_equal(images.load_image(tmp_path / 'la.png', 8), np.full((8, 8, 3), 255))
  Image.new('CMYK', (8, 8), (255, 0, 0, 0)).save(tmp_path / 'c.jpg', quality=95)
  np.testing.assert_allclose(
    images.load_image(tmp_path / 'c.jpg', 8), np.broadcast_to((0, 255, 255), (8, 8, 3)), atol=12
  )


def test_load_image_scales_16_bit_to_8_bit(tmp_path):
  values = np.array([0, 257, 100 * 257, 32768, 40000, 65535], np.uint16)
  pixels = np.resize(values, (16, 16)).astype(np.uint16)
  Image.fromarray(pixels).save(tmp_path / 'deep.png')
  assert Image.open(tmp_path / 'deep.png').mode in ('I;16', 'I')
  # Same size: the Lanczos resize leaves every pixel as it is.
  image = images.load_image(tmp_path / 'deep.png', 16, channels=1)
  np.testing.assert_array_equal(image[..., 0], np.rint(pixels / 257).astype(np.uint8))


def test_load_image_first_gif_frame(tmp_path):
  frames = [Image.new('RGB', (8, 8), c).convert('P') for c in (RED, BLUE)]
  frames[0].save(tmp_path / 'a.gif', save_all=True, append_images=frames[1:])
  np.testing.assert_array_equal(
    images.load_image(tmp_path / 'a.gif', 8), np.broadcast_to(RED, (8, 8, 3))
  )


def test_load_image_raises_on_unreadable(tmp_path):
  (tmp_path / 'junk.png').write_bytes(b'junk')
  halves(tmp_path / 'h.png')
  (tmp_path / 'cut.png').write_bytes((tmp_path / 'h.png').read_bytes()[:60])
  for name in ('junk.png', 'cut.png'):
    with pytest.raises(OSError):
      images.load_image(tmp_path / name, 8)


def test_prepared_classes_are_sorted_subfolders(prepared):
  data = prepared['data']
  assert data.class_names == ['apples', 'bananas'] and data.num_classes == 2 and data.labeled
  assert data.num_skipped == 1  # corrupt.png; notes.txt is no image, stray.png is in the root.
  assert data.name.startswith('local_folder/fruit')
  images, labels = prepared['splits']['train']
  assert images.shape[1:] == (16, 16, 3) and images.dtype == np.uint8 and labels.dtype == np.int32
  total = sum(np.bincount(prepared['splits'][s][1], minlength=2) for s in ('train', 'test'))
  np.testing.assert_array_equal(total, [PER_CLASS, PER_CLASS])
  assert 'tensorflow' not in sys.modules


def test_launch_prints_each_warning_on_one_line(tmp_path):
  """What the builder tells a user reaches launch.py's terminal (its absl logs only errors)."""
  root = tmp_path / 'fruit'
  write_classes(root)
  result = launch(
    '--config=configs/dcgan64.py:smoke',
    f'--workdir={tmp_path / "run"}',
    '--config.data.name=folder',
    f'--config.data.folder={root}',
    '--config.data.image_size=16',
    '--config.train.num_steps=2',
    *QUIET,
    env=launch_env(HOME=str(tmp_path / 'home'), TFDS_DATA_DIR=str(tmp_path / 'tfds')),
  )
  assert result.returncode == 0, result.stderr[-2000:]
  lines = [line for line in stderr_lines(result.stderr) if line.startswith('warning: ')]
  assert lines == [
    f'warning: data.folder={root}: 1 images in its root are ignored, since its subfolders are '
    'the classes',
    f'warning: data.folder={root}: skipped 1 unreadable of {2 * PER_CLASS + 1} images: '
    'apples/corrupt.png',
  ], result.stderr[-2000:]
  assert 'notes.txt' not in result.stderr


def test_warn_keeps_a_file_name_on_one_line(capsys):
  folder._warn('skipped a\nb.png')
  assert capsys.readouterr().err == 'warning: skipped a\\nb.png\n'


def test_stratified_split(prepared):
  (train_images, _), (test_images, test_labels) = prepared['splits'].values()
  np.testing.assert_array_equal(np.bincount(test_labels, minlength=2), [2, 2])  # 0.2 of 10.
  train = {image.tobytes() for image in train_images}
  assert not any(image.tobytes() in train for image in test_images)
  assert len(train) + len(test_images) == 2 * PER_CLASS


def test_split_is_seeded(prepared, tmp_path):
  def test_set(data):
    return {image.tobytes() for image in data.load('test')[0]}

  root = str(prepared['root'])
  again = folder.prepare(root, str(tmp_path / 'a'), 16, test_fraction=0.2)
  other = folder.prepare(root, str(tmp_path / 'b'), 16, test_fraction=0.2, seed=1)
  assert test_set(again) == test_set(prepared['data'])
  assert test_set(other) != test_set(prepared['data'])


def test_split_indices_rounds_per_class():
  labels = np.repeat([0, 1, 2], [20, 5, 1])
  train, test = folder.split_indices(labels, 0.1, seed=0)
  np.testing.assert_array_equal(np.bincount(labels[test], minlength=3), [2, 1, 0])
  np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(26))


def array_records(data_dir):
  paths = sorted(pathlib.Path(data_dir).glob('local_folder/*/*/*.array_record*'))
  return {str(p): p.stat().st_mtime_ns for p in paths}


def test_second_prepare_reuses_the_copy(prepared):
  before = array_records(prepared['data_dir'])
  with mock.patch.object(folder, '_decode', side_effect=AssertionError('rebuilt')):
    data = folder.prepare(str(prepared['root']), prepared['data_dir'], 16, test_fraction=0.2)
  assert data == prepared['data'] and array_records(prepared['data_dir']) == before


@pytest.fixture
def small(tmp_path):
  root = tmp_path / 'small'
  (root / 'x').mkdir(parents=True)
  (root / 'y').mkdir()
  for i in range(3):
    solid(root / 'x' / f'{i}.png', (10 * i, 0, 0))
    solid(root / 'y' / f'{i}.png', (0, 10 * i, 0))
  data_dir = str(tmp_path / 'tfds')
  return root, data_dir, folder.prepare(str(root), data_dir, 8)


def test_touching_a_file_rebuilds(small):
  root, data_dir, data = small
  before = array_records(data_dir)
  stat = os.stat(root / 'x' / '0.png')
  os.utime(root / 'x' / '0.png', ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
  assert folder.prepare(str(root), data_dir, 8) == data
  after = array_records(data_dir)
  assert after.keys() == before.keys() and all(after[k] != before[k] for k in after)


def test_adding_a_file_rebuilds(small):
  root, data_dir, data = small
  solid(root / 'y' / 'new.png', BLUE)
  again = folder.prepare(str(root), data_dir, 8)
  assert again.name == data.name
  assert sum(len(again.load(s)[1]) for s in ('train', 'test')) == 7
  assert len(list(pathlib.Path(data_dir).glob('local_folder/*'))) == 1  # The stale copy is gone.


def test_other_options_are_another_copy(small):
  root, data_dir, data = small
  gray = folder.prepare(str(root), data_dir, 8, channels=1)
  assert gray.name != data.name and gray.load('train')[0].shape[1:] == (8, 8, 1)
  padded = folder.prepare(str(root), data_dir, 8, resize='pad', background=(0, 0, 0))
  assert padded.name not in (data.name, gray.name)


def test_unlabeled_root_folder(tmp_path):
  (tmp_path / 'imgs' / 'empty_subfolder').mkdir(parents=True)
  for i in range(5):
    solid(tmp_path / 'imgs' / f'{i}.png', (i, i, i))
  data = folder.prepare(str(tmp_path / 'imgs'), str(tmp_path / 'tfds'), 8, test_fraction=0.2)
  assert data.class_names == [] and data.num_classes == 0 and not data.labeled
  images, labels = data.load('train')
  assert images.shape == (4, 8, 8, 3) and not labels.any()
  assert len(data.load('test')[1]) == 1


def test_no_test_fraction_gives_an_empty_test_split(small, tmp_path):
  root, _, _ = small
  data = folder.prepare(str(root), str(tmp_path / 'zero'), 8, test_fraction=0.0)
  images, labels = data.load('test')
  assert images.shape == (0, 8, 8, 3) and labels.shape == (0,)
  assert len(data.load('train')[1]) == 6


def bad_folder(tmp_path, readable, unreadable):
  root = tmp_path / 'bad'
  root.mkdir()
  for i in range(readable):
    solid(root / f'{i}.png', RED)
  for i in range(unreadable):
    (root / f'broken{i}.jpg').write_bytes(b'not a jpeg')
  (root / 'readme.txt').write_text('hi')
  return str(root)


@pytest.mark.parametrize(
  'make, kwargs, message',
  [
    (lambda t: str(t / 'missing'), {}, r'^data\.folder=.*missing does not exist$'),
    (lambda t: bad_folder(t, 0, 0), {}, r'^data\.folder=.* has no image'),
    (lambda t: bad_folder(t, 0, 2), {}, r'^data\.folder=.* has no readable image'),
    (lambda t: bad_folder(t, 2, 3), {}, r'^data\.folder=.*: 3 of 5 images are unreadable'),
    (lambda t: bad_folder(t, 1, 0), {'channels': 2}, r'^data\.channels must be 1 or 3, got 2$'),
    (lambda t: bad_folder(t, 1, 0), {'resize': 'stretch'}, r'^data\.resize must be one of'),
  ],
)
def test_bad_input(tmp_path, make, kwargs, message):
  with pytest.raises(ValueError, match=message) as error:
    folder.prepare(make(tmp_path), str(tmp_path / 'tfds'), 8, **kwargs)
  assert '\n' not in str(error.value)


def test_half_unreadable_is_still_fine(tmp_path):
  data = folder.prepare(bad_folder(tmp_path, 2, 2), str(tmp_path / 'tfds'), 8, test_fraction=0)
  assert data.num_skipped == 2 and len(data.load('train')[1]) == 2


def test_links_are_followed_once(tmp_path):
  root, outside = tmp_path / 'links', tmp_path / 'outside'
  for path, colour, count in ((root / 'a', RED, 3), (root / 'b', BLUE, 2), (outside, GREEN, 4)):
    path.mkdir(parents=True)
    for i in range(count):
      solid(path / f'{i}.png', colour)
  (root / 'b' / 'loop').symlink_to('..')  # Back to the root: ends there.
  (root / 'a' / 'other').symlink_to('../b')  # Another class: read as that class.
  (root / 'a' / 'dup.png').symlink_to('../b/0.png')  # Read where it lies, in b.
  # Out of the folder, linked twice: read once, through the first link (in a).
  (root / 'a' / 'out').symlink_to(outside)
  (root / 'b' / 'out').symlink_to(outside)
  (root / 'b' / 'gone.png').symlink_to('missing.png')  # Broken: skipped as unreadable.
  data_dir = str(tmp_path / 'tfds')
  data = folder.prepare(str(root), data_dir, 8, test_fraction=0)
  assert data.class_names == ['a', 'b'] and data.num_skipped == 1
  images, labels = data.load('train')
  colours = np.argmax(images.mean((1, 2)), -1)  # 0 red, 1 green, 2 blue.
  assert (
    sorted(zip(colours.tolist(), labels.tolist())) == [(0, 0)] * 3 + [(1, 0)] * 4 + [(2, 1)] * 2
  )

  # The fingerprint is of what is read: one more loop changes nothing, a linked file does.
  (root / 'a' / 'loop').symlink_to('..')
  with mock.patch.object(folder, '_decode', side_effect=AssertionError('rebuilt')):
    assert folder.prepare(str(root), data_dir, 8, test_fraction=0) == data
  solid(outside / '4.png', GREEN)
  again = folder.prepare(str(root), data_dir, 8, test_fraction=0)
  assert np.bincount(again.load('train')[1]).tolist() == [8, 2]
