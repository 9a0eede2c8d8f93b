"""Label-budget studies: a semi-supervised GAN against its labels-only baselines over budgets and
seeds. Two studies, chosen by --study:

  python study.py --budgets=20,50,100,1000,4000 --seeds=3 --out=workdirs/study
  python study.py --study=improved_gan --budgets=20,50,100,200 --seeds=3 --steps=84000 \
      --out=workdirs/improved_gan

- `sgan` (the default): SGAN, SGAN with feature matching, the plain and the strong labels-only
  baseline (configs/sgan.py, configs/sgan_baseline.py) on mnist5k. OUT/study.md holds the mean ±
  std of D's test accuracy at the last step; the gains are measured against the stronger baseline
  of each budget. Also OUT/study.png and OUT/study.json (with each run's test curve).
- `improved_gan`: Salimans et al. 2016, Table 1, on full MNIST: Improved GAN and its labels-only
  baseline (configs/improved_gan_mnist.py and its `baseline` variant), in test errors out of the
  test split's size (10,000 on MNIST) as the paper reports them, errors = round((1 - D's test
  accuracy) · test size), beside the paper's "Our model" row (mean ± std over 10 seeds).
  OUT/improved_gan_mnist.md, .png and .json (per budget each seed's errors in `sgan_errors` and
  `baseline_errors`, their mean and sample std, the paper's).

For each budget and seed, trains each system of the study with data.num_labeled=budget and
seed=seed in OUT/<system>_n<budget>_s<seed> (a seed picks both the initialisation and the labeled
subset, the same one for every system). The table and the JSON are rewritten, atomically, after
every finished run over the runs done so far, so a study stopped mid-way leaves a valid partial
table (its seeds column counts a budget's seeds so far; a cell over fewer shows its n); the plot
is drawn at the end. Runs whose eval.json is at their final step are skipped, so a stopped study
resumes. --steps sets every system's schedule (train.num_steps); 0 keeps the configs'.

A study that outlasts its machine resumes from its committed summary: with --summary_dir (e.g.
docs/study) the table, JSON and plot go there, and a run that JSON records at its final step is
not run again when its workdir is gone. The schedule can be chosen on a validation curve, never
the test curve:

  python study.py --curve_of=WORKDIR --out=docs/study/CURVE.json
  python study.py --study=improved_gan --steps_from=docs/study/improved_gan_mnist_n100_s0.json \
      --within=13 --out=workdirs/improved_gan --summary_dir=docs/study

--curve_of writes a run's test and validation errors at each evaluation (train it with
data.validation > 0), a file for each seed of a run of several (--out=curve_s{seed}.json);
--steps_from takes the first evaluation step within --within errors of the validation minimum,
and the summary records that choice beside the steps.
"""

import functools
import importlib
import json
import os
import sys
import time

from absl import app, flags, logging
import ml_collections
import numpy as np

from gan_jax import checks, data, train
from gan_jax.errors import BadInput
from gan_jax.writers import atomic_write_bytes
from study_report import SGAN, STUDIES, Study, count_errors, plot, write_summary


def define_flags(values: flags.FlagValues) -> None:
  """study.py's flags on `values` (a fresh FlagValues parses a documented command in a test)."""
  string = functools.partial(flags.DEFINE_string, flag_values=values)
  integer = functools.partial(flags.DEFINE_integer, flag_values=values)
  flags.DEFINE_enum('study', SGAN.name, list(STUDIES), 'Which study to run.', flag_values=values)
  flags.DEFINE_list(
    'budgets',
    None,
    "Label budgets: multiples of the number of classes. Default: the study's ("
    + '; '.join(f'{s.name}: {",".join(map(str, s.budgets))}' for s in STUDIES.values())
    + '; 4000 is every train label of mnist5k).',
    flag_values=values,
  )
  integer('seeds', 3, 'Seeds 0 .. seeds-1 per budget and system.')
  string('out', 'workdirs/study', 'Where the runs, table and plot go.')
  integer('steps', 0, 'Overrides train.num_steps of every config; 0 = theirs.')
  string(
    'steps_from',
    '',
    'A run curve JSON (written by --curve_of): --steps becomes its first evaluation step whose '
    'validation errors are within --within of their minimum.',
  )
  integer(
    'within', 13, "Errors for --steps_from: 13 is two of the paper's std at 100 labels (6.5)."
  )
  string(
    'summary_dir',
    '',
    'Where <stem>.json, .md and .png are read and written (default --out). Runs recorded in its '
    'JSON at their final step whose workdirs are gone are not run again.',
  )
  string(
    'curve_of',
    '',
    "Writes this workdir's test and validation curve to --out (a .json; with a '{seed}' in it, "
    'one per seed of a run of several) and exits.',
  )
  string('config_variant', '', 'Config argument, e.g. "smoke".')


