"""Tests for gan_jax.losses: closed forms, gradients, stability, GAN properties, named terms.

References are written by hand in float64 numpy from the probability definitions
(sigmoid = 1 / (1 + exp(-x)), softmax = exp(l) / sum exp(l)), never with the library's
own stable formulas, so a sign or an argument swapped in losses.py shows up here.
"""

import chex
import jax
import jax.numpy as jnp
from ml_collections import ConfigDict
import numpy as np
import pytest

from gan_jax import fields, losses
from gan_jax.objective import Objective

N = 10  # classes of the SGAN head; the head has N + 1 logits, class N = fake
B = 5  # examples
MODERATE = np.array([-3.0, -0.5, 0.0, 0.7, 2.5], np.float32)  # single logits, one per example
BIG = 100.0
RTOL, ATOL = 1e-5, 1e-6  # float32 against a float64 reference at moderate logits


# ---------------------------------------------------------------- hand-written references
def np_sigmoid(x):
  return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def np_softmax(l):
  e = np.exp(np.asarray(l, np.float64))
  return e / e.sum(axis=-1, keepdims=True)


def sgan_logits(seed=0, batch=B, scale=2.0):
  return np.random.default_rng(seed).normal(0.0, scale, (batch, N + 1)).astype(np.float32)


def close(actual, expected, rtol=RTOL, atol=ATOL):
  as64 = lambda t: (
    {k: np.asarray(v, np.float64) for k, v in t.items()}
    if isinstance(t, dict)
    else np.asarray(t, np.float64)
  )
  chex.assert_trees_all_close(as64(actual), as64(expected), rtol=rtol, atol=atol)


def grad_of(fn, x):
  """Per-example losses: the gradient of their sum is each example's own gradient."""
  return jax.grad(lambda v: jnp.sum(fn(v)))(jnp.asarray(x))


# Single-logit losses: (name, fn of logits, value by hand from the definition, d/dx by hand).
# sigma = sigmoid(x); -log sigma, -log(1 - sigma), etc. written straight from probabilities.
BINARY_CASES = {
  'sigmoid_ce_t0.3': (
    lambda x: losses.sigmoid_cross_entropy(x, 0.3),
    lambda x: -0.3 * np.log(np_sigmoid(x)) - 0.7 * np.log(1 - np_sigmoid(x)),
    lambda x: np_sigmoid(x) - 0.3,
  ),
  'bce_real': (losses.bce_real, lambda x: -np.log(np_sigmoid(x)), lambda x: np_sigmoid(x) - 1.0),
  'bce_real_smooth0.9': (
    lambda x: losses.bce_real(x, 0.9),
    lambda x: -0.9 * np.log(np_sigmoid(x)) - 0.1 * np.log(1 - np_sigmoid(x)),
    lambda x: np_sigmoid(x) - 0.9,
  ),
  'bce_fake': (losses.bce_fake, lambda x: -np.log(1 - np_sigmoid(x)), lambda x: np_sigmoid(x)),
  'bce_gen_nonsaturating': (
    losses.bce_generator,
    lambda x: -np.log(np_sigmoid(x)),
    lambda x: np_sigmoid(x) - 1.0,
  ),
  'bce_gen_minimax': (
    lambda x: losses.bce_generator(x, minimax=True),
    lambda x: np.log(1 - np_sigmoid(x)),
    lambda x: -np_sigmoid(x),
  ),
  'lsgan_real_b1': (losses.lsgan_real, lambda x: 0.5 * (x - 1.0) ** 2, lambda x: x - 1.0),
  'lsgan_real_b0.5': (
    lambda x: losses.lsgan_real(x, b=0.5),
    lambda x: 0.5 * (x - 0.5) ** 2,
    lambda x: x - 0.5,
  ),
  'lsgan_fake_a0': (losses.lsgan_fake, lambda x: 0.5 * x**2, lambda x: x),
  'lsgan_fake_a-1': (
    lambda x: losses.lsgan_fake(x, a=-1.0),
    lambda x: 0.5 * (x + 1.0) ** 2,
    lambda x: x + 1.0,
  ),
  'lsgan_gen_c1': (losses.lsgan_generator, lambda x: 0.5 * (x - 1.0) ** 2, lambda x: x - 1.0),
  'lsgan_gen_c0': (lambda x: losses.lsgan_generator(x, c=0.0), lambda x: 0.5 * x**2, lambda x: x),
  # Hinge (Lim & Ye 2017): max(0, 1 − x) on real, max(0, 1 + x) on fake; G: −x.
  'hinge_real': (
    losses.hinge_real,
    lambda x: np.maximum(0.0, 1.0 - x),
    lambda x: np.where(x < 1.0, -1.0, 0.0),
  ),
  'hinge_fake': (
    losses.hinge_fake,
    lambda x: np.maximum(0.0, 1.0 + x),
    lambda x: np.where(x > -1.0, 1.0, 0.0),
  ),
  # Wasserstein critic (Arjovsky et al. 2017): D minimises D(G(z)) − D(x); G minimises −D(G(z)).
  'critic_real': (losses.critic_real, lambda x: -x, lambda x: -np.ones_like(x)),
  'critic_fake': (losses.critic_fake, lambda x: x, lambda x: np.ones_like(x)),
  'critic_generator': (losses.critic_generator, lambda x: -x, lambda x: -np.ones_like(x)),
}


