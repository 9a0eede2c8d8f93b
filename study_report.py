"""What the label-budget studies are (`Study`: their systems, baselines and the paper's row) and
how their results are tabulated: the rows, the markdown table, the plot and the summary files.
study.py runs them."""

import dataclasses
import json
import os

import numpy as np

from gan_jax.writers import atomic_write_bytes, save_figure


@dataclasses.dataclass(frozen=True)
class Study:
  """What differs between studies; one code path runs and tabulates them all."""

  name: str  # its --study value
  title: str
  stem: str  # OUT/<stem>.md, .png, .json
  # Each system: the runs' name prefix → (configs/<name>.py, its variant, its label).
  systems: dict[str, tuple[str, str, str]]
  baselines: tuple[str, ...]
  gains: dict[str, str]  # gain name → system; each over the stronger baseline
  budgets: tuple[int, ...]  # the default --budgets
  # False: D's test accuracy (higher is better). True: test errors out of the test split's size
  # (lower is better), as Salimans et al. 2016 report them.
  errors: bool = False
  keys: dict[str, str] = dataclasses.field(default_factory=dict)  # system → its prefix in the rows
  # The paper's row: budget → its mean and std.
  paper: dict[int, tuple[float, float]] = dataclasses.field(default_factory=dict)
  source: str = ''  # where the paper's row comes from, for the table's text

  def key(self, system: str) -> str:
    return self.keys.get(system, system)

  @property
  def unit(self) -> str:
    """The name of each row's per-seed lists: '<key>_errors' or '<key>_accuracies'."""
    return 'errors' if self.errors else 'accuracies'

  def value(self, run: dict) -> float:
    return run['errors'] if self.errors else run['d_test_accuracy']

  def strongest(self, baselines, mean) -> str:
    return (min if self.errors else max)(baselines, key=mean)

  def gain(self, system_mean: float, baseline_mean: float) -> float:
    """Positive where the system is better: accuracy gained, or errors saved."""
    return baseline_mean - system_mean if self.errors else system_mean - baseline_mean

  def shown(self, value: float) -> float:
    """As tabulated and plotted: errors as they are, accuracies in %."""
    return value if self.errors else 100 * value

  def cell(self, mean: float, std: float | None) -> str:
    """mean ± std as tabulated, the mean alone without a std."""
    text = f'{mean:.1f}' if self.errors else f'{100 * mean:.2f}'
    if std is None:
      return text
    return text + (f' ± {std:.1f}' if self.errors else f' ± {100 * std:.2f}')


SGAN = Study(
  name='sgan',
  title='SGAN label-budget study',
  stem='study',
  systems={
    'sgan': ('sgan', '', 'SGAN'),
    'sgan_fm': ('sgan', 'fm', 'SGAN + FM'),
    'sgan_baseline': ('sgan_baseline', '', 'baseline'),
    'sgan_baseline_strong': ('sgan_baseline', 'strong', 'baseline (strong)'),
  },
  baselines=('sgan_baseline', 'sgan_baseline_strong'),
  gains={'gain': 'sgan', 'gain_fm': 'sgan_fm'},
  budgets=(20, 50, 100, 1000, 4000),  # 4000: every train label of mnist5k
)
IMPROVED_GAN = Study(
  name='improved_gan',
  title='Improved GAN label-budget study against Salimans et al. 2016, Table 1',
  stem='improved_gan_mnist',
  systems={
    'improved_gan': ('improved_gan_mnist', '', 'Improved GAN'),
    'improved_gan_baseline': ('improved_gan_mnist', 'baseline', 'labels-only baseline'),
  },
  baselines=('improved_gan_baseline',),
  gains={'gain': 'improved_gan'},
  budgets=(20, 50, 100, 200),
  errors=True,
  keys={'improved_gan': 'sgan', 'improved_gan_baseline': 'baseline'},
  # Table 1, "Our model": test errors of 10,000, mean ± std over 10 seeds.
  paper={20: (1677, 452), 50: (221, 136), 100: (93, 6.5), 200: (90, 4.2)},
  source='Salimans et al. 2016, Table 1, "Our model", mean ± std over 10 seeds',
)
STUDIES = {s.name: s for s in (SGAN, IMPROVED_GAN)}


def count_errors(accuracy: float, test_size: int) -> int:
  """Misclassified test images, as Salimans et al. 2016 count them."""
  return round((1 - accuracy) * test_size)


def summarize(results: list[dict], budgets, study: Study = SGAN) -> list[dict]:
  """Per budget with a finished run: each system's values in run (= seed) order, their mean and
  std (ddof=1; 0 for one seed, None for none), the stronger baseline and the gains over it
  (None while a run they need is missing), and the paper's mean and std where the study has them.
  Runs still missing make a partial row: the study writes one after every run."""
  rows = []
  for budget in budgets:
    runs = [r for r in results if r['budget'] == budget]
    if not runs:
      continue
    row = {'budget': budget}
    if study.paper:
      row['paper_mean'], row['paper_std'] = study.paper.get(budget, (None, None))
    for system in study.systems:
      key = study.key(system)
      values = [study.value(r) for r in runs if r['system'] == system]
      row[f'{key}_{study.unit}'] = values
      row[f'{key}_mean'] = float(np.mean(values)) if values else None
      row[f'{key}_std'] = (
        float(np.std(values, ddof=1)) if len(values) > 1 else 0.0 if values else None
      )
      row[f'{key}_n'] = len(values)
    mean = lambda system: row[f'{study.key(system)}_mean']
    done = [b for b in study.baselines if mean(b) is not None]
    row['strongest_baseline'] = study.strongest(done, mean) if done else None
    for gain, system in study.gains.items():
      ready = done and mean(system) is not None
      row[gain] = study.gain(mean(system), mean(row['strongest_baseline'])) if ready else None
    rows.append(row)
  return rows


