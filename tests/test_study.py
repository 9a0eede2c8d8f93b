"""The label-budget studies on the smoke configs: their runs, tables, JSON and plots, resuming,
and the partial table a stopped study leaves."""

import json
import os
import re
import subprocess
import sys
from unittest import mock

from conftest import mnist5k_dataset
import numpy as np
from PIL import Image
import pytest

from gan_jax import train
from gan_jax.errors import BadInput
import study
import study_report

# One budget keeps it to 8 smoke runs; the ordering and gains of several budgets are tested on
# made-up results below.
BUDGETS, SEEDS, STEPS = (10,), 2, 2


def run_names():
  return [
    f'{system}_n{budget}_s{seed}'
    for budget in BUDGETS
    for seed in range(SEEDS)
    for system in study_report.SGAN.systems
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
    for system in study_report.SGAN.systems
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
  for baseline in study_report.SGAN.baselines:
    assert terms(baseline) == ({'sgan_labeled': 1.0}, {'sgan_gen': 0.0, 'feature_matching': 0.0})
  assert [configs[s]['data']['augment'] for s in study_report.SGAN.systems] == [
    '',
    '',
    '',
    'translation',
  ]


def test_strong_baseline_trains_longer_and_logs_its_test_curve():
  plain, strong = (study.run_config(s, 100, 0) for s in study_report.SGAN.baselines)
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
  rows = study_report.summarize(results, [10, 20])
  assert [r['strongest_baseline'] for r in rows] == ['sgan_baseline_strong', 'sgan_baseline']
  assert [r['gain'] for r in rows] == pytest.approx([0.1, 0.1])
  assert [r['gain_fm'] for r in rows] == pytest.approx([-0.1, 0.1])
  assert rows[0]['sgan_baseline_std'] == pytest.approx(np.std([0.3, 0.5], ddof=1))
  table = study_report.markdown_table(
    rows, 'mnist5k', {s: STEPS for s in study_report.SGAN.systems}, 'cmd'
  )
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
    for system in study_report.SGAN.systems:
      accuracies = run_accuracies(study_dir, system, row['budget'])
      assert row[f'{system}_mean'] == pytest.approx(np.mean(accuracies))
      assert row[f'{system}_std'] == pytest.approx(np.std(accuracies, ddof=1))
      means[system] = np.mean(accuracies)
      cells[system] = f'{100 * np.mean(accuracies):.2f} ± {100 * np.std(accuracies, ddof=1):.2f}'
    strongest = max(study_report.SGAN.baselines, key=means.get)
    assert row['strongest_baseline'] == strongest
    cells[strongest] = f'**{cells[strongest]}**'
    gains = [100 * (means[s] - means[strongest]) for s in ('sgan', 'sgan_fm')]
    line = (
      f'| {row["budget"]} | {SEEDS} | {" | ".join(cells[s] for s in study_report.SGAN.systems)} '
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
  # Each run keeps the training time its first study recorded.
  assert after == json.loads(before)
  assert all(run['seconds'] > 0 for run in after['runs'])


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


# The improved-GAN study (Salimans et al. 2016, Table 1) on its smoke variant (mnist5k at 28×28):
# one budget, 2 seeds, 2 systems = 4 runs of 2 steps.
IG_BUDGET, IG_STEPS = 20, 2
IG_RUNS = [
  f'{system}_n{IG_BUDGET}_s{seed}'
  for seed in range(SEEDS)
  for system in study_report.IMPROVED_GAN.systems
]


@pytest.fixture(scope='module')
def improved_gan_study(classifier, tmp_path_factory):
  """The study stopped by its second run failing (its files then kept), then resumed to the end.
  The eval classifier is the session's 28×28 one, trained once."""
  out = tmp_path_factory.mktemp('improved_gan_study')
  args = ([IG_BUDGET], SEEDS, str(out))
  kwargs = {'steps': IG_STEPS, 'variant': 'smoke', 'study': study_report.IMPROVED_GAN}
  train_and_evaluate, calls = train.train_and_evaluate, []

  def second_run_fails(config, workdir):
    calls.append(workdir)
    if len(calls) == 2:
      raise RuntimeError('the second run failed')
    return train_and_evaluate(config, workdir)

  with mock.patch.object(train, 'train_and_evaluate', side_effect=second_run_fails):
    with pytest.raises(RuntimeError, match='the second run failed'):
      study.run_study(*args, **kwargs)
  stopped = {
    suffix: (out / f'improved_gan_mnist.{suffix}').read_text() for suffix in ('json', 'md')
  }
  assert not (out / 'improved_gan_mnist.png').exists()  # drawn at the end only
  study.run_study(*args, **kwargs)
  return out, stopped


def run_errors(out, system, test_size):
  scores = [
    json.loads((out / f'{system}_n{IG_BUDGET}_s{seed}' / 'eval.json').read_text())
    for seed in range(SEEDS)
  ]
  assert all(s['step'] == IG_STEPS for s in scores)
  return [round((1 - s['d_test_accuracy']) * test_size) for s in scores]


def test_improved_gan_study_counts_test_errors_beside_the_paper(improved_gan_study):
  out, _ = improved_gan_study
  assert sorted(os.listdir(out)) == sorted(
    IG_RUNS + [f'improved_gan_mnist.{suffix}' for suffix in ('json', 'md', 'png')]
  )
  summary = json.loads((out / 'improved_gan_mnist.json').read_text())
  _, test_labels = mnist5k_dataset(28).split('test')
  test_size = summary['test_size']
  assert test_size == len(test_labels)
  assert summary['num_steps'] == {'improved_gan': IG_STEPS, 'improved_gan_baseline': IG_STEPS}
  assert summary['command'] == (
    f'python study.py --study=improved_gan --budgets={IG_BUDGET} --seeds={SEEDS} --out={out} '
    f'--steps={IG_STEPS} --config_variant=smoke'
  )
  [row] = summary['rows']
  errors = {
    key: run_errors(out, system, test_size)
    for system, key in study_report.IMPROVED_GAN.keys.items()
  }
  assert row['budget'] == IG_BUDGET
  for key in ('sgan', 'baseline'):
    assert row[f'{key}_errors'] == errors[key]
    assert all(type(e) is int for e in row[f'{key}_errors'])
    assert row[f'{key}_mean'] == pytest.approx(np.mean(errors[key]))
    assert row[f'{key}_std'] == pytest.approx(np.std(errors[key], ddof=1))
    assert row[f'{key}_n'] == SEEDS
  assert (row['paper_mean'], row['paper_std']) == (1677, 452)
  assert row['gain'] == pytest.approx(np.mean(errors['baseline']) - np.mean(errors['sgan']))
  table = (out / 'improved_gan_mnist.md').read_text()
  cell = lambda key: (
    f'{np.mean(errors[key]):.1f} ± {np.std(errors[key], ddof=1):.1f} '
    f'({", ".join(map(str, errors[key]))})'  # each seed's
  )
  assert (
    '| labels | seeds | paper | Improved GAN | labels-only baseline | gain Improved GAN |' in table
  )
  line = f'| {IG_BUDGET} | {SEEDS} | 1677 ± 452 | {cell("sgan")} | {cell("baseline")} | {row["gain"]:+.1f} |'
  assert line in table.splitlines(), (line, table)
  assert f'`{summary["command"]}`' in table and f'of the {test_size} images' in table
  with Image.open(out / 'improved_gan_mnist.png') as plot:
    assert plot.width > 100 and plot.height > 100
  # The runs: Improved GAN and its labels-only baseline at the budget and seed.
  configs = {
    system: json.loads((out / f'{system}_n{IG_BUDGET}_s1' / 'config.json').read_text())
    for system in study_report.IMPROVED_GAN.systems
  }
  assert configs['improved_gan']['loss']['d_terms'] == {
    'labeled_classes': 1.0,
    'sgan_real': 0.5,
    'sgan_fake': 0.5,
  }
  assert configs['improved_gan_baseline']['loss']['d_terms'] == {'labeled_classes': 1.0}
  for config in configs.values():
    assert (config['data']['name'], config['data']['num_labeled'], config['seed']) == (
      'mnist5k',
      IG_BUDGET,
      1,
    )


def test_a_stopped_study_leaves_the_table_of_its_finished_runs(improved_gan_study):
  out, stopped = improved_gan_study
  partial = json.loads(stopped['json'])
  assert [run['name'] for run in partial['runs']] == [IG_RUNS[0]]
  [row] = partial['rows']
  test_size = partial['test_size']
  first = run_errors(out, 'improved_gan', test_size)[0]
  assert (row['sgan_errors'], row['sgan_n'], row['sgan_std']) == ([first], 1, 0.0)
  assert (row['baseline_errors'], row['baseline_n'], row['baseline_mean']) == ([], 0, None)
  assert row['gain'] is None and row['strongest_baseline'] is None
  assert f'| {IG_BUDGET} | 1 | 1677 ± 452 | {first:.1f} | – | – |' in stopped['md'].splitlines()
  # Resumed, the finished run was not trained again; the others were.
  final = json.loads((out / 'improved_gan_mnist.json').read_text())
  assert final['runs'][0] == partial['runs'][0]  # its training time too, from the first study
  assert all(run['seconds'] > 0 for run in final['runs'])


def test_partial_rows_mark_their_seeds_and_errors_gain_is_errors_saved():
  """Made-up results: a budget with runs missing, the lower-error baseline the stronger."""
  results = [
    {'budget': 20, 'system': 'improved_gan', 'd_test_accuracy': 0.9, 'errors': 1000},
    {'budget': 20, 'system': 'improved_gan_baseline', 'd_test_accuracy': 0.7, 'errors': 3000},
    {'budget': 20, 'system': 'improved_gan', 'd_test_accuracy': 0.8, 'errors': 2000},
    {'budget': 50, 'system': 'improved_gan', 'd_test_accuracy': 0.9, 'errors': 1000},
  ]
  rows = study_report.summarize(results, [20, 50, 100], study_report.IMPROVED_GAN)
  assert [r['budget'] for r in rows] == [20, 50]  # 100 has no run yet
  assert rows[0]['sgan_errors'] == [1000, 2000] and rows[0]['baseline_errors'] == [3000]
  assert rows[0]['gain'] == pytest.approx(1500)
  assert (rows[1]['gain'], rows[1]['paper_mean'], rows[1]['paper_std']) == (None, 221, 136)
  table = study_report.markdown_table(
    rows, 'mnist', {'improved_gan': 9}, 'cmd', study_report.IMPROVED_GAN, 10_000
  )
  assert '| 20 | 2 | 1677 ± 452 | 1500.0 ± 707.1 (1000, 2000) | 3000.0 (n=1) | +1500.0 |' in table
  assert '| 50 | 1 | 221 ± 136 | 1000.0 | – | – |' in table
  assert study_report.IMPROVED_GAN.budgets == (20, 50, 100, 200)
  assert study_report.IMPROVED_GAN.paper == {
    20: (1677, 452),
    50: (221, 136),
    100: (93, 6.5),
    200: (90, 4.2),
  }


def test_the_schedule_is_chosen_on_the_validation_curve_alone(tmp_path):
  """The first evaluation within `within` errors of the validation minimum; the test curve (best
  at another step) is never read."""
  curve = tmp_path / 'curve.json'
  validation = [[3000, 900], [6000, 150], [9000, 120], [12000, 133], [15000, 118], [18000, 125]]
  test = [[step, 200 - step // 1000] for step, _ in validation]
  curve.write_text(json.dumps({'validation_errors': validation, 'test_errors': test}))
  schedule = study.steps_from_curve(str(curve), 13)
  assert (schedule['steps'], schedule['validation_errors'], schedule['within']) == (9000, 120, 13)
  assert schedule['chosen_from'] == str(curve) and 'minimum, 118' in schedule['rule']
  assert study.steps_from_curve(str(curve), 0)['steps'] == 15000
  assert study.steps_from_curve(str(curve), 10_000)['steps'] == 3000
  with pytest.raises(BadInput, match='--within=-1 must be >= 0'):
    study.steps_from_curve(str(curve), -1)
  curve.write_text(json.dumps({'validation_errors': [], 'test_errors': test}))
  with pytest.raises(BadInput, match='no validation errors: train with data.validation'):
    study.steps_from_curve(str(curve), 13)
  # The command that resumes a study records the rule, not the steps it gave.
  assert study.command([20], 3, 'o', 9000, '', study_report.IMPROVED_GAN, 'docs', schedule) == (
    f'python study.py --study=improved_gan --budgets=20 --seeds=3 --out=o --summary_dir=docs '
    f'--steps_from={curve} --within=13'
  )


def test_a_runs_curve_counts_its_test_and_validation_errors(tmp_path):
  """`--curve_of` on a made-up workdir: errors out of each split's size at every evaluation."""
  config = study.run_config('improved_gan', 20, 3, 'smoke', 40, study_report.IMPROVED_GAN)
  config.data.validation = 500
  (tmp_path / 'config.json').write_text(config.to_json_best_effort())
  accuracies = {20: (0.9, 0.8), 40: (0.95, 0.9)}
  rows = []
  for step, (test, validation) in accuracies.items():
    rows.append({'step': step, 'd_loss': 1.0, 'g_loss': 2.0, 'd_acc_real': 0.5})
    evaluation = {'eval/d_test_accuracy': test, 'eval/d_validation_accuracy': validation}
    rows.append({'step': step, **evaluation, 'eval/fid_classifier': 5.0})
  (tmp_path / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
  curve = study.run_curve(str(tmp_path))
  test_size = len(mnist5k_dataset(28).split('test')[1])
  assert (curve['budget'], curve['seed'], curve['status']) == (20, 3, 'finished')
  assert (curve['test_size'], curve['validation_size']) == (test_size, 500)
  assert curve['test_errors'] == [[20, round(0.1 * test_size)], [40, round(0.05 * test_size)]]
  assert curve['validation_errors'] == [[20, 100], [40, 50]]
  assert curve['evaluations'][1] == {
    'step': 40,
    'd_test_accuracy': 0.95,
    'd_validation_accuracy': 0.9,
    'fid_classifier': 5.0,
  }
  assert curve['training'] == [rows[0], rows[2]]
  rows[-2:] = []
  (tmp_path / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
  assert study.run_curve(str(tmp_path))['status'] == 'last logged at step 20 of 40'
  with pytest.raises(BadInput, match='has no metrics.jsonl'):
    study.run_curve(str(tmp_path / 'elsewhere'))


def test_a_study_resumes_from_its_summary_when_the_workdirs_are_gone(improved_gan_study, tmp_path):
  """Its committed summary alone: every run recorded, none trained; a study of other steps or
  another variant is refused before it trains or writes, and the summary stays as it was."""
  out, _ = improved_gan_study
  summary_dir = tmp_path / 'docs'
  summary_dir.mkdir()
  finished = json.loads((out / 'improved_gan_mnist.json').read_text())
  (summary_dir / 'improved_gan_mnist.json').write_text(json.dumps(finished))
  args = ([IG_BUDGET], SEEDS, str(tmp_path / 'gone'))
  kwargs = {'variant': 'smoke', 'study': study_report.IMPROVED_GAN, 'summary_dir': str(summary_dir)}
  with mock.patch.object(train, 'train_and_evaluate', side_effect=AssertionError('trained')):
    rows = study.run_study(*args, steps=IG_STEPS, **kwargs)
    written = (summary_dir / 'improved_gan_mnist.json').read_text()
    with pytest.raises(BadInput, match=r'records another study \(num_steps .*--summary_dir of its'):
      study.run_study(*args, steps=IG_STEPS + 1, **kwargs)
    other_variant = {**kwargs, 'variant': 'first_commit,smoke'}
    with pytest.raises(BadInput, match=r"\(config_variant 'smoke', this one 'first_commit,smoke'"):
      study.run_study(*args, steps=IG_STEPS, **other_variant)
  assert (summary_dir / 'improved_gan_mnist.json').read_text() == written
  assert rows == finished['rows']
  resumed = json.loads(written)
  assert finished['runs'] == resumed['runs']
  assert resumed['command'].endswith(
    f'--summary_dir={summary_dir} --steps={IG_STEPS} --config_variant=smoke'
  )
  assert (summary_dir / 'improved_gan_mnist.png').exists()
  assert not os.listdir(tmp_path / 'gone')


def test_a_study_stopped_before_a_budget_keeps_that_budgets_finished_runs(
  improved_gan_study, tmp_path
):
  """Every finished run is in the summary before any training: a study that trains a new, smaller
  budget first and is stopped there keeps the others' rows, from the committed summary where
  their workdirs are gone, or from their workdirs."""
  out, _ = improved_gan_study
  finished = json.loads((out / 'improved_gan_mnist.json').read_text())
  committed, fresh = tmp_path / 'committed', tmp_path / 'fresh'
  committed.mkdir()
  (committed / 'improved_gan_mnist.json').write_text(json.dumps(finished))
  listing = sorted(os.listdir(out))
  kwargs = {'steps': IG_STEPS, 'variant': 'smoke', 'study': study_report.IMPROVED_GAN}
  for workdirs, summary_dir in ((tmp_path / 'gone', committed), (out, fresh)):
    with mock.patch.object(train, 'train_and_evaluate', side_effect=RuntimeError('stopped')):
      with pytest.raises(RuntimeError, match='stopped'):
        study.run_study(
          [IG_BUDGET - 10, IG_BUDGET], SEEDS, str(workdirs), summary_dir=str(summary_dir), **kwargs
        )
    summary = json.loads((summary_dir / 'improved_gan_mnist.json').read_text())
    assert summary['rows'] == finished['rows']
    untimed = lambda runs: [{**run, 'seconds': None} for run in runs]
    assert untimed(summary['runs']) == untimed(finished['runs'])
  assert summary['runs'][0]['seconds'] is None  # no summary recorded the workdirs' time
  assert json.loads((committed / 'improved_gan_mnist.json').read_text())['runs'] == finished['runs']
  assert sorted(os.listdir(out)) == listing


# --- the committed Improved GAN table (issue 21) -------------------------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE = os.path.join(REPO, 'docs', 'study', 'improved_gan_mnist')


def committed_table() -> tuple[dict, str]:
  with open(f'{TABLE}.json') as f, open(f'{TABLE}.md') as g:
    return json.load(f), g.read()


def test_the_committed_table_is_its_runs():
  """Its rows and markdown are what the study's code makes of its runs: nothing edited by hand."""
  summary, table = committed_table()
  study_ = study_report.IMPROVED_GAN
  runs = summary['runs']
  for run in runs:
    assert run['errors'] == study_report.count_errors(run['d_test_accuracy'], 10_000), run['name']
    assert run['step'] == summary['num_steps'][run['system']] == run['test_curve'][-1][0]
  budgets = sorted({run['budget'] for run in runs})
  assert summary['rows'] == study_report.summarize(runs, budgets, study_)
  header = [summary[k] for k in ('dataset', 'num_steps', 'command')]
  assert table == study_report.markdown_table(summary['rows'], *header, study_, 10_000)


def test_the_committed_schedule_is_the_rule_on_the_committed_curve(monkeypatch):
  summary, _ = committed_table()
  schedule = summary['schedule']
  monkeypatch.chdir(REPO)  # the curve's path as README's command gives it
  assert study.steps_from_curve(schedule['chosen_from'], schedule['within']) == schedule
  assert set(summary['num_steps'].values()) == {schedule['steps']}


def test_readme_shows_the_committed_table():
  _, table = committed_table()
  with open(os.path.join(REPO, 'README.md')) as f:
    readme = f.read().splitlines()
  rows = [line for line in table.splitlines() if line.startswith('|')]
  assert len(rows) > 2  # the header, its rule and at least one budget
  start = readme.index(rows[0])
  assert readme[start : start + len(rows)] == rows


def test_a_run_of_several_seeds_writes_a_curve_for_each(tmp_path):
  """`--curve_of` on a made-up run of 2 vmapped seeds: each seed's file holds its own errors and
  training metrics, under its own seed; an --out without '{seed}' is refused before writing."""
  config = study.run_config('improved_gan', 20, 3, 'smoke', 40, study_report.IMPROVED_GAN)
  config.num_seeds = 2
  (tmp_path / 'config.json').write_text(config.to_json_best_effort())
  rows = [
    {'step': 40, 'd_loss': 1.5, 'd_loss/seed_0': 1.0, 'd_loss/seed_1': 2.0, 'd_loss/std': 0.5},
    {
      'step': 40,
      'eval/d_test_accuracy': 0.85,
      'eval/d_test_accuracy/seed_0': 0.9,
      'eval/d_test_accuracy/seed_1': 0.8,
      'eval/d_test_accuracy/std': 0.05,
    },
  ]
  (tmp_path / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in rows))
  out = tmp_path / 'out'
  out.mkdir()
  with pytest.raises(BadInput, match=r'trains 2 seeds: give --out a \{seed\}'):
    study.write_curves(str(tmp_path), str(out / 'curve.json'))
  assert not list(out.iterdir())
  study.write_curves(str(tmp_path), str(out / 'curve_s{seed}.json'))
  test_size = len(mnist5k_dataset(28).split('test')[1])
  for seed, accuracy, d_loss in ((3, 0.9, 1.0), (4, 0.8, 2.0)):
    curve = json.loads((out / f'curve_s{seed}.json').read_text())
    assert (curve['seed'], curve['status']) == (seed, 'finished')
    assert curve['test_errors'] == [[40, round((1 - accuracy) * test_size)]]
    assert curve['evaluations'] == [{'step': 40, 'd_test_accuracy': accuracy}]
    assert curve['training'] == [{'step': 40, 'd_loss': d_loss}]
