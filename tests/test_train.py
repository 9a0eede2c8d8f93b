"""End-to-end tests: the real `train_and_evaluate` on the smoke configs."""

import importlib.util
import json
import os
from unittest import mock

import chex
from conftest import mock_tfds
import jax
import numpy as np
import pytest

from gan_jax import checks, losses, train
from gan_jax.run import Run
from gan_jax.step import build_step

SYSTEMS = ('gan', 'dcgan', 'lsgan', 'sgan', 'gan_cls')


def load_config(name: str, arg: str | None = 'smoke'):
  path = os.path.join(os.path.dirname(__file__), '..', 'configs', f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'configs.{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def read_metrics(workdir) -> list[dict]:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def final_params(workdir, config):
  """The parameters of the latest checkpoint in `workdir`."""
  run = Run(config, str(workdir))
  run.checkpointer.close()
  return jax.device_get((run.state.g.params, run.state.d.params, run.state.step))


@pytest.mark.parametrize('name', SYSTEMS)
def test_smoke_run_writes_everything(name, tmp_path):
  config = load_config(name)
  last = train.train_and_evaluate(config, str(tmp_path))

  assert all(np.isfinite(v) for v in last.values())
  rows = read_metrics(tmp_path)
  assert [r['step'] for r in rows] == [2, 4]
  for key in (
    'd_loss',
    'g_loss',
    'd_acc_real',
    'd_acc_fake',
    'd_grad_norm',
    'g_grad_norm',
    'd_param_norm',
    'g_param_norm',
  ):
    assert key in rows[-1], key
  # Every named loss term is logged on its own.
  assert {f'd/{t}' for t in config.loss.d_terms} <= set(rows[-1])
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2', '4']
  assert os.listdir(tmp_path / 'samples') == ['step_000004.png']
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(tmp_path / 'tensorboard'))
  assert (
    json.loads((tmp_path / 'config.json').read_text())['model']['generator']
    == config.model.generator
  )


def test_mismatched_labels_always_differ_and_cover_the_other_classes():
  labels = jax.numpy.tile(jax.numpy.arange(10), 2000)
  wrong = np.asarray(losses.mismatched_labels(jax.random.PRNGKey(0), labels, 10))
  assert not np.any(wrong == np.asarray(labels))
  # For each true class, the 9 others are drawn about equally often (2000 draws each).
  for c in range(10):
    counts = np.bincount(wrong[np.asarray(labels) == c], minlength=10)
    assert counts[c] == 0 and counts.sum() == 2000 and counts[counts > 0].size == 9
    assert counts[counts > 0].min() > 2000 / 9 * 0.7


def test_conditional_grid_has_one_row_per_class(tmp_path):
  config = load_config('gan_cls')
  run = Run(config, str(tmp_path))
  run.checkpointer.close()
  with mock.patch('gan_jax.grids.save_image_grid') as save:
    run.grids.save(run.state, str(tmp_path / 'grid.png'))
  images, rows, _ = save.call_args.args
  assert images.shape == (100, 28, 28, 1) and rows == 10


def test_step_is_traced_once_and_updates_both_networks(tmp_path):
  config = load_config('sgan')
  run = Run(config, str(tmp_path))
  run.checkpointer.close()
  step = jax.jit(
    chex.assert_max_traces(
      build_step(
        config, run.setup.generator, run.setup.discriminator, run.setup.mesh, run.setup.seeds
      ).train_step,
      n=1,
    ),
    donate_argnums=0,
  )
  before = jax.device_get(run.state)
  state = run.state
  for _ in range(3):
    state, metrics = step(state, run.batches)
  assert int(state.step) == 3
  for net in ('g', 'd'):
    moved = jax.tree.map(
      lambda a, b: not np.array_equal(a, b),
      getattr(before, net).params,
      jax.device_get(getattr(state, net).params),
    )
    assert all(jax.tree.leaves(moved)), net


