"""The training loop around the compiled step, and the `--mode=eval` and `--mode=sample` entries."""

import contextlib
import os
import signal
import threading

import jax
from ml_collections import ConfigDict
import numpy as np
import tqdm

from gan_jax import checks, diagnosis, evaluation, parallel
from gan_jax.run import Run, latest_run
from gan_jax.step import build_step
from gan_jax.writers import MetricWriter, NullWriter, atomic_write_bytes


class NonFiniteError(FloatingPointError):
  """A loss or gradient norm became NaN or Inf."""


class Interrupted(Exception):
  """SIGTERM or SIGINT stopped training after a checkpoint of the current step was saved."""

  def __init__(self, signal_name: str, step: int):
    super().__init__(f'{signal_name} at step {step}: checkpoint saved, run again to resume')
    self.signal_name = signal_name


@contextlib.contextmanager
def stop_requests():
  """SIGTERM (preemption) and SIGINT (Ctrl-C) only ask the loop to stop after the current step."""
  requests: list[str] = []
  if threading.current_thread() is not threading.main_thread():
    yield requests  # signal handlers can only be installed from the main thread
    return
  handler = lambda signum, frame: requests.append(signal.Signals(signum).name)
  previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield requests
  finally:
    for s, h in previous.items():
      signal.signal(s, h)


def rollback_step(run: Run, watch: dict) -> int | None:
  """Where to go back to if a step since the watch was fresh was not finite, else None.

  Raises NonFiniteError, naming each non-finite value (by seed in a K-seed run), unless
  `train.on_nonfinite='rollback'` has rollbacks left; then the bad step joins the run's skipped
  steps and the step of the last good checkpoint (0: none) is returned.
  """
  bad_step = int(watch['step'])
  if bad_step < 0:
    return None
  tc = run.setup.config.train
  values = {k: np.atleast_1d(v) for k, v in jax.device_get(watch['metrics']).items()}
  terms = ', '.join(
    f'{run.setup.seeds.name(k, i)}={float(v[i])}'
    for k, v in values.items()
    for i in np.flatnonzero(~np.isfinite(v))
  )
  good = run.checkpointer.latest_step() or 0
  rollbacks = len(run.skipped_steps)  # over the whole run: the checkpoint keeps the list
  if tc.on_nonfinite != 'rollback' or rollbacks >= tc.max_rollbacks:
    raise NonFiniteError(
      f'non-finite {terms} at step {bad_step}; training stopped, the last good '
      f'checkpoint is step {good or None}'
    )
  run.skipped_steps.append(bad_step)
  tqdm.tqdm.write(
    f'non-finite {terms} at step {bad_step}: back to step {good}, skipping it '
    f'(rollback {rollbacks + 1} of {tc.max_rollbacks})'
  )
  return good


def call_size(step: int, per_call: int, num_steps: int, skipped: list[int]) -> int:
  """Steps in the next call: whole calls on the grid of steps_per_call; single steps where a call
  would pass the end, start off the grid (resumed with another steps_per_call) or hold a skipped
  step."""
  whole = (
    step % per_call == 0
    and step + per_call <= num_steps
    and not any(step < s <= step + per_call for s in skipped)
  )
  return per_call if whole else 1


