"""The run says what is wrong: known failure symptoms recognised in the logged metrics.

Each rule reads metric rows as written to metrics.jsonl ({'step': ..., 'd_loss': ..., ...}),
over the last `WINDOW` rows that carry its metrics, and is checked whenever a row that carries
them arrives; a rule whose metrics a run does not log is never checked. K-seed runs are read
through their plain names (the means over seeds).

  d_overpowers_g   D right on >= 99% of real and of fake images at every row of the window,
                   its loss near 0 (< 0.05, or < 5% of its first logged value), and G's loss
                   rising over the window or above 5: G no longer gets a useful gradient.
  d_collapse       D's balanced accuracy (real + fake) / 2 within 0.4-0.6 at every row of
                   the window, and G's loss below 10% of its first logged value: D cannot
                   tell fakes from reals and calls them real.
  mode_collapse    at `MODE_EVALS` consecutive evaluations, class coverage >= 3 classes
                   below its best so far, or class entropy > 30% below its best so far.
  nonfinite_ahead  a gradient norm (D's or G's) >= 100x the smallest in the window (taken
                   as at least 0.01), or above 1e4: the next steps are likely to overflow.

Given the run's objective, a Wasserstein critic (critic_real, critic_fake) is not checked for
d_overpowers_g or d_collapse: its loss is negative by construction and its output has no offset,
so neither a loss near 0 nor D's accuracy at a threshold says anything of it; and the advice to
smooth D's real target is given only where a term reads it (bce_real, sigmoid_real).
"""

from collections.abc import Callable, Collection, Mapping, Sequence
import dataclasses
import math
from typing import Protocol

Row = Mapping[str, object]

WINDOW = 5  # training rows a rule looks at, by default
ACC_SURE = 0.99  # D's accuracy on real and on fake when it wins outright
D_LOSS_NEAR_ZERO = 0.05  # absolute, and as a fraction of D's first logged loss
G_LOSS_HIGH = 5.0  # G's loss (BCE: D gives fakes p_real < 0.7%) that counts as lost
CHANCE = (0.4, 0.6)  # D's balanced accuracy near chance
G_LOSS_NEAR_ZERO = 0.1  # as a fraction of G's first logged loss
MODE_EVALS = 2  # consecutive evaluations: one low evaluation may be sampling noise
COVERAGE_DROP = 3  # classes below the best coverage so far
ENTROPY_DROP = 0.3  # fraction below the best class entropy so far
GRAD_GROWTH = 100.0  # latest gradient norm / smallest in the window
# The smallest a window's least norm counts as: a D that has fit its labels (a classifier
# baseline) logs norms near 1e-4, and its next hard batch (0.7) is no explosion.
GRAD_FLOOR = 0.01
GRAD_HIGH = 1e4

AUGMENT = '--config.data.augment=color,translation,cutout'  # augment.REFERENCE_POLICY
SPECTRAL_NORM = '--config.model.d_kwargs.spectral_norm=True'
SMOOTHING = '--config.loss.hparams.real_target=0.9'
# What each symptom means, and the overrides that address it, strongest first. Learning
# rates are relative to the default 2e-4 of both optimizers.
SYMPTOMS = {
  'd_overpowers_g': (
    "D separates real from fake perfectly, so its loss and G's gradient vanish while "
    "G's loss climbs: G stops learning.",
    (
      SMOOTHING,
      '--config.optimizer.d.learning_rate=1e-4',
      AUGMENT,
      SPECTRAL_NORM,
      '--config.loss.d_terms.r1=10',
    ),
  ),
  'd_collapse': (
    "D no longer tells fakes from reals and calls them real, so G's loss falls to 0 "
    'without G improving: D stopped learning.',
    ('--config.optimizer.d.learning_rate=4e-4', '--config.train.d_steps=2'),
  ),
  'mode_collapse': (
    'G draws from fewer classes than it did: it is collapsing onto a few modes.',
    ('--config.loss.g_terms.feature_matching=1.0', '--config.model.g_ema_decay=0.999', AUGMENT),
  ),
  'nonfinite_ahead': (
    'Gradient norms are exploding: NaN or inf is likely within the next steps.',
    (
      '--config.optimizer.g.learning_rate=2e-5',
      '--config.optimizer.d.learning_rate=2e-5',
      '--config.train.on_nonfinite=rollback',
      SPECTRAL_NORM,
    ),
  ),
}