@pytest.mark.parametrize('name', sorted(BINARY_CASES))
def test_binary_closed_form_and_shape(name):
  fn, ref, _ = BINARY_CASES[name]
  out = fn(jnp.asarray(MODERATE))
  chex.assert_shape(out, (B,))
  close(out, ref(MODERATE))


@pytest.mark.parametrize('name', sorted(BINARY_CASES))
def test_binary_gradient(name):
  fn, _, dref = BINARY_CASES[name]
  close(grad_of(fn, MODERATE), dref(MODERATE))


def test_binary_shape_is_elementwise():
  """A [B, 1] head stays [B, 1]: the losses broadcast, they never reduce."""
  x = jnp.asarray(MODERATE)[:, None]
  for fn, _, _ in BINARY_CASES.values():
    chex.assert_shape(fn(x), (B, 1))


# Value at logit -100 and +100 in the limit (exp(-100) ~ 4e-44 is below float32 resolution).
BINARY_LIMITS = {
  'sigmoid_ce_t0.3': (0.3 * BIG, 0.7 * BIG),
  'bce_real': (BIG, 0.0),
  'bce_real_smooth0.9': (0.9 * BIG, 0.1 * BIG),
  'bce_fake': (0.0, BIG),
  'bce_gen_nonsaturating': (BIG, 0.0),
  'bce_gen_minimax': (0.0, -BIG),
  'lsgan_real_b1': (0.5 * 101**2, 0.5 * 99**2),
  'lsgan_real_b0.5': (0.5 * 100.5**2, 0.5 * 99.5**2),
  'lsgan_fake_a0': (0.5 * BIG**2, 0.5 * BIG**2),
  'lsgan_fake_a-1': (0.5 * 99**2, 0.5 * 101**2),
  'lsgan_gen_c1': (0.5 * 101**2, 0.5 * 99**2),
  'lsgan_gen_c0': (0.5 * BIG**2, 0.5 * BIG**2),
  'hinge_real': (1 + BIG, 0.0),
  'hinge_fake': (0.0, 1 + BIG),
  'critic_real': (BIG, -BIG),
  'critic_fake': (-BIG, BIG),
  'critic_generator': (BIG, -BIG),
}


