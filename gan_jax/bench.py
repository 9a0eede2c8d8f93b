"""Step-throughput benchmark: `python launch.py --config=configs/sgan.py --mode=bench`.

Times the training step exactly as `train_and_evaluate` runs it (`step.build_step` on the same
models, data on the device and fresh state from `config.seed`), and reports:

  compile      tracing+lowering and XLA compilation, apart from the timed steps
  steps/s      median, min and max over `trials` trials after a warm-up; a trial runs
               `steps_per_trial` steps back to back and syncs with the device once, at its end
  images/s     real images consumed per second: steps/s × data.batch_size × train.d_steps ×
               num_seeds (SGAN's extra labeled batch, drawn from the small labeled subset, is
               not counted)
  seeds        with num_seeds=K > 1, the single-seed step of the same config is timed too, its
               trials alternating with the K-seed step's, so that both see the same load. K
               single-seed runs one after another consume images at the single-seed rate, so
               the ratio of images/s is the K-seed run's speed-up over running its seeds in turn
  GFLOP/s      XLA's cost analysis of the compiled step (FLOPs per step) × median steps/s
  roofline     the best GFLOP/s of a large f32 matmul on the same device in the same run, and
               the step's share of it

Optional knobs, for callers that build the config in code (the configs do not set them): the
`bench.*` fields of gan_jax/fields.py, e.g. `config.bench = {'trials': 3}`.
"""

import json
import os
import platform
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
from ml_collections import ConfigDict

from gan_jax import checks, fields
from gan_jax.run import Run
from gan_jax.step import build_step


def bench_options(config: ConfigDict) -> dict:
  """The bench knobs of a checked config: `config.bench`'s, else their declared defaults."""
  given = config.get('bench') or {}
  names = [name for name in fields.FIELDS if name.startswith('bench.')]
  return {
    n.split('.', 1)[1]: given.get(n.split('.', 1)[1], fields.FIELDS[n].default) for n in names
  }


