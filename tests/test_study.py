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

BUDGETS, SEEDS, STEPS = (10, 20), 2, 2


def run_names():
  return [
    f'{system}_n{budget}_s{seed}'
    for budget in BUDGETS
    for seed in range(SEEDS)
    for system in study.SYSTEMS
  ]


@pytest.fixture(scope='module')
def study_dir(classifier, tmp_path_factory):
  out = tmp_path_factory.mktemp('study')
  study.run_study([20, 10], SEEDS, str(out), steps=STEPS, variant='smoke')
  return out


def run_accuracies(out, system, budget):
  scores = [
    json.loads((out / f'{system}_n{budget}_s{seed}' / 'eval.json').read_text())
    for seed in range(SEEDS)
  ]
  assert all(s['step'] == STEPS for s in scores)
  return [s['d_test_accuracy'] for s in scores]


def test_study_runs_both_systems_at_every_budget_and_seed(study_dir):
  assert sorted(os.listdir(study_dir)) == sorted(
    run_names() + ['study.json', 'study.md', 'study.png']
  )
  config = json.loads((study_dir / 'sgan_baseline_n10_s1' / 'config.json').read_text())
  assert (config['data']['num_labeled'], config['seed'], config['train']['num_steps']) == (
    10,
    1,
    STEPS,
  )
  assert config['loss']['d_terms'] == {'sgan_labeled': 1.0}


def test_study_json_and_table_hold_the_runs_results(study_dir):
  summary = json.loads((study_dir / 'study.json').read_text())
  assert [r['budget'] for r in summary['rows']] == list(BUDGETS)
  assert sorted(r['name'] for r in summary['runs']) == sorted(run_names())
  table = (study_dir / 'study.md').read_text()
  for row in summary['rows']:
    cells = {}
    for system in study.SYSTEMS:
      accuracies = run_accuracies(study_dir, system, row['budget'])
      assert row[f'{system}_mean'] == pytest.approx(np.mean(accuracies))
      assert row[f'{system}_std'] == pytest.approx(np.std(accuracies, ddof=1))
      cells[system] = f'{100 * np.mean(accuracies):.2f} ± {100 * np.std(accuracies, ddof=1):.2f}'
    gain = 100 * (row['sgan_mean'] - row['sgan_baseline_mean'])
    line = (
      f'| {row["budget"]} | {SEEDS} | {cells["sgan"]} | {cells["sgan_baseline"]} | {gain:+.2f} |'
    )
    assert line in table.splitlines(), (line, table)
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
    f'python study.py --budgets=10,20 --seeds={SEEDS} --out={study_dir} '
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
  assert re.search(r'sgan_n20_s1: d_test_accuracy [\d.]+ \(done before\)', result.stdout)


def test_a_budget_that_is_not_a_multiple_of_the_classes_fails_before_training(tmp_path):
  with pytest.raises(ValueError, match='multiple of 10'):
    study.run_study([15], 1, str(tmp_path / 'out'), steps=STEPS, variant='smoke')
  assert not os.path.exists(tmp_path / 'out')
