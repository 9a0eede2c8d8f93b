"""gan_jax against the PyTorch reference, interleaved in one process: JAX, torch, JAX, torch, ...

  python benchmarks/compare.py --systems=sgan,dcgan --pairs=5 --out=/tmp/compare.json

Systems: sgan, dcgan, dcgan64 (configs/NAME.py) and improved_gan (configs/improved_gan_mnist.py
on the embedded mnist5k: the same 28×28 digits; full MNIST is not needed to time a step). The
torch side follows the config's batch sizes, data.augment, model.g_ema_decay, d_ema_decay,
d_init_batch, g_kwargs/d_kwargs and optimizer.g/d; a mode fails if its G's or D's parameter count
differs from gan_jax's (the layer-for-layer check).

For each system and each torch mode (eager, then torch.compile modes) it runs `--pairs` pairs
of trials, one JAX trial then one PyTorch trial, each a run of steps with one device sync at the
end, and prints the JAX/PyTorch steps/s ratio of every pair with its min/median/max. Pairs taken
close together see the same load on a shared machine, so their ratio is steadier than either rate.
The JAX step is gan_jax's own (gan_jax.bench.StepBench: the jitted, donated training step of the
config); its GFLOP/s are given as a share of a large f32 matmul measured in the same run.

On a CPU shared with other jobs, run it with OMP_WAIT_POLICY=PASSIVE: torch's OpenMP threads
otherwise spin at every barrier while the other jobs hold the cores (see BENCHMARKS.md).
"""

import argparse
import importlib
import json
import os
import sys
import time
import traceback

# The repository root, for gan_jax and configs (this script lives in benchmarks/).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import torch  # noqa: E402
import torch_reference  # noqa: E402

from gan_jax import bench  # noqa: E402


def steps_for(seconds_per_step: float, trial_seconds: float, per_call: int = 1) -> int:
  """Steps in a trial of about `trial_seconds`: whole calls of `per_call` steps."""
  return max(1, round(trial_seconds / seconds_per_step / per_call)) * per_call


def warm_up(timer, per_call: int = 1, calls: int = 3) -> float:
  """Runs `calls` single calls (compiling on the first); returns the fastest one's seconds per step."""
  return min(timer(per_call) for _ in range(calls)) / per_call


def compare_mode(
  jax_step, torch_step, pairs: int, trial_seconds: float, flops: float, roofline: float, label: str
) -> dict:
  """`pairs` interleaved (JAX, torch) trials; per-pair rates, ratios and roofline fractions."""
  per_call = jax_step.steps_per_call
  jax_steps = steps_for(warm_up(jax_step.time_steps, per_call), trial_seconds, per_call)
  torch_steps = steps_for(warm_up(torch_step.time_steps), trial_seconds)
  rows = []
  for k in range(pairs):
    jax_rate = jax_steps / jax_step.time_steps(jax_steps)
    torch_rate = torch_steps / torch_step.time_steps(torch_steps)
    row = {
      'jax_steps_per_s': jax_rate,
      'torch_steps_per_s': torch_rate,
      'ratio': jax_rate / torch_rate,
      'roofline_fraction': flops * jax_rate / 1e9 / roofline,
      'load_average': os.getloadavg()[0],
    }
    rows.append(row)
    print(
      f'  {label} pair {k + 1}/{pairs}: JAX {jax_rate:6.2f} steps/s, torch {torch_rate:6.2f} '
      f'steps/s, ratio {row["ratio"]:.2f}, JAX at {100 * row["roofline_fraction"]:.1f}% '
      f'of roofline (load {row["load_average"]:.2f})',
      flush=True,
    )
  summary = {
    key: bench.spread([r[key] for r in rows])
    for key in ('jax_steps_per_s', 'torch_steps_per_s', 'ratio', 'roofline_fraction')
  }
  return {
    'status': 'ok',
    'jax_steps_per_trial': jax_steps,
    'torch_steps_per_trial': torch_steps,
    'pairs': rows,
    **summary,
  }


def check_parameters(system: str, jax_step, torch_step) -> dict:
  """G's and D's parameter counts on both sides (BatchNorm's scale and shift included): the
  layer-for-layer check. A ValueError if they differ."""
  state = jax_step.state
  counts = {
    'jax': {
      name: sum(x.size for x in jax.tree.leaves(net.params))
      for name, net in (('generator', state.g), ('discriminator', state.d))
    },
    'torch': torch_step.parameter_counts(),
  }
  line = lambda c: f'G {c["generator"]:,}, D {c["discriminator"]:,}'
  print(
    f'{system}: parameters JAX {line(counts["jax"])}; torch {line(counts["torch"])}', flush=True
  )
  if counts['jax'] != counts['torch']:
    raise ValueError(f'{system}: the torch reference is not layer for layer gan_jax: {counts}')
  return counts


# A system's config where it is not configs/SYSTEM.py, and the fields compare.py sets in it: full
# MNIST (60,000 images, built from PyPI on first use) is not needed to time a step.
CONFIGS = {'improved_gan': ('improved_gan_mnist', {'data.name': 'mnist5k'})}


def system_config(system: str, args):
  """The gan_jax config that `system` is timed on."""
  name, fields = CONFIGS.get(system, (system, {}))
  config = importlib.import_module(f'configs.{name}').get_config()
  for field, value in fields.items():
    section, key = field.split('.')
    config[section][key] = value
  if args.batch_size:
    config.data.batch_size = args.batch_size
  config.train.steps_per_call = args.steps_per_call
  return config


