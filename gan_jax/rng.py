"""The run's random streams: each an independent key folded from the run's base key, and the keys
of one training step. The step, the host's batch streaming and the set-up all draw from here."""

from typing import NamedTuple

import jax

# Independent random streams, each folded from a run's base key PRNGKey(seed): never
# PRNGKey(seed + i), which is the base key of the run of seed + i (seed i of a K-seed run).
(
  INIT_STREAM,
  DATA_STREAM,
  LABELED_STREAM,
  STEP_STREAM,
  GRID_STREAM,
  SAMPLE_STREAM,
  EVAL_STREAM,
  AUGMENT_STREAM,
  G_DATA_STREAM,
) = range(9)


def stream_key(seed: int | jax.Array, stream: int) -> jax.Array:
  """The key of `stream` in the run of `seed`."""
  return jax.random.fold_in(jax.random.PRNGKey(seed), stream)


class StepKeys(NamedTuple):
  """The keys of one step: batch order, labeled-batch order, this step's noise and dropout, its
  augmentations, and the order of G's own real batches (train.g_batch='fresh')."""

  data: jax.Array
  labeled: jax.Array
  step: jax.Array
  augment: jax.Array
  g_data: jax.Array

  def of_pools(self) -> dict[str, jax.Array]:
    """The key that orders each pool's batches (`batches.pool_sizes` names the pools)."""
    return {'real': self.data, 'labeled': self.labeled, 'g_real': self.g_data}


def step_keys(rng: jax.Array, step: jax.Array) -> StepKeys:
  per_step = lambda stream: jax.random.fold_in(jax.random.fold_in(rng, stream), step)
  return StepKeys(
    jax.random.fold_in(rng, DATA_STREAM),
    jax.random.fold_in(rng, LABELED_STREAM),
    per_step(STEP_STREAM),
    per_step(AUGMENT_STREAM),
    jax.random.fold_in(rng, G_DATA_STREAM),
  )
