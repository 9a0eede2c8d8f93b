"""Tests for gan_jax.diagnosis: recorded metric streams of each symptom, and healthy runs.

The symptomatic streams are synthetic: a healthy DCGAN-like stretch (values around those of
tests/data/healthy_dcgan_metrics.jsonl, a real 300-step DCGAN run logged every 10 steps),
then the symptom, built so that its rule first holds at a known step. Two more real runs of 300
steps logged every 10, recorded for objectives other than BCE: healthy_wgan_gp_metrics.jsonl
(the MLP GAN of configs/gan.py with WGAN-GP: critic_real, critic_fake, gradient_penalty 10,
critic_gen; 5 critic steps, Adam 1e-4, β 0.5/0.9; the critic's estimate of the distance falls
from 42 to 21) and healthy_hinge_metrics.jsonl (configs/dcgan.py:hinge).
"""

import json
import math
import pathlib

from ml_collections import ConfigDict
import numpy as np
import pytest

from gan_jax import diagnosis, fields
from gan_jax.objective import Objective

DATA = pathlib.Path(__file__).parent / 'data'
HEALTHY = DATA / 'healthy_dcgan_metrics.jsonl'
STEPS = range(10, 310, 10)
ONSET = 160  # the symptom's first row in the synthetic streams; its window fills at 200


def healthy_row(step, rng):
  return {
    'step': step,
    'd_loss': rng.uniform(1.0, 1.4),
    'g_loss': rng.uniform(0.6, 1.1),
    'd/bce_real': rng.uniform(0.5, 0.7),
    'd/bce_fake': rng.uniform(0.5, 0.7),
    'd_acc_real': rng.uniform(0.5, 0.95),
    'd_acc_fake': rng.uniform(0.5, 0.95),
    'd_grad_norm': rng.uniform(2.0, 8.0),
    'g_grad_norm': rng.uniform(0.7, 2.0),
    'd_param_norm': 9.3,
    'g_param_norm': 116.9,
  }


