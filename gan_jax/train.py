"""Training: one jitted step that updates D and G, and the loop around it."""

import contextlib
import functools
import json
import os
import signal
import threading
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm
from jax.sharding import Mesh
from ml_collections import ConfigDict

from gan_jax import checks, data, evaluation, losses, models, parallel
from gan_jax.checkpoint import Checkpointer
from gan_jax.logging import MetricWriter, atomic_write_bytes, save_image_grid
from gan_jax.state import GANState, create_state

# Independent random streams derived from the run's base key.
_DATA_STREAM, _LABELED_STREAM, _STEP_STREAM = 1, 2, 3
# With num_seeds > 1, device_data's axes over the seeds: each seed draws from its own pools
# (its labeled subset is its own), the images and labels are shared.
SEED_AXES = {'images': None, 'labels': None, 'real_indices': 0, 'labeled_indices': 0}


def uses_labels(config: ConfigDict) -> bool:
  """Whether the objective reads the labeled subset (the semi-supervised systems)."""
  return 'labeled' in losses.outputs_needed(config.loss.d_terms, losses.D_TERMS)


def build_models(config: ConfigDict, num_classes: int, image_shape) -> tuple[nn.Module, nn.Module]:
  shared = dict(num_classes=num_classes, channels=image_shape[-1], image_shape=tuple(image_shape))
  generator = models.get_generator(config.model.generator, **shared)
  discriminator = models.get_discriminator(config.model.discriminator, **shared)
  return generator, discriminator


def _realness(logits: jax.Array) -> jax.Array:
  """How real D finds an image: a binary head's logit, or log p_real − log p_fake for N+1 logits."""
  if logits.shape[-1] == 1:
    return logits[..., 0]
  return jax.nn.logsumexp(logits[..., :-1], axis=-1) - logits[..., -1]


