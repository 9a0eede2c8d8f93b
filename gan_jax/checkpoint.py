"""Orbax checkpoints of a run: the GANState plus the JSON facts that define the run."""

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Saves `state` (StandardSave) and `meta` (JSON: config, labeled-subset indices) per step.

  Orbax writes each step into a temporary directory and renames it when complete, so a
  process killed mid-save leaves the previous checkpoint as the latest readable one.
  """

  def __init__(self, workdir: str, max_to_keep: int = 3):
    self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                             cleanup_tmp_directories=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, state: Any, meta: dict) -> None:
    step = int(jax.device_get(state.step))
    if step in self.manager.all_steps():
      return
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

  def restore_meta(self, step: int) -> dict:
    return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']

  def restore(self, step: int, abstract_state: Any) -> Any:
    """Restores into `abstract_state` (shapes, dtypes and shardings from jax.eval_shape)."""
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state)))
    return restored['state']

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()
