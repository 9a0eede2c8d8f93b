"""What a run writes: metrics (JSONL + TensorBoard) and sample grids (PNG)."""

from collections.abc import Mapping
import io
import json
import os

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

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """uint8 [H, W, C] images (sample grids) to TensorBoard's Images tab."""
    for name, image in images.items():
      self.tensorboard.add_image(name, image, step, dataformats='HWC')

  def close(self) -> None:
    self.jsonl.close()
    self.tensorboard.close()


class NullWriter:
  """Stands in for MetricWriter on processes other than 0 (they compute, process 0 writes)."""

  def write(self, step, scalars) -> None:
    pass

  def write_images(self, step, images) -> None:
    pass

  def drop_after(self, step) -> None:
    pass

  def close(self) -> None:
    pass


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
    grid[r * (h + 2) + 1 : r * (h + 2) + 1 + h, col * (w + 2) + 1 : col * (w + 2) + 1 + w] = image
  return grid


def save_image_grid(images: np.ndarray, rows: int, path: str, scale: int = 2) -> np.ndarray:
  """Writes an image grid as PNG, enlarged `scale` times so that digits are readable; returns the
  grid."""
  grid = image_grid(images, rows)
  picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
  picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  buffer = io.BytesIO()
  picture.save(buffer, format='PNG')
  atomic_write_bytes(path, buffer.getvalue())
  return grid


def read_metrics(workdir: str) -> list[dict]:
  """The rows of a run's metrics.jsonl (a half-written last row is skipped)."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [row for row in map(_parse, f) if row]


def plot_curves(rows: list[dict], path: str) -> None:
  """Loss curves of the training rows and, beside them, the eval rows' FID: one PNG."""
  import matplotlib  # here, not at the top: only reports need it and it is slow to import

  matplotlib.use('Agg')
  from matplotlib import pyplot as plt

  panels = [('loss', [k for k in ('d_loss', 'g_loss') if any(k in r for r in rows)])]
  if any('eval/fid_classifier' in r for r in rows):
    panels.append(('FID (classifier features)', ['eval/fid_classifier']))
  figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
  for ax, (title, keys) in zip(axes[0], panels):
    for key in keys:
      points = [(r['step'], r[key]) for r in rows if key in r]
      ax.plot(*zip(*points), label=key, marker='o' if key.startswith('eval/') else None)
    ax.set(title=title, xlabel='step')
    ax.legend()
  save_figure(figure, path)


def save_figure(figure, path: str) -> None:
  """A matplotlib figure as a PNG, written atomically, then closed."""
  from matplotlib import pyplot as plt

  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format='png', dpi=100)
  plt.close(figure)
  atomic_write_bytes(path, buffer.getvalue())


def write_report(
  workdir: str,
  step: int,
  eval_metrics: Mapping[str, float],
  notes: Mapping[str, str],
  sections: tuple[str, ...] = (),
) -> None:
  """report.md: the evaluation (each metric with its note), the last training metrics, the last
  grid, the curves, then `sections` (markdown)."""
  rows = read_metrics(workdir)
  plot_curves(rows, os.path.join(workdir, 'loss_curves.png'))
  lines = [
    f'# Report: {os.path.basename(os.path.abspath(workdir))}',
    '',
    f'Evaluation of the checkpoint at step {step}.',
    '',
    '| metric | value | meaning |',
    '|---|---|---|',
  ]
  lines += [f'| {k} | {v:.4g} | {notes.get(k, "")} |' for k, v in eval_metrics.items()]
  train_rows = [r for r in rows if 'd_loss' in r]
  if train_rows:
    last = train_rows[-1]
    lines += [
      '',
      f'## Training metrics at step {last["step"]}',
      '',
      '| metric | value |',
      '|---|---|',
    ]
    lines += [f'| {k} | {v:.4g} |' for k, v in last.items() if k != 'step']
  grids = (
    sorted(f for f in os.listdir(os.path.join(workdir, 'samples')) if f.startswith('step_'))
    if os.path.isdir(os.path.join(workdir, 'samples'))
    else []
  )
  if grids:
    lines += ['', '## Last sample grid', '', f'![samples](samples/{grids[-1]})']
  lines += ['', '## Curves', '', '![curves](loss_curves.png)', '', *sections]
  atomic_write_bytes(os.path.join(workdir, 'report.md'), '\n'.join(lines).encode())