def mismatched_labels(key: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
  """(y + randint(1, N)) % N: uniform over the other classes, never the true one.

  The TF1 GAN-cls write-up took another batch's labels, which equal the true label about
  one time in ten and so teach D to reject matching pairs.
  """
  return (labels + jax.random.randint(key, labels.shape, 1, num_classes)) % num_classes


def cast_floating(tree, dtype):
  """The floating-point leaves of `tree` cast to `dtype` (no-ops where they already are)."""
  return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def make_train_step(config: ConfigDict, generator: nn.Module, discriminator: nn.Module,
                    mesh: Mesh) -> Callable[[GANState, dict], tuple[GANState, dict]]:
  """Returns `train_step(state, device_data) -> (state, metrics)`, to be jitted.

  One call makes `train.d_steps` D updates then one G update. The fake batch of the
  last D update is reused for G's update (one G forward pass fewer, as in the PyTorch
  references); 'simultaneous' order scores it with D before that update. With `num_seeds`
  K > 1 the step is vmapped over the seeds: the state, the per-seed index pools (SEED_AXES)
  and the metrics carry a leading axis of size K, and one compiled program trains all K.
  """
  d_weights, g_weights = dict(config.loss.d_terms), dict(config.loss.g_terms)
  d_needs = losses.outputs_needed(d_weights, losses.D_TERMS)
  g_needs = losses.outputs_needed(g_weights, losses.G_TERMS)
  hparams = config.loss.hparams
  batch_size, latent_dim = config.data.batch_size, config.model.latent_dim
  labeled_batch_size = config.data.labeled_batch_size or batch_size
  d_steps = config.train.d_steps
  # An objective without G terms trains D alone (the supervised baseline of SGAN).
  trains_generator = any(g_weights.values())
  generates = trains_generator or 'fake' in d_needs
  # LSGAN's D targets a (fake) and b (real): the decision boundary is midway.
  threshold = (hparams.a + hparams.b) / 2 if any(n.startswith('lsgan') for n in d_weights) else 0.0
  batch_sharding = parallel.batch_sharding(mesh)
  shard = lambda x: jax.lax.with_sharding_constraint(x, batch_sharding)
  # Mixed precision at the networks' boundary: parameters, optimizer state, BatchNorm
  # statistics, losses and metrics stay in the state's dtype (float32); with
  # model.compute_dtype='bfloat16' the layers compute in bfloat16, and gradients flow back
  # through the cast. 'float32' casts nothing (so a float64 state stays float64 in tests).
  compute = to_float32 = lambda tree: tree
  if config.model.compute_dtype == 'bfloat16':
    compute = functools.partial(cast_floating, dtype=jnp.bfloat16)
    to_float32 = functools.partial(cast_floating, dtype=jnp.float32)

  def gather(device_data, pool, key, index, size):
    idx = device_data[pool][data.batch_indices(key, index, device_data[pool].shape[0], size)]
    return shard(data.to_unit_range(device_data['images'][idx])), shard(device_data['labels'][idx])

  def discriminate(params, batch_stats, inputs, key):
    """D in training mode on each named (images, labels) input; returns outputs and new statistics."""
    names = sorted(inputs)
    if not batch_stats:
      # No BatchNorm, so one concatenated pass gives the same logits as separate ones, faster.
      images = jnp.concatenate([inputs[n][0] for n in names])
      labels = jnp.concatenate([inputs[n][1] for n in names])
      logits, features = to_float32(discriminator.apply(
          {'params': compute(params)}, compute(images), labels, train=True, rngs={'dropout': key}))
      bounds = np.cumsum([inputs[n][0].shape[0] for n in names])[:-1]
      return {n: losses.DiscOutput(l, f, inputs[n][1]) for n, l, f in
              zip(names, jnp.split(logits, bounds), jnp.split(features, bounds))}, batch_stats
    # With BatchNorm, each input is normalised by its own batch statistics, as in the papers.
    outputs = {}
    for i, n in enumerate(names):
      images, labels = inputs[n]
      (logits, features), mutated = discriminator.apply(
          {'params': compute(params), 'batch_stats': batch_stats}, compute(images), labels,
          train=True, rngs={'dropout': jax.random.fold_in(key, i)}, mutable=['batch_stats'])
      batch_stats = mutated['batch_stats']
      outputs[n] = losses.DiscOutput(*to_float32((logits, features)), labels)
    return outputs, batch_stats

  def d_loss_fn(params, batch_stats, inputs, key):
    outputs, batch_stats = discriminate(params, batch_stats, inputs, key)
    loss, parts = losses.objective(d_weights, losses.D_TERMS, outputs, hparams)
    return loss, (parts, outputs, batch_stats)

  def g_loss_of_fake(fake, d_state, inputs, key):
    inputs = {**inputs, 'fake': (fake, inputs['fake'][1])}
    outputs, _ = discriminate(d_state.params, d_state.batch_stats, inputs, key)
    return losses.objective(g_weights, losses.G_TERMS, outputs, hparams)

  def train_step(state: GANState, device_data: dict) -> tuple[GANState, dict]:
    data_key = jax.random.fold_in(state.rng, _DATA_STREAM)
    labeled_key = jax.random.fold_in(state.rng, _LABELED_STREAM)
    step_key = jax.random.fold_in(jax.random.fold_in(state.rng, _STEP_STREAM), state.step)
    d_state, g_batch_stats = state.d, state.g.batch_stats

    for i in range(d_steps):
      z_key, drop_key, wrong_key = jax.random.split(jax.random.fold_in(step_key, i), 3)
      data_index = state.step * d_steps + i
      real_images, labels = gather(device_data, 'real_indices', data_key, data_index, batch_size)
      inputs = {'real': (real_images, labels)}
      if generates:
        z = shard(jax.random.normal(z_key, (batch_size, latent_dim)))

        def generate(params, z=z, labels=labels, batch_stats=g_batch_stats):
          fake, mutated = generator.apply({'params': compute(params), 'batch_stats': batch_stats},
                                          compute(z), labels, train=True, mutable=['batch_stats'])
          return fake, mutated.get('batch_stats', {})

        fake, pull_back, g_batch_stats = jax.vjp(generate, state.g.params, has_aux=True)
        inputs['fake'] = (fake, labels)
      if 'wrong' in d_needs:
        inputs['wrong'] = (real_images, mismatched_labels(wrong_key, labels, discriminator.num_classes))
      if 'labeled' in d_needs:
        inputs['labeled'] = gather(device_data, 'labeled_indices', labeled_key, data_index,
                                   labeled_batch_size)
      d_inputs = {n: inputs[n] for n in d_needs}
      if 'fake' in d_inputs:
        d_inputs['fake'] = (jax.lax.stop_gradient(fake), labels)
      (d_loss, (d_parts, d_outputs, d_batch_stats)), d_grads = jax.value_and_grad(
          d_loss_fn, has_aux=True)(d_state.params, d_state.batch_stats, d_inputs, drop_key)
      d_before = d_state
      d_state = d_state.apply_gradients(grads=d_grads, batch_stats=d_batch_stats)

    metrics = {'d_loss': d_loss, **{f'd/{k}': v for k, v in d_parts.items()},
               'd_grad_norm': optax.tree.norm(d_grads), 'd_param_norm': optax.tree.norm(d_state.params)}
    g_state = state.g
    if trains_generator:
      scoring_d = d_state if config.train.update_order == 'alternating' else d_before
      g_inputs = {n: inputs[n] for n in g_needs}
      (g_loss, g_parts), fake_grads = jax.value_and_grad(g_loss_of_fake, has_aux=True)(
          fake, scoring_d, g_inputs, jax.random.fold_in(step_key, d_steps))
      (g_grads,) = pull_back(fake_grads)
      g_state = state.g.apply_gradients(grads=g_grads, batch_stats=g_batch_stats)
      metrics.update({'g_loss': g_loss, **{f'g/{k}': v for k, v in g_parts.items()},
                      'g_grad_norm': optax.tree.norm(g_grads),
                      'g_param_norm': optax.tree.norm(g_state.params)})
    if 'real' in d_outputs:
      metrics['d_acc_real'] = jnp.mean(_realness(d_outputs['real'].logits) > threshold)
    if 'fake' in d_outputs:
      metrics['d_acc_fake'] = jnp.mean(_realness(d_outputs['fake'].logits) <= threshold)
    if 'labeled' in d_outputs:
      labeled = d_outputs['labeled']
      metrics['d_acc_labeled'] = jnp.mean(jnp.argmax(labeled.logits[..., :-1], -1) == labeled.labels)
    return GANState(step=state.step + 1, rng=state.rng, g=g_state, d=d_state), metrics

  if config.num_seeds == 1:
    return train_step
  return jax.vmap(train_step, in_axes=(0, SEED_AXES))


def seed_scalars(values: dict, num_seeds: int) -> dict[str, float]:
  """Host floats of metrics to log. One seed: as they are. K seeds (values of shape [K]): each
  metric's mean under its own name (curves and reports read as for one run), its standard
  deviation over seeds as 'name/std' (ddof=1) and each seed's value as 'name/seed_i'."""
  values = jax.device_get(values)
  if num_seeds == 1:
    return {k: float(v) for k, v in values.items()}
  scalars = {}
  for name, value in values.items():
    value = np.asarray(value, np.float64)
    scalars.update({name: float(value.mean()), f'{name}/std': float(value.std(ddof=1)),
                    **{f'{name}/seed_{i}': float(v) for i, v in enumerate(value)}})
  return scalars


def make_sample_fn(generator: nn.Module) -> Callable:
  """`sample(g_state, z, labels) -> images`, G in inference mode (BatchNorm running statistics)."""
  @jax.jit
  def sample(g_state, z, labels):
    return generator.apply({'params': g_state.params, 'batch_stats': g_state.batch_stats}, z, labels,
                           train=False)
  return sample


class Run:
  """Everything a run needs before its first step: data on the device, models, state.

  Every check of the input (config, data, image size, workdir, checkpoints) comes before
  anything is compiled or written, so bad input leaves the workdir as it was.
  """

  def __init__(self, config: ConfigDict, workdir: str):
    checks.check_config(config)
    checks.check_workdir(workdir)
    self.config, self.workdir = config, workdir
    self.num_seeds = config.num_seeds
    self.seeds = [config.seed + i for i in range(self.num_seeds)]  # seed i is the run of seed+i
    images, labels = parallel.primary_first(
        lambda: data.load_split(config.data.name, 'train', config.data.data_dir or None), 'train data')
    images = data.pad_to(images, config.data.image_size)
    self.num_classes = data.DATASETS[config.data.name]
    self.image_shape = images.shape[1:]
    self.generator, self.discriminator = build_models(config, self.num_classes, self.image_shape)
    checks.check_image_shape(config, self.generator, self.image_shape)

    self.mesh = parallel.make_mesh()
    self.replicated = parallel.replicated(self.mesh)
    self.checkpointer = Checkpointer(workdir, config.train.max_checkpoints)
    try:
      latest = self.checkpointer.latest_step()
      self.skipped_steps: list[int] = []
      if latest is not None:
        meta = self.checkpointer.restore_meta(latest)
        checks.check_resumable(meta['config'], config, workdir)
        labeled = np.asarray(meta['labeled_indices'], np.int32).reshape(self.num_seeds, -1)
        self.skipped_steps = list(meta.get('skipped_steps', []))
      else:
        labeled = np.stack([
            data.labeled_subset(labels, config.data.num_labeled, self.num_classes, seed)
            if uses_labels(config) else np.zeros((0,), np.int32) for seed in self.seeds])
      self._place_data_and_state(images, labels, labeled, latest)
    except BaseException:
      self.checkpointer.close()  # its threads must not outlive an error exit
      raise

  def _place_data_and_state(self, images, labels, labeled, latest) -> None:
    """Puts the data on the device and builds, or restores, the state.

    `labeled`: [num_seeds, L] indices. One seed keeps the unstacked layout of a plain run.
    """
    config = self.config
    real = np.stack([np.setdiff1d(np.arange(len(labels)), l) for l in labeled]).astype(np.int32)
    pools = {'real_indices': real,
             'labeled_indices': labeled if labeled.shape[1] else np.zeros((len(labeled), 1), np.int32)}
    init = functools.partial(create_state, config, self.generator, self.discriminator, self.image_shape)
    if self.num_seeds == 1:
      labeled, pools = labeled[0], {k: v[0] for k, v in pools.items()}
    else:  # one state per seed, stacked on a leading axis
      init = lambda init=init: jax.vmap(init)(jnp.asarray(self.seeds, jnp.int32))
    self.labeled_indices = labeled
    # The whole (small) dataset lives on the device; steps gather their batches there.
    self.device_data = parallel.put_replicated(
        {'images': images, 'labels': labels.astype(np.int32), **pools}, self.replicated)

    self.sample = make_sample_fn(self.generator)
    self.init_state = jax.jit(init, out_shardings=self.replicated)
    self.state = self.init_state() if latest is None else self.restore(latest)
    self.start_step = latest or 0

  def restore(self, step: int) -> GANState:
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=self.replicated),
                            jax.eval_shape(self.init_state))
    return self.checkpointer.restore(step, abstract)

  @property
  def meta(self) -> dict:
    return {'config': json.loads(self.config.to_json_best_effort()),
            'labeled_indices': self.labeled_indices.tolist(),
            'skipped_steps': self.skipped_steps}

  _GRID_COLUMNS = 10

  def grid_noise(self, seed: int) -> jax.Array:
    return jax.random.normal(jax.random.PRNGKey(seed),
                             (self.num_classes * self._GRID_COLUMNS, self.config.model.latent_dim))

  @functools.cached_property
  def grid_inputs(self) -> tuple[list[jax.Array], jax.Array]:
    """Each seed's fixed grid noise (from its seed) and the labels: num_classes rows of 10, row r
    for class r."""
    return ([self.grid_noise(seed) for seed in self.seeds],
            jnp.repeat(jnp.arange(self.num_classes), self._GRID_COLUMNS))

  def seed_states(self, state: GANState) -> list[GANState]:
    """The state of each seed: `state` itself for one seed, else its slices on the seed axis."""
    if self.num_seeds == 1:
      return [state]
    return [jax.tree.map(lambda x, i=i: x[i], state) for i in range(self.num_seeds)]

  def seed_path(self, path: str, seed_index: int | str) -> str:
    """Where seed `seed_index` writes the file `path`: dir/seed_i/name in a K-seed run."""
    if self.num_seeds == 1:
      return path
    return os.path.join(os.path.dirname(path), f'seed_{seed_index}', os.path.basename(path))

  def save_samples(self, state: GANState, path: str, fresh: bool = False) -> None:
    """Writes each seed's grid from its fixed noise, or from fresh noise."""
    fixed_z, labels = self.grid_inputs
    for i, seed_state in enumerate(self.seed_states(state)):
      z = self.grid_noise(self.seeds[i] + 1) if fresh else fixed_z[i]
      images = self.sample(seed_state.g, z, labels)  # on every process: it is SPMD
      if parallel.is_primary():
        save_image_grid(np.asarray(jax.device_get(images)), self.num_classes, self.seed_path(path, i))

  def score(self, evaluator: evaluation.Evaluator, state: GANState) -> dict[str, float]:
    """The evaluator's scores of each seed: as they are for one seed, else as `seed_scalars`."""
    scores = [evaluator(s, seed) for seed, s in zip(self.seeds, self.seed_states(state))]
    if self.num_seeds == 1:
      return scores[0]
    return seed_scalars({k: np.array([s[k] for s in scores]) for k in scores[0]}, self.num_seeds)