define_flags(flags.FLAGS)


def run_config(
  system: str, budget: int, seed: int, variant: str = '', steps: int = 0, study: Study = SGAN
):
  """The system's config with `variant` (e.g. 'smoke') added to its own, at this budget and seed."""
  name, own_variant, _ = study.systems[system]
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


def check_budgets(budgets, seeds: int, variant: str, study: Study = SGAN) -> int:
  """Every budget fits the data, checked before hours of training (a one-line BadInput); returns
  the size of the test split."""
  if seeds < 1:
    raise BadInput(f'seeds={seeds} must be >= 1')
  system = next(iter(study.systems))
  dataset = data.open_dataset(run_config(system, budgets[0], 0, variant, study=study).data)
  _, labels = dataset.split('train')
  for budget in budgets:
    config = run_config(system, budget, 0, variant, study=study)
    checks.check_data(config, len(labels), np.bincount(labels))
  return len(dataset.split('test')[1])


def run_one(config, workdir: str) -> tuple[dict, float]:
  """Trains (or resumes) and evaluates one run; returns its eval.json and the seconds this call
  took (a resumed run's since its checkpoint)."""
  start = time.time()
  train.train_and_evaluate(config, workdir)  # resumes from a checkpoint if there is one
  scores = read_eval(workdir)
  if not scores or scores['step'] != config.train.num_steps:
    # The run had finished training before, but not its evaluation.
    train.evaluate(config, workdir)
    scores = read_eval(workdir)
  return scores, time.time() - start


def finished_run(config, workdir: str, test_size: int) -> dict:
  """Trains and evaluates one run (`run_one`); its record in the study's summary."""
  return run_record(*run_one(config, workdir), workdir, test_size)


def finished_before(
  config, workdir: str, record: dict | None, test_size: int
) -> tuple[dict, str] | None:
  """A run finished before this study, untouched, and how it was found; None if it is not. Its
  workdir is the truth where there is one; its `record` in the committed summary stands in for a
  workdir gone, and keeps the training time an earlier study measured."""
  if not os.path.exists(workdir):
    if record and record['step'] == config.train.num_steps:
      return record, 'recorded before'
    return None
  scores = read_eval(workdir)
  if not scores or scores['step'] != config.train.num_steps:
    return None
  return run_record(scores, (record or {}).get('seconds'), workdir, test_size), 'done before'


def run_record(scores: dict, seconds: float | None, workdir: str, test_size: int) -> dict:
  return {
    'd_test_accuracy': scores['d_test_accuracy'],
    'errors': count_errors(scores['d_test_accuracy'], test_size),
    'step': scores['step'],
    'seconds': seconds,
    'test_curve': accuracy_curve(workdir),
  }


def accuracy_curve(workdir: str) -> list[list[float]]:
  """[step, D's test accuracy] at each evaluation during training, from metrics.jsonl."""
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return [[r['step'], r['eval/d_test_accuracy']] for r in rows if 'eval/d_test_accuracy' in r]


def run_config_of(workdir: str) -> dict:
  """The config.json of the run in `workdir`, which must have logged metrics."""
  if not os.path.exists(os.path.join(workdir, 'metrics.jsonl')):
    raise BadInput(f"--curve_of={workdir} is not a run's workdir: it has no metrics.jsonl")
  with open(os.path.join(workdir, 'config.json')) as f:
    return json.load(f)


def seed_rows(rows: list[dict], index: int, num_seeds: int) -> list[dict]:
  """The metric rows of the `index`-th of a run's `num_seeds` seeds, under the names a run of
  one seed logs (a vmapped run logs 'name/seed_i' beside the mean)."""
  if num_seeds == 1:
    return rows
  suffix = f'/seed_{index}'
  return [
    {'step': r['step'], **{k.removesuffix(suffix): v for k, v in r.items() if k.endswith(suffix)}}
    for r in rows
  ]


