"""GAN losses as pure functions of logits, and the named terms objectives are built from.

Every loss takes logits (never probabilities), is written with `log_sigmoid` /
`log_softmax` / `logsumexp` so that it stays finite at any logit, and returns one
value per example, like `optax.losses`: the caller chooses reduction and weights.

An objective (`objective.Objective`) is a weighted sum of named terms (`D_TERMS`, `G_TERMS`),
chosen in the config as `{name: weight}`; each term reads one discriminator output of the step:

  'real'     D(x) on real images (with their labels, for conditional D)
  'fake'     D(G(z)) (with the labels G was asked for)
  'wrong'    D(x, y_wrong) on real images with mismatched labels (GAN-cls)
  'labeled'  D(x) on the labeled subset (SGAN), scored against its labels
  'interpolated'  D(εx + (1 − ε)G(z)) on random interpolates of the images D sees (WGAN-GP)
"""

from collections.abc import Callable, Mapping
import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from ml_collections import ConfigDict

from gan_jax.errors import BadInput

Array = jax.Array


# ---------------------------------------------------------------- BCE (Goodfellow 2014)
def sigmoid_cross_entropy(logits: Array, targets: Array | float) -> Array:
  """−t·log σ(x) − (1−t)·log(1−σ(x)), per example."""
  return -(targets * jax.nn.log_sigmoid(logits) + (1.0 - targets) * jax.nn.log_sigmoid(-logits))


def bce_real(logits: Array, target: float = 1.0) -> Array:
  """D's loss on real images; target < 1 is one-sided label smoothing (Salimans et al. 2016).

  The smoothed target enters a full cross-entropy, −t·log σ(r) − (1−t)·log(1−σ(r)), so the
  optimum is a finite logit (σ(r) = t) instead of r → ∞, which is what smoothing is for.
  """
  return sigmoid_cross_entropy(logits, target)


def bce_fake(logits: Array) -> Array:
  """D's loss on generated images: −log(1 − σ(f))."""
  return -jax.nn.log_sigmoid(-logits)


def bce_generator(logits: Array, minimax: bool = False) -> Array:
  """G's loss: non-saturating −log σ(f), or the minimax form log(1 − σ(f))."""
  if minimax:
    return jax.nn.log_sigmoid(-logits)
  return -jax.nn.log_sigmoid(logits)


# ---------------------------------------------------------------- LSGAN (Mao et al. 2017)
def lsgan_real(logits: Array, b: float = 1.0) -> Array:
  """½(D(x) − b)²."""
  return 0.5 * jnp.square(logits - b)


def lsgan_fake(logits: Array, a: float = 0.0) -> Array:
  """½(D(G(z)) − a)²."""
  return 0.5 * jnp.square(logits - a)


def lsgan_generator(logits: Array, c: float = 1.0) -> Array:
  """½(D(G(z)) − c)²."""
  return 0.5 * jnp.square(logits - c)


# ---------------------------------------------------------------- SGAN (Odena 2016), N+1 logits, class N = fake
def log_p_real(logits: Array) -> Array:
  """log(1 − p_fake) = logsumexp(l[:N]) − logsumexp(l)."""
  return jax.nn.logsumexp(logits[..., :-1], axis=-1) - jax.nn.logsumexp(logits, axis=-1)


def sgan_labeled(logits: Array, labels: Array) -> Array:
  """−log softmax(l)[y] on labeled real images."""
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.take_along_axis(log_probs, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]


def labeled_classes(logits: Array, labels: Array) -> Array:
  """−log softmax(l[:N])[y] on labeled images: the N-way cross-entropy, without the fake class
  that `sgan_labeled` counts (the labeled loss of Salimans et al. 2016)."""
  return sgan_labeled(logits[..., :-1], labels)


def sgan_real(logits: Array) -> Array:
  """−log(1 − p_fake) on unlabeled real images."""
  return -log_p_real(logits)


def sgan_fake(logits: Array) -> Array:
  """−log p_fake = −(l[N] − logsumexp(l)) on generated images."""
  return -(logits[..., -1] - jax.nn.logsumexp(logits, axis=-1))


def sgan_generator(logits: Array) -> Array:
  """Non-saturating G loss: −log(1 − p_fake) on G(z)."""
  return -log_p_real(logits)


def feature_matching(real_features: Array, fake_features: Array) -> Array:
  """‖E f(x) − E f(G(z))‖² on D's penultimate features (Salimans et al. 2016).

  A batch statistic, so it returns one value for the batch (shape [1]).
  """
  gap = jnp.mean(real_features, axis=0) - jnp.mean(fake_features, axis=0)
  return jnp.sum(jnp.square(gap), keepdims=True)


# ------------------------------------------- hinge (Lim & Ye 2017) and Wasserstein (Arjovsky 2017)
def hinge_real(logits: Array) -> Array:
  """max(0, 1 − D(x))."""
  return jax.nn.relu(1.0 - logits)


