"""Train, evaluate, sample from or benchmark a GAN.

  python launch.py --config=configs/sgan.py [--workdir=DIR] [--mode=train|eval|sample|bench]
  python launch.py --config=configs/sgan.py:smoke --config.train.num_steps=10

Several processes (hosts): the same command in each, plus --coordinator_address,
--num_processes and --process_id, or none of them under srun or mpirun (docs/scaling.md).

Exit status: 0 done; 2 bad input (one `error:` line naming the field, the workdir left as it
was); 1 a failure: a non-finite loss, or a bug (one `error:` line with the exception's type
and message, the traceback in workdir/error.log if the workdir holds a run, else in a
temporary file); 128 + N stopped by signal N (a checkpoint saved to resume from).
"""

import ast
import functools
import os
import re
import signal
import sys
import tempfile
import threading
import traceback
from typing import NamedTuple

from absl import app, flags, logging
import ml_collections
from ml_collections import config_flags

from gan_jax.errors import BadInput  # no JAX: bad flags are reported before it loads


class ConfigFlag(NamedTuple):
  """The --config flag and the arguments its overrides are read from (`parse_into` sets them)."""

  holder: flags.FlagHolder
  argv: list[str]


class Flags(NamedTuple):
  config: ConfigFlag
  workdir: flags.FlagHolder
  mode: flags.FlagHolder
  coordinator: flags.FlagHolder
  num_processes: flags.FlagHolder
  process_id: flags.FlagHolder


def define_flags(flag_values: flags.FlagValues) -> Flags:
  """launch.py's flags on `flag_values` (a fresh FlagValues parses a command in a test)."""
  argv = []
  config = config_flags.DEFINE_config_file(
    'config',
    None,
    'A configs/*.py file, optionally ":arg".',
    flag_values=flag_values,
    lock_config=True,
    sys_argv=argv,
  )
  flags.mark_flag_as_required('config', flag_values)
  define = functools.partial(flags.DEFINE_string, flag_values=flag_values)
  return Flags(
    ConfigFlag(config, argv),
    define('workdir', None, 'Where the run writes; default workdirs/<config>.'),
    flags.DEFINE_enum(
      'mode',
      'train',
      ['train', 'eval', 'sample', 'bench'],
      'train (or resume); eval or sample the latest checkpoint; '
      'bench: time the step, write bench.json.',
      flag_values=flag_values,
    ),
    define(
      'coordinator_address', None, 'host:port of process 0, for a run over several processes.'
    ),
    flags.DEFINE_integer(
      'num_processes', None, 'Processes of a multi-process run.', flag_values=flag_values
    ),
    flags.DEFINE_integer(
      'process_id', None, 'This process: 0 .. num_processes - 1.', flag_values=flag_values
    ),
  )


ARGS = define_flags(flags.FLAGS)


def default_workdir(config_flag: str) -> str:
  """workdirs/sgan for configs/sgan.py, workdirs/sgan_smoke for configs/sgan.py:smoke."""
  path, _, arg = config_flag.partition(':')
  name = os.path.splitext(os.path.basename(path))[0]
  return os.path.join('workdirs', f'{name}_{arg}' if arg else name)


def check(config: ml_collections.ConfigDict, workdir: str) -> None:
  """The checks that need neither the data nor a compile; bad input raises a ValueError.

  The rest (the data's size and labels, the image size against the model, a workdir's
  checkpoints) come in gan_jax/setup.py and gan_jax/run.py, still before anything is compiled or
  written.
  """
  from gan_jax import checks

  checks.check_config(config)
  checks.check_workdir(workdir)


def run_mode(mode: str, config: ml_collections.ConfigDict, workdir: str) -> str | None:
  """Runs `mode`; returns the line to print, if any."""
  from gan_jax import train

  if mode == 'train':
    train.train_and_evaluate(config, workdir)
    return None
  if mode == 'eval':
    return f'eval: {train.evaluate(config, workdir)}'
  if mode == 'sample':
    return f'samples: {train.sample(config, workdir)}'
  from gan_jax import bench

  return f'bench: {bench.run(config, workdir)}'