def train_and_evaluate(config: ConfigDict, workdir: str) -> dict[str, float]:
  """Trains from scratch, or resumes from the latest checkpoint in `workdir`; returns the last metrics."""
  run = Run(config, workdir)
  setup, tc = run.setup, config.train
  step_fn = build_step(config, setup.generator, setup.discriminator, setup.mesh, setup.seeds)
  new_watch = lambda: step_fn.new_watch(run.state, run.batches.abstract(1))
  state, step, watch, last = run.state, run.start_step, new_watch(), {}
  try:  # the last check of the input, before anything is written: does the step fit?
    checks.check_memory(
      config,
      step_fn.memory_bytes(state, run.batches.abstract(tc.steps_per_call), watch),
      parallel.device_memory_bytes(),
    )
  except BaseException:
    run.close()
    raise
  os.makedirs(run.checkpointer.directory, exist_ok=True)
  run.checkpointer.remove_unfinished()
  # Every process computes every value; process 0 alone writes them (the workdir may be shared).
  primary = parallel.is_primary()
  if primary:
    atomic_write_bytes(
      os.path.join(workdir, 'config.json'), config.to_json_best_effort(indent=2).encode()
    )
  writer = MetricWriter(workdir, resume_step=run.start_step) if primary else NullWriter()
  evaluator = setup.evaluator() if config.eval.every and step < tc.num_steps else None
  progress = tqdm.tqdm(
    total=tc.num_steps,
    initial=step,
    desc='train',
    unit='step',
    dynamic_ncols=True,
    disable=not primary,
  )
  # What goes wrong, said once per symptom, through the progress bar; it never stops the run.
  watcher = diagnosis.Watcher(objective=setup.objective, d_fields=setup.d_fields)
  report = lambda found: [tqdm.tqdm.write(f'diagnosis: {d}') for d in found if primary]
  try:
    with stop_requests() as stop:
      while step < tc.num_steps:
        size = call_size(step, tc.steps_per_call, tc.num_steps, run.skipped_steps)
        step += size
        if step in run.skipped_steps:
          state = step_fn.skip(
            state
          )  # the step of a rolled-back non-finite update: its batch is skipped
        else:
          batches = run.batches.take(step - size, size)
          state, metrics, watch = step_fn.calls[size](state, batches, watch)
        progress.update(size)
        final, stopping = step == tc.num_steps, bool(stop)  # a signal may arrive at any moment
        log = (step % tc.log_every == 0 or final) and step not in run.skipped_steps
        save = step % tc.checkpoint_every == 0 or final or stopping
        score = evaluator and (step % config.eval.every == 0 or final)
        # Metrics stay on the device between logs: reading them (or the watch) forces a host sync.
        # Only finite states are logged, saved or scored.
        good = rollback_step(run, watch) if log or save or score else None
        if good is not None:
          state, step, watch = run.states.at(good), good, new_watch()
          writer.drop_after(step)
          progress.reset(total=tc.num_steps)
          progress.update(step)
          continue
        if log:
          last = setup.seeds.scalars(metrics)
          writer.write(step, last)
          report(watcher.update({'step': step, **last}))
          progress.set_postfix({k: f'{last[k]:.3f}' for k in ('d_loss', 'g_loss') if k in last})
        if step % tc.sample_every == 0 or final:
          writer.write_images(
            step, run.grids.save(state, os.path.join(workdir, 'samples', f'step_{step:06d}.png'))
          )
        if save:
          run.checkpointer.save(state, run.meta)
        if score:
          scores = setup.score(evaluator, state)
          writer.write(step, {f'eval/{k}': v for k, v in scores.items()})
          report(watcher.update({'step': step, **{f'eval/{k}': v for k, v in scores.items()}}))
          if primary:
            evaluation.save_eval(
              workdir,
              step,
              scores,
              not evaluator.classifier.trained,
              setup.objective,
              setup.d_fields,
            )
        if stopping:
          raise Interrupted(stop[0], step)
  finally:
    progress.close()
    run.close()
    writer.close()
  return last


def sample(config: ConfigDict, workdir: str) -> str:
  """Writes a grid per seed from the latest checkpoint in `workdir` (fresh noise); returns its
  path (a `seed_*` pattern for a K-seed run)."""
  run = latest_run(config, workdir, 'sample from')
  path = os.path.join(workdir, 'samples', f'sample_step_{run.start_step:06d}.png')
  run.grids.save(run.state, path, fresh=True)
  return run.setup.seeds.path(path, '*')


def evaluate(config: ConfigDict, workdir: str) -> str:
  """--mode=eval: scores the latest checkpoint of `workdir` (eval.json, report.md); returns its path."""
  run = latest_run(config, workdir, 'evaluate')
  evaluator = run.setup.evaluator()
  scores = run.setup.score(evaluator, run.state)
  if parallel.is_primary():  # every process scores (one program over all devices), one writes
    evaluation.save_eval(
      workdir,
      run.start_step,
      scores,
      not evaluator.classifier.trained,
      run.setup.objective,
      run.setup.d_fields,
    )
  return os.path.join(workdir, 'eval.json')
