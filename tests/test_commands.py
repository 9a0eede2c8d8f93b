"""Every command gan_jax prints or documents runs, as a new user meets it.

The `python launch.py ...` lines of README.md, BENCHMARKS.md, docs/ and the config docstrings,
and every override the diagnosis can suggest on every shipped config, are parsed by launch.py's
own parser in this process and must pass the checks that run before anything is compiled
(`launch.check`, and the models built for the data's shape). The `python study.py ...` lines
there, in study.py and in the study summaries it writes, are parsed by study.py's flags and must
pass its checks, and one that names a committed summary must resume it, not be refused. The two
README set-up commands run for real in a subprocess on an empty HOME.
"""

import glob
import importlib
import json
import os
import re
import shlex
import subprocess
import sys

from absl import flags
import pytest

from gan_jax import checks, diagnosis, models
from gan_jax.objective import Objective
import launch
import study

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
DOCUMENTS = ['README.md', 'BENCHMARKS.md', *sorted(glob.glob('docs/*.md', root_dir=REPO))]
CONFIG_FILES = sorted(
  os.path.relpath(path, REPO)
  for path in glob.glob(os.path.join(REPO, 'configs', '*.py'))
  if os.path.basename(path) not in ('__init__.py', 'default.py')
)


def command_lines(text: str, script: str = 'launch.py') -> list[str]:
  """The `python SCRIPT ...` commands in `text`, backslash continuations and markdown's inline
  code wrapped over lines joined, a shell loop (`for k in 1 10; do ... $k ...; done`) unrolled."""
  text = re.sub(r'\\\n\s*', ' ', text)
  text = re.sub(r'(?<!`)`[^`]+`(?!`)', lambda m: m[0].replace('\n', ' '), text)
  text = re.sub(
    r'for (\w+) in ([^;]+); do (.*?); done',
    lambda m: '\n'.join(m[3].replace(f'${m[1]}', v) for v in m[2].split()),
    text,
  )
  # A command ends at a backquote, a closing quote or the prose after it: '   (the hinge loss'.
  found = re.finditer(rf'python {re.escape(script)}[^`\n"]*', text)
  return [re.split(r'\s{2,}[(#]', m.group(0))[0] for m in found]


def expand(command: str, home: str) -> list[list[str]]:
  """The argv lists a documented command stands for: its `NAME` and `[:variant]` placeholders
  expanded, `$(mktemp -d)` and `$HOME` as the shell would give them; [] for a bare usage line
  (`--config=...`)."""
  command = command.replace('$(mktemp -d)', os.path.join(home, 'mktemp')).replace('$HOME', home)
  tokens = shlex.split(command, comments=True)[2:]
  args = []
  for token in tokens:
    if not token.startswith('--'):
      break  # the prose after a command: '(the hinge loss ...'
    args.append(token)
  config = next((a for a in args if a.startswith('--config=')), None)
  if config is None or config == '--config=...':
    return []
  forms = [config]
  if 'NAME' in config:
    forms = [config.replace('configs/NAME.py', path) for path in CONFIG_FILES]
  optional = re.search(r'\[(:\w+)\]', config)
  if optional:
    forms = [config.replace(optional.group(0), ''), config.replace(optional.group(0), optional[1])]
  return [[f if a == config else a for a in args] for f in forms]


def documented_commands(
  script: str = 'launch.py', where: list[str] = DOCUMENTS + CONFIG_FILES
) -> list[tuple[str, str]]:
  """(where, command) for every documented `python SCRIPT` command."""
  found = []
  for path in where:
    with open(os.path.join(REPO, path)) as f:
      text = f.read()
    if path.endswith('.py'):
      text = importlib.import_module(path[:-3].replace('/', '.')).__doc__ or ''
    found += [(path, command) for command in command_lines(text, script)]
  return found


@pytest.fixture
def home(tmp_path, monkeypatch):
  """A HOME holding the folder README's own-images commands read (`$HOME/cards`)."""
  (tmp_path / 'cards' / 'a').mkdir(parents=True)
  monkeypatch.chdir(REPO)  # commands name configs/... relative to the project root
  return str(tmp_path)