def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    # orbax logs each file it writes; tfds warns of absent data.
    logging.set_verbosity(logging.ERROR)
  config_flag = flags.FLAGS['config'].serialize().split('=', 1)[1]
  workdir = ARGS.workdir.value or default_workdir(config_flag)
  previous_hook = threading.excepthook
  threading.excepthook = lambda args: _thread_failed(args, workdir)
  try:
    from gan_jax import parallel  # after flag parsing: importing JAX is slow and flags may be wrong

    # Before anything touches the devices.
    parallel.initialize_distributed(
      ARGS.coordinator.value, ARGS.num_processes.value, ARGS.process_id.value
    )
    check(ARGS.config.holder.value, workdir)
    print(f'workdir: {os.path.abspath(workdir)}', flush=True)
    line = run_mode(ARGS.mode.value, ARGS.config.holder.value, workdir)
  except BaseException as error:  # noqa: B036  (every way out is one line and a known status)
    if isinstance(error, SystemExit):
      raise
    status, line = outcome(error, workdir)
    print(line, file=sys.stderr)
    exit_now(status)
  threading.excepthook = previous_hook  # from here on the process ends normally
  if line:
    print(line)


def printable(text: str) -> str:
  """`text` on one line: control characters (newlines too) escaped as repr() would."""
  return ''.join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def one_line(error: BaseException) -> str:
  """The first non-blank line of an exception's message, printable."""
  return printable(next((line.strip() for line in str(error).split('\n') if line.strip()), ''))


def holds_run(workdir: str) -> bool:
  """Whether a run has written to `workdir` (its config or checkpoints)."""
  return os.path.isfile(os.path.join(workdir, 'config.json')) or os.path.isdir(
    os.path.join(workdir, 'checkpoints')
  )


def save_traceback(error: BaseException, workdir: str) -> str:
  """Writes the traceback to workdir/error.log if the workdir holds a run (one that does not
  stays as it was), else to a temporary file; returns the path."""
  text = ''.join(traceback.format_exception(error))
  if holds_run(workdir):
    import jax  # imported by now: a run has started

    index = jax.process_index()
    path = os.path.join(workdir, 'error.log' if index == 0 else f'error.{index}.log')
    with open(path, 'w') as f:
      f.write(text)
    return path
  fd, path = tempfile.mkstemp(prefix='gan_jax_error_', suffix='.log')
  with os.fdopen(fd, 'w') as f:
    f.write(text)
  return path


def bug_line(error: BaseException, workdir: str) -> str:
  """'error: Type: message (traceback: PATH)': an exception that no check foresaw."""
  message = one_line(error)
  try:
    where = f' (traceback: {save_traceback(error, workdir)})'
  except Exception:  # noqa: BLE001  (a full disk must not hide the error itself)
    where = ''
  return f'error: {type(error).__name__}{": " if message else ""}{message}{where}'


def outcome(error: BaseException, workdir: str) -> tuple[int, str]:
  """The exit status and the one stderr line of an exception that ended a run."""
  if isinstance(error, BadInput):  # found by a check, with the config, data or checkpoints
    return 2, f'error: {one_line(error)}'
  if isinstance(error, KeyboardInterrupt):
    return 128 + signal.SIGINT.value, 'stopped: SIGINT'
  try:  # not before: importing it takes seconds that bad input need not wait
    from gan_jax import train
  except Exception:  # noqa: BLE001  (the error may be this very import)
    return 1, bug_line(error, workdir)
  if isinstance(error, train.Interrupted):
    return 128 + signal.Signals[error.signal_name].value, f'stopped: {one_line(error)}'
  if isinstance(error, train.NonFiniteError):
    return 1, f'error: {one_line(error)}'
  return 1, bug_line(error, workdir)


def _thread_failed(args: threading.ExceptHookArgs, workdir: str) -> None:
  """A background thread (a checkpoint writer) died: the run cannot go on, so it ends now."""
  if args.exc_type is SystemExit:
    return
  error = args.exc_value if args.exc_value is not None else args.exc_type()
  name = args.thread.name if args.thread else 'unknown'
  print(
    bug_line(error, workdir).replace('error: ', f'error: in thread {name}: ', 1), file=sys.stderr
  )
  exit_now(1)


def exit_now(status: int):
  """Ends the process at once: a thread still running (an orbax writer waiting on a closed
  executor) must not keep a failed run alive."""
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (OSError, ValueError):
      pass
  os._exit(status)


