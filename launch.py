"""Train, evaluate, sample from or benchmark a GAN.

  python launch.py --config=configs/sgan.py [--workdir=DIR] [--mode=train|eval|sample|bench]
  python launch.py --config=configs/sgan.py:smoke --config.train.num_steps=10

Several processes (hosts): the same command in each, plus --coordinator_address,
--num_processes and --process_id, or none of them under srun or mpirun (docs/scaling.md).
"""

import os
import signal
import sys

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', None, 'A configs/*.py file, optionally ":arg".',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where the run writes; default workdirs/<config>.')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'sample', 'bench'],
                          'train (or resume); eval or sample the latest checkpoint; '
                          'bench: time the step, write bench.json.')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None,
                                   'host:port of process 0, for a run over several processes.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes of a multi-process run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process: 0 .. num_processes - 1.')
flags.mark_flags_as_required(['config'])


def default_workdir(config_flag: str) -> str:
  """workdirs/sgan for configs/sgan.py, workdirs/sgan_smoke for configs/sgan.py:smoke."""
  path, _, arg = config_flag.partition(':')
  name = os.path.splitext(os.path.basename(path))[0]
  return os.path.join('workdirs', f'{name}_{arg}' if arg else name)


def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.ERROR)  # orbax logs each file it writes; tfds warns of absent data
  config_flag = flags.FLAGS['config'].serialize().split('=', 1)[1]
  # config_flags defers a failed load to the first use of the config: report it here.
  if not isinstance(_CONFIG.value, ml_collections.ConfigDict):
    fail(f'--config={config_flag} could not be loaded: it must be a file with get_config()')
  from gan_jax import parallel  # after flag parsing: importing JAX is slow and flags may be wrong
  try:  # before anything touches the devices
    parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  except ValueError as error:
    fail(str(error))
  from gan_jax import train
  workdir = _WORKDIR.value or default_workdir(config_flag)
  print(f'workdir: {os.path.abspath(workdir)}', flush=True)
  try:
    if _MODE.value == 'train':
      train.train_and_evaluate(_CONFIG.value, workdir)
    elif _MODE.value == 'eval':
      print(f'eval: {train.evaluate(_CONFIG.value, workdir)}')
    elif _MODE.value == 'sample':
      print(f'samples: {train.sample(_CONFIG.value, workdir)}')
    else:
      from gan_jax import bench
      print(f'bench: {bench.run(_CONFIG.value, workdir)}')
  except ValueError as error:
    fail(str(error))
  except train.NonFiniteError as error:
    print(f'error: {error}', file=sys.stderr)
    sys.exit(1)
  except train.Interrupted as error:
    print(f'stopped: {error}', file=sys.stderr)
    sys.exit(128 + signal.Signals[error.signal_name].value)


def fail(message: str):
  """Bad input: one line on stderr, exit status 2."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def parse_flags(argv):
  """absl's parser, with a config file that fails to load reported as bad input."""
  try:
    return flags.FLAGS(argv)
  except Exception as error:  # ml_collections raises whatever get_config or its import raised
    config_arg = next((a for a in argv if a.startswith('--config=')), '--config')
    reason = (str(error).strip().splitlines() or [''])[0]
    fail(f'{config_arg} could not be loaded ({type(error).__name__}: {reason})')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
