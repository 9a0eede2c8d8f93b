"""A run at its start: its set-up, checkpoints, state (new or restored), batches and grids."""

import functools
import json

import jax
from ml_collections import ConfigDict
import numpy as np

from gan_jax import checks, parallel, stream
from gan_jax.batches import DeviceBatches, pool_sizes
from gan_jax.checkpoint import Checkpointer
from gan_jax.errors import BadInput
from gan_jax.grids import SampleGrids
from gan_jax.setup import Setup
from gan_jax.state import GANState, create_state


class States:
  """A run's state at a step: its seeds' fresh state at 0, else the checkpoint of that step."""

  def __init__(self, setup: Setup, checkpointer: Checkpointer):
    config, seeds = setup.config, setup.seeds
    init = functools.partial(
      create_state, config, setup.generator, setup.discriminator, setup.image_shape
    )
    init_batches = ()
    if config.model.d_init_batch:
      init_batches = (seeds.stack([setup.init_images(s) for s in seeds.values]),)
    self.fresh = jax.jit(seeds.init(init, *init_batches), out_shardings=setup.replicated)
    self.checkpointer, self.replicated = checkpointer, setup.replicated

  def at(self, step: int) -> GANState:
    return self.fresh() if step == 0 else self.restore(step)

  def restore(self, step: int) -> GANState:
    abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=self.replicated),
      jax.eval_shape(self.fresh),
    )
    # A checkpoint from before the lazy terms' logged values were kept logs 0 until they apply.
    return self.checkpointer.restore(step, abstract, zero_if_absent=('lazy_parts',))


def batch_source(
  setup: Setup, labeled: list[np.ndarray], rngs: jax.Array
) -> DeviceBatches | stream.HostBatches:
  """Where each call's batches come from (`take(step, n)`, and `abstract(n)` for compiling):
  the data on the device, where the images fit data.device_bytes, and the step gathers its
  batches there; else the host, which streams each step's batches. `labeled`: each seed's
  labeled subset; `rngs`: each seed's run key, which draws the batches."""
  config, seeds = setup.config, setup.seeds
  # Unlabeled batches come from the whole split, the labeled subset included (Salimans et al.
  # 2016): more labels never means fewer unlabeled images.
  real = [np.arange(len(setup.labels), dtype=np.int32) for _ in labeled]
  # A pool must not be empty: without a label budget the labeled pool is a dummy index.
  labeled_pool = [l if len(l) else np.zeros((1,), np.int32) for l in labeled]
  sizes = pool_sizes(config, setup.objective)
  pools = {'real': seeds.stack(real), 'labeled': seeds.stack(labeled_pool)}
  if 'g_real' in sizes:
    pools['g_real'] = pools['real']
  visible = seeds.stack([setup.visible_labels(l) for l in labeled])
  if stream.fits_on_device(setup.images, config.data.device_bytes):
    return parallel.put_replicated(DeviceBatches(setup.images, visible, pools), setup.replicated)
  return stream.HostBatches(
    setup.images,
    visible,
    pools,
    np.asarray(jax.device_get(rngs)),
    sizes,
    config.train.d_steps,
    seeds,
    setup.mesh,
    config.train.num_steps,
  )


class Run:
  """Everything a run needs before its first step.

  Every check of the input (the set-up's, then the checkpoints') comes before anything is
  compiled or written, so bad input leaves the workdir as it was.
  """

  def __init__(self, config: ConfigDict, workdir: str):
    self.setup = setup = Setup(config, workdir)
    self.checkpointer = Checkpointer(workdir, config.train.max_checkpoints)
    try:
      self.start_step = self.checkpointer.latest_step() or 0
      self.skipped_steps: list[int] = []
      if self.start_step:
        meta = self.checkpointer.restore_meta(self.start_step)
        checks.check_resumable(meta['config'], config, workdir)
        labeled = list(np.asarray(meta['labeled_indices'], np.int32).reshape(setup.seeds.count, -1))
        self.skipped_steps = list(meta.get('skipped_steps', []))
      else:
        labeled = setup.labeled_subsets()
      self.labeled_indices = setup.seeds.stack(labeled)
      self.states = States(setup, self.checkpointer)
      self.state = self.states.at(self.start_step)
      self.batches = batch_source(setup, labeled, self.state.rng)
      self.grids = SampleGrids(
        setup.generator, setup.seeds, setup.num_classes, config.model.latent_dim
      )
    except BaseException:
      self.checkpointer.close()  # its threads must not outlive an error exit
      raise

  @property
  def meta(self) -> dict:
    return {
      'config': json.loads(self.setup.config.to_json_best_effort()),
      'labeled_indices': self.labeled_indices.tolist(),
      'skipped_steps': self.skipped_steps,
    }

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
