"""Scores of a run from a classifier trained on the real data, and SGAN's test accuracy.

The sample metrics use the penultimate features of a small CNN trained on the dataset's own
train split, not Inception's: "FID (classifier features)" ranks runs on one dataset and is
not comparable with published Inception FIDs. Everything is computed between generated
samples and the real test split.
"""

from collections.abc import Collection
import functools
import hashlib
import json
import os
import sys

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
from ml_collections import ConfigDict
import numpy as np
import optax
import tqdm

from gan_jax import data, diagnosis, metrics, models
from gan_jax.objective import Objective
from gan_jax.rng import EVAL_STREAM, stream_key
from gan_jax.state import apply_inference
from gan_jax.writers import atomic_write_bytes, read_metrics, write_report

# Part of the cache key: change it whenever the classifier or its training changes.
CLASSIFIER_VERSION = 1
CLASSIFIER_EPOCHS = 12
CLASSIFIER_BATCH = 64
_MAX_SHIFT = 2  # training augmentation: random translations of up to 2 pixels
_EVAL_BATCH = 500


class Classifier(nn.Module):
  """Conv 32 → Conv 64 (3×3, stride 2) → Dense 128 (the features) → Dense N; [-1, 1] inputs.

  Strided convolutions, not max pooling: on XLA:CPU max pooling's gradient made training 15×
  slower, for no accuracy that 2-pixel shift augmentation does not give back. Images above
  32×32 are first averaged down to at most 32×32 (2×2 means, over the whole image): at 64×64 the
  same layers trained 8× slower on XLA:CPU (34 s an epoch of 2,136 emoji).
  """

  num_classes: int = 10

  @nn.compact
  def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    x = images
    while x.shape[1] > 32:
      x = nn.avg_pool(x, (2, 2), (2, 2))
    for features in (32, 64):
      x = nn.relu(nn.Conv(features, (3, 3), (2, 2))(x))
    features = nn.relu(nn.Dense(128)(x.reshape(x.shape[0], -1)))
    return nn.Dense(self.num_classes)(features), features


def cache_dir() -> str:
  """$GAN_JAX_CACHE, else ~/.cache/gan_jax: where trained eval classifiers are kept."""
  return os.environ.get('GAN_JAX_CACHE') or os.path.expanduser('~/.cache/gan_jax')


def fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
  """Identifies a train split and the classifier recipe: a new one retrains the classifier."""
  digest = hashlib.sha256(f'v{CLASSIFIER_VERSION}:{images.shape}'.encode())
  digest.update(np.ascontiguousarray(images).tobytes())
  digest.update(np.ascontiguousarray(labels, np.int32).tobytes())
  return digest.hexdigest()[:16]


def _shift(key: jax.Array, images: jax.Array) -> jax.Array:
  """Each image translated by its own random offset (zero = black padding) of up to _MAX_SHIFT."""
  h, w = images.shape[1:3]
  padded = jnp.pad(
    images, ((0, 0), (_MAX_SHIFT,) * 2, (_MAX_SHIFT,) * 2, (0, 0)), constant_values=-1
  )
  offsets = jax.random.randint(key, (images.shape[0], 2), 0, 2 * _MAX_SHIFT + 1)
  crop = lambda image, offset: jax.lax.dynamic_slice(
    image, (offset[0], offset[1], 0), (h, w, image.shape[-1])
  )
  return jax.vmap(crop)(padded, offsets)


def train_classifier(images: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
  """Params of a Classifier fit to uint8 `images`; deterministic (fixed keys and order)."""
  module = Classifier(num_classes)
  key = jax.random.PRNGKey(0)
  params = module.init(key, jnp.zeros((1, *images.shape[1:])))['params']
  batch = min(CLASSIFIER_BATCH, len(images))  # a small folder of images: one batch an epoch
  steps_per_epoch = len(images) // batch
  schedule = optax.cosine_decay_schedule(1e-3, CLASSIFIER_EPOCHS * steps_per_epoch)
  tx = optax.adam(schedule)
  device_images, device_labels = jnp.asarray(images), jnp.asarray(labels, jnp.int32)

  def loss_fn(params, batch_images, batch_labels):
    logits, _ = module.apply({'params': params}, batch_images)
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch_labels).mean()

  @jax.jit
  def epoch(carry, epoch_index):
    """One pass over a fresh permutation, as a scan: one dispatch per epoch."""

    def step(carry, batch):
      params, opt_state = carry
      batch_key, idx = batch
      batch_images = _shift(batch_key, data.to_unit_range(device_images[idx]))
      grads = jax.grad(loss_fn)(params, batch_images, device_labels[idx])
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None

    epoch_key = jax.random.fold_in(key, epoch_index)
    perm = jax.random.permutation(epoch_key, len(images))[: steps_per_epoch * batch]
    batch_keys = jax.random.split(jax.random.fold_in(epoch_key, 1), steps_per_epoch)
    return jax.lax.scan(step, carry, (batch_keys, perm.reshape(steps_per_epoch, -1)))[0]

  carry = (params, tx.init(params))
  for i in tqdm.trange(CLASSIFIER_EPOCHS, desc='eval classifier', unit='epoch', leave=False):
    # Wait for each epoch: dispatch is asynchronous, and a bar that fills at once lies.
    carry = jax.block_until_ready(epoch(carry, i))
  return carry[0]