class NonFiniteError(FloatingPointError):
  """A loss or gradient norm became NaN or Inf."""


class Interrupted(Exception):
  """SIGTERM or SIGINT stopped training after a checkpoint of the current step was saved."""

  def __init__(self, signal_name: str, step: int):
    super().__init__(f'{signal_name} at step {step}: checkpoint saved, run again to resume')
    self.signal_name = signal_name


def make_guarded_step(train_step: Callable) -> Callable:
  """Wraps the step to remember, on the device, the first step whose metrics were not finite.

  Checking on the host each step would sync every step; this keeps the step asynchronous
  and still names the exact step and terms when the watch is read (at logs and saves).
  """
  def guarded(state, device_data, watch):
    state, metrics = train_step(state, device_data)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves(metrics)]))
    first = (watch['step'] < 0) & ~finite
    step = jnp.max(state.step)  # a K-seed state holds K equal steps
    watch = {'step': jnp.where(first, step, watch['step']),
             'metrics': jax.tree.map(lambda old, new: jnp.where(first, new, old), watch['metrics'], metrics)}
    return state, metrics, watch
  return guarded


def make_step_fn(train_step: Callable, steps_per_call: int) -> Callable:
  """`step_fn(state, device_data, watch) -> (state, last metrics, watch)`: jitted, state and
  watch donated, `steps_per_call` guarded steps per call as a `lax.scan`."""
  guarded = make_guarded_step(train_step)

  def steps(state, device_data, watch):
    if steps_per_call == 1:
      return guarded(state, device_data, watch)

    def body(carry, _):
      state, metrics, watch = guarded(carry[0], device_data, carry[1])
      return (state, watch), metrics

    (state, watch), metrics = jax.lax.scan(body, (state, watch), length=steps_per_call)
    return state, jax.tree.map(lambda m: m[-1], metrics), watch

  return jax.jit(steps, donate_argnums=(0, 2))


