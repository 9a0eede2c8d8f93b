"""The step's batches, from either of two sources behind one interface.

`DeviceBatches`: the training split on the device, each batch gathered there (data within
`data.device_bytes`). `StreamedBatches`: the batches the host read for a call
(`stream.HostBatches`). Both are pytrees, so jit, vmap and scan take them, and the step reads
them alike: `batch` for a pool's batch, `for_call` for a call's order, `seed_axes` for the
seeds' vmap, and `per_step` / `of_step` for a scan over a call's steps.

A pool is what batches are drawn from: 'real' (the whole split), 'labeled' (each seed's
labeled subset; a dummy index without a label budget) and 'g_real' (the whole split again, in an
order of its own: G's real batches with train.g_batch='fresh').
"""

from collections.abc import Callable

import flax.struct
import jax
from ml_collections import ConfigDict

from gan_jax import data
from gan_jax.objective import Objective


def pool_sizes(config: ConfigDict, objective: Objective) -> dict[str, int]:
  """The batch size of each pool a step of `config` draws from, by name."""
  sizes = {'real': config.data.batch_size}
  if objective.uses_labels:
    sizes['labeled'] = config.data.labeled_batch_size or config.data.batch_size
  if objective.trains_generator and config.train.g_batch == 'fresh':
    sizes['g_real'] = config.data.batch_size
  return sizes


@flax.struct.dataclass
class DeviceBatches:
  """uint8 images [N, ...] (shared by the seeds), the labels the step may see [(K,) N] and each
  pool's indices into the images [(K,) size]: every step gathers its batches from them.

  `order`, set for a call (`replace(order=...)`): each pool's positions for every D update of the
  call's steps, [n, (K,) d_steps, size], drawn before its first step (`order_of_call`); within
  a step [(K,) d_steps, size]. Without it a step draws its own (`data.batch_indices`), the same.

  It is also its own source of each call's batches (as `stream.HostBatches` is of streamed
  ones): the same data for every call.
  """

  images: jax.Array
  labels: jax.Array
  pools: dict[str, jax.Array]
  order: dict[str, jax.Array] | None = None

  def batch(self, pool: str, key: jax.Array, index: jax.Array, size: int, d_step: int):
    """Batch `index` of `pool`, (uint8 images, labels): `size` of its examples drawn by `key`."""
    indices = self.pools[pool]
    if self.order is None:
      positions = data.batch_indices(key, index, indices.shape[0], size)
    else:
      positions = self.order[pool][d_step]
    idx = indices[positions]
    return self.images[idx], self.labels[idx]

  def order_of_call(
    self, keys: dict[str, jax.Array], first_step: jax.Array, num_steps: int, d_steps: int, sizes
  ) -> dict[str, jax.Array]:
    """One seed's positions in each pool of `sizes` (its batch size) for every D update of
    `num_steps` steps from `first_step`, [num_steps, d_steps, size]: the draws of `batch`, each
    epoch's permutation made once."""
    return {
      pool: data.call_indices(
        keys[pool], first_step * d_steps, num_steps * d_steps, self.pools[pool].shape[-1], size
      ).reshape(num_steps, d_steps, size)
      for pool, size in sizes.items()
    }

  def for_call(self, draw_order: Callable[['DeviceBatches'], dict]) -> 'DeviceBatches':
    """These batches with the order of a call's steps, `draw_order(self)`."""
    return self.replace(order=draw_order(self))

  def seed_axes(self) -> 'DeviceBatches':
    """vmap's axes over the seeds: each seed has its own labeled subset, so its own pools,
    visible labels and order; the images are shared."""
    return DeviceBatches(images=None, labels=0, pools=0, order=None if self.order is None else 0)

  def per_step(self) -> dict[str, jax.Array] | None:
    return self.order  # what a scan slices per step: the order, if drawn; the data is read whole

  def of_step(self, sliced: dict[str, jax.Array] | None) -> 'DeviceBatches':
    return self if sliced is None else self.replace(order=sliced)

  def take(self, step: int, n: int) -> 'DeviceBatches':
    return self

  def abstract(self, n: int) -> 'DeviceBatches':
    return self


@flax.struct.dataclass
class StreamedBatches:
  """Each pool's batches as the host read them, (uint8 images, labels), of shape
  [n, (K,) d_steps, batch, ...] for a call of n steps; within a step, without the leading n."""

  pools: dict[str, tuple[jax.Array, jax.Array]]

  def batch(self, pool: str, key: jax.Array, index: jax.Array, size: int, d_step: int):
    """The batch of D update `d_step` of this step of `pool`: the one the host drew with the same
    (key, index, size) as `DeviceBatches.batch`."""
    del key, index, size
    return jax.tree.map(lambda x: x[d_step], self.pools[pool])

  def for_call(self, draw_order: Callable) -> 'StreamedBatches':
    return self  # the host drew them in order

  def seed_axes(self) -> int:
    return 0  # every batch is a seed's own

  def per_step(self) -> 'StreamedBatches':
    return self

  def of_step(self, sliced: 'StreamedBatches') -> 'StreamedBatches':
    return sliced


Batches = DeviceBatches | StreamedBatches


def first_step(batches: Batches) -> Batches:
  """The batches of a call's first step."""
  return batches.of_step(jax.tree.map(lambda x: x[0], batches.per_step()))
