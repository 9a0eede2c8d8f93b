"""Sample grids: each seed's G on a grid of noise, one row per class, written as an image."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import parallel
from gan_jax.rng import GRID_STREAM, SAMPLE_STREAM, stream_key
from gan_jax.seeds import Seeds
from gan_jax.state import GANState, apply_inference
from gan_jax.writers import save_image_grid

COLUMNS = 10  # a sample grid has one row per class


class SampleGrids:
  """The grids of a run's seeds: from each seed's fixed noise, or from fresh noise."""

  def __init__(self, generator: nn.Module, seeds: Seeds, num_classes: int, latent_dim: int):
    self.seeds, self.num_classes, self.latent_dim = seeds, num_classes, latent_dim
    self.sample = jax.jit(functools.partial(apply_inference, generator))

  def noise(self, seed: int, stream: int = GRID_STREAM) -> jax.Array:
    """The noise of a grid of the run of `seed`: its fixed grid, or (SAMPLE_STREAM) fresh samples."""
    return jax.random.normal(
      stream_key(seed, stream), (self.num_classes * COLUMNS, self.latent_dim)
    )

  @functools.cached_property
  def inputs(self) -> tuple[list[jax.Array], jax.Array]:
    """Each seed's fixed grid noise (from its seed) and the labels: row r for class r."""
    return (
      [self.noise(seed) for seed in self.seeds.values],
      jnp.repeat(jnp.arange(self.num_classes), COLUMNS),
    )

  def save(self, state: GANState, path: str, fresh: bool = False) -> dict[str, np.ndarray]:
    """Writes each seed's grid from its fixed noise, or from fresh noise; returns them by name
    ('samples', or 'samples/seed_i') on process 0."""
    fixed_z, labels = self.inputs
    grids = {}
    for i, seed_state in enumerate(self.seeds.split(state)):
      z = self.noise(self.seeds.values[i], SAMPLE_STREAM) if fresh else fixed_z[i]
      images = self.sample(seed_state.sampler, z, labels)  # on every process: it is SPMD
      if parallel.is_primary():
        grids[self.seeds.name('samples', i)] = save_image_grid(
          np.asarray(jax.device_get(images)), self.num_classes, self.seeds.path(path, i)
        )
    return grids