def _fresh_watch(metrics_shape) -> dict:
  return {'step': jnp.asarray(-1, jnp.int32),
          'metrics': jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), metrics_shape)}


@contextlib.contextmanager
def _stop_requests():
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


def train_and_evaluate(config: ConfigDict, workdir: str) -> dict[str, float]:
  """Trains from scratch, or resumes from the latest checkpoint in `workdir`; returns the last metrics."""
  run = Run(config, workdir)
  tc = config.train
  os.makedirs(run.checkpointer.directory, exist_ok=True)
  run.checkpointer.remove_unfinished()
  # Every process computes every value; process 0 alone writes them (the workdir may be shared).
  primary = parallel.is_primary()
  if primary:
    atomic_write_bytes(os.path.join(workdir, 'config.json'), config.to_json_best_effort(indent=2).encode())
  writer = MetricWriter(workdir, resume_step=run.start_step) if primary else parallel.NullWriter()
  train_step = make_train_step(config, run.generator, run.discriminator, run.mesh)
  per_call = tc.steps_per_call
  # jit compiles on first use: the single-step function only where a whole call cannot run.
  step_fns = {1: make_step_fn(train_step, 1), per_call: make_step_fn(train_step, per_call)}
  skip_fn = jax.jit(lambda state: state.replace(step=state.step + 1), donate_argnums=0)
  metrics_shape = jax.eval_shape(train_step, run.state, run.device_data)[1]
  # Placed like the step's output, so that the step compiles once, not again on its second call.
  new_watch = lambda: jax.device_put(_fresh_watch(metrics_shape), run.replicated)
  state, step, watch, last = run.state, run.start_step, new_watch(), {}
  evaluator = None
  if config.eval.every and step < tc.num_steps:
    evaluator = parallel.primary_first(
        lambda: evaluation.Evaluator(config, run.generator, run.discriminator), 'eval classifier')
  progress = tqdm.tqdm(total=tc.num_steps, initial=step, desc='train', unit='step', dynamic_ncols=True,
                       disable=not primary)

  def check_finite():
    """Raises, or rolls back to the last checkpoint, if any step since the last check was not finite."""
    nonlocal state, step, watch
    bad_step = int(watch['step'])
    if bad_step < 0:
      return False
    # Each non-finite value by name, and by seed in a K-seed run (named as in metrics.jsonl).
    values = {k: np.atleast_1d(v) for k, v in jax.device_get(watch['metrics']).items()}
    name = (lambda k, i: k) if run.num_seeds == 1 else (lambda k, i: f'{k}/seed_{i}')
    terms = ', '.join(f'{name(k, i)}={float(v[i])}' for k, v in values.items()
                      for i in np.flatnonzero(~np.isfinite(v)))
    good = run.checkpointer.latest_step()
    rollbacks = len(run.skipped_steps)  # over the whole run: the checkpoint keeps the list
    if tc.on_nonfinite != 'rollback' or rollbacks >= tc.max_rollbacks:
      raise NonFiniteError(f'non-finite {terms} at step {bad_step}; training stopped, the last good '
                           f'checkpoint is step {good}')
    run.skipped_steps.append(bad_step)
    tqdm.tqdm.write(f'non-finite {terms} at step {bad_step}: back to step {good or 0}, skipping it '
                    f'(rollback {rollbacks + 1} of {tc.max_rollbacks})')
    state = run.init_state() if good is None else run.restore(good)
    step, watch = good or 0, new_watch()
    writer.drop_after(step)
    progress.reset(total=tc.num_steps)
    progress.update(step)
    return True

  try:
    with _stop_requests() as stop:
      while step < tc.num_steps:
        # Whole calls on the grid of steps_per_call; single steps where a call would pass the
        # end, start off the grid (resumed with another steps_per_call) or hold a skipped step.
        size = per_call if (step % per_call == 0 and step + per_call <= tc.num_steps and not any(
            step < s <= step + per_call for s in run.skipped_steps)) else 1
        step += size
        if step in run.skipped_steps:
          state = skip_fn(state)  # the step of a rolled-back non-finite update: its batch is skipped
        else:
          state, metrics, watch = step_fns[size](state, run.device_data, watch)
        progress.update(size)
        final, stopping = step == tc.num_steps, bool(stop)  # a signal may arrive at any moment
        # Metrics stay on the device between logging steps: reading them forces a host sync.
        if (step % tc.log_every == 0 or final) and step not in run.skipped_steps:
          if check_finite():
            continue
          last = seed_scalars(metrics, run.num_seeds)
          writer.write(step, last)
          progress.set_postfix({k: f'{last[k]:.3f}' for k in ('d_loss', 'g_loss') if k in last})
        if step % tc.sample_every == 0 or final:
          run.save_samples(state, os.path.join(workdir, 'samples', f'step_{step:06d}.png'))
        if step % tc.checkpoint_every == 0 or final or stopping:
          if check_finite():  # a checkpoint is only ever written of a finite state
            continue
          run.checkpointer.save(state, run.meta)
        if evaluator and (step % config.eval.every == 0 or final):
          if check_finite():
            continue
          scores = run.score(evaluator, state)
          writer.write(step, {f'eval/{k}': v for k, v in scores.items()})
          if primary:
            evaluation.save_eval(workdir, step, scores)
        if stopping:
          raise Interrupted(stop[0], step)
  finally:
    progress.close()
    run.checkpointer.wait()
    run.checkpointer.close()
    writer.close()
  return last


def sample(config: ConfigDict, workdir: str) -> str:
  """Writes a grid per seed from the latest checkpoint in `workdir` (fresh noise); returns its
  path (a `seed_*` pattern for a K-seed run)."""
  run = Run(config, workdir)
  run.checkpointer.close()
  if run.start_step == 0:
    raise ValueError(f'workdir={workdir!r} has no checkpoint to sample from')
  path = os.path.join(workdir, 'samples', f'sample_step_{run.start_step:06d}.png')
  run.save_samples(run.state, path, fresh=True)
  return run.seed_path(path, '*')


def evaluate(config: ConfigDict, workdir: str) -> str:
  """--mode=eval: scores the latest checkpoint of `workdir` (eval.json, report.md); returns its path."""
  run = Run(config, workdir)
  run.checkpointer.close()
  if run.start_step == 0:
    raise ValueError(f'workdir={workdir!r} has no checkpoint to evaluate')
  scores = run.score(evaluation.Evaluator(config, run.generator, run.discriminator), run.state)
  if parallel.is_primary():  # every process scores (one program over all devices), one writes
    evaluation.save_eval(workdir, run.start_step, scores)
  return os.path.join(workdir, 'eval.json')