@dataclasses.dataclass(frozen=True)
class Diagnosis:
  symptom: str  # a key of SYMPTOMS
  step: int  # the first step its rule held
  message: str  # the evidence, and what it means
  overrides: tuple[str, ...]  # command-line flags that address it

  def __str__(self) -> str:
    return (
      f'step {self.step}: {self.symptom}: {self.message} '
      f'Try: {" ".join(f"`{flag}`" for flag in self.overrides)}'
    )


def _value(row: Row, name: str) -> float | None:
  """The metric as a float, None if the row lacks it."""
  value = row.get(name)
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return None
  return float(value)


def _window(rows: Sequence[Row], names: Sequence[str], size: int | None):
  """{name: values} over the last `size` rows (all if None) that carry every name.

  Empty unless the latest row carries them: a rule holds first at a step where its metrics
  were logged, and is never checked on a run that does not log them.
  """
  if any(_value(rows[-1], name) is None for name in names):
    return {name: [] for name in names}
  found = []
  for row in reversed(rows):
    values = [_value(row, name) for name in names]
    if None not in values:
      found.append(values)
      if len(found) == size:
        break
  return {name: [values[i] for values in reversed(found)] for i, name in enumerate(names)}


def _first(rows: Sequence[Row], name: str) -> float | None:
  return next((v for v in (_value(row, name) for row in rows) if v is not None), None)


def _d_overpowers_g(rows: Sequence[Row], size: int) -> str | None:
  window = _window(rows, ('d_acc_real', 'd_acc_fake', 'd_loss', 'g_loss'), size)
  if len(window['d_loss']) < size:
    return None
  d_loss, g_loss = window['d_loss'][-1], window['g_loss']
  sure = min(window['d_acc_real'] + window['d_acc_fake']) >= ACC_SURE
  near_zero = d_loss < max(D_LOSS_NEAR_ZERO, D_LOSS_NEAR_ZERO * _first(rows, 'd_loss'))
  if sure and near_zero and (g_loss[-1] > g_loss[0] or g_loss[-1] > G_LOSS_HIGH):
    return (
      f'D right on >= {ACC_SURE:.0%} of real and fake images over the last {size} logs, '
      f'd_loss {d_loss:.3g}, g_loss {g_loss[0]:.3g} -> {g_loss[-1]:.3g}.'
    )
  return None


def _d_collapse(rows: Sequence[Row], size: int) -> str | None:
  window = _window(rows, ('d_acc_real', 'd_acc_fake', 'g_loss'), size)
  if len(window['g_loss']) < size:
    return None
  balanced = [(r + f) / 2 for r, f in zip(window['d_acc_real'], window['d_acc_fake'])]
  g_loss, first = window['g_loss'][-1], _first(rows, 'g_loss')
  if (
    CHANCE[0] <= min(balanced)
    and max(balanced) <= CHANCE[1]
    and (first > 0 and g_loss < G_LOSS_NEAR_ZERO * first)
  ):
    return (
      f"D's balanced accuracy {min(balanced):.2f}-{max(balanced):.2f} over the last "
      f'{size} logs, g_loss {g_loss:.3g} (first logged {first:.3g}).'
    )
  return None


def _fell(values: list[float], below_best: Callable[[float, float], bool]) -> list[bool]:
  """For each value, whether it is far below the best (highest) value up to it."""
  fell, best = [], -math.inf
  for value in values:
    best = max(best, value)
    fell.append(below_best(value, best))
  return fell


def _mode_collapse(rows: Sequence[Row], size: int) -> str | None:
  del size  # evaluations are compared with the best of all of them
  checks = (
    ('eval/class_coverage', lambda v, best: v <= best - COVERAGE_DROP, 'classes'),
    ('eval/class_entropy', lambda v, best: v < (1 - ENTROPY_DROP) * best, 'nats'),
  )
  for name, below_best, unit in checks:
    values = _window(rows, (name,), size=None)[name]
    if len(values) >= MODE_EVALS and all(_fell(values, below_best)[-MODE_EVALS:]):
      return (
        f'{name} down to {values[-1]:.3g} {unit} from its best {max(values):.3g}, '
        f'far below it at the last {MODE_EVALS} evaluations.'
      )
  return None