def stream(symptom_at, steps=STEPS, seed=0):
  """Healthy rows, with `symptom_at(k)` (k = logs since the onset) merged in from ONSET on."""
  rng = np.random.default_rng(seed)
  rows = []
  for step in steps:
    row = healthy_row(step, rng)
    if step >= ONSET:
      row.update(symptom_at((step - ONSET) // 10))
    rows.append(row)
  return rows


def d_wins(k):
  return {'d_acc_real': 1.0, 'd_acc_fake': 1.0, 'd_loss': 0.5 * 0.3**k, 'g_loss': 2.0 + k}


def d_gives_up(k):
  # D calls everything real: right on every real, wrong on every fake; G's loss sinks to 0,
  # below 10% of its first logged value (>= 0.6) only at k = 4.
  return {'d_acc_real': 1.0, 'd_acc_fake': 0.0, 'g_loss': 0.12 * 0.25 ** max(k - 3, 0)}


def d_gradients_explode(k):
  return {'d_grad_norm': 3.0 * 3.2**k}


def g_gradient_climbs(k):
  # x2.5 a log: x39 over a window, too slow for the growth rule; 2.5^11 > 1e4 at k = 10.
  return {'g_grad_norm': 2.5 ** (k + 1)}


def with_evals(name, values):
  """A healthy stream with an evaluation row every 100 steps (a row of its own, as logged)."""
  out = []
  for row in stream(lambda k: {}, steps=range(10, 100 * len(values) + 10, 10)):
    out.append(row)
    if row['step'] % 100 == 0:
      out.append(
        {'step': row['step'], name: values[row['step'] // 100 - 1], 'eval/fid_classifier': 40.0}
      )
  return out


# A dip of a single evaluation (at 300) is not enough; two in a row (600, 700) are.
COVERAGE = [7, 10, 6, 10, 9, 6, 5]
ENTROPY = [1.9, 2.25, 1.4, 2.2, 2.0, 1.5, 1.2]

CASES = {
  'd_overpowers_g': (stream(d_wins), 200),
  'd_collapse': (stream(d_gives_up), 200),
  'mode_collapse/coverage': (with_evals('eval/class_coverage', COVERAGE), 700),
  'mode_collapse/entropy': (with_evals('eval/class_entropy', ENTROPY), 700),
  'nonfinite_ahead/growth': (stream(d_gradients_explode), 200),  # 3 * 3.2^4 = 315 = 105x
  'nonfinite_ahead/high': (stream(g_gradient_climbs), 260),
}


@pytest.mark.parametrize('case', CASES)
def test_each_symptom_fires_once_at_its_first_step(case):
  rows, step = CASES[case]
  found = diagnosis.diagnose(rows)
  assert [(d.symptom, d.step) for d in found] == [(case.split('/')[0], step)]
  meaning, overrides = diagnosis.SYMPTOMS[found[0].symptom]
  assert found[0].overrides == overrides and meaning in found[0].message


@pytest.mark.parametrize('case', CASES)
def test_watcher_reports_each_symptom_once(case):
  rows, step = CASES[case]
  watcher = diagnosis.Watcher()
  reported = [(row['step'], d.symptom) for row in rows for d in watcher.update(row)]
  assert reported == [(step, case.split('/')[0])]
  assert watcher.found == diagnosis.diagnose(rows)
  # The symptom persists in later rows, but is not reported again.
  assert not any(watcher.update(dict(row, step=row['step'] + 1000)) for row in rows[-6:])


def test_a_shorter_window_fires_sooner():
  rows, _ = CASES['d_overpowers_g']
  assert [(d.symptom, d.step) for d in diagnosis.diagnose(rows, window=3)] == [
    ('d_overpowers_g', 180)
  ]


def test_seed_004_runaway_discriminator():
  """Seed 004's complaint, two seeds: D's loss 1e-4 by step 400, G's past 10, D 100% right."""
  rows = []
  for step in range(50, 1050, 50):
    late = step >= 150
    d_loss = 1.3 * math.exp(-step / 45) if late else 1.2
    seeds = {'d_loss/seed_0': 0.8 * d_loss, 'd_loss/seed_1': 1.2 * d_loss}
    rows.append(
      {
        'step': step,
        'd_loss': d_loss,
        'g_loss': 0.8 + (step / 40 if late else 0),
        'd_acc_real': 1.0 if late else 0.8,
        'd_acc_fake': 1.0 if late else 0.7,
        'd_grad_norm': 2.0,
        'g_grad_norm': 1.5,
        **seeds,
      }
    )
  assert rows[7]['d_loss'] < 1e-3 and rows[7]['g_loss'] > 10  # step 400
  found = diagnosis.diagnose(rows)
  assert [(d.symptom, d.step) for d in found] == [('d_overpowers_g', 350)]
  assert '--config.loss.hparams.real_target=0.9' in found[0].overrides


def test_the_real_healthy_run_triggers_nothing():
  rows = [json.loads(line) for line in HEALTHY.read_text().splitlines()]
  assert len(rows) >= 25 and all(math.isfinite(row['d_loss']) for row in rows)
  assert diagnosis.diagnose(rows) == []


def recorded(name):
  return [json.loads(line) for line in (DATA / f'healthy_{name}_metrics.jsonl').open()]


def objective(d_terms, g_terms):
  hparams = fields.default_config().loss.hparams
  return Objective(ConfigDict({'d_terms': d_terms, 'g_terms': g_terms, 'hparams': hparams}))


WGAN_GP = objective(
  {'critic_real': 1.0, 'critic_fake': 1.0, 'gradient_penalty': 10.0}, {'critic_gen': 1.0}
)
HINGE = objective({'hinge_real': 1.0, 'hinge_fake': 1.0}, {'critic_gen': 1.0})
BCE = objective({'bce_real': 1.0, 'bce_fake': 1.0}, {'bce_gen': 1.0})


def test_a_healthy_wasserstein_critic_is_no_symptom():
  """The recorded WGAN-GP run: its critic calls fakes real from step 50 on (its output has no
  offset to read), which the BCE rules take for d_collapse. The same run with the critic 16
  lower, a constant the Wasserstein loss does not see (G's loss 16 higher, D's unchanged and
  negative, D right on every image), is d_overpowers_g to them. Neither is, for a critic."""
  rows = recorded('wgan_gp')
  lower = [dict(r, g_loss=r['g_loss'] + 16, d_acc_real=1.0, d_acc_fake=1.0) for r in rows]
  assert [d.symptom for d in diagnosis.diagnose(rows)] == ['d_collapse']
  assert [d.symptom for d in diagnosis.diagnose(lower)] == ['d_overpowers_g']
  assert diagnosis.diagnose(rows, objective=WGAN_GP) == []
  assert diagnosis.diagnose(lower, objective=WGAN_GP) == []
  # The rules that read no threshold still hold for a critic.
  exploding = [dict(r, d_grad_norm=3.0 * 3.2 ** max(i - 20, 0)) for i, r in enumerate(rows)]
  found = diagnosis.diagnose(exploding, objective=WGAN_GP)
  assert [d.symptom for d in found] == ['nonfinite_ahead']


def test_a_healthy_hinge_run_is_no_symptom_and_its_advice_fits():
  """The recorded hinge run triggers nothing. When D wins under the hinge loss, the advice leaves
  out the smoothing of a BCE real target, which no hinge term reads."""
  assert diagnosis.diagnose(recorded('hinge'), objective=HINGE) == []
  rows, _ = CASES['d_overpowers_g']
  (hinge,), (bce,) = (diagnosis.diagnose(rows, objective=o) for o in (HINGE, BCE))
  assert bce.overrides == diagnosis.SYMPTOMS['d_overpowers_g'][1]
  assert diagnosis.SMOOTHING in bce.overrides
  assert hinge.overrides == tuple(f for f in bce.overrides if f != diagnosis.SMOOTHING)


def test_missing_metrics_leave_their_rules_unchecked():
  # A classifier baseline: no G at all. D at 100% with loss near 0 is then no symptom.
  baseline = [
    {
      'step': s,
      'd_loss': 1e-4,
      'd_acc_labeled': 1.0,
      'd_acc_real': 1.0,
      'd_acc_fake': 1.0,
      'd_grad_norm': 1.0,
    }
    for s in STEPS
  ]
  assert diagnosis.diagnose(baseline) == []
  # Fitted to its labels, its norms sit near 1e-4; a hard batch (0.72, as the Improved GAN's
  # labels-only baseline logged at step 1200) is no explosion. One at 1.5 from there is.
  norms = [0.002, 0.72, 2e-4, 1e-4, 5e-4, 0.39, 1e-4]
  fitted = [dict(baseline[0], step=10 * (i + 1), d_grad_norm=n) for i, n in enumerate(norms)]
  assert diagnosis.diagnose(fitted) == []
  spiked = fitted + [dict(fitted[-1], step=80, d_grad_norm=1.5)]
  assert [(d.symptom, d.step) for d in diagnosis.diagnose(spiked)] == [('nonfinite_ahead', 80)]
  odd = [
    {'step': 10},
    {'step': 20, 'eval/fid_classifier': 30.0},
    {'step': 30, 'd_loss': float('nan'), 'g_loss': 'n/a', 'd_grad_norm': None},
    {'step': 40, 'eval/class_coverage': 10},
  ]
  assert diagnosis.diagnose(odd) == []
  assert diagnosis.diagnose([]) == []
  # The rules that can be checked still are: the gradient norms are all this stream has.
  grads_only = [{'step': s, 'd_grad_norm': 2.0 * 10 ** (s // 30)} for s in STEPS]
  assert [(d.symptom, d.step) for d in diagnosis.diagnose(grads_only)] == [('nonfinite_ahead', 60)]


def test_report_section():
  assert diagnosis.report_section([]) == '## Diagnosis\n\nNo symptom recognised.\n'
  found = [
    d
    for case in ('d_overpowers_g', 'nonfinite_ahead/high')
    for d in diagnosis.diagnose(CASES[case][0])
  ]
  section = diagnosis.report_section(found)
  lines = section.splitlines()
  assert lines[:2] == ['## Diagnosis', ''] and len(lines) == 2 + len(found)
  for line, d in zip(lines[2:], found):
    assert line.startswith(f'- step {d.step}: {d.symptom}: ')
    assert all(f'`{flag}`' in line for flag in d.overrides)


def test_overrides_are_command_line_flags():
  for meaning, overrides in diagnosis.SYMPTOMS.values():
    assert meaning and overrides
    assert all(flag.startswith('--config.') and '=' in flag for flag in overrides)


def test_advice_names_only_the_arguments_the_d_has():
  """A weight-normalised D (improved_gan) has no spectral_norm field: no advice sets it."""
  flags = lambda advice: {f for _, overrides in advice.values() for f in overrides}
  assert diagnosis.SPECTRAL_NORM in flags(diagnosis.advice(d_fields=['dropout', 'spectral_norm']))
  assert diagnosis.SPECTRAL_NORM not in flags(diagnosis.advice(d_fields=['widths', 'input_noise']))
  assert flags(diagnosis.advice()) == {f for _, fs in diagnosis.SYMPTOMS.values() for f in fs}
