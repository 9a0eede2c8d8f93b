"""A system's objective: the named terms of `losses` weighted as `config.loss` says, the D inputs
they read, and how D's outputs are read as real or fake."""

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
from ml_collections import ConfigDict

from gan_jax.losses import (
  D_TERMS,
  G_TERMS,
  Array,
  Batch,
  DiscOutput,
  mismatched_labels,
  outputs_needed,
  realness,
  weighted_sum,
)


class Objective:
  """A system's objective, built once from `config.loss`: the one place that reads term names.

  The step asks it which batches to draw and which D inputs to build, the losses of D and G,
  and D's accuracy metrics; the evaluator and the checks ask it what the system trains.
  """

  def __init__(self, loss_config: ConfigDict):
    self.d_weights = dict(loss_config.d_terms)
    self.g_weights = dict(loss_config.g_terms)
    self.hparams = loss_config.hparams
    self.d_needs = outputs_needed(self.d_weights, D_TERMS)
    self.g_needs = outputs_needed(self.g_weights, G_TERMS)
    # Without G terms the objective trains D alone (SGAN's supervised baseline).
    self.trains_generator = any(self.g_weights.values())
    self.generates = self.trains_generator or 'fake' in self.d_needs
    # The label budget: only the semi-supervised terms read the labeled subset.
    self.uses_labels = 'labeled' in self.d_needs
    # Whether the data must have labels: a label budget, or mismatched pairs to reject.
    self.needs_labels = bool({'labeled', 'wrong'} & self.d_needs)
    self.active_d_terms = [D_TERMS[n] for n, w in self.d_weights.items() if w]
    # The D input whose pass updates D's running statistics: real images (see passes.discriminate).
    self.statistics_input = next(
      (n for n in ('real', 'labeled', 'wrong') if n in self.d_needs), None
    )
    # Lazy terms, applied every hparams.lazy_every D steps: the step runs two forms of D's update.
    lazy = tuple(n for n, w in self.d_weights.items() if w and D_TERMS[n].lazy)
    self.lazy_every = self.hparams.get('lazy_every', 1) if lazy else 1
    self.lazy_terms = lazy if self.lazy_every > 1 else ()  # applied on some D updates only
    # D's real/fake read-out: the sigmoid head where terms train it (SGAN's optional head, beside
    # the N+1 softmax), else the logits; its threshold is the boundary of the terms that train it.
    self.reads_head = any(t.reads_head for t in self.active_d_terms)
    boundaries = {
      t.boundary(self.hparams)
      for t in self.active_d_terms
      if t.boundary and t.reads_head == self.reads_head
    }
    self.threshold = boundaries.pop() if len(boundaries) == 1 else 0.0
    # What the diagnosis may read: whether D is a Wasserstein critic, and whether a term's real
    # target is hparams.real_target (one-sided smoothing, its advice against a winning D).
    self.critic = any(t.critic for t in self.active_d_terms)
    self.smooths = any(self.d_weights.get(n) for n in ('bce_real', 'sigmoid_real'))

  def realness(self, out: DiscOutput) -> Array:
    """How real D finds each image, read where the objective trains D for real/fake (above
    `threshold`: called real): the sigmoid head's logit, or `realness` of the logits."""
    return out.real_fake[..., 0] if self.reads_head else realness(out.logits)

  def gradient_inputs(self, lazy: bool) -> frozenset[str]:
    """D inputs whose input gradient this update's terms read (R1: 'real', WGAN-GP:
    'interpolated'); `lazy`: the update applies the lazy terms."""
    applies = lambda t: not t.lazy or lazy or self.lazy_every == 1
    return frozenset(
      i for t in self.active_d_terms if t.reads_gradient and applies(t) for i in t.needs
    )

  def d_inputs(
    self,
    real: Batch,
    fake: Batch | None,
    labeled: Batch | None,
    key: Array,
    num_classes: int,
    augment: Mapping[str, Callable[[Array], Array]] | None = None,
  ) -> dict[str, Batch]:
    """D's inputs by name (see `losses`), each built only where a term reads it. `augment`: D's
    augmentation of each input by name (none where absent)."""
    images, labels = real
    augment = augment or {}

    def interpolated():
      """x̂ = ε·aug(x) + (1 − ε)·aug(G(z)), ε ~ U[0, 1] per example (WGAN-GP): between the images
      that D sees, as DiffAugment's compare_gan code builds them; D sees x̂ as it is."""
      eps = jax.random.uniform(
        jax.random.fold_in(key, 1), (images.shape[0],) + (1,) * (images.ndim - 1)
      )
      seen = lambda name, x: augment[name](x) if name in augment else x
      return eps * seen('real', images) + (1 - eps) * seen('fake', fake[0]), labels

    build = {
      'real': lambda: real,
      'fake': lambda: fake,
      'labeled': lambda: labeled,
      'wrong': lambda: (images, mismatched_labels(key, labels, num_classes)),
      'interpolated': interpolated,
    }
    return {name: build[name]() for name in sorted(self.d_needs)}

  def g_inputs(self, real: Batch, fake: Batch) -> dict[str, Batch]:
    """G's D inputs: those its terms read, `fake` being the batch G's gradient flows through."""
    return {name: {'real': real, 'fake': fake}[name] for name in sorted(self.g_needs)}

  def d_loss(
    self, outputs: Mapping[str, DiscOutput], lazy: bool = False
  ) -> tuple[Array, dict[str, Array]]:
    return weighted_sum(self.d_weights, D_TERMS, outputs, self.hparams, lazy)

  def lazy_loss(self, outputs: Mapping[str, DiscOutput]) -> tuple[Array, dict[str, Array]]:
    """The lazy terms alone, weighted by their interval: what `d_loss(lazy=True)` adds."""
    weights = {n: self.d_weights[n] for n in self.lazy_terms}
    return weighted_sum(weights, D_TERMS, outputs, self.hparams, lazy=True)

  def g_loss(self, outputs: Mapping[str, DiscOutput]) -> tuple[Array, dict[str, Array]]:
    return weighted_sum(self.g_weights, G_TERMS, outputs, self.hparams)

  def d_accuracies(self, outputs: Mapping[str, DiscOutput]) -> dict[str, Array]:
    """D's share right: real and labeled real called real, fake and mismatched called fake, and
    the labeled images' classes (argmax over the N real classes)."""
    metrics = {}
    for name, is_real in (('real', True), ('fake', False), ('wrong', False)):
      if name in outputs:
        score = self.realness(outputs[name])
        metrics[f'd_acc_{name}'] = jnp.mean(
          score > self.threshold if is_real else score <= self.threshold
        )
    if 'labeled' in outputs:
      labeled = outputs['labeled']
      metrics['d_acc_labeled'] = jnp.mean(
        jnp.argmax(labeled.logits[..., :-1], -1) == labeled.labels
      )
    return metrics
