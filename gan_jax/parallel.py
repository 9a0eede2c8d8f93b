"""Devices of a run: the multi-process setup, the ('data',) mesh and its shardings.

Every process (one per host, or one per GPU under srun) runs the same program on global
arrays: the state and the small dataset are replicated on every device of every process,
the batch is sharded over all of them. Nothing else in the code depends on the number of
processes, except that only process 0 writes logs, grids and scores.
"""

from collections.abc import Callable
import os
from typing import TypeVar

import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from gan_jax.errors import BadInput

T = TypeVar('T')


def _launched_as_one_of_several() -> bool:
  """Whether the environment describes a multi-process run, in variables jax.distributed reads:
  srun's or mpirun's with several tasks, or JAX_COORDINATOR_ADDRESS (e.g. on a TPU pod slice,
  whose process count and ids JAX reads from the TPU metadata)."""
  slurm = 'SLURM_STEP_NODELIST' in os.environ and int(os.environ.get('SLURM_NTASKS', '1')) > 1
  open_mpi = (
    'OMPI_MCA_orte_hnp_uri' in os.environ and int(os.environ.get('OMPI_COMM_WORLD_SIZE', '1')) > 1
  )
  return slurm or open_mpi or 'JAX_COORDINATOR_ADDRESS' in os.environ


def initialize_distributed(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
) -> bool:
  """Joins a multi-process run if the arguments or the launcher describe one; returns whether.

  Must come before anything touches the devices. An argument left None is taken from the
  environment by `jax.distributed.initialize`: JAX_COORDINATOR_ADDRESS, SLURM's or Open MPI's
  variables, a TPU VM's metadata. On CPU the processes talk through gloo, JAX's default CPU
  collectives.
  """
  given = {
    'coordinator_address': coordinator_address,
    'num_processes': num_processes,
    'process_id': process_id,
  }
  given = {k: v for k, v in given.items() if v is not None}
  if not given and not _launched_as_one_of_several():
    return False
  try:
    jax.distributed.initialize(**given)
  except (ValueError, TypeError) as error:  # a missing or inconsistent launch flag
    flags = (
      ' '.join(f'--{k}={v}' for k, v in given.items()) or 'JAX_COORDINATOR_ADDRESS/srun/mpirun'
    )
    raise BadInput(f'{flags}: {str(error).rstrip(".")}') from None
  return True


def is_primary() -> bool:
  """Whether this process writes the run's files (the others compute the same values)."""
  return jax.process_index() == 0


def primary_first(fn: Callable[[], T], name: str) -> T:
  """`fn()` in process 0, then in the others once it has returned.

  For what is prepared on first use and kept on disk (a tfds dataset, the eval classifier):
  on a shared file system the others then read what process 0 wrote instead of racing it
  (two processes preparing one dataset: FileExistsError). `fn` must not run collectives.
  """
  if is_primary():
    result = fn()
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)
  if not is_primary():
    result = fn()
  return result


def device_memory_bytes() -> int:
  """What one device can hold: its memory limit, or on a CPU (which reports none) the host's RAM."""
  stats = jax.local_devices()[0].memory_stats() or {}
  return stats.get('bytes_limit') or os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')


def make_mesh() -> Mesh:
  """A 1-D mesh over every device of every process."""
  return Mesh(np.array(jax.devices()), ('data',))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """The leading (batch) axis split over the devices."""
  return NamedSharding(mesh, P('data'))


def put_replicated(tree, sharding: NamedSharding):
  """Host arrays, the same on every process, onto every device of `sharding`.

  Built from each process's own copy: `jax.device_put` to devices of other processes would
  first all-gather the arrays to check that they are equal, N copies of the dataset per host.
  """

  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree.map(put, tree)
