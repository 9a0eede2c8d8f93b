"""Shared test set-up: one offline TFDS data dir per session, tfds mocks, fast compiles."""

import contextlib
import socket
import tempfile
from unittest import mock

import jax
import pytest
import tensorflow_datasets as tfds

# Tests compile many tiny programs and run each a few times: compile time dominates. Many tests
# build the same program (a smoke config's step, once per run), so compiled programs are kept in a
# cache for the session and read back rather than compiled again.
jax.config.update('jax_disable_most_optimizations', True)
jax.config.update('jax_compilation_cache_dir', tempfile.mkdtemp(prefix='gan_jax_tests_xla_'))
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', -1)


@contextlib.contextmanager
def offline():
  """Makes any network connection fail."""
  with mock.patch.object(
    socket.socket, 'connect', side_effect=OSError('network disabled in tests')
  ):
    yield


@contextlib.contextmanager
def mock_tfds(num_examples: int):
  """`tfds.testing.mock_data` with a working batched read.

  In tfds 4.9.10 the mocked record source gets `__getitems__` as an unbound
  `functools.partial`, so `source.__getitems__(keys)` raises TypeError
  ("_getitems() missing 1 required positional argument: 'record_keys'");
  reading the keys one by one through `__getitem__`, which the mock does set up
  correctly, stands in for it.
  """
  source_cls = tfds.core.data_sources.array_record.ArrayRecordDataSource
  with (
    tfds.testing.mock_data(num_examples=num_examples, policy=tfds.testing.MockPolicy.USE_CODE),
    mock.patch.object(source_cls, '__getitems__', lambda self, keys: [self[k] for k in keys]),
  ):
    yield


def mnist5k_dataset(image_size: int = 28):
  """The embedded default data set at `image_size`, as a run opens it."""
  from configs import default
  from gan_jax import data

  config = default.base().data
  config.image_size = image_size
  return data.open_dataset(config)


@pytest.fixture(scope='session', autouse=True)
def data_dir(tmp_path_factory):
  """A fresh TFDS data dir for the session: mnist5k is prepared there once, offline."""
  path = str(tmp_path_factory.mktemp('tensorflow_datasets'))
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv('TFDS_DATA_DIR', path)
    yield path


@pytest.fixture(scope='session', autouse=True)
def eval_cache(tmp_path_factory):
  """A fresh eval-classifier cache for the session: tests never read or write ~/.cache/gan_jax."""
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv('GAN_JAX_CACHE', str(tmp_path_factory.mktemp('gan_jax_cache')))
    yield


def trained_classifier(image_size: int, epochs: int):
  """The mnist5k eval classifier at `image_size`, trained on first use into the session's cache."""
  from gan_jax import evaluation

  # Optimizations are off for fast compiles (above); this training runs 10x slower without them.
  jax.config.update('jax_disable_most_optimizations', False)
  try:
    with mock.patch.object(evaluation, 'CLASSIFIER_EPOCHS', epochs):
      return evaluation.load_classifier(mnist5k_dataset(image_size))
  finally:
    jax.config.update('jax_disable_most_optimizations', True)


@pytest.fixture(scope='session')
def classifier(eval_cache):
  """The 28×28 mnist5k eval classifier (the size of every system but SGAN), trained once."""
  from gan_jax import evaluation

  return trained_classifier(28, evaluation.CLASSIFIER_EPOCHS)  # its accuracy is under test


@pytest.fixture(scope='session')
def classifier32(eval_cache):
  """The 32×32 one, for SGAN's whole 32×32 samples, trained once."""
  return trained_classifier(32, epochs=2)  # its scores' bookkeeping is under test, not its accuracy