def test_sgan_uses_only_the_label_budget(tmp_path):
  config = load_config('sgan')
  run = Run(config, str(tmp_path))
  run.checkpointer.close()
  labeled = np.asarray(run.labeled_indices)
  assert len(labeled) == config.data.num_labeled == 20
  # Unlabeled batches are drawn from the whole split (Salimans et al. 2016), labeled subset included.
  np.testing.assert_array_equal(run.batches.pools['real'], np.arange(4000))
  # No label outside the subset reaches the step: the device holds -1 for the others.
  visible = np.asarray(run.batches.labels)
  _, true_labels = run.setup.dataset.split('train')
  np.testing.assert_array_equal(np.flatnonzero(visible >= 0), labeled)
  np.testing.assert_array_equal(visible[labeled], true_labels[labeled])


def straight_and_interrupted_runs(config, tmp_path):
  """Trains `config` straight, and again with a crash between the checkpoints of steps 2 and 4
  followed by a resume; returns the two workdirs."""
  straight = tmp_path / 'straight'
  train.train_and_evaluate(config, str(straight))

  interrupted = tmp_path / 'interrupted'
  original_write = train.MetricWriter.write

  def write_then_interrupt(self, step, scalars):
    original_write(self, step, scalars)
    if step == 4:  # after the checkpoint of step 2, before the one of step 4
      raise KeyboardInterrupt

  with (
    mock.patch.object(train.MetricWriter, 'write', write_then_interrupt),
    pytest.raises(KeyboardInterrupt),
  ):
    train.train_and_evaluate(config, str(interrupted))
  assert sorted(os.listdir(interrupted / 'checkpoints')) == ['2']

  train.train_and_evaluate(config, str(interrupted))
  return straight, interrupted


def test_interrupted_run_resumes_from_last_checkpoint(tmp_path):
  config = load_config('sgan')
  straight, interrupted = straight_and_interrupted_runs(config, tmp_path)
  # The resumed run wrote step 4 once more, and only once.
  assert [r['step'] for r in read_metrics(interrupted)] == [2, 4]
  chex.assert_trees_all_equal(final_params(interrupted, config), final_params(straight, config))


def test_several_steps_per_call_train_the_same_run(tmp_path):
  """steps_per_call=2 (a lax.scan of the step) against one step per call: the same metrics
  and parameters. XLA compiles a scan's body apart, so float32 rounding may differ, and Adam
  turns a rounding difference in a near-zero gradient into up to lr: parameters are compared
  to 5e-4 of each array's scale (measured 1e-4 for gan_cls; the MLP gan is bitwise equal).
  SGAN's 4-step smoke run is chaotic in float32 (see test_parallel.py), so gan_cls, which has
  BatchNorm, labels and the mismatched-label input, stands for the conditional systems."""
  runs = {}
  for per_call in (1, 2):
    config = load_config('gan_cls')
    config.train.steps_per_call = per_call
    workdir = tmp_path / str(per_call)
    train.train_and_evaluate(config, str(workdir))
    runs[per_call] = (read_metrics(workdir), final_params(workdir, config))
  (rows_1, params_1), (rows_2, params_2) = runs[1], runs[2]
  assert [r['step'] for r in rows_2] == [r['step'] for r in rows_1] == [2, 4]
  for one, two in zip(rows_1, rows_2):
    np.testing.assert_allclose([two[k] for k in one], list(one.values()), rtol=1e-5, atol=1e-7)
  assert int(params_2[2]) == 4
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(b, a, atol=5e-4 * np.abs(a).max()),
    params_1[:2],
    params_2[:2],
  )


