"""Checkpoints of a state whose dataclass has since gained an optional field still restore."""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.checkpoint import Checkpointer


@flax.struct.dataclass
class Before:
  step: jax.Array
  params: dict


@flax.struct.dataclass
class Now:  # Before and an optional field (as GANState gained g_ema, then augment_p)
  step: jax.Array
  params: dict
  extra: Any = None


def saved(workdir, state) -> Checkpointer:
  checkpointer = Checkpointer(str(workdir))
  checkpointer.save(state, {'config': {}})
  checkpointer.wait()
  return checkpointer


def abstract(state):
  return jax.eval_shape(lambda: state)


@pytest.fixture
def before(tmp_path):
  state = Before(jnp.asarray(3, jnp.int32), {'w': jnp.arange(6.0).reshape(2, 3)})
  checkpointer = saved(tmp_path, state)
  yield checkpointer, state
  checkpointer.close()


def test_an_older_checkpoint_restores_with_the_new_field_off(before):
  checkpointer, state = before
  restored = checkpointer.restore(3, abstract(Now(state.step, state.params)))
  assert isinstance(restored, Now) and restored.extra is None
  np.testing.assert_array_equal(restored.params['w'], state.params['w'])
  assert int(restored.step) == 3


def test_an_older_checkpoint_cannot_supply_a_field_that_is_on(before):
  checkpointer, state = before
  with pytest.raises(ValueError, match='cannot be read'):
    checkpointer.restore(3, abstract(Now(state.step, state.params, jnp.zeros(()))))


def test_an_older_checkpoint_restores_a_field_named_zero_if_absent_as_zeros(before):
  checkpointer, state = before
  on = Now(state.step, state.params, {'r1': jnp.ones((), jnp.float32)})
  restored = checkpointer.restore(3, abstract(on), zero_if_absent=('extra',))
  assert restored.extra == {'r1': 0.0} and restored.extra['r1'].dtype == jnp.float32
  np.testing.assert_array_equal(restored.params['w'], state.params['w'])


def test_a_new_checkpoint_restores_its_optional_field_either_way(tmp_path):
  on = Now(jnp.asarray(5, jnp.int32), {'w': jnp.ones((2,))}, jnp.asarray(0.25))
  off = Now(jnp.asarray(5, jnp.int32), {'w': jnp.ones((2,))})
  for name, state in (('on', on), ('off', off)):
    checkpointer = saved(tmp_path / name, state)
    restored = checkpointer.restore(5, abstract(state))
    checkpointer.close()
    jax.tree.map(np.testing.assert_array_equal, restored, state)