def markdown_table(
  rows: list[dict],
  dataset: str,
  num_steps: dict,
  command_line: str,
  study: Study = SGAN,
  test_size: int | None = None,
) -> str:
  def cell(row, system):
    key = study.key(system)
    n, seeds = row[f'{key}_n'], row_seeds(row)
    if not n:
      return '–'
    # One seed has no spread to show.
    text = study.cell(row[f'{key}_mean'], row[f'{key}_std'] if n > 1 else None)
    text = (
      f'**{text}**' if system == row['strongest_baseline'] and len(study.baselines) > 1 else text
    )
    if study.errors and n > 1:  # a few whole numbers: each seed's, which a mean ± std hides
      return f'{text} ({", ".join(str(v) for v in row[f"{key}_errors"])})'
    return text if n == seeds else f'{text} (n={n})'

  def row_seeds(row):
    return max(row[f'{study.key(s)}_n'] for s in study.systems)

  def gain(row, name):
    if row[name] is None:
      return '–'
    return f'{row[name]:+.1f}' if study.errors else f'{100 * row[name]:+.2f}'

  def paper(row):
    if row['paper_mean'] is None:
      return '–'
    return f'{row["paper_mean"]:g} ± {row["paper_std"]:g}'

  labels = [label for _, _, label in study.systems.values()]
  steps = ', '.join(f'{study.systems[s][2]} {n}' for s, n in num_steps.items())
  if study.errors:
    measure = (
      f"Test errors of D's class head, of the {test_size} images of the test split, at the last "
      'step: round((1 - accuracy) · test size), mean ± std over seeds (sample std), then each '
      "seed's in brackets. "
      f'Steps: {steps}. Gains: errors fewer than the '
      + ('stronger baseline of each budget (in bold).' if len(study.baselines) > 1 else 'baseline.')
    )
  else:
    measure = (
      "Test accuracy (%) of D's class head on the test split at the last step, mean ± std over "
      f'seeds (sample std). Steps: {steps}. Gains, in points, over the stronger baseline of each '
      'budget (in bold).'
    )
  paper_column = ['paper'] if study.paper else []
  if study.paper:
    measure += f' The paper: {study.source}.'
  lines = [
    f'# {study.title} ({dataset})',
    '',
    f'`{command_line}`',
    '',
    measure,
    '',
    f'| labels | seeds | {" | ".join(paper_column + labels)} | '
    + ' | '.join(f'gain {study.systems[s][2]}' for s in study.gains.values())
    + ' |',
    '|---|---|' + '---|' * (len(paper_column) + len(labels) + len(study.gains)),
  ]
  lines += [
    f'| {r["budget"]} | {row_seeds(r)} | '
    + ' | '.join(([paper(r)] if study.paper else []) + [cell(r, s) for s in study.systems])
    + ' | '
    + ' | '.join(gain(r, g) for g in study.gains)
    + ' |'
    for r in rows
  ]
  return '\n'.join(lines) + '\n'


def plot(rows: list[dict], path: str, study: Study = SGAN, test_size: int | None = None) -> None:
  """Accuracy (or test errors) against the label budget (log x), error bars of one std; the
  paper's row where the study has one."""
  import matplotlib  # here, not at the top: slow to import

  matplotlib.use('Agg')
  from matplotlib import pyplot as plt

  figure, ax = plt.subplots(figsize=(5, 3.5))
  budgets = [r['budget'] for r in rows]
  lines = [(study.key(s), label, {}) for s, (_, _, label) in study.systems.items()]
  if study.paper:
    lines.append(('paper', 'paper', {'linestyle': '--', 'color': 'grey'}))
  for key, label, style in lines:
    shown = [r for r in rows if r[f'{key}_mean'] is not None]
    ax.errorbar(
      [r['budget'] for r in shown],
      [study.shown(r[f'{key}_mean']) for r in shown],
      yerr=[study.shown(r[f'{key}_std']) for r in shown],
      marker='o',
      capsize=3,
      label=label,
      **style,
    )
  ax.set(
    xscale='log',
    xlabel='labeled examples',
    ylabel=f'test errors (of {test_size})' if study.errors else 'test accuracy (%)',
    xticks=budgets,
    xticklabels=[str(b) for b in budgets],
  )
  if study.errors:
    ax.set_yscale('log')  # from about 90 to about 2000 errors
  ax.legend()
  save_figure(figure, path)


def write_summary(out: str, study: Study, header: dict, results: list[dict], budgets) -> list[dict]:
  """OUT/<stem>.json and .md over the runs done so far, each written atomically; returns the rows."""
  rows = summarize(results, budgets, study)
  summary = {**header, 'rows': rows, 'runs': results}
  path = os.path.join(out, study.stem)
  atomic_write_bytes(f'{path}.json', json.dumps(summary, indent=2).encode())
  table = markdown_table(
    rows, header['dataset'], header['num_steps'], header['command'], study, header['test_size']
  )
  atomic_write_bytes(f'{path}.md', table.encode())
  return rows