class EvalClassifier:
  """A Classifier's batched logits and features of [-1, 1] images of the data's size and
  channels: trained on the data's labels, or (`trained=False`) seeded random weights, whose
  features still rank sample sets for FID, KID and precision/recall (Naeem et al. 2020)."""

  def __init__(self, params: dict, num_classes: int, test_accuracy: float, trained: bool = True):
    self.params, self.test_accuracy, self.trained = params, test_accuracy, trained
    self._apply = jax.jit(Classifier(num_classes).apply)

  def __call__(self, images) -> tuple[np.ndarray, np.ndarray]:
    images = jnp.asarray(images)
    outputs = [
      self._apply({'params': self.params}, images[i : i + _EVAL_BATCH])
      for i in range(0, len(images), _EVAL_BATCH)
    ]
    return tuple(np.concatenate([np.asarray(o[j]) for o in outputs]) for j in (0, 1))


def load_classifier(dataset: data.Dataset) -> EvalClassifier:
  """The eval classifier of `dataset`, trained on first use and cached by the data's fingerprint
  (random features for unlabeled data). It learns the whole training split, validation images
  included: it scores samples, never D, so one classifier serves runs with and without them."""
  images, labels = dataset.read('train')
  template = Classifier(dataset.num_classes).init(
    jax.random.PRNGKey(0), jnp.zeros((1, *images.shape[1:]))
  )
  if not dataset.labeled:
    return EvalClassifier(template['params'], dataset.num_classes, float('nan'), trained=False)
  path = os.path.join(cache_dir(), f'classifier_{dataset.name}_{fingerprint(images, labels)}')
  if os.path.exists(f'{path}.msgpack'):
    params = flax.serialization.from_bytes(template['params'], open(f'{path}.msgpack', 'rb').read())
    accuracy = json.load(open(f'{path}.json'))['test_accuracy']
    return EvalClassifier(params, dataset.num_classes, accuracy)
  # Minutes on a CPU for full MNIST: say so, or a new user's first run looks stuck.
  print(
    f'training the eval classifier of {dataset.name} once ({CLASSIFIER_EPOCHS} epochs over '
    f'{len(images):,} images), cached in {cache_dir()}',
    file=sys.stderr,
    flush=True,
  )
  params = train_classifier(images, labels, dataset.num_classes)
  test_images, test_labels = dataset.split('test')
  logits, _ = EvalClassifier(params, dataset.num_classes, 0.0)(data.to_unit_range(test_images))
  accuracy = float(np.mean(logits.argmax(-1) == test_labels))
  os.makedirs(cache_dir(), exist_ok=True)
  atomic_write_bytes(f'{path}.msgpack', flax.serialization.to_bytes(params))
  atomic_write_bytes(f'{path}.json', json.dumps({'test_accuracy': accuracy}).encode())
  return EvalClassifier(params, dataset.num_classes, accuracy)


def sample_metrics(
  classifier: EvalClassifier,
  real_features: np.ndarray,
  images,
  labels: np.ndarray | None = None,
  real_radii: np.ndarray | None = None,
) -> dict[str, float]:
  """Every sample metric of generated `images`; the class metrics where the classifier was
  trained, conditional accuracy if `labels` were asked for. `real_radii`: the real features'
  `metrics.knn_radii`, computed once where many sample sets are scored."""
  logits, features = classifier(images)
  precision, recall = metrics.precision_recall(real_features, features, real_radii=real_radii)
  kid, kid_std = metrics.kernel_distance(real_features, features)
  scores = {
    'fid_classifier': metrics.frechet_distance(real_features, features),
    'kid_classifier': kid,
    'kid_classifier_std': kid_std,
    'precision': precision,
    'recall': recall,
  }
  if classifier.trained:
    predictions, num_classes = logits.argmax(-1), logits.shape[-1]
    scores['class_coverage'] = metrics.class_coverage(predictions, num_classes)
    scores['class_entropy'] = metrics.class_entropy(predictions, num_classes)
    if labels is not None:
      scores['conditional_accuracy'] = float(np.mean(predictions == labels))
  return scores


