"""The SGAN label-budget study: SGAN against its supervised baselines over budgets and seeds.

  python study.py --budgets=20,50,100,1000,4000 --seeds=3 --out=workdirs/study

For each budget and seed, trains each of SYSTEMS (SGAN, SGAN with feature matching, the plain
and the strong labels-only baseline) with data.num_labeled=budget and seed=seed in
OUT/<system>_n<budget>_s<seed> (a seed picks both the initialisation and the labeled subset, the
same one for every system), then writes OUT/study.md (mean ± std of D's test accuracy at the
last step; the gains are measured against the stronger baseline of each budget), OUT/study.png
and OUT/study.json (with each run's test curve). Runs whose eval.json is at their final step
are skipped, so a stopped study resumes.
"""

import importlib
import json
import os
import sys
import time

from absl import app, flags, logging
import numpy as np

from gan_jax import checks, data, train
from gan_jax.errors import BadInput
from gan_jax.writers import atomic_write_bytes, save_figure

# Each system: the runs' name prefix → (configs/<name>.py, its variant, its label).
SYSTEMS = {
  'sgan': ('sgan', '', 'SGAN'),
  'sgan_fm': ('sgan', 'fm', 'SGAN + FM'),
  'sgan_baseline': ('sgan_baseline', '', 'baseline'),
  'sgan_baseline_strong': ('sgan_baseline', 'strong', 'baseline (strong)'),
}
BASELINES = ('sgan_baseline', 'sgan_baseline_strong')
GAINS = {'gain': 'sgan', 'gain_fm': 'sgan_fm'}  # each over the stronger baseline

_BUDGETS = flags.DEFINE_list(
  'budgets',
  ['20', '50', '100', '1000', '4000'],
  'Label budgets: multiples of the number of classes (4000: every train label of mnist5k).',
)
_SEEDS = flags.DEFINE_integer('seeds', 3, 'Seeds 0 .. seeds-1 per budget and system.')
_OUT = flags.DEFINE_string('out', 'workdirs/study', 'Where the runs, table and plot go.')
_STEPS = flags.DEFINE_integer('steps', 0, 'Overrides train.num_steps of every config; 0 = theirs.')
_VARIANT = flags.DEFINE_string('config_variant', '', 'Config argument, e.g. "smoke".')


def run_config(system: str, budget: int, seed: int, variant: str = '', steps: int = 0):
  """The system's config with `variant` (e.g. 'smoke') added to its own, at this budget and seed."""
  name, own_variant, _ = SYSTEMS[system]
  arg = ','.join(v for v in (own_variant, variant) if v)
  config = importlib.import_module(f'configs.{name}').get_config(arg or None)
  config.data.num_labeled = budget
  config.seed = seed
  if steps:
    config.train.num_steps = steps
  if not config.eval.every:
    # The study needs the final scores: computed in the training run, not by restoring it after.
    config.eval.every = config.train.num_steps
  return config