def fail(message: str):
  """Bad input: one line on stderr, exit status 2."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def config_load_error(argv: list[str], error: Exception) -> str:
  """One line for a config file or `--config.x=y` override that failed to load or parse."""
  return printable(_load_error(argv, error))


def _load_error(argv: list[str], error: Exception) -> str:
  text = str(error)
  config_arg = next((a for a in argv if a.startswith('--config=')), '--config')
  # absl names the flag whose value did not parse: 'flag --config.x=y: reason'.
  flag = next((a for a in argv if text.startswith(f'flag {a}: ')), None)
  if flag:
    text = text[len(f'flag {flag}: ') :]
  lines = [line.strip() for line in text.split('\n') if line.strip()]
  if lines and lines[0].startswith('Error whilst parsing config file'):
    # ml_collections re-raises get_config's ValueError or TypeError with its traceback: the
    # last line is the original 'Type: message'.
    return f'{config_arg}: {re.sub(r"^(ValueError|TypeError): ", "", lines[-1])}'
  reason = lines[0] if lines else type(error).__name__
  if flag and flag != config_arg:  # an override, or another flag (--mode=nope)
    return f'{flag}: {reason}'
  # An override of a field the config does not have: ml_collections raises the bare key.
  if isinstance(error, (AttributeError, KeyError)):
    key = str(error).strip('\'"')
    for arg in argv:
      if arg.startswith('--config.'):
        parts = arg[len('--config.') :].split('=', 1)[0].split('.')
        if key in parts:
          from gan_jax import fields

          field = '.'.join(parts[: parts.index(key) + 1])
          return f'{arg}: {one_line(fields.unknown_field_error(field))}'
  return f'{config_arg} could not be loaded ({type(error).__name__}: {reason})'


def split_entry_overrides(argv: list[str]) -> tuple[list[str], list[tuple[str, str, str]]]:
  """ARGV without the overrides of one entry of a dict field, and those as (field, key, text).

  A dict field's entries are open (a loss term, a model argument), but config_flags overrides
  only what the config file sets: `--config.loss.d_terms.r1=10` is applied after loading, so it
  may add the entry.
  """
  from gan_jax import fields  # the config file imports JAX anyway

  rest, entries = [], []
  for arg in argv:
    match = re.fullmatch(r'--config\.(.+)\.([^.=]+)=(.*)', arg, re.DOTALL)
    field = fields.FIELDS.get(match[1]) if match else None
    if field and field.domain.kind in ('weights', 'kwargs'):
      entries.append(match.groups())
    else:
      rest.append(arg)
  return rest, entries


def entry_value(text: str, current):
  """The value of `--config.FIELD.KEY=TEXT`: a Python literal (`10`, `True`, `(64, 128)`), a
  float (`nan`, `inf`), else the text itself; a float entry stays a float (`=1` gives 1.0), as
  config_flags would give."""
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError, MemoryError, RecursionError):
    try:
      value = float(text)
    except ValueError:
      value = {'true': True, 'false': False}.get(text.lower(), text)
  if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  return value


def parse_into(
  flag_values: flags.FlagValues, config_flag: ConfigFlag, argv: list[str]
) -> ml_collections.ConfigDict:
  """Parses ARGV into `flag_values` (which holds `config_flag`) and returns the config with every
  override applied; raises a one-line ValueError for a file or override that fails."""
  rest, entries = split_entry_overrides(argv)
  config_flag.argv[:] = rest
  config = config_flag.holder
  try:
    flag_values(rest)
  except Exception as error:  # ml_collections raises whatever get_config or its import raised
    raise BadInput(config_load_error(rest, error)) from None
  if not isinstance(config.value, ml_collections.ConfigDict):
    config_flag = flag_values['config'].serialize().split('=', 1)[1]
    raise BadInput(
      printable(f'--config={config_flag} could not be loaded: it must be a file with get_config()')
    )
  for field, key, text in entries:
    *path, name = field.split('.')
    parent = config.value
    for part in path:
      parent = parent[part]
    values = parent[name].to_dict()
    values[key] = entry_value(text, values.get(key))
    with config.value.unlocked():  # the whole dict anew: the checks judge the entry's type
      parent[name] = values
  return config.value


def parse_flags(argv):
  """absl's parser, with a config file or override that fails to load reported as bad input."""
  try:
    parse_into(flags.FLAGS, ARGS.config, argv)
  except BadInput as error:
    fail(str(error))
  return argv[:1]


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
