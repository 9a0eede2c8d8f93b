"""Tests for gan_jax.augment: DiffAugment's transforms on known images, the policy the project
recommends, and ADA's update of p."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train import load_config

from gan_jax import augment, checks, diagnosis

B, H, W, C = 8, 16, 16, 3
GREY = 0.3  # a constant image's value, in [-1, 1]
KEY = jax.random.key(0)


def colourful(seed=0, shape=(B, H, W, C)):
  return jax.random.uniform(jax.random.key(seed), shape, jnp.float32, -1.0, 1.0)


def constant(value=GREY, shape=(B, H, W, C)):
  return jnp.full(shape, value, jnp.float32)


# ---------------------------------------------------------------- parse_policy
@pytest.mark.parametrize(
  'text, expected',
  [
    ('', ()),
    ('color', ('color',)),
    ('translation,cutout,color', ('translation', 'cutout', 'color')),
    (' cutout , translation ', ('cutout', 'translation')),
  ],
)
def test_parse_policy(text, expected):
  assert augment.parse_policy(text) == expected


def test_parse_policy_rejects_an_unknown_name_in_one_line():
  with pytest.raises(
    ValueError,
    match=r"^data.augment='color,flip': unknown flip; "
    r'valid choices: color, cutout, translation$',
  ):
    augment.parse_policy('color,flip')


# ---------------------------------------------------------------- diff_augment, every policy
@pytest.mark.parametrize('policy', [(name,) for name in augment.POLICIES] + [augment.POLICIES])
def test_shape_dtype_and_finite(policy):
  out = augment.diff_augment(colourful(), KEY, policy)
  assert out.shape == (B, H, W, C) and out.dtype == jnp.float32
  assert np.isfinite(out).all()


def test_empty_policy_is_the_identity_object():
  images = colourful()
  assert augment.diff_augment(images, KEY, ()) is images


@pytest.mark.parametrize('policy', [(name,) for name in augment.POLICIES])
def test_gradient_flows_through(policy):
  weights = colourful(seed=1)
  grad = jax.grad(lambda x: jnp.sum(augment.diff_augment(x, KEY, policy) * weights))(colourful())
  assert np.isfinite(grad).all() and np.abs(grad).sum() > 0


@pytest.mark.parametrize('policy', [(name,) for name in augment.POLICIES] + [augment.POLICIES])
def test_probability_zero_is_the_identity(policy):
  images = colourful()
  np.testing.assert_array_equal(augment.diff_augment(images, KEY, policy, 0.0), images)


def test_same_key_same_result_and_other_key_other_result():
  images, policy = colourful(), augment.POLICIES
  first = augment.diff_augment(images, KEY, policy)
  np.testing.assert_array_equal(augment.diff_augment(images, KEY, policy), first)
  assert not np.allclose(augment.diff_augment(images, jax.random.key(1), policy), first)


def test_jit_with_a_traced_probability_matches_eager():
  images, policy = colourful(), augment.POLICIES
  jitted = jax.jit(augment.diff_augment, static_argnames='policy')
  for p in (0.0, 0.5, 1.0):
    np.testing.assert_allclose(
      jitted(images, KEY, policy=policy, probability=jnp.float32(p)),
      augment.diff_augment(images, KEY, policy, p),
      atol=1e-6,
    )


def test_probability_applies_to_some_images_only():
  images = colourful(shape=(256, 8, 8, C))
  out = augment.diff_augment(images, KEY, ('cutout',), 0.5)
  changed = np.any(out != images, axis=(1, 2, 3)).mean()
  assert 0.3 < changed < 0.7  # each image drawn with p = 0.5; 256 of them


# ---------------------------------------------------------------- each policy does what it says
def test_translation_pads_the_border_with_zeros_and_keeps_the_rest():
  out = np.asarray(augment.diff_augment(constant(), KEY, ('translation',)))
  assert set(np.unique(out)) <= {0.0, np.float32(GREY)}
  most = int(H * augment.TRANSLATION_RATIO + 0.5)  # 2 pixels
  for image in out[..., 0]:
    rows, cols = np.flatnonzero(image.any(1)), np.flatnonzero(image.any(0))
    # What is left of the image is one rectangle, cut by at most `most` on one side per axis.
    assert (image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] == np.float32(GREY)).all()
    assert H - most <= len(rows) and W - most <= len(cols)
    assert rows[0] == 0 or rows[-1] == H - 1
    assert cols[0] == 0 or cols[-1] == W - 1
  assert (out == 0).any()  # some image was shifted


def test_translation_moves_the_content():
  image = np.zeros((1, H, W, 1), np.float32)
  image[0, 5, 7, 0] = 1.0
  out = np.asarray(
    augment.diff_augment(jnp.asarray(np.repeat(image, 64, 0)), KEY, ('translation',))
  )
  moved = [np.argwhere(o[..., 0] == 1.0)[0] - (5, 7) for o in out]
  assert all(np.abs(m).max() <= 2 for m in moved)
  assert len({tuple(m) for m in moved}) > 10  # many of the 5 x 5 shifts drawn


def test_cutout_zeroes_one_square_of_half_the_size_clipped_at_the_border():
  out = np.asarray(augment.diff_augment(constant(shape=(64, H, W, C)), KEY, ('cutout',)))
  assert set(np.unique(out)) <= {0.0, np.float32(GREY)}
  clipped = 0
  for image in out:
    hole = image == 0
    assert (hole == hole[..., :1]).all()  # all channels alike
    rows, cols = np.flatnonzero(hole[..., 0].any(1)), np.flatnonzero(hole[..., 0].any(0))
    assert len(rows) and hole[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].all()  # a rectangle
    assert hole.sum() == len(rows) * len(cols) * C
    assert len(rows) <= H // 2 and len(cols) <= W // 2
    # Shorter than H / 2 only where it touches the border.
    assert len(rows) == H // 2 or rows[0] == 0 or rows[-1] == H - 1
    assert len(cols) == W // 2 or cols[0] == 0 or cols[-1] == W - 1
    clipped += len(rows) * len(cols) < (H // 2) * (W // 2)
  assert 0 < clipped < 64


def test_color_keeps_a_constant_image_constant_and_shifts_it_within_half():
  out = np.asarray(augment.diff_augment(constant(), KEY, ('color',)))
  spread = out.max(axis=(1, 2, 3)) - out.min(axis=(1, 2, 3))
  np.testing.assert_allclose(spread, 0.0, atol=1e-6)
  offsets = out[:, 0, 0, 0] - GREY
  assert np.all(np.abs(offsets) <= 0.5) and len(np.unique(offsets)) == B


def test_color_saturation_changes_the_spread_across_channels():
  images = colourful()
  out = np.asarray(augment.diff_augment(images, KEY, ('color',)))

  # Brightness moves every channel alike and contrast scales all of them alike: the spread
  # across channels, relative to the spread over the image, changes only by saturation.
  def relative_channel_spread(x):
    return np.std(x, axis=-1).mean(axis=(1, 2)) / np.std(x, axis=(1, 2, 3))

  ratio = relative_channel_spread(out) / relative_channel_spread(np.asarray(images))
  assert np.all(ratio < 2.0) and np.ptp(ratio) > 0.5


def recommended_policy(where: str) -> str:
  """The DiffAugment policy that `where` gives users."""
  if where == 'configs/dcgan64.py':
    return load_config('dcgan64', None).data.augment
  if where == 'diagnosis':
    return diagnosis.AUGMENT.split('=')[1]
  config = load_config('gan')  # the check's advice when ADA is asked for without a policy
  config.data.augment_target = 0.6
  with pytest.raises(ValueError) as error:
    checks.check_config(config)
  return re.search(r"e\.g\. '([a-z,]+)'", str(error.value)).group(1)


@pytest.mark.parametrize('where', ['configs/dcgan64.py', 'diagnosis', 'checks'])
def test_recommended_policy_is_the_references_and_keeps_the_zero_fill(where):
  """The reference's order (DiffAugment-stylegan2: 'color,translation,cutout'): colour first, so
  translation's padding and cutout's square are left at exactly 0 (about 30% of the pixels at
  32×32); colour last moves them and leaves no pixel at 0."""
  policy = augment.parse_policy(recommended_policy(where))
  assert policy == ('color', 'translation', 'cutout')
  out = augment.diff_augment(colourful(shape=(64, H, W, C)), KEY, policy)
  assert np.mean(np.asarray(out) == 0) > 0.15


# ---------------------------------------------------------------- ADA
def test_ada_rt_is_the_mean_sign():
  assert float(augment.ada_rt(jnp.array([2.0, 0.5, -1.0, 3.0]))) == 0.5


@pytest.mark.parametrize(
  'p, rt, expected',
  [
    (0.2, 0.9, 0.2 + 64 * 4 / 500_000),  # D too sure of the reals: more augmentation
    (0.2, 0.1, 0.2 - 64 * 4 / 500_000),  # less
    (0.2, 0.6, 0.2),  # on target
    (0.0, 0.0, 0.0),  # clipped at 0
    (1.0, 1.0, 1.0),  # and at 1
  ],
)
def test_ada_step(p, rt, expected):
  new = augment.ada_step(p, rt, augment.ADA_TARGET, images_seen=64 * augment.ADA_INTERVAL)
  np.testing.assert_allclose(float(new), expected, rtol=1e-6)


def test_ada_step_jits():
  step = jax.jit(augment.ada_step, static_argnames=('images_seen', 'speed_images'))
  assert float(step(jnp.float32(0.5), jnp.float32(1.0), 0.6, images_seen=250_000)) == 1.0