def run_curve(workdir: str, index: int = 0) -> dict:
  """A run's curve, to commit where its workdir may not last: test (and validation) errors at
  each evaluation, the evaluations and the training metrics, from metrics.jsonl and config.json;
  of its `index`-th seed where it trains several."""
  config = run_config_of(workdir)
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  rows = seed_rows(rows, index, config.get('num_seeds', 1))
  evaluations = [
    {'step': r['step'], **{k.split('/', 1)[1]: v for k, v in r.items() if k.startswith('eval/')}}
    for r in rows
    if 'eval/d_test_accuracy' in r
  ]
  dataset = data.open_dataset(ml_collections.ConfigDict(config['data']))
  splits = ('test', 'validation') if config['data']['validation'] else ('test',)
  sizes = {split: len(dataset.split(split)[1]) for split in splits}
  errors = {
    f'{split}_errors': [
      [e['step'], count_errors(e[f'd_{split}_accuracy'], size)]
      for e in evaluations
      if f'd_{split}_accuracy' in e
    ]
    for split, size in sizes.items()
  }
  steps, last = config['train']['num_steps'], rows[-1]['step'] if rows else 0
  curve = {
    'budget': config['data']['num_labeled'],
    'seed': config['seed'] + index,
    'num_steps': steps,
    'status': 'finished' if last == steps else f'last logged at step {last} of {steps}',
    'test_size': sizes['test'],
    'validation_size': sizes.get('validation', 0),
    **errors,
  }
  keys = ('step', 'd_loss', 'g_loss', 'd_acc_real', 'd_acc_fake', 'g/feature_matching')
  training = [{k: r[k] for k in keys if k in r} for r in rows if 'd_loss' in r]
  return {**curve, 'evaluations': evaluations, 'training': training, 'config': config}


def write_curves(workdir: str, out: str) -> None:
  """`run_curve` of each seed of the run to `out`, whose '{seed}' a run of several seeds fills."""
  num_seeds = run_config_of(workdir).get('num_seeds', 1)
  if num_seeds > 1 and '{seed}' not in out:
    raise BadInput(
      f'--curve_of={workdir} trains {num_seeds} seeds: give --out a {{seed}} for a file each, '
      f'e.g. --out=curve_s{{seed}}.json'
    )
  for index in range(num_seeds):
    curve = run_curve(workdir, index)
    path = out.replace('{seed}', str(curve['seed']))
    atomic_write_bytes(path, json.dumps(curve, indent=1).encode())


def steps_from_curve(path: str, within: int) -> dict:
  """The schedule chosen on a run's validation curve (never its test curve): the first evaluation
  step whose validation errors are at most `within` above the curve's minimum."""
  if within < 0:
    raise BadInput(f'--within={within} must be >= 0 (errors above the minimum)')
  with open(path) as f:
    points = json.load(f)['validation_errors']
  if not points:
    raise BadInput(f'--steps_from={path} has no validation errors: train with data.validation')
  best = min(errors for _, errors in points)
  steps, errors = next((s, e) for s, e in points if e <= best + within)
  return {
    'steps': steps,
    'chosen_from': path,
    'within': within,
    'rule': f'the first evaluation within {within} validation errors of the minimum, {best}',
    'validation_errors': errors,
    'curve_steps': points[-1][0],
  }


def command(
  budgets,
  seeds: int,
  out: str,
  steps: int,
  variant: str,
  study: Study = SGAN,
  summary_dir: str = '',
  schedule: dict | None = None,
) -> str:
  """The command line that makes (or resumes) this study."""
  args = [f'--budgets={",".join(map(str, budgets))}', f'--seeds={seeds}', f'--out={out}']
  if study is not SGAN:
    args.insert(0, f'--study={study.name}')
  if summary_dir:
    args.append(f'--summary_dir={summary_dir}')
  if schedule:
    args.append(f'--steps_from={schedule["chosen_from"]} --within={schedule["within"]}')
  elif steps:
    args.append(f'--steps={steps}')
  if variant:
    args.append(f'--config_variant={variant}')
  return ' '.join(['python study.py', *args])


def study_header(
  budgets,
  seeds: int,
  out: str,
  steps: int,
  variant: str,
  study: Study,
  summary_dir: str,
  schedule: dict | None,
  test_size: int,
) -> dict:
  """What a study's summary records of its set-up: the command that makes (or resumes) it, the
  data, each system's steps, the variant, the seeds and the schedule's choice."""
  configs = {s: run_config(s, budgets[0], 0, variant, steps, study) for s in study.systems}
  given = summary_dir if summary_dir != out else ''
  header = {
    'study': study.name,
    'command': command(budgets, seeds, out, steps, variant, study, given, schedule),
    'dataset': configs[next(iter(configs))].data.name,
    'test_size': test_size,
    'num_steps': {s: c.train.num_steps for s, c in configs.items()},
    'config_variant': variant,
    'seeds': seeds,
  }
  if schedule:
    header['schedule'] = schedule
  return header


