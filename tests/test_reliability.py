"""Reliability: exact resume, crash safety, preemption, the non-finite guard, bad input.

Most tests drive `launch.py` in subprocesses, as a user or a cluster scheduler would:
killing, signalling and restarting a process is the point. Every subprocess runs with
JAX_DISABLE_MOST_OPTIMIZATIONS=true (read by jax 0.10.2 when it starts), as tests/conftest.py
sets `jax_disable_most_optimizations` in this process: fast compiles, and runs that are
compared bitwise are all compiled the same way. The subprocesses of this module share a
persistent compilation cache, so a restarted run loads the step its predecessor compiled
(a cached executable is the compiled one, byte for byte). Final states are read back in
this process with `train.Run(config, workdir).state`.
"""

import concurrent.futures
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from unittest import mock

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train import load_config

from gan_jax import data, train
from gan_jax.errors import BadInput
from gan_jax.step import CompiledStep

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
LAUNCH = os.path.join(REPO, 'launch.py')
TIMEOUT = 300  # seconds for any one training subprocess; bad input takes a few
QUIET = ['--config.train.sample_every=1000000']  # no sample grids: they only cost time here
_compile_cache: list[str] = []  # the module's persistent compilation cache (see compile_cache)


# --- helpers --------------------------------------------------------------------------------


def launch_env(**extra: str) -> dict:
  env = dict(os.environ)  # carries TFDS_DATA_DIR, set by conftest's data_dir fixture
  # A forced host device count from the caller would change what the runs compare.
  env['XLA_FLAGS'] = ' '.join(
    f
    for f in env.get('XLA_FLAGS', '').split()
    if not f.startswith('--xla_force_host_platform_device_count')
  )
  env['JAX_DISABLE_MOST_OPTIMIZATIONS'] = 'true'
  if _compile_cache:
    env.update(
      JAX_COMPILATION_CACHE_DIR=_compile_cache[0],
      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
      JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='-1',
    )
  env.update(extra)
  return env


