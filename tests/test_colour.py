"""Colour images end to end: a run on your own folder (labelled, and without labels), scored,
with grids in TensorBoard; the one-line refusals of input that cannot work."""

import glob
import json
import os
import struct

import numpy as np
from PIL import Image
import pytest
from tensorboardX.proto import event_pb2
from test_reliability import launch, stderr_lines
from test_train import load_config

from gan_jax import train

COLOURS = {'reds': (220, 30, 30), 'blues': (30, 30, 220)}


def write_folder(root, labelled: bool = True, per_class: int = 12):
  """Two classes of noisy solid-colour 20×20 PNGs, in subfolders or (unlabelled) all in `root`."""
  rng = np.random.default_rng(0)
  for name, colour in COLOURS.items():
    target = root / name if labelled else root
    target.mkdir(parents=True, exist_ok=True)
    for i in range(per_class):
      noise = rng.integers(-20, 20, (20, 20, 3))
      pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
      Image.fromarray(pixels).save(target / f'{name}_{i}.png')
  return root


def tensorboard_images(directory) -> list[tuple[str, int]]:
  """(tag, step) of every image in a TensorBoard log (TFRecord framing: length, CRC, event, CRC)."""
  found = []
  for path in glob.glob(os.path.join(directory, 'events.out.tfevents.*')):
    data, i = open(path, 'rb').read(), 0
    while i < len(data):
      (length,) = struct.unpack('<Q', data[i : i + 8])
      event = event_pb2.Event.FromString(data[i + 12 : i + 12 + length])
      found += [(v.tag, event.step) for v in event.summary.value if v.HasField('image')]
      i += 12 + length + 4
  return found


def folder_config(root):
  """configs/dcgan64.py's smoke run on `root` at 16×16, scored at its end."""
  config = load_config('dcgan64')
  config.data.name, config.data.folder, config.data.image_size = 'folder', str(root), 16
  config.eval.every, config.eval.num_samples = 4, 20
  config.data.batch_size = 4
  return config


def test_a_labelled_folder_trains_and_is_scored_with_its_own_classes(tmp_path):
  root = write_folder(tmp_path / 'images')
  workdir = tmp_path / 'run'
  train.train_and_evaluate(folder_config(root), str(workdir))
  scores = json.loads((workdir / 'eval.json').read_text())
  # The classifier trained on the folder's two classes tells red from blue.
  assert scores['classifier_test_accuracy'] == 1.0
  assert {'fid_classifier', 'class_coverage', 'class_entropy'} <= set(scores)
  assert 0 <= scores['class_coverage'] <= 2 and scores['class_entropy'] <= np.log(2) + 1e-9
  grid = np.asarray(Image.open(workdir / 'samples' / 'step_000004.png'))
  assert grid.ndim == 3 and grid.shape[-1] == 3  # colour, two rows (one per class)
  assert tensorboard_images(str(workdir / 'tensorboard')) == [('samples', 4)]


def test_an_unlabelled_folder_is_scored_on_random_features(tmp_path):
  root = write_folder(tmp_path / 'images', labelled=False)
  workdir = tmp_path / 'run'
  train.train_and_evaluate(folder_config(root), str(workdir))
  scores = json.loads((workdir / 'eval.json').read_text())
  assert np.isnan(scores['classifier_test_accuracy'])
  assert 'fid_classifier' in scores and 'class_coverage' not in scores
  assert 'randomly initialised network' in (workdir / 'report.md').read_text()


@pytest.mark.parametrize(
  'config, overrides, message',
  [
    (
      'gan_cls',
      ('--config.data.name=folder', '--config.data.channels=3'),
      'has no class subfolders',
    ),
    (
      'dcgan64',
      ('--config.data.name=folder', '--config.data.image_size=48'),
      "data.image_size=48 is not valid for model.generator='radford'",
    ),
  ],
)
def test_folder_input_that_cannot_work_is_one_line_and_writes_nothing(
  tmp_path, config, overrides, message
):
  root = write_folder(tmp_path / 'images', labelled=False)
  workdir = tmp_path / 'run'
  result = launch(
    f'--config=configs/{config}.py:smoke',
    f'--workdir={workdir}',
    f'--config.data.folder={root}',
    *overrides,
  )
  assert result.returncode == 2, result.stderr[-2000:]
  # Preparing the folder draws its progress bars first; then one line says what is wrong.
  errors = [line for line in stderr_lines(result.stderr) if line.startswith('error:')]
  assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
  assert result.stderr.rstrip().endswith(errors[0])
  assert not os.path.exists(workdir)
