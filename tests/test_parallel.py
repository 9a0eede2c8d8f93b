"""The same train step on 1 and on 4 devices gives the same run.

The step is written once for global arrays under a ('data',) mesh: the batch and the noise
are sharded, the state replicated, BatchNorm statistics taken over the global batch, the
noise drawn for the global batch. So k steps on 4 (fake CPU) devices must end where k steps
on 1 device do, up to rounding: the reductions (BatchNorm means, gradient all-reduces,
per-device convolutions) sum in another order. The device count is fixed when JAX starts,
so each count runs in a child process of its own, which does every case, to pay JAX's
start-up once per count; the two children run side by side.

GAN-cls is compared on the real training loop in float32. SGAN is compared on its train
step in float64: in float32 its 4-step smoke run is chaotic across summation orders. At
step 1 one pre-activation of D's Conv_2 (on the labeled batch) is -5.9e-9, below the
rounding error of its sum, and 1 and 4 devices round it to different sides of leaky_relu's
kink; the slope (1 or 0.2) of that one element changes D's gradient by ~1e-3 (relative) in
Conv_2's output channel 3 and every layer before it; Adam's first step (about lr·sign(g))
and three more GAN steps spread it: after 4 steps, leaves differ by up to 1.25 times their
scale (G's Dense_0 bias), parameters by up to 1.6e-3 (about 8 Adam steps of lr 2e-4).
In float64 the same steps agree to 1e-12: 1 and 4 devices compute the same function, and
float32 rounding alone tells them apart.
"""

import json
import os
import subprocess
import sys

import chex
import numpy as np
import pytest

from gan_jax import data

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))

# argv: device count, output dir. GAN-cls's smoke run through the real training loop in
# float32 (train_and_evaluate, then its last checkpoint read back) -> gan_cls.npz, every
# leaf of the final G and D states (params, BatchNorm statistics, optimizer state) by key
# path; SGAN's smoke config, its steps run by the real train step in float64 -> sgan_f64.npz.
# report.json: the devices seen, the last metrics, the error for a batch of 6.
CHILD = r"""
import json, os, sys
num_devices, out = int(sys.argv[1]), sys.argv[2]
import jax
jax.config.update('jax_num_cpu_devices', num_devices)  # before any JAX use
jax.config.update('jax_disable_most_optimizations', True)  # as tests/conftest.py
import numpy as np
from configs import gan_cls, sgan
from gan_jax import train
from gan_jax.run import Run
from gan_jax.step import build_step

def save(name, state):
  state = jax.device_get({'g': state.g, 'd': state.d})
  np.savez(os.path.join(out, name + '.npz'), **{
      jax.tree_util.keystr(path): np.asarray(leaf)
      for path, leaf in jax.tree_util.tree_leaves_with_path(state)})

report = {'device_count': jax.device_count()}
config = gan_cls.get_config('smoke')
workdir = os.path.join(out, 'gan_cls')
last = train.train_and_evaluate(config, workdir)
run = Run(config, workdir)  # restores the latest checkpoint
run.checkpointer.close()
save('gan_cls', run.state)
report.update(
    step=int(run.state.step), mesh_size=int(run.setup.mesh.devices.size), metrics=last,
    state_devices=len(jax.tree.leaves(run.state.g.params)[0].sharding.device_set))

if num_devices > 1:  # (one device would train on it)
  config = sgan.get_config('smoke')
  config.data.batch_size = 6
  bad_workdir = os.path.join(out, 'batch_6')
  try:
    train.train_and_evaluate(config, bad_workdir)
  except ValueError as e:
    report['batch_6_error'] = str(e)
    report['batch_6_wrote'] = os.path.exists(bad_workdir)

jax.config.update('jax_enable_x64', True)
config = sgan.get_config('smoke')
run = Run(config, os.path.join(out, 'sgan_f64'))
run.checkpointer.close()
state = jax.tree.map(lambda x: x.astype(np.float64) if x.dtype == np.float32 else x,
                     jax.device_get(run.state))
state = jax.device_put(state, run.setup.replicated)
step = jax.jit(build_step(config, run.setup.generator, run.setup.discriminator, run.setup.mesh, run.setup.seeds).train_step,
               donate_argnums=0)
for _ in range(config.train.num_steps):
  state, metrics = step(state, run.batches)
save('sgan_f64', state)
report.update(f64_dtype=str(jax.tree.leaves(state.d.params)[0].dtype),
              f64_mesh_size=int(run.setup.mesh.devices.size),
              f64_state_devices=len(jax.tree.leaves(state.g.params)[0].sharding.device_set))
with open(os.path.join(out, 'report.json'), 'w') as f:
  json.dump(report, f)
"""