def torch_settings(config) -> dict:
  """The config's fields that the torch reference follows: TorchStep's keyword arguments."""
  return {
    'labeled_batch_size': config.data.labeled_batch_size or config.data.batch_size,
    'augment': config.data.augment,
    'g_ema_decay': config.model.g_ema_decay,
    'd_ema_decay': config.model.d_ema_decay,
    'd_init_batch': config.model.d_init_batch,
    'g_kwargs': dict(config.model.g_kwargs),
    'd_kwargs': dict(config.model.d_kwargs),
    'g_optimizer': dict(config.optimizer.g),
    'd_optimizer': dict(config.optimizer.d),
  }


def compare_system(system: str, modes: list[str], args) -> dict:
  config = system_config(system, args)
  settings = torch_settings(config)
  start = time.perf_counter()
  jax_step = bench.StepBench(config)
  print(
    f'{system}: JAX step compiled in {time.perf_counter() - start:.1f} s, '
    f'{jax_step.flops_per_step / 1e9:.2f} GFLOP/step (XLA cost analysis)',
    flush=True,
  )
  roofline = bench.roofline_gflops()
  print(f'{system}: matmul roofline {roofline:.1f} GFLOP/s', flush=True)
  result = {
    'data': config.data.name,
    'batch_size': config.data.batch_size,
    **settings,
    'flops_per_step': jax_step.flops_per_step,
    'roofline_gflops_per_s': roofline,
    'jax_compile_seconds': jax_step.lower_seconds + jax_step.compile_seconds,
    'modes': {},
  }
  for mode in modes:
    label = f'{system} {mode}'
    try:
      torch_step = torch_reference.TorchStep(
        system, mode, args.device, config.data.batch_size, **settings
      )
      if 'parameters' not in result:  # the same networks in every mode: checked once
        result['parameters'] = check_parameters(system, jax_step, torch_step)
      result['modes'][mode] = compare_mode(
        jax_step,
        torch_step,
        args.pairs,
        args.trial_seconds,
        jax_step.flops_per_step,
        roofline,
        label,
      )
    except Exception as error:  # torch.compile fails in many ways (compiler, backend, mode)
      reason = (str(error).strip().splitlines() or [''])[0][:300]
      print(f'  {label}: failed ({type(error).__name__}: {reason})', flush=True)
      traceback.print_exc(limit=3)
      result['modes'][mode] = {'status': 'failed', 'error': f'{type(error).__name__}: {reason}'}
  return result


def format_summary(results: dict) -> str:
  lines = [
    f'{"system":<12} {"torch mode":<28} {"JAX steps/s":>11} {"torch steps/s":>13} '
    f'{"JAX/torch min / median / max":>29} {"JAX % roofline":>14}'
  ]
  for system, result in results.items():
    for mode, r in result['modes'].items():
      if r['status'] != 'ok':
        lines.append(f'{system:<12} {mode:<28} failed: {r["error"][:60]}')
        continue
      ratio = r['ratio']
      lines.append(
        f'{system:<12} {mode:<28} {r["jax_steps_per_s"]["median"]:>11.2f} '
        f'{r["torch_steps_per_s"]["median"]:>13.2f} '
        f'{ratio["min"]:>11.2f} / {ratio["median"]:.2f} / {ratio["max"]:.2f}'
        f'{100 * r["roofline_fraction"]["median"]:>14.1f}'
      )
  return '\n'.join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    '--systems', default='sgan,dcgan', help=f'of: {", ".join(torch_reference.SYSTEMS)}'
  )
  parser.add_argument(
    '--modes',
    default='eager,default,max-autotune-no-cudagraphs',
    help=f'torch modes, of: {", ".join(torch_reference.MODES)}',
  )
  parser.add_argument('--pairs', type=int, default=5)
  parser.add_argument(
    '--batch_size', type=int, default=0, help="0: the config's (64; improved_gan 100)"
  )
  parser.add_argument(
    '--steps_per_call',
    type=int,
    default=1,
    help="gan_jax's train.steps_per_call (steps per jitted call, a lax.scan)",
  )
  parser.add_argument(
    '--trial_seconds',
    type=float,
    default=2.0,
    help='each trial runs about this long (steps sized from the warm-up)',
  )
  parser.add_argument(
    '--device',
    default='cuda' if torch.cuda.is_available() else 'cpu',
    help='torch device; JAX uses its default backend',
  )
  parser.add_argument('--threads', type=int, default=0, help='torch threads; 0: the CPUs available')
  parser.add_argument('--out', default='compare.json')
  args = parser.parse_args()
  systems, modes = args.systems.split(','), args.modes.split(',')
  for name, values, valid in (
    ('systems', systems, torch_reference.SYSTEMS),
    ('modes', modes, torch_reference.MODES),
  ):
    if not set(values) <= set(valid):
      parser.error(f'--{name}={",".join(values)}: valid are {", ".join(valid)}')
  if args.pairs < 1:
    parser.error('--pairs must be >= 1')

  threads = torch_reference.set_threads(args.threads)
  # OMP_WAIT_POLICY decides whether torch's idle threads spin, which matters on a shared CPU.
  machine = {
    **bench.machine(),
    'torch': torch.__version__,
    'torch_device': args.device,
    'torch_threads': threads,
    'omp_wait_policy': os.environ.get('OMP_WAIT_POLICY', ''),
  }
  print(f'machine: {machine}', flush=True)
  results = {system: compare_system(system, modes, args) for system in systems}
  machine['load_average_after'] = os.getloadavg()
  with open(args.out, 'w') as f:
    json.dump(
      {'machine': machine, 'pairs': args.pairs, 'results': results},
      f,
      indent=2,
    )
  print(format_summary(results))
  print(f'written: {args.out}')


if __name__ == '__main__':
  main()
