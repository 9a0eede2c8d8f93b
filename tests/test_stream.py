"""Streamed batches (data over `data.device_bytes`, read on the host with grain) are the on-device
ones: the same run, bitwise, resumed or not."""

import chex
import jax
import numpy as np
import pytest
from test_train import final_params, load_config, read_metrics, straight_and_interrupted_runs

from gan_jax import train
from gan_jax.batches import DeviceBatches, StreamedBatches
from gan_jax.passes import StepSpec, gather
from gan_jax.rng import step_keys
from gan_jax.run import Run
from gan_jax.stream import HostBatches


def streamed(config, streaming: bool = True):
  """`config` with its data streamed from the host (a budget of 0 bytes) or kept on the device."""
  config.data.device_bytes = 0 if streaming else 2**30
  return config


def several(name: str):
  """`name`'s smoke run with two seeds (each its own data order, and labeled subset if any) and
  two D updates a step (two batches of each pool a step), two steps per call (a scan)."""
  config = load_config(name)
  config.num_seeds, config.train.d_steps, config.train.steps_per_call = 2, 2, 2
  return config


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """The workdirs of the MLP GAN's run on the device, and of it streamed straight and interrupted
  then resumed (between the checkpoints of steps 2 and 4). (The labeled pool: below.)"""
  root = tmp_path_factory.mktemp('runs')
  on_device = root / 'on_device'
  train.train_and_evaluate(streamed(several('gan'), False), str(on_device))
  return (on_device, *straight_and_interrupted_runs(streamed(several('gan')), root))


def test_streamed_run_is_the_on_device_run_bitwise(runs):
  on_device, straight, _ = runs
  for workdir, streaming in ((on_device, False), (straight, True)):
    run = Run(streamed(several('gan'), streaming), str(workdir))
    run.checkpointer.close()
    assert isinstance(run.batches, HostBatches if streaming else DeviceBatches)
  assert read_metrics(straight) == read_metrics(on_device)
  config = several('gan')
  chex.assert_trees_all_equal(final_params(straight, config), final_params(on_device, config))


def test_interrupted_streamed_run_resumes_to_the_straight_one(runs):
  _, straight, interrupted = runs
  assert [r['step'] for r in read_metrics(interrupted)] == [2, 4]
  config = streamed(several('gan'))
  chex.assert_trees_all_equal(final_params(interrupted, config), final_params(straight, config))


@pytest.fixture(scope='module')
def sgan_runs(tmp_path_factory):
  """SGAN's runs on the device and streamed, set up but not trained: a label budget and
  train.g_batch='fresh', so a labeled pool and G's own real pool beside the real one."""
  runs = []
  for streaming in (False, True):
    config = streamed(several('sgan'), streaming)
    config.train.g_batch = 'fresh'
    run = Run(config, str(tmp_path_factory.mktemp('sgan')))
    run.checkpointer.close()
    runs.append(run)
  return runs


@pytest.fixture(scope='module')
def host_batches(sgan_runs):
  return sgan_runs[1].batches


def test_streamed_batches_of_every_pool_are_the_gathered_ones(sgan_runs):
  """passes.gather on each seed's on-device batches and on the streamed ones, at steps 0 and 3."""
  on_device, streaming = sgan_runs
  spec = StepSpec.from_config(
    on_device.setup.config,
    on_device.setup.generator,
    on_device.setup.discriminator,
    on_device.setup.mesh,
  )
  pools = (('real', 'data', 8), ('labeled', 'labeled', 8), ('g_real', 'g_data', 8))
  assert set(streaming.batches.take(0, 1).pools) == {name for name, _, _ in pools}
  for step in (0, 3):
    batches = streaming.batches.take(step, 1)
    for k, seed_state in enumerate(on_device.setup.seeds.split(on_device.state)):
      keys = step_keys(seed_state.rng, step)
      device = on_device.batches  # the images are shared; the labels and pools, the seed's
      seed_batches = device.replace(
        labels=device.labels[k], pools=jax.tree.map(lambda x: x[k], device.pools)
      )
      for pool, key, size in pools:
        streamed_pool = StreamedBatches(
          {pool: jax.tree.map(lambda x: x[0, k], batches.pools[pool])}
        )
        for i in range(2):
          index = step * 2 + i
          chex.assert_trees_all_equal(
            gather(spec, streamed_pool, pool, None, index, size, i),
            gather(spec, seed_batches, pool, getattr(keys, key), index, size, i),
          )


def test_a_jump_restarts_the_stream_at_the_step_asked_for(host_batches):
  """A rollback or a skipped step asks for another step than the next: the batches are that
  step's, not the next ones in grain's queue."""
  host_batches.take(0, 1)
  after_jump = host_batches.take(3, 1)
  host_batches.take(0, 2)
  in_order = host_batches.take(2, 1)
  chex.assert_trees_all_equal(after_jump, host_batches.take(3, 1))
  assert not np.array_equal(after_jump.pools['real'][0], in_order.pools['real'][0])


def test_streamed_labels_stay_within_the_budget(host_batches):
  """The labeled pool's batches carry true labels; the real pool's carry -1 outside the subset."""
  batches = host_batches.take(0, 1).pools
  labeled_labels = np.asarray(batches['labeled'][1])
  real_labels = np.asarray(batches['real'][1])
  assert labeled_labels.shape == (1, 2, 2, 8)  # [steps, seeds, d_steps, batch]
  assert (labeled_labels >= 0).all()
  assert (real_labels == -1).any()
