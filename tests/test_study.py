"""The SGAN label-budget study on the smoke configs: its runs, table, JSON and plot, and resuming."""

import json
import os
import re
import subprocess
import sys
from unittest import mock

import numpy as np
from PIL import Image
import pytest

from gan_jax import train
import study

# One budget keeps it to 8 smoke runs; the ordering and gains of several budgets are tested on
# made-up results below.
BUDGETS, SEEDS, STEPS = (10,), 2, 2


def run_names():
  return [
    f'{system}_n{budget}_s{seed}'
    for budget in BUDGETS
    for seed in range(SEEDS)
    for system in study.SYSTEMS
  ]


@pytest.fixture(scope='module')
def study_dir(classifier32, tmp_path_factory):
  out = tmp_path_factory.mktemp('study')
  study.run_study(list(BUDGETS), SEEDS, str(out), steps=STEPS, variant='smoke')
  return out


def run_accuracies(out, system, budget):
  scores = [
    json.loads((out / f'{system}_n{budget}_s{seed}' / 'eval.json').read_text())
    for seed in range(SEEDS)
  ]
  assert all(s['step'] == STEPS for s in scores)
  return [s['d_test_accuracy'] for s in scores]


def test_study_runs_every_system_at_every_budget_and_seed(study_dir):
  assert sorted(os.listdir(study_dir)) == sorted(
    run_names() + ['study.json', 'study.md', 'study.png']
  )
  configs = {
    system: json.loads((study_dir / f'{system}_n10_s1' / 'config.json').read_text())
    for system in study.SYSTEMS
  }
  for config in configs.values():
    assert (config['data']['num_labeled'], config['seed'], config['train']['num_steps']) == (
      10,
      1,
      STEPS,
    )
  terms = lambda system: (configs[system]['loss']['d_terms'], configs[system]['loss']['g_terms'])
  sgan_d = {'sgan_labeled': 1.0, 'sgan_real': 1.0, 'sgan_fake': 1.0}
  assert terms('sgan') == (sgan_d, {'sgan_gen': 1.0, 'feature_matching': 0.0})
  assert terms('sgan_fm') == (sgan_d, {'sgan_gen': 0.0, 'feature_matching': 1.0})
  for baseline in study.BASELINES:
    assert terms(baseline) == ({'sgan_labeled': 1.0}, {'sgan_gen': 0.0, 'feature_matching': 0.0})
  assert [configs[s]['data']['augment'] for s in study.SYSTEMS] == ['', '', '', 'translation']


def test_strong_baseline_trains_longer_and_logs_its_test_curve():
  plain, strong = (study.run_config(s, 100, 0) for s in study.BASELINES)
  assert plain.train.num_steps == study.run_config('sgan', 100, 0).train.num_steps
  assert strong.train.num_steps > plain.train.num_steps
  for config in (plain, strong):
    assert 0 < config.eval.every < config.train.num_steps
    assert config.train.num_steps % config.eval.every == 0


def test_gains_are_over_the_stronger_baseline_of_each_budget():
  accuracies = {  # (budget, system) -> the accuracies of seeds 0 and 1
    (10, 'sgan'): (0.6, 0.8),
    (10, 'sgan_fm'): (0.5, 0.5),
    (10, 'sgan_baseline'): (0.3, 0.5),
    (10, 'sgan_baseline_strong'): (0.6, 0.6),
    (20, 'sgan'): (0.9, 0.9),
    (20, 'sgan_fm'): (0.95, 0.85),
    (20, 'sgan_baseline'): (0.8, 0.8),
    (20, 'sgan_baseline_strong'): (0.7, 0.8),
  }
  results = [
    {'budget': budget, 'system': system, 'd_test_accuracy': accuracy}
    for (budget, system), pair in accuracies.items()
    for accuracy in pair
  ]
  rows = study.summarize(results, [10, 20])
  assert [r['strongest_baseline'] for r in rows] == ['sgan_baseline_strong', 'sgan_baseline']
  assert [r['gain'] for r in rows] == pytest.approx([0.1, 0.1])
  assert [r['gain_fm'] for r in rows] == pytest.approx([-0.1, 0.1])
  assert rows[0]['sgan_baseline_std'] == pytest.approx(np.std([0.3, 0.5], ddof=1))
  table = study.markdown_table(rows, 'mnist5k', {s: STEPS for s in study.SYSTEMS}, 'cmd')
  cells = [line.split(' | ')[2:] for line in table.splitlines() if line.startswith('| 10 | 2 |')]
  cells += [line.split(' | ')[2:] for line in table.splitlines() if line.startswith('| 20 | 2 |')]
  assert cells == [
    ['70.00 ± 14.14', '50.00 ± 0.00', '40.00 ± 14.14', '**60.00 ± 0.00**', '+10.00', '-10.00 |'],
    ['90.00 ± 0.00', '90.00 ± 7.07', '**80.00 ± 0.00**', '75.00 ± 7.07', '+10.00', '+10.00 |'],
  ]