def _start_child(num_devices: int, out) -> subprocess.Popen:
  env = dict(os.environ)  # carries TFDS_DATA_DIR, set by conftest's data_dir fixture
  # A forced host device count from the caller would fight jax_num_cpu_devices.
  env['XLA_FLAGS'] = ' '.join(
    f
    for f in env.get('XLA_FLAGS', '').split()
    if not f.startswith('--xla_force_host_platform_device_count')
  )
  env['PYTHONPATH'] = os.pathsep.join(filter(None, [REPO, env.get('PYTHONPATH')]))
  os.makedirs(out)
  return subprocess.Popen(
    [sys.executable, '-c', CHILD, str(num_devices), str(out)],
    cwd=REPO,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )


@pytest.fixture(scope='module')
def runs(data_dir, tmp_path_factory):
  """{device count: (report, {name: {key path: leaf}})}, one child per count, run side by side."""
  # Prepared here once, so that the two children do not both build mnist5k into the data dir.
  data.load_split('mnist5k', 'train', data_dir)
  root = tmp_path_factory.mktemp('parallel')
  children = {n: _start_child(n, root / f'devices_{n}') for n in (1, 4)}
  results = {}
  for n, child in children.items():
    output, _ = child.communicate(timeout=900)
    assert child.returncode == 0, f'{n}-device child failed:\n{output[-5000:]}'
    out = root / f'devices_{n}'
    states = {}
    for name in ('gan_cls', 'sgan_f64'):
      with np.load(out / f'{name}.npz') as f:
        states[name] = dict(f)
    results[n] = (json.loads((out / 'report.json').read_text()), states)
  return results


def _scaled(leaves: dict, reference: dict) -> dict:
  """Each leaf over its largest magnitude in `reference`, so that one tolerance fits
  parameters (~0.1) and Adam second moments (~1e-10) alike."""
  return {
    k: v.astype(np.float64) / max(float(np.abs(reference[k]).max()), 1e-30)
    for k, v in leaves.items()
  }


def _assert_same_state(four: dict, one: dict, tolerance: float) -> None:
  assert sorted(four) == sorted(one)
  chex.assert_trees_all_close(_scaled(four, one), _scaled(one, one), atol=tolerance, rtol=0)


def test_children_saw_their_device_counts(runs):
  for n, (report, _) in runs.items():
    assert report['device_count'] == n
    # Each run's mesh spans all n devices and its (replicated) state lives on each.
    assert report['mesh_size'] == report['state_devices'] == n, report
    assert report['f64_mesh_size'] == report['f64_state_devices'] == n, report
    assert report['f64_dtype'] == 'float64'
    assert report['step'] == 4 and all(np.isfinite(v) for v in report['metrics'].values())


def test_gan_cls_float32_run_is_the_same_on_four_devices(runs):
  # Measured: at most 1.16e-4 of a leaf's scale (G's BatchNorm_0 bias: 1.0e-7 on values up
  # to 8.7e-4); parameters at most 1.25e-6 apart (1.2e-5 of scale), as Adam normalises the
  # rounding of small gradient components up to a step's size. About 4x that:
  _assert_same_state(runs[4][1]['gan_cls'], runs[1][1]['gan_cls'], tolerance=5e-4)
  # Metrics of the last step: measured at most 1.5e-7 apart (4.5e-7 relative).
  m1, m4 = runs[1][0]['metrics'], runs[4][0]['metrics']
  assert sorted(m1) == sorted(m4)
  chex.assert_trees_all_close(m4, m1, atol=1e-6, rtol=2e-6)


def test_sgan_float64_steps_are_the_same_on_four_devices(runs):
  # Measured after 4 steps: at most 1.4e-12 of a leaf's scale (G's Dense_0 kernel, 1.5e-13
  # apart); in float32 the same comparison gives 1.25 (see the module docstring).
  _assert_same_state(runs[4][1]['sgan_f64'], runs[1][1]['sgan_f64'], tolerance=1e-11)


def test_indivisible_batch_names_the_field_and_the_device_count(runs):
  error = runs[4][0].get('batch_6_error', 'no ValueError raised')
  assert 'data.batch_size=6' in error and '4 devices' in error, error
  assert not runs[4][0]['batch_6_wrote']  # raised before the workdir was touched