def read_eval(workdir: str) -> dict | None:
  path = os.path.join(workdir, 'eval.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def check_budgets(budgets, seeds: int, variant: str) -> None:
  """Every budget fits the data, checked before hours of training (a one-line BadInput)."""
  if seeds < 1:
    raise BadInput(f'seeds={seeds} must be >= 1')
  dataset = data.open_dataset(run_config('sgan', budgets[0], 0, variant).data)
  _, labels = dataset.split('train')
  for budget in budgets:
    checks.check_data(run_config('sgan', budget, 0, variant), len(labels), np.bincount(labels))


def run_one(config, workdir: str) -> tuple[dict, float | None]:
  """Trains and evaluates one run unless done; returns its eval.json and the seconds it took."""
  scores = read_eval(workdir)
  if scores and scores['step'] == config.train.num_steps:
    return scores, None
  start = time.time()
  train.train_and_evaluate(config, workdir)  # resumes from a checkpoint if there is one
  scores = read_eval(workdir)
  if not scores or scores['step'] != config.train.num_steps:
    # The run had finished training before, but not its evaluation.
    train.evaluate(config, workdir)
    scores = read_eval(workdir)
  return scores, time.time() - start


def accuracy_curve(workdir: str) -> list[list[float]]:
  """[step, D's test accuracy] at each evaluation during training, from metrics.jsonl."""
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return [[r['step'], r['eval/d_test_accuracy']] for r in rows if 'eval/d_test_accuracy' in r]


def summarize(results: list[dict], budgets) -> list[dict]:
  """Per budget: mean and std (over seeds, ddof=1) of each system's accuracy, the stronger
  baseline (the higher mean) and the gains over it."""
  rows = []
  for budget in budgets:
    row = {'budget': budget}
    for system in SYSTEMS:
      accuracies = [
        r['d_test_accuracy'] for r in results if r['budget'] == budget and r['system'] == system
      ]
      row[f'{system}_mean'] = float(np.mean(accuracies))
      row[f'{system}_std'] = float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else 0.0
      row[f'{system}_n'] = len(accuracies)
    row['strongest_baseline'] = max(BASELINES, key=lambda s: row[f'{s}_mean'])
    for gain, system in GAINS.items():
      row[gain] = row[f'{system}_mean'] - row[f'{row["strongest_baseline"]}_mean']
    rows.append(row)
  return rows


def command(budgets, seeds: int, out: str, steps: int, variant: str) -> str:
  """The command line that makes (or resumes) this study."""
  args = [f'--budgets={",".join(map(str, budgets))}', f'--seeds={seeds}', f'--out={out}']
  if steps:
    args.append(f'--steps={steps}')
  if variant:
    args.append(f'--config_variant={variant}')
  return ' '.join(['python study.py', *args])


def markdown_table(rows: list[dict], dataset: str, num_steps: dict, command_line: str) -> str:
  def cell(row, system):
    text = f'{100 * row[f"{system}_mean"]:.2f} ± {100 * row[f"{system}_std"]:.2f}'
    return f'**{text}**' if system == row['strongest_baseline'] else text

  labels = [label for _, _, label in SYSTEMS.values()]
  steps = ', '.join(f'{SYSTEMS[s][2]} {n}' for s, n in num_steps.items())
  lines = [
    f'# SGAN label-budget study ({dataset})',
    '',
    f'`{command_line}`',
    '',
    "Test accuracy (%) of D's class head on the test split at the last step, mean ± std over "
    f'seeds (sample std). Steps: {steps}. Gains, in points, over the stronger baseline of each '
    'budget (in bold).',
    '',
    f'| labels | seeds | {" | ".join(labels)} | '
    + ' | '.join(f'gain {SYSTEMS[s][2]}' for s in GAINS.values())
    + ' |',
    '|---|---|' + '---|' * (len(labels) + len(GAINS)),
  ]
  lines += [
    f'| {r["budget"]} | {r["sgan_n"]} | {" | ".join(cell(r, s) for s in SYSTEMS)} | '
    + ' | '.join(f'{100 * r[gain]:+.2f}' for gain in GAINS)
    + ' |'
    for r in rows
  ]
  return '\n'.join(lines) + '\n'


def plot(rows: list[dict], path: str) -> None:
  """Accuracy against the label budget (log x), error bars of one std."""
  import matplotlib  # here, not at the top: slow to import

  matplotlib.use('Agg')
  from matplotlib import pyplot as plt

  figure, ax = plt.subplots(figsize=(5, 3.5))
  budgets = [r['budget'] for r in rows]
  for system, (_, _, label) in SYSTEMS.items():
    ax.errorbar(
      budgets,
      [100 * r[f'{system}_mean'] for r in rows],
      yerr=[100 * r[f'{system}_std'] for r in rows],
      marker='o',
      capsize=3,
      label=label,
    )
  ax.set(
    xscale='log',
    xlabel='labeled examples',
    ylabel='test accuracy (%)',
    xticks=budgets,
    xticklabels=[str(b) for b in budgets],
  )
  ax.legend()
  save_figure(figure, path)


def run_study(budgets, seeds: int, out: str, steps: int = 0, variant: str = '') -> list[dict]:
  """Runs (or resumes) every run, then writes study.md, study.png and study.json; returns the table rows."""
  budgets = sorted({int(b) for b in budgets})
  check_budgets(budgets, seeds, variant)
  os.makedirs(out, exist_ok=True)
  results, num_steps = [], {}
  for budget in budgets:
    for seed in range(seeds):
      for system in SYSTEMS:
        name = f'{system}_n{budget}_s{seed}'
        config = run_config(system, budget, seed, variant, steps)
        num_steps[system] = config.train.num_steps
        workdir = os.path.join(out, name)
        scores, seconds = run_one(config, workdir)
        done = 'done before' if seconds is None else f'{seconds:.0f} s'
        print(f'{name}: d_test_accuracy {scores["d_test_accuracy"]:.4f} ({done})', flush=True)
        results.append(
          {
            'name': name,
            'system': system,
            'budget': budget,
            'seed': seed,
            'd_test_accuracy': scores['d_test_accuracy'],
            'step': scores['step'],
            'seconds': seconds,
            'test_curve': accuracy_curve(workdir),
          }
        )
  rows = summarize(results, budgets)
  command_line = command(budgets, seeds, out, steps, variant)
  table = markdown_table(rows, config.data.name, num_steps, command_line)
  atomic_write_bytes(os.path.join(out, 'study.md'), table.encode())
  plot(rows, os.path.join(out, 'study.png'))
  summary = {
    'command': command_line,
    'dataset': config.data.name,
    'num_steps': num_steps,
    'config_variant': variant,
    'seeds': seeds,
    'rows': rows,
    'runs': results,
  }
  atomic_write_bytes(os.path.join(out, 'study.json'), json.dumps(summary, indent=2).encode())
  return rows


def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.ERROR)  # orbax logs each file it writes
  try:
    budgets = [int(b) for b in _BUDGETS.value]
  except ValueError:
    raise app.UsageError(f'--budgets={",".join(_BUDGETS.value)}: integers expected') from None
  try:
    run_study(budgets, _SEEDS.value, _OUT.value, _STEPS.value, _VARIANT.value)
  except BadInput as error:  # a bad budget, config or data dir: one line, as launch.py does
    print(f'error: {error}', file=sys.stderr)
    sys.exit(2)
  with open(os.path.join(_OUT.value, 'study.md')) as f:
    print(f.read())


if __name__ == '__main__':
  app.run(main)
