"""`--mode=bench`: gan_jax.bench on smoke configs, its roofline helper, its bad-input errors."""

import json
import math
import os
import subprocess
import sys

import pytest
from test_train import load_config

from gan_jax import bench

# A few one-step trials and a small matmul: the machinery, not the figures.
QUICK = {'trials': 5, 'warmup_steps': 1, 'steps_per_trial': 1, 'roofline_size': 128}
ROOT = os.path.join(os.path.dirname(__file__), '..')


def positive(value) -> bool:
  return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.parametrize('steps_per_call', [1, 2])
def test_bench_writes_positive_finite_figures(steps_per_call, tmp_path, capsys):
  config = load_config('gan')  # the fastest to compile: the machinery is the same for all
  config.bench = {**QUICK, 'steps_per_trial': steps_per_call}
  config.train.steps_per_call = steps_per_call
  workdir = tmp_path / 'new' / 'bench'  # created by the benchmark
  path = bench.run(config, str(workdir))

  assert path == str(workdir / 'bench.json')
  result = json.loads((workdir / 'bench.json').read_text())
  assert os.listdir(workdir) == ['bench.json']  # no checkpoints, no other output
  assert result['trials'] == 5 and len(result['trial_seconds']) == 5
  assert result['steps_per_trial'] == result['steps_per_call'] == steps_per_call
  assert result['images_per_step'] == config.data.batch_size
  for key in ('steps_per_s', 'ms_per_step', 'images_per_s'):
    s = result[key]
    assert all(positive(s[k]) for k in ('median', 'min', 'max')), key
    assert s['min'] <= s['median'] <= s['max'], key
  for value in (
    result['lower_seconds'],
    result['compile_seconds'],
    result['flops_per_step'],
    result['gflops_per_s'],
    result['roofline']['gflops_per_s'],
    result['roofline']['fraction'],
  ):
    assert positive(value)
  # Per step whatever the steps per call. By hand: G's and D's matmuls (G on 8 noise vectors, D on 16 images), forward and backward
  # (3 × the forward) for D's update and for G's (D's input gradient only, but G's pass again).
  g_forward = 2 * 8 * (100 * 128 + 128 * 784)
  d_forward = 2 * 16 * (784 * 128 + 128)
  by_hand = 3 * g_forward + 3 * d_forward + 3 * d_forward / 2
  assert by_hand / 2 < result['flops_per_step'] < by_hand * 2, (result['flops_per_step'], by_hand)
  assert 'steps/s' in capsys.readouterr().out


def test_bench_ignores_checkpoints_in_the_workdir(tmp_path):
  """A training workdir can be benchmarked: its checkpoints are neither read nor touched."""
  (tmp_path / 'checkpoints' / '7').mkdir(parents=True)  # would be unreadable if restored
  config = load_config('gan')
  config.bench = QUICK
  bench.run(config, str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == ['bench.json', 'checkpoints']


def test_roofline_is_positive():
  assert positive(bench.roofline_gflops(size=64, repeats=2))


@pytest.mark.parametrize(
  'options, message',
  [
    ({'trials': 0}, 'bench.trials'),
    ({'warmup_steps': 1.5}, 'bench.warmup_steps'),
    ({'steps_per_trial': -1}, 'bench.steps_per_trial'),
    ({'trial_seconds': 0}, 'bench.trial_seconds'),
    ({'roofline_size': 0}, 'bench.roofline_size'),
    ({'repeats': 3}, 'bench.repeats is not a config field; valid fields of bench: '),
  ],
)
def test_bad_bench_options_are_one_line_errors_before_any_work(options, message, tmp_path):
  config = load_config('gan')
  config.bench = options
  with pytest.raises(ValueError) as error:
    bench.run(config, str(tmp_path / 'bench'))
  assert message in str(error.value) and '\n' not in str(error.value)
  assert not (tmp_path / 'bench').exists()


def test_launch_bench_mode_reports_bad_workdir_in_one_line(tmp_path):
  workdir = tmp_path / 'a_file'
  workdir.write_text('')
  result = subprocess.run(
    [
      sys.executable,
      'launch.py',
      '--config=configs/gan.py:smoke',
      '--mode=bench',
      f'--workdir={workdir}',
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
    f'error: workdir={str(workdir)!r} is a file, not a directory'
  ]


def test_k_seed_bench_times_the_single_seed_step_beside_it(tmp_path, capsys):
  config = load_config('gan')
  config.num_seeds = 2
  config.bench = QUICK
  result = json.loads(open(bench.run(config, str(tmp_path))).read())

  assert result['config']['num_seeds'] == 2
  assert result['images_per_step'] == 2 * config.data.batch_size  # both seeds' batches
  single = result['single_seed']
  assert len(single['trial_seconds']) == result['trials'] == 5
  assert positive(single['compile_seconds']) and positive(single['speedup'])
  assert single['speedup'] == pytest.approx(
    result['images_per_s']['median'] / single['images_per_s']['median']
  )
  out = capsys.readouterr().out
  assert '2 seeds in one step' in out and '1 seed' in out
