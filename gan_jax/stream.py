"""Batches streamed from the host, for data larger than `data.device_bytes`.

A streamed step sees the batches the on-device step would gather: the same `data.batch_indices`
of the same keys (`rng.step_keys` of the run's key) and step, so the two are one run, bitwise,
and a resumed streamed run goes on exactly. grain maps steps to batches on background threads,
ahead of the step; each process gathers only the rows of the batch that its own devices hold.
"""

import grain
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from gan_jax import data
from gan_jax.batches import StreamedBatches
from gan_jax.rng import step_keys
from gan_jax.seeds import Seeds

# Steps whose batches grain prepares ahead of the one the step is on, and its threads.
PREFETCH_STEPS = 4
THREADS = 2


def fits_on_device(images: np.ndarray, device_bytes: int) -> bool:
  """Whether the images live on the device (batches gathered there) rather than stream."""
  return images.nbytes <= device_bytes


def local_rows(sharding: NamedSharding, shape: tuple[int, ...], axis: int) -> np.ndarray:
  """The positions along `axis` that this process's devices hold, in order."""
  rows = set()
  for index in sharding.addressable_devices_indices_map(shape).values():
    rows.update(range(*index[axis].indices(shape[axis])))
  return np.array(sorted(rows), np.int64)


class HostBatches:
  """Each step's batches of every pool, read on the host and put on the devices.

  `pools`: each pool's indices into `images` (`batches.pool_sizes` names those a step draws),
  and `labels` the labels the step may see, both in the run's seed layout; `rngs` the run's key
  of each seed. `take(step, n)` gives the batches of a call of `n` steps from `step`.
  """

  def __init__(
    self,
    images: np.ndarray,
    labels: np.ndarray,
    pools: dict[str, np.ndarray],
    rngs: np.ndarray,
    batch_sizes: dict[str, int],
    d_steps: int,
    seeds: Seeds,
    mesh: Mesh,
    num_steps: int,
  ):
    self.images, self.labels, self.seeds = images, labels, seeds
    self.pools = {name: np.asarray(pool) for name, pool in pools.items()}
    self.batch_sizes, self.d_steps, self.num_steps = batch_sizes, d_steps, num_steps
    cpu = jax.local_devices(backend='cpu')[0]  # indices are drawn on the host, whatever the device
    self.rngs = jax.device_put(rngs, cpu)
    self.indices = jax.jit(seeds.vectorize(self._indices, in_axes=(0, None)))
    self.lead = (seeds.count,) if seeds.stacked else ()
    self.batch_axis = 1 + len(self.lead) + 1  # [n, (K,) d_steps, batch, ...]
    # Every pool's batches are split over the devices along their batch axis alone.
    self.sharding = NamedSharding(mesh, P(*[None] * self.batch_axis, 'data'))
    self.rows = {
      name: local_rows(self.sharding, self.call_shape(name, 1), self.batch_axis)
      for name in batch_sizes
    }
    self._iterator, self._next_step = None, None

  def call_shape(self, pool: str, n: int) -> tuple[int, ...]:
    return (n, *self.lead, self.d_steps, self.batch_sizes[pool])

  def _indices(self, rng: jax.Array, step: jax.Array) -> dict[str, jax.Array]:
    """One seed's image indices of `step`: [d_steps, batch] per pool, as the step draws them."""
    pool_keys = step_keys(rng, step).of_pools()

    def draw(name: str, d_step: int) -> jax.Array:
      index = step * self.d_steps + d_step
      size = self.pools[name].shape[-1]
      return data.batch_indices(pool_keys[name], index, size, self.batch_sizes[name])

    return {
      name: jnp.stack([draw(name, i) for i in range(self.d_steps)]) for name in self.batch_sizes
    }

  def host_batch(self, step: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """This process's rows of the batches of `step`, in the layout [(K,) d_steps, rows, ...]."""
    picks = jax.device_get(self.indices(self.rngs, np.int32(step)))
    batches = {}
    for name, pick in picks.items():
      pick = pick[..., self.rows[name]]  # [(K,) d_steps, rows]: positions in each seed's pool
      pool = self.pools[name]
      if self.seeds.stacked:
        index = np.stack([pool[k][pick[k]] for k in range(self.seeds.count)])
        labels = np.stack([self.labels[k][index[k]] for k in range(self.seeds.count)])
      else:
        index = pool[pick]
        labels = self.labels[index]
      batches[name] = (self.images[index], labels)
    return batches

  def _start(self, step: int) -> None:
    steps = grain.MapDataset.range(step, self.num_steps).map(self.host_batch)
    options = grain.ReadOptions(num_threads=THREADS, prefetch_buffer_size=PREFETCH_STEPS)
    self._iterator, self._next_step = iter(steps.to_iter_dataset(options)), step

  def take(self, step: int, n: int) -> StreamedBatches:
    """The batches of a call of `n` steps from `step` (a jump, e.g. a rollback, restarts grain)."""
    if step != self._next_step:
      self._start(step)
    host = [next(self._iterator) for _ in range(n)]
    self._next_step = step + n
    return StreamedBatches({name: self._put(name, [h[name] for h in host]) for name in host[0]})

  def _put(self, name: str, steps: list) -> tuple[jax.Array, jax.Array]:
    shape = self.call_shape(name, len(steps))
    images, labels = (np.stack(part) for part in zip(*steps))
    return (
      jax.make_array_from_process_local_data(
        self.sharding, images, (*shape, *self.images.shape[1:])
      ),
      jax.make_array_from_process_local_data(self.sharding, labels, shape),
    )

  def abstract(self, n: int) -> StreamedBatches:
    """Shapes, dtypes and shardings of `take(step, n)`, for compiling without data."""
    return StreamedBatches(
      {
        name: (
          jax.ShapeDtypeStruct(
            (*self.call_shape(name, n), *self.images.shape[1:]), np.uint8, sharding=self.sharding
          ),
          jax.ShapeDtypeStruct(self.call_shape(name, n), np.int32, sharding=self.sharding),
        )
        for name in self.batch_sizes
      }
    )