def hinge_fake(logits: Array) -> Array:
  """max(0, 1 + D(G(z)))."""
  return jax.nn.relu(1.0 + logits)


def critic_real(logits: Array) -> Array:
  """−D(x): the critic maximises D(x) − D(G(z))."""
  return -logits


def critic_fake(logits: Array) -> Array:
  """D(G(z))."""
  return logits


def critic_generator(logits: Array) -> Array:
  """−D(G(z)): G's loss under the hinge and Wasserstein objectives."""
  return -logits


# ---------------------------------------------------------------- gradient penalties
def gradient_penalty(input_grads: Array, target: float = 1.0) -> Array:
  """(‖∇x̂ D(x̂)‖ − 1)² on interpolates x̂ (WGAN-GP, Gulrajani et al. 2017), per example."""
  norms = jnp.sqrt(jnp.sum(jnp.square(input_grads.reshape(input_grads.shape[0], -1)), -1) + 1e-12)
  return jnp.square(norms - target)


def half_squared_gradient(input_grads: Array) -> Array:
  """½‖∇x D(x)‖², per example: R1 on real images, R2 on fakes (Mescheder et al. 2018); γ is the
  term's weight."""
  return 0.5 * jnp.sum(jnp.square(input_grads.reshape(input_grads.shape[0], -1)), -1)


# ---------------------------------------------------------------- named terms
class DiscOutput(NamedTuple):
  """What one discriminator pass returns: logits, penultimate features, the labels scored, (for
  gradient terms) ∇ of D's realness w.r.t. the input images, and a sigmoid head's [B, 1] logit."""

  logits: Array
  features: Array
  labels: Array
  input_grads: Array | None = None
  real_fake: Array | None = None


TermFn = Callable[[Mapping[str, DiscOutput], ConfigDict], Array]


@dataclasses.dataclass(frozen=True)
class Term:
  """A named loss term: the discriminator outputs it reads and the per-example loss on them.

  `boundary(hparams)`: for a term that reads D as real or fake, D's realness (`realness`) at its
  decision boundary under this loss; the accuracy metrics count a realness above it as 'real'.
  """

  needs: tuple[str, ...]
  fn: TermFn
  boundary: Callable[[ConfigDict], float] | None = None
  reads_gradient: bool = False  # fn reads `input_grads` of its inputs
  lazy: bool = False  # applied every `hparams.lazy_every` D steps, weighted by that interval
  reads_head: bool = False  # fn reads `real_fake`, which only a D with a sigmoid head gives
  # A Wasserstein critic's score: no floor to the loss and no offset to D's output, so neither a
  # loss near 0 nor a threshold on D means anything (the diagnosis reads neither).
  critic: bool = False


def _squeeze(out: DiscOutput) -> Array:
  """Single-logit heads give [B, 1]; the binary losses want [B]."""
  return out.logits[..., 0]


def _on_head(
  term: str,
  name: str,
  loss: Callable[[Array, ConfigDict], Array],
  boundary: Callable[[ConfigDict], float] | None = None,
) -> Term:
  """Term `term`: a BCE `loss` on the logit of the real/fake sigmoid head of SGAN's D (optional,
  beside the N+1 softmax) for D input `name`; refused on a D without that head."""

  def fn(outputs: Mapping[str, DiscOutput], hp: ConfigDict) -> Array:
    if outputs[name].real_fake is None:  # checks.check_config catches it before compiling
      raise BadInput(f"loss term {term} needs D's sigmoid head: model.d_kwargs.sigmoid_head=True")
    return loss(outputs[name].real_fake[..., 0], hp)

  return Term((name,), fn, boundary, reads_head=True)


_AT_ZERO = lambda hp: 0.0  # noqa: E731  (a logit of 0, or p_real = p_fake)
_LSGAN_MIDWAY = lambda hp: (hp.a + hp.b) / 2  # noqa: E731  (D targets a for fake, b for real)