class StepBench:
  """The training step of `config`, compiled and ready to time on a fresh state.

  `Run` is built in an empty scratch directory: a workdir's training checkpoints are
  never read, so the state is always the fresh one of `config.seed`, and nothing is written.
  """

  def __init__(self, config: ConfigDict):
    with tempfile.TemporaryDirectory(prefix='gan_jax_bench_') as scratch:
      run = Run(config, scratch)
      run.checkpointer.close()
    setup = run.setup
    self.config = config
    self.images_per_step = config.data.batch_size * config.train.d_steps * setup.seeds.count
    step_fn = build_step(config, setup.generator, setup.discriminator, setup.mesh, setup.seeds)
    self.steps_per_call = step_fn.steps_per_call
    # Every timed call reads these: the data on the device or, streamed, the first call's batches
    # again (the step is timed, not the host's reading).
    self.batches = run.batches.take(0, self.steps_per_call)
    self.watch = step_fn.new_watch(run.state, self.batches)
    self.state = run.state

    start = time.perf_counter()
    lowered = step_fn.calls[self.steps_per_call].lower(self.state, self.batches, self.watch)
    self.lower_seconds = time.perf_counter() - start
    start = time.perf_counter()
    self.compiled = lowered.compile()
    self.compile_seconds = time.perf_counter() - start
    # XLA's cost analysis counts a loop's body once, whatever its trip count: FLOPs per step
    # come from the program of one step.
    one_step = (
      self.compiled
      if self.steps_per_call == 1
      else step_fn.calls[1].lower(self.state, self.batches, self.watch).compile()
    )
    self.flops_per_step = compiled_flops(one_step)

  def time_steps(self, num_steps: int) -> float:
    """Seconds for `num_steps` steps (a multiple of steps_per_call) issued back to back, with
    one device sync at the end."""
    state, watch = self.state, self.watch
    start = time.perf_counter()
    for _ in range(num_steps // self.steps_per_call):
      state, _, watch = self.compiled(state, self.batches, watch)
    jax.block_until_ready((state, watch))
    seconds = time.perf_counter() - start
    self.state, self.watch = state, watch  # the inputs were donated
    return seconds


def compiled_flops(compiled) -> float:
  """FLOPs of one call of a compiled XLA program, from XLA's cost analysis."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax: one dict per program
    cost = cost[0]
  return float(cost['flops'])


def roofline_gflops(
  size: int = fields.FIELDS['bench.roofline_size'].default, repeats: int = 10
) -> float:
  """Best GFLOP/s of a `size`×`size` f32 matmul on the default device, over `repeats` runs."""
  a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
  b = jax.random.normal(jax.random.PRNGKey(1), (size, size), jnp.float32)
  matmul = jax.jit(jnp.matmul).lower(a, b).compile()
  matmul(a, b).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a, b).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * size**3 / best / 1e9


def spread(values) -> dict:
  """Median, min and max."""
  return {'median': statistics.median(values), 'min': min(values), 'max': max(values)}


def machine() -> dict:
  """What the figures were measured on: device, host CPU, threads, versions, load."""
  cpu = platform.processor()
  try:
    with open('/proc/cpuinfo') as f:
      cpu = next((l.split(':', 1)[1].strip() for l in f if l.startswith('model name')), cpu)
  except OSError:
    pass
  device = jax.devices()[0]
  return {
    'backend': jax.default_backend(),
    'device_kind': device.device_kind,
    'device_count': jax.device_count(),
    'cpu': cpu,
    'cpu_count': os.cpu_count(),
    'jax': jax.__version__,
    'python': platform.python_version(),
    'xla_flags': os.environ.get('XLA_FLAGS', ''),
    'load_average': os.getloadavg(),
  }


def single_seed(config: ConfigDict) -> ConfigDict:
  """`config` with num_seeds=1: one of the runs that a K-seed run puts in one step."""
  single = config.copy_and_resolve_references()
  single.num_seeds = 1
  return single


def run(config: ConfigDict, workdir: str) -> str:
  """Times the step of `config`, prints a table, writes workdir/bench.json; returns its path."""
  checks.check_config(config)
  options = bench_options(config)
  checks.check_workdir(workdir)
  load_before = os.getloadavg()
  benches = [StepBench(config)]
  if config.num_seeds > 1:
    benches.append(StepBench(single_seed(config)))

  per_call = benches[0].steps_per_call
  warmups, sizes = [], []
  for bench in benches:
    warmups.append([bench.time_steps(per_call) / per_call for _ in range(options['warmup_steps'])])
    steps = options['steps_per_trial'] or round(options['trial_seconds'] / min(warmups[-1]))
    sizes.append(max(1, round(steps / per_call)) * per_call)  # whole calls
  # One trial of each step in turn: a change of the machine's load hits both alike.
  trials = [
    [bench.time_steps(n) for bench, n in zip(benches, sizes)] for _ in range(options['trials'])
  ]
  step, warmup, steps, seconds = benches[0], warmups[0], sizes[0], [t[0] for t in trials]
  steps_per_s = [steps / s for s in seconds]
  roofline = roofline_gflops(options['roofline_size'])

  median = statistics.median(steps_per_s)
  gflops = step.flops_per_step * median / 1e9
  result = {
    'config': {
      'generator': config.model.generator,
      'discriminator': config.model.discriminator,
      'batch_size': config.data.batch_size,
      'd_steps': config.train.d_steps,
      'image_size': config.data.image_size,
      'num_seeds': config.num_seeds,
    },
    'steps_per_call': per_call,
    'lower_seconds': step.lower_seconds,
    'compile_seconds': step.compile_seconds,
    'warmup_step_seconds': warmup,
    'trials': options['trials'],
    'steps_per_trial': steps,
    'trial_seconds': seconds,
    'steps_per_s': spread(steps_per_s),
    'ms_per_step': spread([1e3 / v for v in steps_per_s]),
    'images_per_step': step.images_per_step,
    'images_per_s': spread([v * step.images_per_step for v in steps_per_s]),
    'flops_per_step': step.flops_per_step,
    'gflops_per_s': gflops,
    'roofline': {
      'matmul_size': options['roofline_size'],
      'gflops_per_s': roofline,
      'fraction': gflops / roofline,
    },
    'machine': {**machine(), 'load_average_before': load_before},
  }
  if len(benches) > 1:
    single = benches[1]
    single_images_per_s = [sizes[1] / t[1] * single.images_per_step for t in trials]
    result['single_seed'] = {
      'compile_seconds': single.compile_seconds,
      'steps_per_trial': sizes[1],
      'trial_seconds': [t[1] for t in trials],
      'images_per_s': spread(single_images_per_s),
      'speedup': result['images_per_s']['median'] / statistics.median(single_images_per_s),
    }
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, 'bench.json')
  with open(path, 'w') as f:
    json.dump(result, f, indent=2)
  print(format_table(result))
  return path


def format_table(result: dict) -> str:
  """The figures of a `run` result as a readable table."""
  c, m, roof = result['config'], result['machine'], result['roofline']
  fmt = lambda s, f: f'{s["median"]:{f}}  [{s["min"]:{f}} .. {s["max"]:{f}}]'
  rows = [
    (
      'system',
      f'G={c["generator"]} D={c["discriminator"]} batch={c["batch_size"]} '
      f'd_steps={c["d_steps"]} image={c["image_size"]} seeds={c["num_seeds"]}',
    ),
    (
      'device',
      f'{m["backend"]} {m["device_kind"]} x{m["device_count"]} ({m["cpu"]}, '
      f'{m["cpu_count"]} CPUs, load {m["load_average"][0]:.2f})',
    ),
    (
      'compile',
      f'lower {result["lower_seconds"]:.2f} s, compile {result["compile_seconds"]:.2f} s',
    ),
    ('trials', f'{result["trials"]} x {result["steps_per_trial"]} steps (median [min .. max])'),
    ('steps/s', fmt(result['steps_per_s'], '.2f')),
    ('ms/step', fmt(result['ms_per_step'], '.1f')),
    ('images/s', fmt(result['images_per_s'], '.0f')),
    ('GFLOP/step', f'{result["flops_per_step"] / 1e9:.2f} (XLA cost analysis)'),
    ('GFLOP/s', f'{result["gflops_per_s"]:.1f}'),
    (
      'roofline',
      f'{roof["gflops_per_s"]:.1f} GFLOP/s ({roof["matmul_size"]}^2 f32 matmul), '
      f'step at {100 * roof["fraction"]:.1f}%',
    ),
  ]
  if 'single_seed' in result:
    single = result['single_seed']
    rows += [
      (
        '1 seed',
        f'{fmt(single["images_per_s"], ".0f")} images/s (trials alternating with '
        f"the {c['num_seeds']}-seed step's)",
      ),
      (
        'seeds',
        f'{c["num_seeds"]} seeds in one step: {single["speedup"]:.2f}x the images/s '
        f'of {c["num_seeds"]} single-seed runs in turn',
      ),
    ]
  width = max(len(k) for k, _ in rows)
  return '\n'.join(f'{k:<{width}}  {v}' for k, v in rows)