def launch(
  *argv: str, env: dict | None = None, timeout: float = TIMEOUT
) -> subprocess.CompletedProcess:
  """Runs `python launch.py ARGV` to its end; stdout and stderr come back as text."""
  return subprocess.run(
    [sys.executable, LAUNCH, *argv],
    cwd=REPO,
    env=env or launch_env(),
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def start(*argv: str, log: str) -> subprocess.Popen:
  """Starts `python launch.py ARGV`; stdout and stderr go to LOG.out and LOG.err (tqdm
  writes a lot to stderr: a pipe that nobody reads would block the run)."""
  with open(f'{log}.out', 'w') as out, open(f'{log}.err', 'w') as err:
    return subprocess.Popen(
      [sys.executable, LAUNCH, *argv], cwd=REPO, env=launch_env(), stdout=out, stderr=err
    )


def wait_for(
  condition,
  proc: subprocess.Popen | None = None,
  timeout: float = TIMEOUT,
  interval: float = 0.05,
  what: str = 'condition',
):
  """Polls `condition()` until it is truthy; fails if `proc` ends first or time runs out."""
  deadline = time.monotonic() + timeout
  while True:
    value = condition()
    if value:
      return value
    if proc is not None and proc.poll() is not None:
      pytest.fail(f'the process ended (status {proc.returncode}) before: {what}')
    if time.monotonic() > deadline:
      pytest.fail(f'timed out after {timeout}s waiting for: {what}')
    time.sleep(interval)


def finish(proc: subprocess.Popen, timeout: float = 60) -> int:
  try:
    return proc.wait(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    proc.wait()
    pytest.fail(f'the process did not end within {timeout}s')


def stderr_lines(text: str) -> list[str]:
  """Non-blank lines; tqdm separates its updates with carriage returns."""
  return [line.strip() for line in re.split(r'[\r\n]+', text) if line.strip()]


def checkpoint_steps(workdir) -> list[int]:
  """Steps of the complete checkpoints (orbax renames a step's directory when it is done)."""
  directory = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(directory):
    return []
  return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


def partial_checkpoints(workdir) -> list[str]:
  """Directories of checkpoints being written (or left half written by a killed process)."""
  directory = os.path.join(workdir, 'checkpoints')
  try:
    return [name for name in os.listdir(directory) if '.orbax-checkpoint-tmp' in name]
  except FileNotFoundError:
    return []


def metric_rows(workdir, complete_only: bool = False) -> list[dict]:
  """metrics.jsonl, parsed line by line (every line must parse, unless `complete_only`,
  which skips a last line still being written)."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    text = f.read()
  lines = text.split('\n')
  if complete_only:
    lines = lines[:-1]  # after the last '\n': '' or a row not yet complete
  else:
    assert text.endswith('\n') or not text, 'metrics.jsonl ends in half a row'
  return [json.loads(line) for line in lines if line]


def restored(workdir, config):
  """(Run, {key path: leaf}) of the latest checkpoint in `workdir`: the whole state."""
  run = train.Run(config, str(workdir))
  run.checkpointer.close()
  state = jax.device_get(run.state)
  return run, {
    jax.tree_util.keystr(path): np.asarray(leaf)
    for path, leaf in jax.tree_util.tree_leaves_with_path(state)
  }


def all_finite(leaves: dict) -> bool:
  return all(np.all(np.isfinite(v)) for v in leaves.values() if np.issubdtype(v.dtype, np.inexact))


def snapshot(path) -> dict | None:
  """Relative path -> (size, mtime) of everything under `path` (directories too); None if absent."""
  path = str(path)
  if not os.path.lexists(path):
    return None
  if not os.path.isdir(path):
    st = os.stat(path)
    return {'.': (st.st_size, st.st_mtime_ns)}
  result = {}
  for root, dirs, files in os.walk(path):
    for name in ['', *dirs, *files]:
      full = os.path.join(root, name)
      st = os.lstat(full)
      result[os.path.relpath(full, path)] = (st.st_size if name in files else None, st.st_mtime_ns)
  # Except the workdir's own mtime: checks.check_workdir proves it writable by creating and
  # removing an empty directory in it (os.access says yes to root), which leaves nothing
  # but a new mtime.
  result['.'] = None
  return result


@pytest.fixture(scope='module', autouse=True)
def compile_cache(tmp_path_factory):
  """One persistent compilation cache for this module's subprocesses (about halves the time
  of a run that another one compiled before)."""
  _compile_cache.append(str(tmp_path_factory.mktemp('jax_cache')))
  yield _compile_cache[0]
  _compile_cache.clear()


@pytest.fixture(scope='module')
def prepared_data(data_dir):
  """mnist5k prepared in the session's data dir before any subprocess runs, so that
  processes started side by side do not both build it there."""
  data.load_split('mnist5k', 'train', data_dir)
  return data_dir


@pytest.fixture(scope='module')
def gan_workdir(prepared_data, tmp_path_factory):
  """A finished `configs/gan.py:smoke` run (checkpoints 2 and 4). Copy it before changing it."""
  workdir = tmp_path_factory.mktemp('gan_smoke') / 'run'
  result = launch('--config=configs/gan.py:smoke', f'--workdir={workdir}')
  assert result.returncode == 0, result.stderr[-3000:]
  assert checkpoint_steps(workdir) == [2, 4]
  return workdir


def copy_of(workdir, tmp_path):
  target = tmp_path / 'run'
  shutil.copytree(workdir, target)
  return target


# --- 1. exact resume across processes ---------------------------------------------------------

RESUMED_SYSTEMS = ('sgan', 'gan_cls')


@pytest.fixture(scope='module')
def resume_runs(prepared_data, tmp_path_factory):
  """For each system: a straight 4-step run, and a 2-step run continued to 4 by a new process.

  In three stages, both systems side by side in each: the straight runs (which compile the
  steps), the first parts, the continuations (which load the steps from the cache).
  Returns {system: (straight workdir, resumed workdir, checkpoints after the first part)}.
  """
  root = tmp_path_factory.mktemp('resume')
  first_part = {}
  for stage, directory, num_steps in (
    ('straight', 'straight', 4),
    ('first', 'resumed', 2),
    ('continued', 'resumed', 4),
  ):
    procs = {
      name: start(
        f'--config=configs/{name}.py:smoke',
        f'--workdir={root / name / directory}',
        f'--config.train.num_steps={num_steps}',
        *QUIET,
        log=root / f'{name}_{stage}',
      )
      for name in RESUMED_SYSTEMS
    }
    for name, proc in procs.items():
      assert finish(proc, TIMEOUT) == 0, (root / f'{name}_{stage}.err').read_text()[-3000:]
      if stage == 'first':
        first_part[name] = checkpoint_steps(root / name / 'resumed')
  return {
    name: (root / name / 'straight', root / name / 'resumed', first_part[name])
    for name in RESUMED_SYSTEMS
  }


@pytest.mark.parametrize('name', RESUMED_SYSTEMS)
def test_resume_in_a_new_process_is_bitwise_exact(name, resume_runs):
  straight, resumed, first_part = resume_runs[name]
  assert first_part == [2]  # the first process stopped at step 2

  config = load_config(name)
  _, a = restored(straight, config)
  run, b = restored(resumed, config)
  assert int(run.state.step) == 4
  # Everything: G and D params, BatchNorm statistics, optimizer states, step, rng.
  assert any('opt_state' in k for k in a) and any('batch_stats' in k for k in a)
  assert sorted(a) == sorted(b)
  chex.assert_trees_all_equal(a, b)
  # The logged metrics agree too (and step 4 was written once).
  assert [r['step'] for r in metric_rows(resumed)] == [2, 4]
  assert metric_rows(resumed) == metric_rows(straight)


# --- 2. SIGKILL at any moment ----------------------------------------------------------------


def test_sigkill_at_random_moments_then_resume(tmp_path, prepared_data):
  workdir = tmp_path / 'run'
  num_steps = 40
  argv = [
    '--config=configs/gan.py:smoke',
    f'--workdir={workdir}',
    f'--config.train.num_steps={num_steps}',
    '--config.train.checkpoint_every=1',
    '--config.train.log_every=1',
    *QUIET,
  ]
  rng = random.Random(20240607)
  kills_mid_save = 0
  for attempt in range(3):
    before = (checkpoint_steps(workdir) or [0])[-1]
    log = tmp_path / f'attempt_{attempt}'
    proc = start(*argv, log=log)
    try:
      # A few steps of progress (in steps, not seconds: however fast the machine, the kills
      # leave work for the final run), then the kill ...
      target = before + rng.randint(1, 4)
      wait_for(
        lambda: (checkpoint_steps(workdir) or [0])[-1] >= target,
        proc,
        what=f'the checkpoint of step {target}',
      )
      if attempt == 1:  # ... the moment a checkpoint is being written,
        wait_for(
          lambda: partial_checkpoints(workdir),
          proc,
          timeout=60,
          interval=0.001,
          what='a checkpoint being written',
        )
      else:  # ... or somewhere in a step, a save or a metrics write.
        time.sleep(rng.uniform(0.0, 0.1))
      assert proc.poll() is None, (
        f'the run ended before the kill: make num_steps larger than {num_steps}'
      )
      proc.send_signal(signal.SIGKILL)
    finally:
      proc.kill()
      proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    kills_mid_save += bool(partial_checkpoints(workdir))
    # The restarted process went on from the latest checkpoint it found (tqdm's first line).
    progress = re.search(rf'(\d+)/{num_steps}\b', log.with_suffix('.err').read_text())
    assert progress and int(progress.group(1)) == before, log.with_suffix('.err').read_text()[
      -2000:
    ]
    assert (checkpoint_steps(workdir) or [0])[-1] >= target
    print(
      f'kill {attempt}: resumed from step {before}, killed after the checkpoint of step '
      f'{checkpoint_steps(workdir)[-1]}, partial checkpoints left: {partial_checkpoints(workdir)}'
    )
  assert kills_mid_save >= 1, 'no kill landed while a checkpoint was being written'

  result = launch(*argv)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = metric_rows(workdir)  # every line parses
  assert [r['step'] for r in rows] == list(range(1, num_steps + 1))  # each step once, in order
  assert all(np.isfinite(v) for r in rows for v in r.values())
  # The last max_checkpoints (3) complete checkpoints and no half-written one.
  assert sorted(os.listdir(workdir / 'checkpoints')) == [
    str(s) for s in range(num_steps - 2, num_steps + 1)
  ]
  run, leaves = restored(workdir, load_config('gan'))
  assert int(run.state.step) == num_steps and all_finite(leaves)


# --- 3. SIGTERM (preemption) and SIGINT (Ctrl-C) ----------------------------------------------


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT], ids=['SIGTERM', 'SIGINT'])
def test_signal_saves_a_checkpoint_of_the_current_step(signum, tmp_path, prepared_data):
  workdir = tmp_path / 'run'
  proc = start(
    '--config=configs/gan.py:smoke',
    f'--workdir={workdir}',
    '--config.train.num_steps=1000000',
    '--config.train.checkpoint_every=1000000',
    '--config.train.log_every=1',
    *QUIET,
    log=tmp_path / 'log',
  )
  try:
    wait_for(
      lambda: len(metric_rows(workdir, complete_only=True)) >= 3, proc, what='3 logged steps'
    )
    assert checkpoint_steps(workdir) == []
    proc.send_signal(signum)
    status = finish(proc, timeout=120)
  finally:
    proc.kill()
    proc.wait()
  stderr = (tmp_path / 'log.err').read_text()
  assert status == 128 + signum, stderr[-3000:]
  stopped = [line for line in stderr_lines(stderr) if 'stopped:' in line]
  assert len(stopped) == 1, stderr[-3000:]
  match = re.search(
    rf'stopped: {signum.name} at step (\d+): checkpoint saved, run again to resume$', stopped[0]
  )
  assert match, stopped
  step = int(match.group(1))
  assert checkpoint_steps(workdir) == [step] and partial_checkpoints(workdir) == []
  rows = metric_rows(workdir)
  assert rows[-1]['step'] == step  # the step in progress was finished, logged and saved
  run, leaves = restored(workdir, load_config('gan'))
  assert int(run.state.step) == step and all_finite(leaves)


# --- 4. the non-finite guard -------------------------------------------------------------------


def diverging_config():
  """gan smoke with SGD at lr 1e4: G's parameters overflow at step 2 (measured); a checkpoint
  every step, so step 1's is the last good one."""
  config = load_config('gan')
  for net in ('g', 'd'):
    config.optimizer[net].name = 'sgd'
    config.optimizer[net].learning_rate = 1e4
  config.train.num_steps = 20
  config.train.checkpoint_every = 1
  config.train.log_every = 1
  config.train.sample_every = 1000
  return config


NONFINITE = re.compile(
  r'non-finite ((?:[\w/]+=(?:nan|inf|-inf)(?:, )?)+) at step (\d+); training '
  r'stopped, the last good checkpoint is step (\d+)'
)


def test_divergence_stops_with_the_term_and_step_and_keeps_the_last_good_checkpoint(tmp_path):
  config = diverging_config()
  with pytest.raises(train.NonFiniteError) as error:
    train.train_and_evaluate(config, str(tmp_path))
  message = str(error.value)
  match = NONFINITE.fullmatch(message)
  assert match, message
  assert re.search(r'\b[dg]_(loss|grad_norm|param_norm)=', match.group(1)), message
  bad_step, good_step = int(match.group(2)), int(match.group(3))
  assert 0 < good_step < bad_step <= config.train.num_steps
  assert checkpoint_steps(tmp_path)[-1] == good_step and partial_checkpoints(tmp_path) == []
  run, leaves = restored(tmp_path, config)
  assert int(run.state.step) == good_step and all_finite(leaves)
  # No row of a non-finite step was logged.
  rows = metric_rows(tmp_path)
  assert rows and rows[-1]['step'] < bad_step
  assert all(np.isfinite(v) for r in rows for v in r.values())


def test_divergence_through_launch_exits_1_with_one_line(tmp_path, prepared_data):
  workdir = tmp_path / 'run'
  result = launch(
    '--config=configs/gan.py:smoke',
    f'--workdir={workdir}',
    '--config.optimizer.g.name=sgd',
    '--config.optimizer.d.name=sgd',
    '--config.optimizer.g.learning_rate=1e4',
    '--config.optimizer.d.learning_rate=1e4',
    '--config.train.num_steps=20',
    '--config.train.checkpoint_every=1',
    '--config.train.log_every=1',
    *QUIET,
  )
  assert result.returncode == 1, result.stderr[-3000:]
  errors = [line for line in stderr_lines(result.stderr) if 'error:' in line]
  assert len(errors) == 1 and errors[0].startswith('error: non-finite '), result.stderr[-3000:]
  match = NONFINITE.search(errors[0])
  assert match, errors
  assert checkpoint_steps(workdir)[-1] == int(match.group(3)) < int(match.group(2))


POISONED_STEP = 3  # 1-based: the update made from state.step == 2


def poisoning(build_step):
  """Wraps `train.build_step`: the step made from state.step == POISONED_STEP - 1 returns a NaN
  loss and NaN parameters, as a bad batch would."""

  def build(*args, **kwargs):
    compiled = build_step(*args, **kwargs)
    train_step = compiled.train_step

    def poisoned(state, batches):
      new_state, metrics = train_step(state, batches)
      nan = jnp.where(state.step == POISONED_STEP - 1, jnp.nan, 0.0)
      poison = lambda tree: jax.tree.map(lambda x: x + nan.astype(x.dtype), tree)
      new_state = new_state.replace(
        g=new_state.g.replace(params=poison(new_state.g.params)),
        d=new_state.d.replace(params=poison(new_state.d.params)),
      )
      return new_state, {**metrics, 'd_loss': metrics['d_loss'] + nan}

    return CompiledStep(poisoned, compiled.steps_per_call, compiled.sharding)

  return build


def rollback_config(max_rollbacks: int):
  config = load_config('gan')
  config.train.on_nonfinite = 'rollback'
  config.train.max_rollbacks = max_rollbacks
  config.train.num_steps = 4
  config.train.log_every = 1
  config.train.checkpoint_every = 2
  config.train.sample_every = 1000
  return config


def test_rollback_skips_the_bad_batch_and_continues(tmp_path):
  config = rollback_config(max_rollbacks=1)
  with mock.patch.object(train, 'build_step', poisoning(train.build_step)):
    last = train.train_and_evaluate(config, str(tmp_path))
  assert last and all(np.isfinite(v) for v in last.values())
  # Steps 1 and 2 logged, 3 rolled back to checkpoint 2 and skipped, 4 trained.
  assert [r['step'] for r in metric_rows(tmp_path)] == [1, 2, 4]
  assert all(np.isfinite(v) for r in metric_rows(tmp_path) for v in r.values())
  assert checkpoint_steps(tmp_path) == [2, 4]
  run, leaves = restored(tmp_path, config)
  assert run.skipped_steps == [POISONED_STEP]
  assert int(run.state.step) == 4 and all_finite(leaves)


def test_rollback_inside_a_call_of_several_steps(tmp_path):
  """With 2 steps per call the NaN of step 3 is seen after step 4: back to checkpoint 2, then
  steps 3 (skipped) and 4 one at a time, and on in whole calls."""
  config = rollback_config(max_rollbacks=1)
  config.train.steps_per_call = config.train.log_every = 2
  config.train.num_steps = 6
  with mock.patch.object(train, 'build_step', poisoning(train.build_step)):
    train.train_and_evaluate(config, str(tmp_path))
  assert [r['step'] for r in metric_rows(tmp_path)] == [2, 4, 6]
  assert all(np.isfinite(v) for r in metric_rows(tmp_path) for v in r.values())
  run, leaves = restored(tmp_path, config)
  assert run.skipped_steps == [POISONED_STEP]
  assert int(run.state.step) == 6 and all_finite(leaves)


def test_rollback_beyond_max_rollbacks_stops(tmp_path):
  config = rollback_config(max_rollbacks=0)
  with (
    mock.patch.object(train, 'build_step', poisoning(train.build_step)),
    pytest.raises(
      train.NonFiniteError, match=rf'^non-finite .*d_loss=nan.* at step {POISONED_STEP}; .* step 2$'
    ),
  ):
    train.train_and_evaluate(config, str(tmp_path))
  assert checkpoint_steps(tmp_path) == [2]
  run, leaves = restored(tmp_path, config)
  assert int(run.state.step) == 2 and all_finite(leaves) and run.skipped_steps == []


# --- 5. bad input: exit status 2, one line, nothing written -----------------------------------


def _truncate_latest_state(workdir):
  """Halves every data file of the latest checkpoint's state, as a torn write would."""
  latest = os.path.join(workdir, 'checkpoints', str(checkpoint_steps(workdir)[-1]), 'state')
  files = [os.path.join(root, f) for root, _, fs in os.walk(latest) for f in fs]
  assert files
  for path in files:
    os.truncate(path, os.path.getsize(path) // 2)


def _write(path, text):
  path.write_text(text)
  return path


# id -> (setup(tmp_path, gan_workdir) -> (argv, workdir, extra env), substrings of the line)
BAD_INPUT = {
  'unknown_model': (
    lambda tmp, gan: (
      ['--config=configs/gan.py:smoke', '--config.model.generator=resnet'],
      tmp / 'run',
      {},
    ),
    ["model.generator='resnet'", 'valid choices', 'mlp'],
  ),
  'unknown_loss': (
    lambda tmp, gan: (
      [f'--config={_write(tmp / "unknown_loss.py", UNKNOWN_LOSS_CONFIG)}'],
      tmp / 'run',
      {},
    ),
    ['loss.d_terms.nosuch_real', 'valid choices', 'bce_real'],
  ),
  'unknown_optimizer': (
    lambda tmp, gan: (
      ['--config=configs/gan.py:smoke', '--config.optimizer.d.name=lamb'],
      tmp / 'run',
      {},
    ),
    ["optimizer.d.name='lamb'", 'valid choices', 'adam'],
  ),
  'unknown_dataset': (
    lambda tmp, gan: (
      ['--config=configs/gan.py:smoke', '--config.data.name=imagenet'],
      tmp / 'run',
      {},
    ),
    ["data.name='imagenet'", 'valid choices', 'mnist5k'],
  ),
  'num_labeled_above_train_split': (
    lambda tmp, gan: (
      ['--config=configs/sgan.py:smoke', '--config.data.num_labeled=5000'],
      tmp / 'run',
      {},
    ),
    ['data.num_labeled=5000', 'limit'],
  ),
  'num_labeled_not_divisible_by_classes': (
    lambda tmp, gan: (
      ['--config=configs/sgan.py:smoke', '--config.data.num_labeled=25'],
      tmp / 'run',
      {},
    ),
    ['data.num_labeled', '25', 'multiple of 10'],
  ),
  'batch_size_zero': (
    lambda tmp, gan: (
      ['--config=configs/gan.py:smoke', '--config.data.batch_size=0'],
      tmp / 'run',
      {},
    ),
    ['data.batch_size=0', '> 0'],
  ),
  'batch_size_not_divisible_by_devices': (
    lambda tmp, gan: (
      ['--config=configs/gan.py:smoke', '--config.data.batch_size=6'],
      tmp / 'run',
      {'XLA_FLAGS': '--xla_force_host_platform_device_count=4'},
    ),
    ['data.batch_size=6', '4 devices'],
  ),
  'image_size_not_produced': (
    lambda tmp, gan: (
      ['--config=configs/dcgan.py:smoke', '--config.data.image_size=32'],
      tmp / 'run',
      {},
    ),
    ['data.image_size=32', "model.generator='dcgan'", '28x28'],
  ),
  'learning_rate_not_positive': (
    lambda tmp, gan: (
      ['--config=configs/gan.py:smoke', '--config.optimizer.g.learning_rate=-0.001'],
      tmp / 'run',
      {},
    ),
    ['optimizer.g.learning_rate=-0.001', '> 0'],
  ),
  'num_steps_not_positive': (
    lambda tmp, gan: (
      ['--config=configs/gan.py:smoke', '--config.train.num_steps=0'],
      tmp / 'run',
      {},
    ),
    ['train.num_steps=0', '> 0'],
  ),
  'workdir_is_a_file': (
    lambda tmp, gan: (['--config=configs/gan.py:smoke'], _write(tmp / 'run', 'a file\n'), {}),
    ['workdir=', 'is a file'],
  ),
  'workdir_not_writable': (
    lambda tmp, gan: (['--config=configs/gan.py:smoke'], '/proc/gan_jax_test/run', {}),
    ["workdir='/proc/gan_jax_test/run'", 'not writable'],
  ),
  'checkpoints_of_another_config': (
    lambda tmp, gan: (
      ['--config=configs/gan.py:smoke', '--config.model.discriminator=dcgan'],
      copy_of(gan, tmp),
      {},
    ),
    ["model.discriminator: 'mlp' -> 'dcgan'", 'allow_config_change=True'],
  ),
  # The same, in a workdir where a killed process left a checkpoint half written.
  'checkpoints_of_another_config_after_a_kill': (
    lambda tmp, gan: (
      ['--config=configs/gan.py:smoke', '--config.model.discriminator=dcgan'],
      _killed_mid_save_copy(gan, tmp),
      {},
    ),
    ["model.discriminator: 'mlp' -> 'dcgan'", 'allow_config_change=True'],
  ),
  'corrupt_checkpoint': (
    lambda tmp, gan: (['--config=configs/gan.py:smoke'], _corrupt_copy(gan, tmp), {}),
    ['checkpoint ', os.path.join('checkpoints', '4'), 'cannot be read'],
  ),
  'data_dir_missing': (
    lambda tmp, gan: (
      ['--config=configs/gan.py:smoke', f'--config.data.data_dir={tmp / "no_data"}'],
      tmp / 'run',
      {},
    ),
    ['data.data_dir', 'no_data', 'does not exist'],
  ),
  'config_file_missing': (
    lambda tmp, gan: ([f'--config={tmp / "missing.py"}:smoke'], tmp / 'run', {}),
    ['--config=', 'missing.py', 'get_config'],
  ),
  'config_without_get_config': (
    lambda tmp, gan: (
      [f'--config={_write(tmp / "no_get_config.py", NO_GET_CONFIG)}'],
      tmp / 'run',
      {},
    ),
    ['--config=', 'no_get_config.py', 'get_config'],
  ),
  # Issue 15's three: each once ended in a traceback, a hang or a full default run.
  'latent_dim_zero': (
    lambda tmp, gan: (
      ['--config=configs/gan.py:smoke', '--config.model.latent_dim=0'],
      tmp / 'run',
      {},
    ),
    ['model.latent_dim=0', '> 0'],
  ),
  'unknown_config_variant': (
    lambda tmp, gan: (['--config=configs/sgan.py:nosuchvariant'], tmp / 'run', {}),
    ['--config=configs/sgan.py:nosuchvariant', "'nosuchvariant'", 'valid choices: fm, smoke'],
  ),
  'batch_size_above_train_split': (
    lambda tmp, gan: (
      ['--config=configs/gan.py:smoke', '--config.data.batch_size=100000'],
      tmp / 'run',
      {},
    ),
    ['data.batch_size=100000', '4000'],
  ),
  'nan_loss_weight': (
    lambda tmp, gan: (
      ['--config=configs/gan.py:smoke', '--config.loss.d_terms.bce_real=nan'],
      tmp / 'run',
      {},
    ),
    ['loss.d_terms.bce_real=nan', 'finite'],
  ),
  'unknown_override': (
    lambda tmp, gan: (
      ['--config=configs/gan.py:smoke', '--config.train.nosuch=1'],
      tmp / 'run',
      {},
    ),
    ['--config.train.nosuch=1', 'not a config field', 'num_steps'],
  ),
  'override_drops_a_field': (
    lambda tmp, gan: (
      ['--config=configs/gan.py:smoke', '--config.optimizer.g={"name": "sgd"}'],
      tmp / 'run',
      {},
    ),
    ['optimizer.g.learning_rate is missing'],
  ),
}

NO_GET_CONFIG = 'seed = 0\n'

UNKNOWN_LOSS_CONFIG = """\
from configs import gan


def get_config(arg=None):
  config = gan.get_config('smoke')
  config.loss.d_terms = {'nosuch_real': 1.0}
  return config
"""


def _corrupt_copy(gan_workdir, tmp_path):
  workdir = copy_of(gan_workdir, tmp_path)
  _truncate_latest_state(workdir)
  return workdir


def _killed_mid_save_copy(gan_workdir, tmp_path):
  """A copy with step 6's checkpoint half written, as a process killed in its save leaves it
  (under orbax's temporary name, its metadata file not yet there)."""
  workdir = copy_of(gan_workdir, tmp_path)
  partial = workdir / 'checkpoints' / '6.orbax-checkpoint-tmp'
  shutil.copytree(workdir / 'checkpoints' / '4', partial)
  os.remove(partial / '_CHECKPOINT_METADATA')
  return workdir


@pytest.fixture(scope='module')
def bad_input_runs(gan_workdir, tmp_path_factory):
  """case -> (launch.py's result, snapshot of the workdir before, after), for every case of
  BAD_INPUT. Each run is mostly JAX's import (a few CPU seconds), so they run two at a time."""
  cases = {}
  for case, (setup, _) in BAD_INPUT.items():
    argv, workdir, env = setup(tmp_path_factory.mktemp(case), gan_workdir)
    cases[case] = ([*argv, f'--workdir={workdir}'], workdir, launch_env(**env), snapshot(workdir))
  time.sleep(0.01)  # so that a rewrite of a file would show in its mtime

  def run(case):
    argv, workdir, env, before = cases[case]
    result = launch(*argv, env=env, timeout=120)
    return result, before, snapshot(workdir)

  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    return dict(zip(cases, pool.map(run, cases)))


@pytest.mark.parametrize('case', list(BAD_INPUT))
def test_bad_input_is_one_line_exit_2_and_leaves_the_workdir_alone(case, bad_input_runs):
  result, before, after = bad_input_runs[case]
  assert result.returncode == 2, result.stderr[-3000:]
  lines = stderr_lines(result.stderr)
  # One line, and nothing else on stderr (no traceback, no warning, no progress bar).
  assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr[-3000:]
  for text in BAD_INPUT[case][1]:
    assert text in lines[0], (text, lines[0])
  assert after == before  # a workdir that did not exist still does not


def test_changed_config_resumes_with_the_override(gan_workdir, tmp_path):
  workdir = copy_of(gan_workdir, tmp_path)
  argv = [
    '--config=configs/gan.py:smoke',
    f'--workdir={workdir}',
    '--config.optimizer.g.learning_rate=0.001',
  ]
  before = snapshot(workdir)
  result = launch(*argv, '--config.train.num_steps=6', timeout=120)
  assert result.returncode == 2, result.stderr[-3000:]
  assert 'optimizer.g.learning_rate: 0.002 -> 0.001' in result.stderr
  assert snapshot(workdir) == before

  result = launch(*argv, '--config.train.num_steps=6', '--config.train.allow_config_change=True')
  assert result.returncode == 0, result.stderr[-3000:]
  assert checkpoint_steps(workdir)[-1] == 6
  assert [r['step'] for r in metric_rows(workdir)] == [2, 4, 6]


# --- 6. a bug: exit status 1, one line, at once ------------------------------------------------

# Config files are Python run inside launch.py: these two break the run from within, as a bug
# would, while a thread that never ends stands for a checkpoint writer left waiting.
BROKEN_CONFIG = """\
import threading

from configs import gan
from gan_jax import data


def get_config(arg=None):
  threading.Thread(target=threading.Event().wait, name='stuck-writer').start()

  def load_split(*args, **kwargs):
    raise RuntimeError('disk on fire\\nsecond line')

  data.load_split = load_split
  return gan.get_config('smoke')
"""

DYING_THREAD_CONFIG = """\
import threading
import time

from configs import gan
from gan_jax import data


def get_config(arg=None):
  hook = threading.excepthook

  def die():
    while threading.excepthook is hook:  # until launch.py has installed its own
      time.sleep(0.01)
    raise OSError('no space left on device')

  threading.Thread(target=die, name='writer').start()
  data.load_split = lambda *args, **kwargs: threading.Event().wait()  # the run never ends alone
  return gan.get_config('smoke')
"""

BUG_TIMEOUT = 60  # seconds: mostly JAX's import; a process kept alive by its threads never ends


def bug_line(tmp_path, config_text: str) -> str:
  """launch.py on a config that fails at run time, its temporary files in tmp_path/tmp: exit 1
  with exactly one stderr line, which is returned."""
  (tmp_path / 'tmp').mkdir()
  result = launch(
    f'--config={_write(tmp_path / "bug.py", config_text)}',
    f'--workdir={tmp_path / "run"}',
    env=launch_env(TMPDIR=str(tmp_path / 'tmp')),
    timeout=BUG_TIMEOUT,
  )
  assert result.returncode == 1, result.stderr[-3000:]
  lines = stderr_lines(result.stderr)
  assert len(lines) == 1, result.stderr[-3000:]
  return lines[0]


def test_a_bug_is_one_line_exit_1_and_ends_with_threads_running(tmp_path):
  line = bug_line(tmp_path, BROKEN_CONFIG)
  match = re.fullmatch(r'error: RuntimeError: disk on fire \(traceback: (.+)\)', line)
  assert match, line
  # A workdir that held no run is not created for the traceback: it goes to a temporary file.
  assert not (tmp_path / 'run').exists()
  log = match.group(1)
  assert os.path.dirname(log) == str(tmp_path / 'tmp')
  text = open(log).read()
  assert text.startswith('Traceback') and 'second line' in text


def test_a_bug_in_a_workdir_that_holds_a_run_leaves_error_log(tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  _write(workdir / 'config.json', '{}\n')
  before = snapshot(workdir)
  result = launch(
    f'--config={_write(tmp_path / "broken.py", BROKEN_CONFIG)}',
    f'--workdir={workdir}',
    timeout=BUG_TIMEOUT,
  )
  assert result.returncode == 1, result.stderr[-3000:]
  assert stderr_lines(result.stderr) == [
    f'error: RuntimeError: disk on fire (traceback: {workdir / "error.log"})'
  ]
  after = snapshot(workdir)
  assert after.pop('error.log') and after == before
  assert 'RuntimeError: disk on fire' in (workdir / 'error.log').read_text()


def test_a_dying_background_thread_ends_the_run_at_once(tmp_path):
  line = bug_line(tmp_path, DYING_THREAD_CONFIG)
  assert line.startswith(
    'error: in thread writer: OSError: no space left on device (traceback: '
  ), line


def test_exit_status_and_line_of_each_way_a_run_ends(tmp_path):
  import launch as launcher

  workdir = str(tmp_path / 'absent')
  assert launcher.outcome(BadInput('data.x=1 must be > 1'), workdir) == (
    2,
    'error: data.x=1 must be > 1',
  )
  assert launcher.outcome(train.NonFiniteError('non-finite d_loss=nan at step 3'), workdir) == (
    1,
    'error: non-finite d_loss=nan at step 3',
  )
  assert launcher.outcome(train.Interrupted('SIGTERM', 7), workdir)[0] == 128 + signal.SIGTERM
  assert launcher.outcome(KeyboardInterrupt(), workdir) == (128 + signal.SIGINT, 'stopped: SIGINT')
  with mock.patch.object(launcher.tempfile, 'tempdir', str(tmp_path)):
    status, line = launcher.outcome(ZeroDivisionError('division by zero\nmore'), workdir)
    assert status == 1
    assert re.fullmatch(r'error: ZeroDivisionError: division by zero \(traceback: .+\)', line)
    # Only gan_jax's BadInput is the user's to fix: a ValueError from jax or tfds is a bug.
    status, line = launcher.outcome(ValueError('Incompatible shapes for broadcasting'), workdir)
  assert status == 1
  assert re.fullmatch(
    r'error: ValueError: Incompatible shapes for broadcasting \(traceback: .+\)', line
  )
  assert not os.path.exists(workdir)