def parse(argv: list[str]):
  """`launch.py ARGV`'s flags and config, parsed by launch.py's own parser in this process."""
  flag_values = flags.FlagValues()
  parsed = launch.define_flags(flag_values)
  config = launch.parse_into(flag_values, parsed.config, ['launch.py', *argv])
  return parsed, config


def passes_checks(argv: list[str], home: str) -> None:
  """Parses ARGV and runs the checks launch.py and the run's set-up run before compiling."""
  parsed, config = parse([a for a in argv if not a.startswith('--workdir=')])
  workdir = os.path.join(home, 'workdir')
  launch.check(config, workdir)
  shape = (config.data.image_size, config.data.image_size, config.data.channels)
  num_classes = 10 if config.data.name != 'openmoji' else 11
  generator, _ = models.build(config.model, num_classes, shape)
  checks.check_image_shape(config, generator, shape)
  assert parsed.mode.value in ('train', 'eval', 'sample', 'bench')


def test_the_documents_hold_commands():
  """The collector finds what is there: a change of format must not make this test empty."""
  where = {path for path, _ in documented_commands()}
  assert {'README.md', 'BENCHMARKS.md', 'configs/sgan.py', 'configs/dcgan64.py'} <= where


@pytest.mark.parametrize(('where', 'command'), documented_commands())
def test_a_documented_command_passes_the_checks(where, command, home):
  argvs = expand(command, home)
  for argv in argvs:
    passes_checks(argv, home)


# --- study.py's commands ------------------------------------------------------------------------


def study_summaries() -> list[str]:
  """The committed summaries of today's study.py (curves have no command; docs/study/study.json,
  written by an older one, records no study)."""
  found = []
  for path in sorted(glob.glob('docs/study/*.json', root_dir=REPO)):
    with open(os.path.join(REPO, path)) as f:
      if 'study' in json.load(f):
        found.append(path)
  return found


STUDY_DOCUMENTS = [
  *DOCUMENTS,
  *CONFIG_FILES,
  'study.py',
  *sorted(glob.glob('docs/study/*.md', root_dir=REPO)),
]


def parse_study(argv: list[str]) -> flags.FlagValues:
  """`study.py ARGV`'s flags, parsed by study.py's own definitions in this process."""
  values = flags.FlagValues()
  study.define_flags(values)
  values(['study.py', *argv])
  return values


def resumed_header(args: dict, summary_path: str) -> dict:
  """The header the study of `args` writes, checked against the committed summary at
  `summary_path` as the study checks it before training (another study's summary is refused)."""
  with open(summary_path) as f:
    test_size = json.load(f)['test_size']
  header = study.study_header(**args, test_size=test_size)
  study.recorded_runs(summary_path, header)
  return header


def test_the_documents_hold_study_commands():
  where = {path for path, _ in documented_commands('study.py', STUDY_DOCUMENTS)}
  assert {'README.md', 'study.py', 'docs/study/improved_gan_mnist.md'} <= where
  assert 'docs/study/improved_gan_mnist.json' in study_summaries()


@pytest.mark.parametrize(('where', 'command'), documented_commands('study.py', STUDY_DOCUMENTS))
def test_a_documented_study_command_passes_the_checks(where, command, home):
  values = parse_study(shlex.split(command)[2:])
  if values.curve_of:
    assert values.out.endswith('.json'), command
    return
  args = study.study_args(values)  # the budgets, and the schedule from the committed curve
  for system in args['study'].systems:
    for budget in args['budgets']:
      config = study.run_config(system, budget, 0, args['variant'], args['steps'], args['study'])
      launch.check(config, os.path.join(home, 'workdir'))
  summary = os.path.join(args['summary_dir'], f'{args["study"].stem}.json')
  if args['summary_dir'].startswith('docs/') and os.path.exists(summary):
    resumed_header(args, summary)


@pytest.mark.parametrize('path', study_summaries())
def test_a_committed_summary_is_resumed_by_its_own_command(path, monkeypatch):
  """The command a summary records gives back its header: run again, it resumes the study."""
  monkeypatch.chdir(REPO)
  with open(path) as f:
    summary = json.load(f)
  header = resumed_header(study.study_args(parse_study(shlex.split(summary['command'])[2:])), path)
  assert header == {key: summary[key] for key in header}


