"""What a run writes: metrics (JSONL + TensorBoard) and sample grids (PNG)."""

import io
import json
import os
from typing import Mapping

import numpy as np
from PIL import Image
from tensorboardX import SummaryWriter


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Write through a temporary file and a rename, so a reader never sees half a file."""
  tmp = f'{path}.tmp'
  with open(tmp, 'wb') as f:
    f.write(data)
  os.replace(tmp, path)


class MetricWriter:
  """Appends scalars to `metrics.jsonl` and to TensorBoard event files.

  A resumed run first drops the JSONL rows after its checkpoint step, which the
  restarted run will write again, so each step appears once.
  """

  def __init__(self, workdir: str, resume_step: int = 0):
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self.jsonl = None
    self.drop_after(resume_step)
    self.tensorboard = SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def drop_after(self, step: int) -> None:
    """Keeps the rows up to `step` (a process killed mid-write may leave half a last row)."""
    if self.jsonl:
      self.jsonl.close()
    if os.path.exists(self.path):
      with open(self.path) as f:
        rows = [_parse(line) for line in f]
      kept = [json.dumps(row) + '\n' for row in rows if row and row['step'] <= step]
      atomic_write_bytes(self.path, ''.join(kept).encode())
    self.jsonl = open(self.path, 'a')

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    row = {'step': step, **{k: float(v) for k, v in scalars.items()}}
    self.jsonl.write(json.dumps(row) + '\n')
    self.jsonl.flush()
    for name, value in scalars.items():
      self.tensorboard.add_scalar(name, float(value), step)

  def close(self) -> None:
    self.jsonl.close()
    self.tensorboard.close()


def _parse(line: str) -> dict | None:
  try:
    return json.loads(line)
  except json.JSONDecodeError:
    return None


def image_grid(images: np.ndarray, rows: int) -> np.ndarray:
  """[N, H, W, C] images in [-1, 1] → one uint8 [rows·(H+2), cols·(W+2), C] grid with 2-pixel gaps."""
  n, h, w, c = images.shape
  cols = -(-n // rows)
  pixels = np.clip((np.asarray(images, np.float32) + 1.0) * 127.5, 0, 255).astype(np.uint8)
  grid = np.zeros((rows * (h + 2), cols * (w + 2), c), np.uint8)
  for i, image in enumerate(pixels):
    r, col = divmod(i, cols)
    grid[r * (h + 2) + 1:r * (h + 2) + 1 + h, col * (w + 2) + 1:col * (w + 2) + 1 + w] = image
  return grid


def save_image_grid(images: np.ndarray, rows: int, path: str, scale: int = 2) -> None:
  """Writes an image grid as PNG, enlarged `scale` times so that digits are readable."""
  grid = image_grid(images, rows)
  picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
  picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  buffer = io.BytesIO()
  picture.save(buffer, format='PNG')
  atomic_write_bytes(path, buffer.getvalue())