@pytest.mark.parametrize('name', ['sgan', 'gan_cls'])
def test_bfloat16_compute_keeps_float32_state_and_close_losses(name, tmp_path):
  """model.compute_dtype='bfloat16': one step from the same state gives losses within bfloat16's
  precision (8 bits of mantissa: ~0.4% per rounding) of float32's, and a float32 state."""
  outputs = {}
  for dtype in ('float32', 'bfloat16'):
    config = load_config(name)
    config.model.compute_dtype = dtype
    run = Run(config, str(tmp_path))
    run.checkpointer.close()
    step = jax.jit(
      build_step(
        config, run.setup.generator, run.setup.discriminator, run.setup.mesh, run.setup.seeds
      ).train_step
    )
    outputs[dtype] = jax.device_get(step(run.state, run.batches))
  (_, metrics_32), (state_16, metrics_16) = outputs['float32'], outputs['bfloat16']
  assert {leaf.dtype for leaf in jax.tree.leaves(state_16) if leaf.dtype.kind == 'f'} == {
    np.dtype('float32')
  }
  for key in ('d_loss', 'g_loss'):
    np.testing.assert_allclose(metrics_16[key], metrics_32[key], rtol=0.03)
  assert not np.array_equal(metrics_16['d_loss'], metrics_32['d_loss'])  # it did compute in bf16


def test_sample_mode_writes_a_grid_from_the_latest_checkpoint(tmp_path):
  config = load_config('dcgan')
  with pytest.raises(ValueError, match='no checkpoint'):
    train.sample(config, str(tmp_path))
  train.train_and_evaluate(config, str(tmp_path))
  path = train.sample(config, str(tmp_path))
  assert path.endswith('sample_step_000004.png') and os.path.getsize(path) > 0


def test_standard_tfds_name_through_mock_data(tmp_path):
  config = load_config('dcgan')
  config.data.name = 'mnist'
  with mock_tfds(num_examples=32):
    last = train.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite(last['d_loss']) and np.isfinite(last['g_loss'])


@pytest.mark.parametrize(
  'field, value, message',
  [
    ('model.generator', 'resnet', 'model.generator'),
    ('data.name', 'imagenet', 'data.name'),
    ('optimizer.d.name', 'lamb', 'optimizer.d.name'),
    ('optimizer.g.learning_rate', 0.0, 'optimizer.g.learning_rate'),
    ('train.num_steps', 0, 'train.num_steps'),
    ('data.batch_size', 0, 'data.batch_size'),
    ('train.update_order', 'random', 'train.update_order'),
    ('train.g_batch', 'new', "train.g_batch='new' is not valid; valid choices: fresh, shared"),
    ('train.steps_per_call', 0, 'train.steps_per_call'),
    ('model.compute_dtype', 'float16', "model.compute_dtype='float16'"),
    ('train.steps_per_call', 3, 'train.log_every=2 must be a multiple of train.steps_per_call=3'),
  ],
)
def test_bad_config_is_one_line_error_naming_the_field(field, value, message, tmp_path):
  config = load_config('gan')
  section, key = field.rsplit('.', 1)
  target = config
  for part in section.split('.'):
    target = target[part]
  target[key] = value
  with pytest.raises(ValueError) as error:
    checks.check_config(config)
  assert message in str(error.value) and '\n' not in str(error.value)


def test_unknown_loss_term_names_valid_choices():
  config = load_config('gan')
  config.loss.d_terms = {'nosuch_real': 1.0}
  with pytest.raises(ValueError, match='loss.d_terms.nosuch_real.*valid choices: bce_fake'):
    checks.check_config(config)


def test_a_step_that_cannot_fit_the_device_is_refused_before_anything_is_written(tmp_path):
  """XLA's memory analysis of the compiled step, against the device's memory (here made 1 MiB)."""
  config = load_config('dcgan')
  workdir = tmp_path / 'run'
  with (
    mock.patch.object(train.parallel, 'device_memory_bytes', return_value=2**20),
    pytest.raises(
      ValueError,
      match=r'^data\.batch_size=8: the training step needs about '
      r'[0-9.]+ GiB of device memory, the device has 0\.0 GiB',
    ),
  ):
    train.train_and_evaluate(config, str(workdir))
  assert not workdir.exists()
