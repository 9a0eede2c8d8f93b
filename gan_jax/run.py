"""A run's set-up: every check, the data on the device, the models, and the state (new or restored)."""

import functools
import json

import jax
import jax.numpy as jnp
from ml_collections import ConfigDict
import numpy as np

from gan_jax import checks, data, evaluation, models, parallel, stream
from gan_jax.checkpoint import Checkpointer
from gan_jax.errors import BadInput
from gan_jax.objective import Objective
from gan_jax.rng import GRID_STREAM, INIT_STREAM, SAMPLE_STREAM, stream_key
from gan_jax.seeds import Seeds
from gan_jax.state import GANState, apply_inference, create_state
from gan_jax.writers import save_image_grid

GRID_COLUMNS = 10  # a sample grid has one row per class


class Run:
  """Everything a run needs before its first step: data on the device, models, state.

  Every check of the input (config, data, image size, workdir, checkpoints) comes before
  anything is compiled or written, so bad input leaves the workdir as it was.
  """

  def __init__(self, config: ConfigDict, workdir: str):
    checks.check_config(config)
    checks.check_workdir(workdir)
    self.config, self.workdir = config, workdir
    self.objective = Objective(config.loss)
    self.seeds = Seeds(config.seed, config.num_seeds)
    # Process 0 prepares the data on first use; the others then read what it wrote.
    self.dataset = parallel.primary_first(lambda: data.open_dataset(config.data), 'data')
    images, labels = self.dataset.split('train')
    self.num_classes = self.dataset.num_classes
    self.image_shape = images.shape[1:]
    checks.check_data(config, len(labels), np.bincount(labels, minlength=self.num_classes))
    needs_labels = (
      self.objective.needs_labels or config.model.generator in models.CONDITIONAL_GENERATORS
    )
    if needs_labels and not self.dataset.labeled:
      raise BadInput(
        f'data.folder={config.data.folder!r} has no class subfolders, and this '
        'system needs labels; put the images of each class in a subfolder of its own'
      )
    self.generator, self.discriminator = models.build(
      config.model, self.num_classes, self.image_shape
    )
    checks.check_image_shape(config, self.generator, self.image_shape)
    self.d_fields = models.model_fields(type(self.discriminator))  # what the advice may set

    self.mesh = parallel.make_mesh()
    self.replicated = parallel.replicated(self.mesh)
    self.checkpointer = Checkpointer(workdir, config.train.max_checkpoints)
    try:
      latest = self.checkpointer.latest_step()
      self.skipped_steps: list[int] = []
      if latest is not None:
        meta = self.checkpointer.restore_meta(latest)
        checks.check_resumable(meta['config'], config, workdir)
        labeled = list(np.asarray(meta['labeled_indices'], np.int32).reshape(self.seeds.count, -1))
        self.skipped_steps = list(meta.get('skipped_steps', []))
      else:
        labeled = [
          data.labeled_subset(labels, config.data.num_labeled, self.num_classes, seed)
          if self.objective.uses_labels
          else np.zeros((0,), np.int32)
          for seed in self.seeds.values
        ]
      self._place_data_and_state(images, labels, labeled, latest)
    except BaseException:
      self.checkpointer.close()  # its threads must not outlive an error exit
      raise

  def _place_data_and_state(self, images, labels, labeled: list[np.ndarray], latest) -> None:
    """Puts the data on the device and builds, or restores, the state. `labeled`: each seed's
    labeled-subset indices."""
    # Unlabeled batches come from the whole split, the labeled subset included (Salimans et al.
    # 2016): more labels never means fewer unlabeled images.
    real = [np.arange(len(labels), dtype=np.int32) for _ in labeled]
    # A pool must not be empty: without a label budget the labeled pool is a dummy index.
    labeled_pool = [l if len(l) else np.zeros((1,), np.int32) for l in labeled]
    self.labeled_indices = self.seeds.stack(labeled)
    visible = self.seeds.stack([self.visible_labels(labels, l) for l in labeled])
    pools = {
      'real_indices': self.seeds.stack(real),
      'labeled_indices': self.seeds.stack(labeled_pool),
    }
    # Data within data.device_bytes lives on the device and the step gathers its batches there;
    # larger data stays on the host, which streams each step's batches (stream.HostBatches).
    on_device = stream.fits_on_device(images, self.config.data.device_bytes)
    self.device_data = (
      parallel.put_replicated({'images': images, 'labels': visible, **pools}, self.replicated)
      if on_device
      else None
    )
    init = functools.partial(
      create_state, self.config, self.generator, self.discriminator, self.image_shape
    )
    init_batches = ()
    if self.config.model.d_init_batch:
      init_batches = (self.seeds.stack([self.init_images(images, s) for s in self.seeds.values]),)
    self.sample = jax.jit(functools.partial(apply_inference, self.generator))
    self.init_state = jax.jit(self.seeds.init(init, *init_batches), out_shardings=self.replicated)
    self.state = self.init_state() if latest is None else self.restore(latest)
    self.start_step = latest or 0
    self.host_batches = None if on_device else self._host_batches(images, visible, pools)

  def init_images(self, images: np.ndarray, seed: int) -> np.ndarray:
    """The [-1, 1] training images D is initialised on in the run of `seed`: model.d_init_batch
    of them, drawn by the seed's init stream."""
    rng = np.random.default_rng([seed, INIT_STREAM])
    count = min(self.config.model.d_init_batch, len(images))
    chosen = np.sort(rng.choice(len(images), count, replace=False))
    return np.asarray(data.to_unit_range(images[chosen]))

  def _host_batches(self, images, visible, pools) -> stream.HostBatches:
    config = self.config
    sizes = {'real_indices': config.data.batch_size}
    if self.objective.uses_labels:
      sizes['labeled_indices'] = config.data.labeled_batch_size or config.data.batch_size
    return stream.HostBatches(
      images,
      visible,
      pools,
      np.asarray(jax.device_get(self.state.rng)),
      sizes,
      config.train.d_steps,
      self.seeds,
      self.mesh,
      config.train.num_steps,
    )

  def step_inputs(self, step: int, n: int) -> dict:
    """The data of a call of `n` steps from `step`: on the device, or streamed for these steps."""
    return self.device_data if self.host_batches is None else self.host_batches.take(step, n)

  def abstract_inputs(self, n: int) -> dict:
    """What `step_inputs(step, n)` gives, for compiling: the data itself, or the batches' shapes."""
    return self.device_data if self.host_batches is None else self.host_batches.abstract(n)

  def visible_labels(self, labels: np.ndarray, labeled: np.ndarray) -> np.ndarray:
    """The labels the step may see: all of them, or under a label budget those of the labeled
    subset alone (-1 elsewhere), so that no label outside the budget can reach a model."""
    if not self.objective.uses_labels:
      return labels.astype(np.int32)
    visible = np.full(len(labels), -1, np.int32)
    visible[labeled] = labels[labeled]
    return visible

  def state_at(self, step: int) -> GANState:
    """The state after `step` steps: the fresh one at 0, else the checkpoint of that step."""
    return self.init_state() if step == 0 else self.restore(step)

  def restore(self, step: int) -> GANState:
    abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=self.replicated),
      jax.eval_shape(self.init_state),
    )
    # A checkpoint from before the lazy terms' logged values were kept logs 0 until they apply.
    return self.checkpointer.restore(step, abstract, zero_if_absent=('lazy_parts',))

  @property
  def meta(self) -> dict:
    return {
      'config': json.loads(self.config.to_json_best_effort()),
      'labeled_indices': self.labeled_indices.tolist(),
      'skipped_steps': self.skipped_steps,
    }

  def grid_noise(self, seed: int, stream: int = GRID_STREAM) -> jax.Array:
    """The noise of a grid of the run of `seed`: its fixed grid, or (SAMPLE_STREAM) fresh samples."""
    return jax.random.normal(
      stream_key(seed, stream), (self.num_classes * GRID_COLUMNS, self.config.model.latent_dim)
    )

  @functools.cached_property
  def grid_inputs(self) -> tuple[list[jax.Array], jax.Array]:
    """Each seed's fixed grid noise (from its seed) and the labels: row r for class r."""
    return (
      [self.grid_noise(seed) for seed in self.seeds.values],
      jnp.repeat(jnp.arange(self.num_classes), GRID_COLUMNS),
    )

  def save_samples(self, state: GANState, path: str, fresh: bool = False) -> dict[str, np.ndarray]:
    """Writes each seed's grid from its fixed noise, or from fresh noise; returns them by name
    ('samples', or 'samples/seed_i') on process 0."""
    fixed_z, labels = self.grid_inputs
    grids = {}
    for i, seed_state in enumerate(self.seeds.split(state)):
      z = self.grid_noise(self.seeds.values[i], SAMPLE_STREAM) if fresh else fixed_z[i]
      images = self.sample(seed_state.sampler, z, labels)  # on every process: it is SPMD
      if parallel.is_primary():
        grids[self.seeds.name('samples', i)] = save_image_grid(
          np.asarray(jax.device_get(images)), self.num_classes, self.seeds.path(path, i)
        )
    return grids

  def evaluator(self) -> evaluation.Evaluator:
    """The run's evaluator (process 0 trains and caches its classifier first)."""
    return parallel.primary_first(
      lambda: evaluation.Evaluator(
        self.config, self.dataset, self.generator, self.discriminator, self.objective
      ),
      'eval classifier',
    )

  def score(self, evaluator: evaluation.Evaluator, state: GANState) -> dict[str, float]:
    """The evaluator's scores of every seed, as `Seeds.merge` names them."""
    return self.seeds.merge(
      [evaluator(s, seed) for seed, s in zip(self.seeds.values, self.seeds.split(state))]
    )

  def close(self) -> None:
    self.checkpointer.wait()
    self.checkpointer.close()


def latest_run(config: ConfigDict, workdir: str, purpose: str) -> Run:
  """The run of `workdir` at its latest checkpoint, for `purpose` (checkpointer closed)."""
  run = Run(config, workdir)
  run.checkpointer.close()
  if run.start_step == 0:
    raise BadInput(f'workdir={workdir!r} has no checkpoint to {purpose}')
  return run
