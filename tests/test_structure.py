"""The package keeps its shape: modules import only from layers below them, and stay small."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'gan_jax'
# Lowest first. A module may import only from the layers below its own, so no cycle can form.
LAYERS = [
  {'errors', 'rng'},
  {'parallel', 'seeds', 'losses', 'writers', 'models', 'mnist5k', 'records', 'images', 'domains'},
  {'metrics', 'augment', 'diagnosis', 'folder', 'mnist_full', 'objective'},
  {'openmoji', 'state', 'checkpoint'},
  {'data', 'grids'},
  {'batches'},
  {'fields', 'passes'},
  {'checks', 'evaluation', 'step', 'field_reference'},
  {'stream', 'setup'},
  {'run'},
  {'train', 'bench'},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}
# "About 300" lines of code: ruff format (black style) puts each argument of a call that does
# not fit on a line of its own, which adds about a quarter.
MAX_LINES = 400


def modules():
  return sorted(p for p in PACKAGE.rglob('*.py') if p.name != '__init__.py' or p.parent != PACKAGE)


def top_module(path: pathlib.Path) -> str:
  """gan_jax/step.py -> 'step'; gan_jax/models/dcgan.py -> 'models'."""
  return path.relative_to(PACKAGE).parts[0].removesuffix('.py')


def gan_jax_imports(path: pathlib.Path) -> set[str]:
  """The top-level gan_jax modules that `path` imports."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.split('.')[0] == 'gan_jax':
      parts = node.module.split('.')
      found |= {parts[1]} if len(parts) > 1 else {alias.name for alias in node.names}
    elif isinstance(node, ast.Import):
      found |= {a.name.split('.')[1] for a in node.names if a.name.startswith('gan_jax.')}
  return found


def test_every_module_has_a_layer():
  assert {top_module(p) for p in modules()} == set(LAYER)


@pytest.mark.parametrize('path', modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_down_the_layers(path):
  name = top_module(path)
  upward = sorted(m for m in gan_jax_imports(path) - {name} if LAYER[m] >= LAYER[name])
  assert not upward, f'{name} (layer {LAYER[name]}) imports {upward} from its own layer or above'


@pytest.mark.parametrize('path', modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_small(path):
  lines = len(path.read_text().splitlines())
  assert lines <= MAX_LINES, f'{path.name}: {lines} lines'


def test_library_does_not_import_the_experiments():
  """configs/, study.py, study_report.py and benchmarks/ read the library; never the other way round."""
  for path in modules():
    tree = ast.parse(path.read_text())
    roots = {
      a.name.split('.')[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    roots |= {
      n.module.split('.')[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
    }
    assert not roots & {'configs', 'study', 'study_report', 'benchmarks'}, path