def recorded_runs(path: str, header: dict) -> dict[str, dict]:
  """The finished runs a summary JSON records for this same study (its header's steps, data and
  variant), by name: a study resumes from its committed summary when the workdirs are gone. The
  summary of another study is refused, never overwritten."""
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    summary = json.load(f)
  for key in ('study', 'dataset', 'num_steps', 'config_variant'):
    if summary.get(key) != header[key]:
      raise BadInput(
        f'{path} records another study ({key} {summary.get(key)!r}, this one {header[key]!r}): '
        'give this one a --summary_dir of its own'
      )
  return {run['name']: run for run in summary['runs']}


def run_study(
  budgets,
  seeds: int,
  out: str,
  steps: int = 0,
  variant: str = '',
  study: Study = SGAN,
  summary_dir: str = '',
  schedule: dict | None = None,
) -> list[dict]:
  """Runs (or resumes) every run, rewriting SUMMARY_DIR/<stem>.md and .json (SUMMARY_DIR: `out`
  unless given) after each, then draws SUMMARY_DIR/<stem>.png; returns the table rows. A schedule
  (from `steps_from_curve`) is recorded beside the steps it chose (`study_args`)."""
  budgets = sorted({int(b) for b in budgets})
  test_size = check_budgets(budgets, seeds, variant, study)
  summary_dir = summary_dir or out
  os.makedirs(out, exist_ok=True)
  os.makedirs(summary_dir, exist_ok=True)
  header = study_header(
    budgets, seeds, out, steps, variant, study, summary_dir, schedule, test_size
  )
  recorded = recorded_runs(os.path.join(summary_dir, f'{study.stem}.json'), header)
  plan = [
    (
      {'name': f'{system}_n{budget}_s{seed}', 'system': system, 'budget': budget, 'seed': seed},
      run_config(system, budget, seed, variant, steps, study),
    )
    for budget in budgets
    for seed in range(seeds)
    for system in study.systems
  ]
  # Every run finished before, first: a study stopped before it reaches a budget keeps its rows.
  results, done = {}, {}
  for run, config in plan:
    name = run['name']
    found = finished_before(config, os.path.join(out, name), recorded.get(name), test_size)
    if found:
      results[name], done[name] = {**run, **found[0]}, found[1]
  in_order = lambda: [results[run['name']] for run, _ in plan if run['name'] in results]
  if results:
    rows = write_summary(summary_dir, study, header, in_order(), budgets)
  for run, config in plan:
    name = run['name']
    if name not in results:
      results[name] = {**run, **finished_run(config, os.path.join(out, name), test_size)}
      done[name] = f'{results[name]["seconds"]:.0f} s'
      rows = write_summary(summary_dir, study, header, in_order(), budgets)
    run = results[name]
    counted = f', {run["errors"]} test errors of {test_size}' if study.errors else ''
    print(
      f'{name}: d_test_accuracy {run["d_test_accuracy"]:.4f} ({done[name]}){counted}', flush=True
    )
  plot(rows, os.path.join(summary_dir, f'{study.stem}.png'), study, test_size)
  return rows


def study_args(values: flags.FlagValues) -> dict:
  """`run_study`'s arguments from study.py's flags in `values`, checked (a BadInput) before
  anything is trained."""
  study = STUDIES[values.study]
  budgets = values.budgets if values.budgets is not None else study.budgets
  try:
    budgets = sorted({int(b) for b in budgets})
  except ValueError:
    raise BadInput(f'--budgets={",".join(budgets)}: integers expected') from None
  if values.steps_from and values.steps:
    raise BadInput('--steps and --steps_from both set: give one')
  schedule = steps_from_curve(values.steps_from, values.within) if values.steps_from else None
  return {
    'budgets': budgets,
    'seeds': values.seeds,
    'out': values.out,
    'steps': schedule['steps'] if schedule else values.steps,
    'variant': values.config_variant,
    'study': study,
    'summary_dir': values.summary_dir or values.out,
    'schedule': schedule,
  }


def main(argv):
  del argv
  values = flags.FLAGS
  if not values['verbosity'].present:
    logging.set_verbosity(logging.ERROR)  # orbax logs each file it writes
  try:
    if values.curve_of:
      write_curves(values.curve_of, values.out)
      return
    args = study_args(values)
    run_study(**args)
  except BadInput as error:  # a bad budget, config or data dir: one line, as launch.py does
    print(f'error: {error}', file=sys.stderr)
    sys.exit(2)
  with open(os.path.join(args['summary_dir'], f'{args["study"].stem}.md')) as f:
    print(f.read())


if __name__ == '__main__':
  app.run(main)