@pytest.mark.parametrize('name', sorted(BINARY_CASES))
def test_binary_stable_at_100(name):
  fn, _, dref = BINARY_CASES[name]
  x = np.array([-BIG, BIG], np.float32)
  value, grad = fn(jnp.asarray(x)), grad_of(fn, x)
  chex.assert_tree_all_finite((value, grad))
  close(value, BINARY_LIMITS[name], rtol=1e-6, atol=1e-5)
  # The derivative formulas involve only sigmoid(x) in [0, 1] or x itself: exact enough here.
  close(grad, dref(x), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- BCE properties
def test_one_sided_smoothing_optimum_is_sigmoid_equals_target():
  for t in (0.7, 0.9):
    x_star = jnp.log(t / (1 - t))  # sigmoid(x*) = t
    g = jax.grad(lambda x: losses.bce_real(x, t))(x_star)
    np.testing.assert_allclose(g, 0.0, atol=1e-6)
    # A minimum: lower on both sides' neighbours than at neither.
    at = losses.bce_real(x_star, t)
    assert losses.bce_real(x_star - 0.5, t) > at < losses.bce_real(x_star + 0.5, t)
    # Without smoothing the gradient never vanishes: the optimum is at +infinity.
    assert jax.grad(losses.bce_real)(x_star) < 0


def test_smoothing_target_one_is_plain_bce():
  close(losses.bce_real(MODERATE, 1.0), -np.log(np_sigmoid(MODERATE)))
  close(losses.bce_real(MODERATE), losses.sigmoid_cross_entropy(MODERATE, 1.0))


def test_minimax_and_nonsaturating_generator_gradients():
  x = np.array([-10.0, -3.0, 0.0, 3.0], np.float32)
  g_ns = grad_of(losses.bce_generator, x)
  g_mm = grad_of(lambda v: losses.bce_generator(v, minimax=True), x)
  # Same direction: both push the fake's logit up (gradient descent on G).
  assert np.all(np.sign(g_ns) == np.sign(g_mm)) and np.all(g_ns < 0)
  # D confidently rejects the fake (logit -10): minimax saturates, non-saturating does not.
  assert abs(g_mm[0]) < 1e-4
  assert abs(g_ns[0]) > 0.99
  assert abs(g_ns[0]) / abs(g_mm[0]) > 1e4


# ---------------------------------------------------------------- SGAN (N+1 logits)
def sgan_refs(l, y):
  """Hand references: p = softmax(l); p_fake = p[N]; real = 1 - p_fake."""
  p = np_softmax(l)
  p_fake = p[:, N]
  return {
    'labeled': -np.log(p[np.arange(len(y)), y]),
    'real': -np.log(1 - p_fake),
    'fake': -np.log(p_fake),
    'gen': -np.log(1 - p_fake),
  }


def sgan_grad_refs(l, y):
  """Analytic softmax gradients w.r.t. the N+1 logits."""
  p = np_softmax(l)
  onehot_y = np.eye(N + 1)[y]
  onehot_fake = np.eye(N + 1)[np.full(len(y), N)]
  # d/dl [-log sum_{k<N} p_k]: p - p restricted to the real classes and renormalised.
  p_real_cond = np.concatenate(
    [p[:, :N] / p[:, :N].sum(-1, keepdims=True), np.zeros((len(y), 1))], axis=-1
  )
  return {
    'labeled': p - onehot_y,
    'real': p - p_real_cond,
    'fake': p - onehot_fake,
    'gen': p - p_real_cond,
  }


SGAN_FNS = {
  'labeled': lambda l, y: losses.sgan_labeled(l, y),
  'real': lambda l, y: losses.sgan_real(l),
  'fake': lambda l, y: losses.sgan_fake(l),
  'gen': lambda l, y: losses.sgan_generator(l),
}
LABELS = np.array([0, 3, 9, 3, 7], np.int32)


@pytest.mark.parametrize('name', sorted(SGAN_FNS))
def test_sgan_closed_form_and_shape(name):
  l = sgan_logits()
  out = SGAN_FNS[name](jnp.asarray(l), jnp.asarray(LABELS))
  chex.assert_shape(out, (B,))
  close(out, sgan_refs(l, LABELS)[name])


@pytest.mark.parametrize('name', sorted(SGAN_FNS))
def test_sgan_gradient(name):
  l = sgan_logits(seed=1)
  g = grad_of(lambda v: SGAN_FNS[name](v, jnp.asarray(LABELS)), l)
  chex.assert_shape(g, (B, N + 1))
  close(g, sgan_grad_refs(l, LABELS)[name], atol=2e-6)


def test_sgan_labeled_accepts_any_integer_label_dtype():
  l = sgan_logits()
  for dtype in (np.int32, np.int64, np.uint8):
    close(
      losses.sgan_labeled(jnp.asarray(l), jnp.asarray(LABELS.astype(dtype))),
      sgan_refs(l, LABELS)['labeled'],
    )


def _mixed(fill, **at):
  """One row of N+1 logits equal to `fill`, with entries set: _mixed(-100, k3=100, fake=100)."""
  row = np.full(N + 1, fill, np.float32)
  for key, v in at.items():
    row[N if key == 'fake' else int(key[1:])] = v
  return row


# Rows of +-100 logits, label 3, and the limits of (labeled, real, fake) = (-log p_3, -log p_real,
# -log p_fake). "Ties" at +100 split the mass: p = 1/2 for each tied entry.
LOG2 = float(np.log(2.0))
STABILITY_ROWS = [
  # (row, labeled, real, fake)
  # D sure it is fake; -log p_real = 200 - log N, as the N real classes share p_real.
  (_mixed(-BIG, fake=BIG), 2 * BIG, 2 * BIG - np.log(N), 0.0),
  (_mixed(0.0, fake=BIG), BIG, BIG - np.log(N), 0.0),  # l[N] = 100 >> others (0)
  (_mixed(-BIG, k3=BIG, fake=-BIG), 0.0, 0.0, 2 * BIG),  # sure it is real, class 3
  (_mixed(-BIG, k5=BIG, fake=-BIG), 2 * BIG, 0.0, 2 * BIG),  # sure real, wrong class
  (_mixed(-BIG, k3=BIG, fake=BIG), LOG2, LOG2, LOG2),  # tie between class 3 and fake
  (_mixed(BIG, fake=-BIG), np.log(N), 0.0, 2 * BIG + np.log(N)),  # all real classes tied
  (_mixed(-BIG, k3=BIG, k5=BIG, fake=-BIG), LOG2, 0.0, 2 * BIG + LOG2),
]


@pytest.mark.parametrize('i', range(len(STABILITY_ROWS)))
def test_sgan_stable_at_100(i):
  row, *limits = STABILITY_ROWS[i]
  l, y = jnp.asarray(row[None]), jnp.asarray([3])
  for name, expected in zip(('labeled', 'real', 'fake'), limits):
    value = SGAN_FNS[name](l, y)
    grad = grad_of(lambda v: SGAN_FNS[name](v, y), l)
    chex.assert_tree_all_finite((value, grad))
    np.testing.assert_allclose(value, [expected], atol=1e-4, err_msg=name)
    # Gradients of softmax losses are differences of probabilities: each entry in [-1, 1],
    # and they sum to zero over the logits (the losses are shift invariant).
    assert np.all(np.abs(grad) <= 1 + 1e-6), name
    np.testing.assert_allclose(np.sum(grad), 0.0, atol=1e-5, err_msg=name)
  np.testing.assert_array_equal(losses.sgan_generator(l), losses.sgan_real(l))


def test_sgan_stable_gradient_values_at_100():
  """The limit gradients themselves, where the probabilities are all 0 or 1."""
  y = jnp.asarray([3])
  # D sure it is fake: fake loss flat; real/G loss pushes fake down and the (tied) real classes up.
  l = jnp.asarray(_mixed(-BIG, fake=BIG)[None])
  close(grad_of(losses.sgan_fake, l), np.zeros((1, N + 1)), atol=1e-6)
  expected = np.concatenate([np.full(N, -1.0 / N), [1.0]])[None]
  close(grad_of(losses.sgan_real, l), expected, atol=1e-6)
  close(
    grad_of(lambda v: losses.sgan_labeled(v, y), l),
    np.eye(N + 1)[[N]] - np.eye(N + 1)[[3]],
    atol=1e-6,
  )


def test_sgan_real_plus_fake_probabilities_sum_to_one():
  """p_real + p_fake = 1, i.e. exp(-sgan_real) + exp(-sgan_fake) = 1, at any logits."""
  rows = [sgan_logits(seed=s, scale=sc) for s, sc in ((2, 1.0), (3, 5.0), (4, 30.0))]
  rows.append(np.stack([r for r, *_ in STABILITY_ROWS]))
  for l in rows:
    l = jnp.asarray(l)
    total = jnp.exp(-losses.sgan_real(l)) + jnp.exp(-losses.sgan_fake(l))
    np.testing.assert_allclose(total, np.ones(l.shape[0]), rtol=1e-5)


def test_sgan_generator_is_real_loss_on_fakes():
  l = jnp.asarray(sgan_logits(seed=5))
  np.testing.assert_array_equal(losses.sgan_generator(l), losses.sgan_real(l))


def test_sgan_k_logit_form_is_n_plus_1_with_zero_fake_logit():
  """Salimans et al. 2016: K logits, D(x) = Z / (Z + 1), Z = sum_k exp(l_k) (fake logit fixed at 0).

  Their losses, as in the improved-gan code: unlabeled real -log D(x) = -lse + softplus(lse);
  fake -log(1 - D) = softplus(lse); labeled -log p(y | x, y < K+1) = lse - l_y. These equal the
  N+1 losses with l[N] = 0; the N+1 labeled loss -log p_y adds -log p_real to the K-way one.
  """
  k = sgan_logits(seed=6)[:, :N].astype(np.float64)
  z = np.exp(k).sum(-1)
  lse = np.log(z)
  softplus = np.log1p(z)  # softplus(lse) = log(1 + Z)
  full = jnp.asarray(np.concatenate([k, np.zeros((B, 1))], axis=-1), jnp.float32)
  close(losses.sgan_real(full), -np.log(z / (z + 1)))
  close(losses.sgan_real(full), softplus - lse)
  close(losses.sgan_generator(full), softplus - lse)
  close(losses.sgan_fake(full), softplus)
  close(losses.sgan_fake(full), -np.log(1 - z / (z + 1)))
  k_way_ce = lse - k[np.arange(B), LABELS]
  close(losses.sgan_labeled(full, jnp.asarray(LABELS)), k_way_ce + (softplus - lse))


def test_labeled_classes_is_the_k_way_cross_entropy():
  """Salimans et al.'s labeled loss: lse(l[:N]) − l_y; the fake logit plays no part."""
  l = sgan_logits(seed=9).astype(np.float64)
  k = l[:, :N]
  expected = np.log(np.exp(k).sum(-1)) - k[np.arange(B), LABELS]
  out = losses.labeled_classes(jnp.asarray(l, jnp.float32), jnp.asarray(LABELS))
  chex.assert_shape(out, (B,))
  close(out, expected)
  moved = l.copy()
  moved[:, N] += 50.0  # any fake logit: the same loss
  close(losses.labeled_classes(jnp.asarray(moved, jnp.float32), jnp.asarray(LABELS)), expected)
  grad = grad_of(lambda v: losses.labeled_classes(v, jnp.asarray(LABELS)), l)
  p = np_softmax(k)
  close(grad[:, :N], p - np.eye(N)[LABELS], atol=2e-6)
  np.testing.assert_array_equal(grad[:, N], 0.0)


def test_labeled_classes_stable_at_100():
  y = jnp.asarray([3, 3])
  l = jnp.asarray(np.stack([_mixed(-BIG, k5=BIG, fake=BIG), _mixed(-BIG, k3=BIG, fake=-BIG)]))
  value = losses.labeled_classes(l, y)
  grad = grad_of(lambda v: losses.labeled_classes(v, y), l)
  chex.assert_tree_all_finite((value, grad))
  close(value, [2 * BIG, 0.0], atol=1e-4)
  close(grad[0], np.eye(N + 1)[5] - np.eye(N + 1)[3], atol=1e-6)


def test_sgan_losses_are_shift_invariant():
  l = jnp.asarray(sgan_logits(seed=7))
  for fn in SGAN_FNS.values():
    close(fn(l + 37.0, jnp.asarray(LABELS)), fn(l, jnp.asarray(LABELS)), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- feature matching
def test_feature_matching_closed_form_shape_and_gradient():
  rng = np.random.default_rng(8)
  real, fake = rng.normal(size=(6, 4)), rng.normal(size=(3, 4))  # batch sizes may differ
  gap = real.mean(0) - fake.mean(0)
  out = losses.feature_matching(jnp.asarray(real, jnp.float32), jnp.asarray(fake, jnp.float32))
  chex.assert_shape(out, (1,))
  close(out, [np.sum(gap**2)])
  g_real, g_fake = jax.grad(lambda r, f: losses.feature_matching(r, f)[0], argnums=(0, 1))(
    jnp.asarray(real, jnp.float32), jnp.asarray(fake, jnp.float32)
  )
  close(g_real, np.broadcast_to(2 * gap / 6, real.shape))
  close(g_fake, np.broadcast_to(-2 * gap / 3, fake.shape))
  # Zero when the batch means agree, whatever the examples.
  np.testing.assert_allclose(
    losses.feature_matching(jnp.asarray(real), jnp.asarray(real[::-1])), [0.0], atol=1e-12
  )


def test_feature_matching_stable_at_100():
  real = jnp.full((4, 3), BIG)
  fake = jnp.full((4, 3), -BIG)
  out = losses.feature_matching(real, fake)
  g = jax.grad(lambda f: losses.feature_matching(real, f)[0])(fake)
  chex.assert_tree_all_finite((out, g))
  close(out, [3 * (2 * BIG) ** 2])
  close(g, np.full((4, 3), -2 * 2 * BIG / 4))


# ---------------------------------------------------------------- named terms
def disc_out(logits, features=None, labels=None, seed=0):
  """A D output with random features, labels, input gradients (of 4×4×2 images) and a real/fake
  sigmoid head's logit."""
  rng = np.random.default_rng(seed)
  logits = jnp.asarray(logits, jnp.float32)
  if features is None:
    features = rng.normal(size=(logits.shape[0], 8))
  if labels is None:
    labels = rng.integers(0, N, size=logits.shape[0])
  input_grads = jnp.asarray(rng.normal(0, 0.5, (logits.shape[0], 4, 4, 2)), jnp.float32)
  real_fake = jnp.asarray(rng.normal(0, 2, (logits.shape[0], 1)), jnp.float32)
  return losses.DiscOutput(
    logits, jnp.asarray(features, jnp.float32), jnp.asarray(labels), input_grads, real_fake
  )


INPUTS = ('real', 'fake', 'wrong', 'labeled', 'interpolated')


def binary_outputs(seed=0):
  """Single-logit heads: logits [B, 1]."""
  rng = np.random.default_rng(seed)
  return {name: disc_out(rng.normal(0, 2, (B, 1)), seed=seed + i) for i, name in enumerate(INPUTS)}


def sgan_outputs(seed=0):
  """SGAN heads: logits [B, N + 1]."""
  return {
    name: disc_out(sgan_logits(seed=seed + i), seed=seed + i) for i, name in enumerate(INPUTS)
  }


def outputs_for(term_name, seed=0):
  multiclass = term_name.startswith('sgan') or term_name == 'labeled_classes'
  return sgan_outputs(seed) if multiclass else binary_outputs(seed)


def hparams(**kw):
  hp = fields.default_config().loss.hparams
  hp.update(kw)
  return hp


def test_default_hparams():
  hp = fields.default_config().loss.hparams
  assert (hp.real_target, hp.minimax, hp.a, hp.b, hp.c) == (1.0, False, 0.0, 1.0, 1.0)


HPARAM_VARIANTS = [hparams(), hparams(real_target=0.9, minimax=True, a=-1.0, b=1.0, c=0.0)]


@pytest.mark.parametrize('hp_index', range(len(HPARAM_VARIANTS)))
@pytest.mark.parametrize('term_name', sorted(losses.D_TERMS) + sorted(losses.G_TERMS))
def test_every_term_runs_and_is_finite(term_name, hp_index):
  terms = losses.D_TERMS if term_name in losses.D_TERMS else losses.G_TERMS
  outputs = outputs_for(term_name)
  hp = HPARAM_VARIANTS[hp_index]
  per_example = terms[term_name].fn(outputs, hp)
  chex.assert_shape(per_example, (1,) if term_name == 'feature_matching' else (B,))
  total, parts = losses.weighted_sum({term_name: 1.0}, terms, outputs, hp)
  chex.assert_shape(total, ())
  chex.assert_tree_all_finite((total, parts))
  assert set(parts) == {term_name}
  close(total, np.mean(per_example))
  # Jit-compatible, with the same value.
  jitted = jax.jit(lambda o: losses.weighted_sum({term_name: 1.0}, terms, o, hp)[0])(outputs)
  close(jitted, total, rtol=1e-6)


# Each term against the hand reference it must compute (on the outputs it names).
def _term_refs():
  sig = lambda o: np_sigmoid(np.asarray(o.logits)[:, 0])
  head = lambda o: np_sigmoid(np.asarray(o.real_fake)[:, 0])  # SGAN's optional sigmoid head
  sm = lambda o: np_softmax(np.asarray(o.logits))
  return {
    'bce_real': lambda o, hp: (
      -hp.real_target * np.log(sig(o['real'])) - (1 - hp.real_target) * np.log(1 - sig(o['real']))
    ),
    'bce_fake': lambda o, hp: -np.log(1 - sig(o['fake'])),
    'bce_wrong': lambda o, hp: -np.log(1 - sig(o['wrong'])),
    'lsgan_real': lambda o, hp: 0.5 * (np.asarray(o['real'].logits)[:, 0] - hp.b) ** 2,
    'lsgan_fake': lambda o, hp: 0.5 * (np.asarray(o['fake'].logits)[:, 0] - hp.a) ** 2,
    'lsgan_wrong': lambda o, hp: 0.5 * (np.asarray(o['wrong'].logits)[:, 0] - hp.a) ** 2,
    'sgan_labeled': lambda o, hp: (
      -np.log(sm(o['labeled'])[np.arange(B), np.asarray(o['labeled'].labels)])
    ),
    'labeled_classes': lambda o, hp: (
      -np.log(np_softmax(np.asarray(o['labeled'].logits)[:, :N])[np.arange(B), o['labeled'].labels])
    ),
    'sgan_real': lambda o, hp: -np.log(1 - sm(o['real'])[:, N]),
    'sgan_fake': lambda o, hp: -np.log(sm(o['fake'])[:, N]),
    'sigmoid_real': lambda o, hp: (
      -hp.real_target * np.log(head(o['real'])) - (1 - hp.real_target) * np.log(1 - head(o['real']))
    ),
    'sigmoid_fake': lambda o, hp: -np.log(1 - head(o['fake'])),
    'sigmoid_gen': lambda o, hp: (
      np.log(1 - head(o['fake'])) if hp.minimax else -np.log(head(o['fake']))
    ),
    'bce_gen': lambda o, hp: np.log(1 - sig(o['fake'])) if hp.minimax else -np.log(sig(o['fake'])),
    'lsgan_gen': lambda o, hp: 0.5 * (np.asarray(o['fake'].logits)[:, 0] - hp.c) ** 2,
    'sgan_gen': lambda o, hp: -np.log(1 - sm(o['fake'])[:, N]),
    'feature_matching': lambda o, hp: [
      np.sum((np.asarray(o['real'].features).mean(0) - np.asarray(o['fake'].features).mean(0)) ** 2)
    ],
    'hinge_real': lambda o, hp: np.maximum(0, 1 - np.asarray(o['real'].logits)[:, 0]),
    'hinge_fake': lambda o, hp: np.maximum(0, 1 + np.asarray(o['fake'].logits)[:, 0]),
    'critic_real': lambda o, hp: -np.asarray(o['real'].logits)[:, 0],
    'critic_fake': lambda o, hp: np.asarray(o['fake'].logits)[:, 0],
    'critic_gen': lambda o, hp: -np.asarray(o['fake'].logits)[:, 0],
    'gradient_penalty': lambda o, hp: (
      (
        np.linalg.norm(np.asarray(o['interpolated'].input_grads, np.float64).reshape(B, -1), axis=1)
        - 1
      )
      ** 2
    ),
    'r1': lambda o, hp: (
      0.5 * np.sum(np.asarray(o['real'].input_grads, np.float64).reshape(B, -1) ** 2, axis=1)
    ),
    'r2': lambda o, hp: (
      0.5 * np.sum(np.asarray(o['fake'].input_grads, np.float64).reshape(B, -1) ** 2, axis=1)
    ),
  }


def test_term_table_is_complete():
  assert set(_term_refs()) == set(losses.D_TERMS) | set(losses.G_TERMS)
  assert not set(losses.D_TERMS) & set(losses.G_TERMS)


@pytest.mark.parametrize('hp_index', range(len(HPARAM_VARIANTS)))
@pytest.mark.parametrize('term_name', sorted(losses.D_TERMS) + sorted(losses.G_TERMS))
def test_term_matches_hand_reference(term_name, hp_index):
  terms = losses.D_TERMS if term_name in losses.D_TERMS else losses.G_TERMS
  outputs, hp = outputs_for(term_name, seed=11), HPARAM_VARIANTS[hp_index]
  close(terms[term_name].fn(outputs, hp), _term_refs()[term_name](outputs, hp))


@pytest.mark.parametrize('term_name', sorted(losses.D_TERMS) + sorted(losses.G_TERMS))
def test_term_reads_only_what_it_declares(term_name):
  """A term given only the outputs in its `needs` runs (so outputs_needed is sufficient)."""
  terms = losses.D_TERMS if term_name in losses.D_TERMS else losses.G_TERMS
  outputs = outputs_for(term_name)
  needed = {k: outputs[k] for k in terms[term_name].needs}
  chex.assert_tree_all_finite(terms[term_name].fn(needed, fields.default_config().loss.hparams))


def test_objective_is_weighted_sum_of_means():
  outputs, hp = binary_outputs(seed=3), hparams(real_target=0.9)
  weights = {'bce_real': 2.0, 'bce_fake': 0.5, 'bce_wrong': 0.25}
  total, parts = losses.weighted_sum(weights, losses.D_TERMS, outputs, hp)
  refs = _term_refs()
  expected_parts = {k: np.mean(refs[k](outputs, hp)) for k in weights}
  close(parts, expected_parts)
  close(total, sum(w * expected_parts[k] for k, w in weights.items()))


def test_objective_drops_zero_weight_terms():
  outputs = binary_outputs(seed=4)
  weights = {'lsgan_real': 1.0, 'lsgan_fake': 1.0, 'lsgan_wrong': 0.0}
  total, parts = losses.weighted_sum(
    weights, losses.D_TERMS, outputs, fields.default_config().loss.hparams
  )
  assert set(parts) == {'lsgan_real', 'lsgan_fake'}
  # The zero-weight term's output need not exist...
  del outputs['wrong']
  total2, _ = losses.weighted_sum(
    weights, losses.D_TERMS, outputs, fields.default_config().loss.hparams
  )
  close(total2, total)
  # ...and if it is non-finite it does not leak in (0 * nan would be nan).
  outputs['wrong'] = disc_out(np.full((B, 1), np.nan))
  total3, _ = losses.weighted_sum(
    weights, losses.D_TERMS, outputs, fields.default_config().loss.hparams
  )
  close(total3, total)
  # Same for G: SGAN config with feature matching switched off needs no real features.
  g_out = {'fake': sgan_outputs()['fake']}
  _, g_parts = losses.weighted_sum(
    {'sgan_gen': 1.0, 'feature_matching': 0.0},
    losses.G_TERMS,
    g_out,
    fields.default_config().loss.hparams,
  )
  assert set(g_parts) == {'sgan_gen'}


def test_objective_gradient_is_weighted_sum():
  outputs, hp = binary_outputs(seed=5), fields.default_config().loss.hparams
  weights = {'bce_real': 1.0, 'bce_fake': 3.0}

  def total(real_logits, fake_logits):
    o = {
      **outputs,
      'real': outputs['real']._replace(logits=real_logits),
      'fake': outputs['fake']._replace(logits=fake_logits),
    }
    return losses.weighted_sum(weights, losses.D_TERMS, o, hp)[0]

  g_real, g_fake = jax.grad(total, argnums=(0, 1))(outputs['real'].logits, outputs['fake'].logits)
  close(g_real, (np_sigmoid(outputs['real'].logits) - 1.0) / B)
  close(g_fake, 3.0 * np_sigmoid(outputs['fake'].logits) / B)


@pytest.mark.parametrize(
  'weights, terms, expected',
  [
    ({'bce_real': 1.0, 'bce_fake': 1.0}, 'D', {'real', 'fake'}),
    ({'sgan_labeled': 1.0, 'sgan_real': 1.0, 'sgan_fake': 1.0}, 'D', {'labeled', 'real', 'fake'}),
    ({'sgan_labeled': 0.0, 'sgan_real': 1.0, 'sgan_fake': 1.0}, 'D', {'real', 'fake'}),
    ({'lsgan_real': 1.0, 'lsgan_fake': 0.5, 'lsgan_wrong': 0.5}, 'D', {'real', 'fake', 'wrong'}),
    ({'lsgan_real': 1.0, 'lsgan_fake': 1.0, 'lsgan_wrong': 0.0}, 'D', {'real', 'fake'}),
    ({'bce_wrong': 1.0}, 'D', {'wrong'}),
    ({'bce_real': 0.0, 'bce_fake': 0.0}, 'D', set()),
    ({'bce_gen': 1.0}, 'G', {'fake'}),
    ({'sgan_gen': 1.0, 'feature_matching': 0.0}, 'G', {'fake'}),
    ({'sgan_gen': 0.0, 'feature_matching': 1.0}, 'G', {'real', 'fake'}),
    ({'lsgan_gen': 1.0, 'feature_matching': 0.1}, 'G', {'real', 'fake'}),
  ],
)
def test_outputs_needed(weights, terms, expected):
  table = losses.D_TERMS if terms == 'D' else losses.G_TERMS
  assert losses.outputs_needed(weights, table) == frozenset(expected)


@pytest.mark.parametrize('hp', [hparams(), hparams(a=-1.0, b=1.0, c=0.0)], ids=['a0b1', 'a-1b1'])
def test_gan_cls_composition(hp):
  """d = L(s_rr, real) + 1/2 [L(s_fr, fake) + L(s_rw, fake)], g = L(s_fr, real), L = LSGAN."""
  outputs = binary_outputs(seed=9)
  s_rr = np.asarray(outputs['real'].logits, np.float64)[:, 0]
  s_fr = np.asarray(outputs['fake'].logits, np.float64)[:, 0]
  s_rw = np.asarray(outputs['wrong'].logits, np.float64)[:, 0]
  real_l = lambda s: 0.5 * (s - hp.b) ** 2
  fake_l = lambda s: 0.5 * (s - hp.a) ** 2
  expected_d = np.mean(real_l(s_rr)) + 0.5 * (np.mean(fake_l(s_fr)) + np.mean(fake_l(s_rw)))
  d_weights = {'lsgan_real': 1.0, 'lsgan_fake': 0.5, 'lsgan_wrong': 0.5}
  d, parts = losses.weighted_sum(d_weights, losses.D_TERMS, outputs, hp)
  close(d, expected_d)
  close(
    parts,
    {
      'lsgan_real': np.mean(real_l(s_rr)),
      'lsgan_fake': np.mean(fake_l(s_fr)),
      'lsgan_wrong': np.mean(fake_l(s_rw)),
    },
  )
  assert losses.outputs_needed(d_weights, losses.D_TERMS) == {'real', 'fake', 'wrong'}
  g, _ = losses.weighted_sum({'lsgan_gen': 1.0}, losses.G_TERMS, outputs, hp)
  close(g, np.mean(0.5 * (s_fr - hp.c) ** 2))


def test_gan_cls_composition_with_bce_base():
  outputs = binary_outputs(seed=10)
  s = {k: np.asarray(outputs[k].logits, np.float64)[:, 0] for k in ('real', 'fake', 'wrong')}
  expected = np.mean(-np.log(np_sigmoid(s['real']))) + 0.5 * (
    np.mean(-np.log(1 - np_sigmoid(s['fake']))) + np.mean(-np.log(1 - np_sigmoid(s['wrong'])))
  )
  d, _ = losses.weighted_sum(
    {'bce_real': 1.0, 'bce_fake': 0.5, 'bce_wrong': 0.5},
    losses.D_TERMS,
    outputs,
    fields.default_config().loss.hparams,
  )
  close(d, expected)


def test_single_logit_terms_use_the_logit_column_not_the_batch():
  """_squeeze takes [B, 1] -> [B]: per-example values follow the examples."""
  outputs = binary_outputs(seed=12)
  per_example = losses.D_TERMS['bce_real'].fn(outputs, fields.default_config().loss.hparams)
  close(per_example, -np.log(np_sigmoid(np.asarray(outputs['real'].logits)[:, 0])))


def test_d_accuracies_against_hand_counts():
  """Real called real above the objective's boundary, fake and mismatched at or below it; the
  labeled accuracy is the argmax over the N real classes, never the fake one."""
  lsgan = Objective(
    ConfigDict(
      {
        'd_terms': {'lsgan_real': 1.0, 'lsgan_fake': 1.0, 'lsgan_wrong': 1.0},
        'g_terms': {'lsgan_gen': 1.0},
        'hparams': hparams(),
      }
    )
  )
  assert lsgan.threshold == 0.5  # midway between a = 0 and b = 1
  binary = lambda values: disc_out(np.array(values, np.float32)[:, None])
  outputs = {
    'real': binary([0.9, 0.6, 0.4, 0.5, -1.0]),
    'fake': binary([0.1, 0.5, 0.7, 0.0, 0.2]),
    'wrong': binary([0.6, 0.6, 0.6, 0.6, 0.0]),
  }
  metrics = lsgan.d_accuracies(outputs)
  close(metrics, {'d_acc_real': 2 / 5, 'd_acc_fake': 4 / 5, 'd_acc_wrong': 1 / 5})

  sgan = Objective(
    ConfigDict(
      {
        'd_terms': {'sgan_labeled': 1.0, 'sgan_real': 1.0, 'sgan_fake': 1.0},
        'g_terms': {'sgan_gen': 1.0},
        'hparams': hparams(),
      }
    )
  )
  logits = np.full((B, N + 1), -5.0, np.float32)
  logits[np.arange(B), [0, 3, 9, 1, 7]] = 2.0  # argmax over the real classes
  logits[:, N] = 50.0  # a dominant fake logit
  labeled = disc_out(logits, labels=np.array([0, 3, 9, 3, 7]))
  metrics = sgan.d_accuracies({'labeled': labeled, 'fake': labeled, 'real': labeled})
  close(metrics, {'d_acc_labeled': 4 / 5, 'd_acc_fake': 1.0, 'd_acc_real': 0.0})
