"""One image file as a square uint8 array: decoded with Pillow, composited on a background,
made RGB or grey, and resized with antialiasing by centre crop or letterbox."""

from collections.abc import Sequence
import math

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.webp', '.bmp', '.gif')
RESIZE_MODES = ('crop', 'pad')
_SIXTEEN_BIT_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I')


def load_image(
  path: str,
  image_size: int,
  channels: int = 3,
  resize: str = 'crop',
  background: Sequence[int] = (255, 255, 255),
) -> np.ndarray:
  """Returns the image at `path` as uint8 [image_size, image_size, channels].

  Transparency is composited on `background`; 'crop' keeps the centred square, 'pad'
  letterboxes the whole image with `background`. Raises what Pillow raises on a file it
  cannot read.
  """
  with Image.open(path) as image:  # At frame 0: the first frame of a GIF or animated WebP.
    if image.format == 'JPEG':
      # Decodes big photos at 1/2, 1/4 or 1/8 scale, several times faster, keeping at
      # least twice the target size for the antialiasing filter below.
      image.draft(None, _draft_size(image.size, image_size, resize))
    image = ImageOps.exif_transpose(image)  # Loads it: a corrupt file raises here.
    image = _to_rgb(image, tuple(background))
  if channels == 1:
    image = image.convert('L')
  image = _fit(image, image_size, resize, background)
  return np.asarray(image, np.uint8).reshape(image_size, image_size, channels)


def _draft_size(size: tuple[int, int], image_size: int, resize: str) -> tuple[int, int]:
  width, height = size
  side = min(width, height) if resize == 'crop' else max(width, height)
  scale = 2 * image_size / side
  return math.ceil(width * scale), math.ceil(height * scale)


def _to_rgb(image: Image.Image, background: tuple[int, ...]) -> Image.Image:
  """An RGB image, with any transparency composited on `background`."""
  if image.mode in _SIXTEEN_BIT_MODES:
    # 16-bit grayscale: convert('L') would clip every value above 255 to white.
    pixels = np.asarray(image).astype(np.float64) / 257
    image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
  if image.mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La') or 'transparency' in image.info:
    # convert('RGBA') also applies a palette's or a tRNS chunk's transparency.
    base = Image.new('RGBA', image.size, background + (255,))
    image = Image.alpha_composite(base, image.convert('RGBA'))
  return image.convert('RGB')


def _fit(image: Image.Image, size: int, resize: str, background: Sequence[int]) -> Image.Image:
  width, height = image.size
  if resize == 'crop':
    side = min(width, height)
    # A fractional box keeps the crop exactly centred when the margins are odd.
    box = ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
    return image.resize((size, size), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
  scale = size / max(width, height)
  shape = max(1, round(width * scale)), max(1, round(height * scale))
  fill = tuple(background)
  if image.mode == 'L':
    fill = Image.new('RGB', (1, 1), fill).convert('L').getpixel((0, 0))
  canvas = Image.new(image.mode, (size, size), fill)
  inner = image.resize(shape, Image.Resampling.LANCZOS, reducing_gap=3.0)
  canvas.paste(inner, ((size - shape[0]) // 2, (size - shape[1]) // 2))
  return canvas