# What each metric is, for the report.
METRIC_NOTES = {
  'fid_classifier': "Fréchet distance on the eval classifier's features (not Inception FID); lower is better",
  'kid_classifier': 'kernel (MMD²) distance on the same features; lower is better',
  'kid_classifier_std': 'its standard deviation over 50 subsets of half of each set',
  'precision': 'share of samples inside the k=3 NN balls of the real test features; 1,000 real '
  'train images score 0.87-0.88',
  'recall': 'share of real test images inside the k=3 NN balls of the samples; 0.85-0.92 for '
  '1,000 real train images',
  'class_coverage': 'classes given at least half their fair share of the samples',
  'class_entropy': 'entropy (nats) of the predicted classes of the samples; log 10 = 2.303 is uniform',
  'conditional_accuracy': 'share of G(z, y) that the classifier labels y',
  'd_test_accuracy': "accuracy of D's class head on the test split",
  'd_validation_accuracy': "accuracy of D's class head on the held-out training images",
  'classifier_test_accuracy': "the eval classifier's own test accuracy",
}


class Evaluator:
  """Scores a GANState of one config: sample metrics of G, and D's class head for SGAN.

  Everything is scored at the run's image size (the whole image G draws, padding included)."""

  def __init__(
    self,
    config: ConfigDict,
    dataset: data.Dataset,
    generator: nn.Module,
    discriminator: nn.Module,
    objective: Objective,
  ):
    self.config, self.generator, self.discriminator = config, generator, discriminator
    self.classifier = load_classifier(dataset)
    self.num_classes = dataset.num_classes
    test_images, self.test_labels = dataset.split('test')
    self.test_images = data.to_unit_range(test_images)
    # D's class head is also scored on the held-out training images, where there are some.
    self.scored_splits = {'test': (self.test_images, self.test_labels)}
    if dataset.validation:
      images, labels = dataset.split('validation')
      self.scored_splits['validation'] = (data.to_unit_range(images), labels)
    self.real_features = self.classifier(self.test_images)[1]
    # Computed once: redone at every evaluation, they were most of its time.
    self.real_radii = metrics.knn_radii(self.real_features)
    self.conditional = config.model.generator in models.CONDITIONAL_GENERATORS
    self.trains_generator = objective.trains_generator
    self.semi_supervised = objective.uses_labels  # D's class head is trained on the label budget

  @functools.cached_property
  def _generate(self):
    @jax.jit
    def generate(g_state, key, labels):
      z = jax.random.normal(key, (labels.shape[0], self.config.model.latent_dim))
      return apply_inference(self.generator, g_state, z, labels)

    return generate

  @functools.cached_property
  def _classify(self):
    @jax.jit
    def classify(d_state, images):
      """D's class head in inference mode: argmax over the N real classes (not 'fake')."""
      logits = apply_inference(
        self.discriminator, d_state, images, jnp.zeros(images.shape[0], jnp.int32)
      )[0]
      return jnp.argmax(logits[:, : self.num_classes], -1)

    return classify

  def __call__(self, state, seed: int | None = None) -> dict[str, float]:
    """Scores of one run's state; `seed` (default config.seed) is the run's, for its sample noise."""
    scores = {'classifier_test_accuracy': self.classifier.test_accuracy}
    if self.trains_generator:
      num = self.config.eval.num_samples
      labels = jnp.arange(num, dtype=jnp.int32) % self.num_classes  # balanced, for conditional G
      seed = self.config.seed if seed is None else seed
      key = stream_key(seed, EVAL_STREAM)  # fixed: successive evals differ only by G
      images = self._generate(state.sampler, key, labels)
      scores.update(
        sample_metrics(
          self.classifier,
          self.real_features,
          images,
          np.asarray(labels) if self.conditional else None,
          self.real_radii,
        )
      )
    if self.semi_supervised:
      for split, (images, labels) in self.scored_splits.items():
        predictions = np.concatenate(
          [
            np.asarray(self._classify(state.classifier, images[i : i + _EVAL_BATCH]))
            for i in range(0, len(images), _EVAL_BATCH)
          ]
        )
        scores[f'd_{split}_accuracy'] = float(np.mean(predictions == labels))
    return scores


def save_eval(
  workdir: str,
  step: int,
  scores: dict[str, float],
  random_features: bool = False,
  objective: Objective | None = None,
  d_fields: Collection[str] | None = None,
) -> str:
  """Writes eval.json (atomically) and the run's report.md, with the diagnosis of its metrics
  under its `objective` and D's arguments `d_fields`; returns the eval.json path."""
  path = os.path.join(workdir, 'eval.json')
  atomic_write_bytes(path, json.dumps({'step': step, **scores}, indent=2).encode())
  notes = (
    (
      '_The sample metrics use the features of a randomly initialised network (the data has '
      'no labels to train a classifier on): compare them only between runs on the same '
      'data._\n',
    )
    if random_features
    else ()
  )
  write_report(
    workdir,
    step,
    scores,
    METRIC_NOTES,
    (
      *notes,
      diagnosis.report_section(
        diagnosis.diagnose(read_metrics(workdir), objective=objective, d_fields=d_fields)
      ),
    ),
  )
  return path