def _nonfinite_ahead(rows: Sequence[Row], size: int) -> str | None:
  for name in ('d_grad_norm', 'g_grad_norm'):
    window = _window(rows, (name,), size)[name]
    if not window:
      continue
    latest, least = window[-1], min(window)
    if latest > GRAD_HIGH or latest >= GRAD_GROWTH * max(least, GRAD_FLOOR):
      return f'{name} {latest:.3g}, up from {least:.3g} within the last {len(window)} logs.'
  return None


# Each rule, given the rows so far and the window size: the evidence when it holds at the
# latest row, else None.
RULES: dict[str, Callable[[Sequence[Row], int], str | None]] = {
  'd_overpowers_g': _d_overpowers_g,
  'd_collapse': _d_collapse,
  'mode_collapse': _mode_collapse,
  'nonfinite_ahead': _nonfinite_ahead,
}
THRESHOLD_RULES = ('d_overpowers_g', 'd_collapse')  # they read D's loss floor and threshold


class Objective(Protocol):
  """What the rules ask of a run's objective (`objective.Objective` answers)."""

  critic: bool  # D is a Wasserstein critic
  smooths: bool  # a term's real target is loss.hparams.real_target


D_ARGUMENT = '--config.model.d_kwargs.'


def advice(
  objective: Objective | None = None, d_fields: Collection[str] | None = None
) -> dict[str, tuple[str, tuple[str, ...]]]:
  """Each symptom's meaning and the overrides that fit the run: label smoothing only where a term
  reads loss.hparams.real_target, a D argument only where D has it (`d_fields`; None: any)."""

  def fits(flag: str) -> bool:
    if flag == SMOOTHING:
      return objective is None or objective.smooths
    if flag.startswith(D_ARGUMENT) and d_fields is not None:
      return flag[len(D_ARGUMENT) :].split('=')[0] in d_fields
    return True

  return {s: (meaning, tuple(filter(fits, flags))) for s, (meaning, flags) in SYMPTOMS.items()}


class Watcher:
  """Reads metric rows as the run logs them; reports each symptom the first time it holds.
  `objective`: the run's (None: one that BCE-like rules and advice fit); `d_fields`: its D's
  arguments (`models.model_fields`), so that advice names only those it has."""

  def __init__(
    self,
    window: int = WINDOW,
    objective: Objective | None = None,
    d_fields: Collection[str] | None = None,
  ):
    self.window = window
    self.rows: list[Row] = []
    self.found: list[Diagnosis] = []
    critic = objective is not None and objective.critic
    self.rules = {s: r for s, r in RULES.items() if not (critic and s in THRESHOLD_RULES)}
    self.advice = advice(objective, d_fields)

  def update(self, row: Row) -> list[Diagnosis]:
    """The symptoms first recognised at this row."""
    self.rows.append(row)
    seen = {diagnosis.symptom for diagnosis in self.found}
    new = []
    for symptom, rule in self.rules.items():
      evidence = None if symptom in seen else rule(self.rows, self.window)
      if evidence:
        meaning, overrides = self.advice[symptom]
        new.append(Diagnosis(symptom, int(row['step']), f'{evidence} {meaning}', overrides))
    self.found.extend(new)
    return new


def diagnose(
  rows: Sequence[Row],
  window: int = WINDOW,
  objective: Objective | None = None,
  d_fields: Collection[str] | None = None,
) -> list[Diagnosis]:
  """Every symptom in a finished run's rows, each at the first step it held."""
  watcher = Watcher(window, objective, d_fields)
  for row in rows:
    watcher.update(row)
  return watcher.found


def report_section(diagnoses: Sequence[Diagnosis]) -> str:
  """The report's '## Diagnosis' section, in markdown."""
  lines = [f'- {diagnosis}' for diagnosis in diagnoses] or ['No symptom recognised.']
  return '\n'.join(['## Diagnosis', '', *lines, ''])