def test_study_json_and_table_hold_the_runs_results(study_dir):
  summary = json.loads((study_dir / 'study.json').read_text())
  assert [r['budget'] for r in summary['rows']] == list(BUDGETS)
  assert sorted(r['name'] for r in summary['runs']) == sorted(run_names())
  for run in summary['runs']:  # the smoke configs evaluate only at their last step
    assert run['test_curve'] == [[STEPS, pytest.approx(run['d_test_accuracy'])]], run
  table = (study_dir / 'study.md').read_text()
  for row in summary['rows']:
    means, cells = {}, {}
    for system in study.SYSTEMS:
      accuracies = run_accuracies(study_dir, system, row['budget'])
      assert row[f'{system}_mean'] == pytest.approx(np.mean(accuracies))
      assert row[f'{system}_std'] == pytest.approx(np.std(accuracies, ddof=1))
      means[system] = np.mean(accuracies)
      cells[system] = f'{100 * np.mean(accuracies):.2f} ± {100 * np.std(accuracies, ddof=1):.2f}'
    strongest = max(study.BASELINES, key=means.get)
    assert row['strongest_baseline'] == strongest
    cells[strongest] = f'**{cells[strongest]}**'
    gains = [100 * (means[s] - means[strongest]) for s in ('sgan', 'sgan_fm')]
    line = (
      f'| {row["budget"]} | {SEEDS} | {" | ".join(cells[s] for s in study.SYSTEMS)} '
      f'| {gains[0]:+.2f} | {gains[1]:+.2f} |'
    )
    assert line in table.splitlines(), (line, table)
  assert '| labels | seeds | SGAN | SGAN + FM | baseline | baseline (strong) |' in table
  with Image.open(study_dir / 'study.png') as plot:
    assert plot.width > 100 and plot.height > 100


def test_study_resumes_without_training_again(study_dir):
  before = (study_dir / 'study.json').read_text()
  with (
    mock.patch.object(train, 'train_and_evaluate', side_effect=AssertionError('trained again')),
    mock.patch.object(train, 'evaluate', side_effect=AssertionError('evaluated again')),
  ):
    study.run_study(list(BUDGETS), SEEDS, str(study_dir), steps=STEPS, variant='smoke')
  after = json.loads((study_dir / 'study.json').read_text())
  assert after['rows'] == json.loads(before)['rows']
  assert all(run['seconds'] is None for run in after['runs'])


def test_a_run_trained_but_not_evaluated_is_only_evaluated(study_dir):
  workdir = study_dir / 'sgan_n10_s0'
  before = json.loads((workdir / 'eval.json').read_text())
  metrics_before = (workdir / 'metrics.jsonl').read_text()
  os.remove(workdir / 'eval.json')
  rows = study.run_study(list(BUDGETS), SEEDS, str(study_dir), steps=STEPS, variant='smoke')
  assert json.loads((workdir / 'eval.json').read_text()) == pytest.approx(before)
  assert (workdir / 'metrics.jsonl').read_text() == metrics_before  # no step was run again
  assert rows == json.loads((study_dir / 'study.json').read_text())['rows']


def test_recorded_command_line_reproduces_the_study(study_dir):
  """The command in study.md and study.json, run on the finished study: it only gathers the results."""
  command = json.loads((study_dir / 'study.json').read_text())['command']
  assert command == (
    f'python study.py --budgets=10 --seeds={SEEDS} --out={study_dir} '
    f'--steps={STEPS} --config_variant=smoke'
  )
  assert f'`{command}`' in (study_dir / 'study.md').read_text()
  result = subprocess.run(
    [sys.executable, *command.split()[1:]],
    capture_output=True,
    text=True,
    cwd=os.path.join(os.path.dirname(__file__), '..'),
  )
  assert result.returncode == 0, result.stderr
  assert (study_dir / 'study.md').read_text() in result.stdout
  assert re.search(r'sgan_n10_s1: d_test_accuracy [\d.]+ \(done before\)', result.stdout)


def test_a_budget_that_is_not_a_multiple_of_the_classes_fails_before_training(tmp_path):
  with pytest.raises(ValueError, match='multiple of 10'):
    study.run_study([15], 1, str(tmp_path / 'out'), steps=STEPS, variant='smoke')
  assert not os.path.exists(tmp_path / 'out')