D_TERMS: dict[str, Term] = {
  'bce_real': Term(
    ('real',), lambda o, hp: bce_real(_squeeze(o['real']), hp.real_target), _AT_ZERO
  ),
  'bce_fake': Term(('fake',), lambda o, hp: bce_fake(_squeeze(o['fake'])), _AT_ZERO),
  'bce_wrong': Term(('wrong',), lambda o, hp: bce_fake(_squeeze(o['wrong'])), _AT_ZERO),
  'lsgan_real': Term(('real',), lambda o, hp: lsgan_real(_squeeze(o['real']), hp.b), _LSGAN_MIDWAY),
  'lsgan_fake': Term(('fake',), lambda o, hp: lsgan_fake(_squeeze(o['fake']), hp.a), _LSGAN_MIDWAY),
  'lsgan_wrong': Term(
    ('wrong',), lambda o, hp: lsgan_fake(_squeeze(o['wrong']), hp.a), _LSGAN_MIDWAY
  ),
  'sgan_labeled': Term(
    ('labeled',), lambda o, hp: sgan_labeled(o['labeled'].logits, o['labeled'].labels)
  ),
  'labeled_classes': Term(
    ('labeled',), lambda o, hp: labeled_classes(o['labeled'].logits, o['labeled'].labels)
  ),
  'sgan_real': Term(('real',), lambda o, hp: sgan_real(o['real'].logits), _AT_ZERO),
  'sgan_fake': Term(('fake',), lambda o, hp: sgan_fake(o['fake'].logits), _AT_ZERO),
  'sigmoid_real': _on_head(
    'sigmoid_real', 'real', lambda x, hp: bce_real(x, hp.real_target), _AT_ZERO
  ),
  'sigmoid_fake': _on_head('sigmoid_fake', 'fake', lambda x, hp: bce_fake(x), _AT_ZERO),
  'hinge_real': Term(('real',), lambda o, hp: hinge_real(_squeeze(o['real'])), _AT_ZERO),
  'hinge_fake': Term(('fake',), lambda o, hp: hinge_fake(_squeeze(o['fake'])), _AT_ZERO),
  'critic_real': Term(
    ('real',), lambda o, hp: critic_real(_squeeze(o['real'])), _AT_ZERO, critic=True
  ),
  'critic_fake': Term(
    ('fake',), lambda o, hp: critic_fake(_squeeze(o['fake'])), _AT_ZERO, critic=True
  ),
  'gradient_penalty': Term(
    ('interpolated',),
    lambda o, hp: gradient_penalty(o['interpolated'].input_grads),
    reads_gradient=True,
  ),
  'r1': Term(
    ('real',),
    lambda o, hp: half_squared_gradient(o['real'].input_grads),
    reads_gradient=True,
    lazy=True,
  ),
  'r2': Term(
    ('fake',),
    lambda o, hp: half_squared_gradient(o['fake'].input_grads),
    reads_gradient=True,
    lazy=True,
  ),
}

G_TERMS: dict[str, Term] = {
  'bce_gen': Term(('fake',), lambda o, hp: bce_generator(_squeeze(o['fake']), hp.minimax)),
  'lsgan_gen': Term(('fake',), lambda o, hp: lsgan_generator(_squeeze(o['fake']), hp.c)),
  'sgan_gen': Term(('fake',), lambda o, hp: sgan_generator(o['fake'].logits)),
  'sigmoid_gen': _on_head('sigmoid_gen', 'fake', lambda x, hp: bce_generator(x, hp.minimax)),
  'critic_gen': Term(('fake',), lambda o, hp: critic_generator(_squeeze(o['fake']))),
  'feature_matching': Term(
    ('real', 'fake'), lambda o, hp: feature_matching(o['real'].features, o['fake'].features)
  ),
}


def outputs_needed(weights: Mapping[str, float], terms: Mapping[str, Term]) -> frozenset[str]:
  """The discriminator outputs that the non-zero terms of an objective read."""
  return frozenset(need for name, w in weights.items() if w for need in terms[name].needs)


def weighted_sum(
  weights: Mapping[str, float],
  terms: Mapping[str, Term],
  outputs: Mapping[str, DiscOutput],
  hparams: ConfigDict,
  lazy: bool = False,
) -> tuple[Array, dict[str, Array]]:
  """Σ_i w_i · mean(term_i(outputs)); also returns each term's mean, for the metrics.

  `lazy`: this step applies the lazy terms, weighted by their interval (StyleGAN2's lazy
  regularisation); on other steps they are 0 and not computed.
  """
  every = hparams.get('lazy_every', 1)
  parts, total = {}, jnp.zeros(())
  for name, w in weights.items():
    if not w:
      continue
    if terms[name].lazy and every > 1:
      parts[name] = jnp.mean(terms[name].fn(outputs, hparams)) if lazy else jnp.zeros(())
      total += every * w * parts[name]
    else:
      parts[name] = jnp.mean(terms[name].fn(outputs, hparams))
      total += w * parts[name]
  return total, parts


def realness(logits: Array) -> Array:
  """How real D finds an image: a binary head's logit, or log p_real − log p_fake of N+1 logits
  (`log_p_real` minus log p_fake; the shared logsumexp cancels)."""
  if logits.shape[-1] == 1:
    return logits[..., 0]
  return jax.nn.logsumexp(logits[..., :-1], axis=-1) - logits[..., -1]


def mismatched_labels(key: Array, labels: Array, num_classes: int) -> Array:
  """(y + randint(1, N)) % N: uniform over the other classes, never the true one.

  The TF1 GAN-cls write-up took another batch's labels, which equal the true label about
  one time in ten and so teach D to reject matching pairs.
  """
  return (labels + jax.random.randint(key, labels.shape, 1, num_classes)) % num_classes


Batch = tuple[Array, Array]  # (images, labels)