def suggested(config) -> list[str]:
  """Every override the diagnosis can suggest to a run of `config`, whatever the symptom."""
  advice = diagnosis.advice(
    Objective(config.loss), models.model_fields(models.DISCRIMINATORS[config.model.discriminator])
  )
  return sorted({flag for _, overrides in advice.values() for flag in overrides})


@pytest.mark.parametrize('config_file', CONFIG_FILES)
def test_every_suggested_fix_applies_to_every_config(config_file, home):
  _, config = parse([f'--config={config_file}'])
  assert suggested(config)
  for override in suggested(config):
    try:
      passes_checks([f'--config={config_file}', override], home)
    except ValueError as error:
      pytest.fail(f'{config_file} {override}: {error}')


def test_a_loss_term_or_model_argument_can_be_added():
  _, config = parse(
    [
      '--config=configs/dcgan64.py:smoke',
      '--config.loss.d_terms.r1=10',
      '--config.model.d_kwargs.spectral_norm=True',
      '--config.loss.g_terms.feature_matching=1',
      '--config.model.g_kwargs.widths=(32, 16, 8)',
    ]
  )
  assert config.loss.d_terms.to_dict() == {'bce_real': 1.0, 'bce_fake': 1.0, 'r1': 10}
  assert config.loss.g_terms.feature_matching == 1.0  # a float entry stays a float
  assert config.model.d_kwargs.spectral_norm is True
  assert config.model.g_kwargs.widths == (32, 16, 8)


@pytest.mark.parametrize(
  ('override', 'message'),
  [
    ('--config.loss.d_terms.r3=1', 'loss.d_terms.r3 is not a loss term; valid choices: '),
    ('--config.loss.d_terms.r1=ten', "loss.d_terms.r1='ten' must be a finite number >= 0"),
    ('--config.loss.d_terms.r1.x=1', 'loss.d_terms.r1 is a loss weight, a number'),
    ('--config.model.d_kwargs.sn=True', 'model.d_kwargs.sn is not a field of model.disc'),
    ('--config.model.d_kwargs.dropout.x=1', 'model.d_kwargs.dropout is a model argument'),
  ],
)
def test_a_bad_entry_is_one_line_naming_the_valid_ones(override, message, home):
  with pytest.raises(ValueError) as error:
    passes_checks(['--config=configs/dcgan.py:smoke', override], home)
  text = str(error.value)
  assert message in text and '\n' not in text, text
  if 'valid' in text:  # the valid choices never include the name refused
    refused = re.search(r'(\w+) is not', text).group(1)
    assert refused not in text.split('valid')[1].replace(',', ' ').split(), text


# --- the README's first command on a new machine ---------------------------------------------


def fresh_machine_env(home: str) -> dict:
  """A new user's environment: an empty HOME, no TFDS_DATA_DIR or GAN_JAX_CACHE, nothing of this
  session's but PATH and the tests' fast compiles (JAX_DISABLE_MOST_OPTIMIZATIONS)."""
  return {'PATH': os.environ['PATH'], 'HOME': home, 'JAX_DISABLE_MOST_OPTIMIZATIONS': 'true'}


@pytest.mark.parametrize('config', ['configs/sgan.py:smoke', 'configs/dcgan64.py:smoke'])
def test_the_first_command_on_an_empty_home(config, tmp_path):
  home, workdir = tmp_path / 'home', tmp_path / 'workdir'
  home.mkdir()
  result = subprocess.run(
    [sys.executable, 'launch.py', f'--config={config}', f'--workdir={workdir}'],
    cwd=REPO,
    env=fresh_machine_env(str(home)),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert {'config.json', 'metrics.jsonl', 'checkpoints', 'samples'} <= set(os.listdir(workdir))
  assert os.listdir(workdir / 'samples')
  assert os.path.isdir(home / 'tensorflow_datasets')  # created where tfds would, then filled


def test_the_field_reference_is_current():
  """docs/fields.md is what `python -m gan_jax.field_reference` prints from the declarations."""
  result = subprocess.run(
    [sys.executable, '-m', 'gan_jax.field_reference'],
    cwd=REPO,
    capture_output=True,
    text=True,
    check=True,
  )
  with open(os.path.join(REPO, 'docs', 'fields.md')) as f:
    assert f.read() == result.stdout, 'run: python -m gan_jax.field_reference > docs/fields.md'
