"""Orbax checkpoints of a run: the GANState plus the JSON facts that define the run."""

from collections.abc import Collection
import dataclasses
import glob
import os
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from gan_jax import parallel
from gan_jax.errors import BadInput


class Checkpointer:
  """Saves `state` (an orbax PyTree) and `meta` (JSON: config, labeled-subset indices) per step.

  Orbax writes each step into a temporary directory and renames it when complete, so a
  process killed mid-save leaves the previous checkpoint as the latest readable one.
  """

  def __init__(self, workdir: str, max_to_keep: int = 3):
    self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
    self.manager = ocp.CheckpointManager(
      self.directory,
      # create=False: opening a workdir writes nothing (bad input must leave it untouched);
      # the training loop creates the directory once every check has passed.
      # No cleanup of unfinished saves here: it would run in a background thread and change
      # the workdir before the input is known to be good (see remove_unfinished).
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=False),
    )

  def remove_unfinished(self) -> None:
    """Deletes the temporary directories of saves that a killed process left unfinished."""
    if not parallel.is_primary():  # as orbax, whose primary host (process 0) alone creates them
      return
    for path in glob.glob(os.path.join(glob.escape(self.directory), '*.orbax-checkpoint-tmp*')):
      shutil.rmtree(path, ignore_errors=True)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, state: Any, meta: dict) -> None:
    # A K-seed state holds one step per seed, all equal.
    step = int(np.asarray(jax.device_get(state.step)).flat[0])
    if step in self.manager.all_steps():
      return
    self.manager.save(
      step,
      args=ocp.args.Composite(state=ocp.args.PyTreeSave(state), meta=ocp.args.JsonSave(meta)),
    )

  def restore_meta(self, step: int) -> dict:
    return self._restore(step, meta=ocp.args.JsonRestore())['meta']

  def restore(self, step: int, abstract_state: Any, zero_if_absent: Collection[str] = ()) -> Any:
    """Restores into `abstract_state` (a dataclass of shapes, dtypes and shardings from
    jax.eval_shape). Its fields that are None (an option that is off, such as the EMA of G) are
    not read, so a checkpoint written before such an optional field existed still restores; the
    fields named in `zero_if_absent` restore as zeros from a checkpoint that lacks them."""
    fields = {f.name: getattr(abstract_state, f.name) for f in dataclasses.fields(abstract_state)}
    target = {name: value for name, value in fields.items() if value is not None}
    restore_args = ocp.checkpoint_utils.construct_restore_args(target)
    args = ocp.args.PyTreeRestore(target, restore_args=restore_args, partial_restore=True)
    restored = self._restore(step, state=args)['state']
    # A partial restore leaves what the checkpoint lacks as it was asked for: abstract.
    for name, value in list(restored.items()):
      if not any(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in jax.tree.leaves(value)):
        continue
      if name not in zero_if_absent:
        raise BadInput(
          f'checkpoint {os.path.join(self.directory, str(step))} cannot be read: it has no '
          f'{name!r}, an option its run did not use; resume with that option off'
        )
      zeros = lambda s: jax.device_put(np.zeros(s.shape, s.dtype), s.sharding)
      restored[name] = jax.tree.map(zeros, value)
    return abstract_state.replace(**restored)

  def _restore(self, step: int, **items) -> Any:
    try:
      return self.manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as error:  # orbax raises many types for damaged files; all mean the same here
      reason = (str(error).strip().splitlines() or [''])[0].split(' See ')[0][:160]
      raise BadInput(
        f'checkpoint {os.path.join(self.directory, str(step))} cannot be read '
        f'({type(error).__name__}: {reason}); move it away to resume from an earlier one, '
        'or use another workdir'
      ) from error

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()
