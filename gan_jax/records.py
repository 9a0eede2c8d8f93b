"""A whole tfds split as numpy arrays, read through `tfds.data_source` (array_record, no TensorFlow)."""

import numpy as np
import tensorflow_datasets as tfds


def read_split(name: str, split: str, data_dir: str, **kwargs) -> tuple[np.ndarray, np.ndarray]:
  """uint8 images [N, H, W, C] and int32 labels [N] of a prepared split."""
  source = tfds.data_source(name, split=split, data_dir=data_dir, **kwargs)
  # One batched read of the raw records; tfds then decodes each record with numpy.
  examples = source.__getitems__(range(len(source)))
  images = np.stack([example['image'] for example in examples])
  return images, np.array([example['label'] for example in examples], np.int32)
