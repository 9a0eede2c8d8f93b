"""Streamed batches (data over `data.device_bytes`, read on the host with grain) are the on-device
ones: the same run, bitwise, resumed or not."""

import chex
import numpy as np
import pytest
from test_train import final_params, load_config, read_metrics, straight_and_interrupted_runs

from gan_jax import train
from gan_jax.run import Run


def streamed(config, streaming: bool = True):
  """`config` with its data streamed from the host (a budget of 0 bytes) or kept on the device."""
  config.data.device_bytes = 0 if streaming else 2**30
  return config


def sgan_config():
  """SGAN's smoke run with two seeds (each its own labeled subset and data order) and two D
  updates a step (two batches of each pool a step), two steps per call (a scan over batches)."""
  config = load_config('sgan')
  config.num_seeds, config.train.d_steps, config.train.steps_per_call = 2, 2, 2
  return config


def test_streamed_run_is_the_on_device_run_bitwise(tmp_path):
  runs = {}
  for streaming in (False, True):
    config = streamed(sgan_config(), streaming)
    workdir = tmp_path / str(streaming)
    train.train_and_evaluate(config, str(workdir))
    run = Run(config, str(workdir))
    run.checkpointer.close()
    assert (run.host_batches is not None) == streaming
    assert (run.device_data is None) == streaming
    runs[streaming] = read_metrics(workdir), final_params(workdir, config)
  assert runs[True][0] == runs[False][0]
  chex.assert_trees_all_equal(runs[True][1], runs[False][1])


def test_interrupted_streamed_run_resumes_to_the_straight_one(tmp_path):
  config = streamed(load_config('sgan'))
  straight, interrupted = straight_and_interrupted_runs(config, tmp_path)
  assert [r['step'] for r in read_metrics(interrupted)] == [2, 4]
  chex.assert_trees_all_equal(final_params(interrupted, config), final_params(straight, config))


@pytest.fixture(scope='module')
def host_batches(tmp_path_factory):
  run = Run(streamed(sgan_config()), str(tmp_path_factory.mktemp('stream')))
  run.checkpointer.close()
  return run.host_batches


def test_a_jump_restarts_the_stream_at_the_step_asked_for(host_batches):
  """A rollback or a skipped step asks for another step than the next: the batches are that
  step's, not the next ones in grain's queue."""
  host_batches.take(0, 1)
  after_jump = host_batches.take(3, 1)
  host_batches.take(0, 2)
  in_order = host_batches.take(2, 1)
  chex.assert_trees_all_equal(after_jump, host_batches.take(3, 1))
  assert not np.array_equal(
    after_jump['batches']['real_indices'][0], in_order['batches']['real_indices'][0]
  )


def test_streamed_labels_stay_within_the_budget(host_batches):
  """The labeled pool's batches carry true labels; the real pool's carry -1 outside the subset."""
  batches = host_batches.take(0, 1)['batches']
  labeled_labels = np.asarray(batches['labeled_indices'][1])
  real_labels = np.asarray(batches['real_indices'][1])
  assert labeled_labels.shape == (1, 2, 2, 8)  # [steps, seeds, d_steps, batch]
  assert (labeled_labels >= 0).all()
  assert (real_labels == -1).any()
