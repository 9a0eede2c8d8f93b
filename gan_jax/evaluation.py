"""Scores of a run from a classifier trained on the real data, and SGAN's test accuracy.

The sample metrics use the penultimate features of a small CNN trained on the dataset's own
train split, not Inception's: "FID (classifier features)" ranks runs on one dataset and is
not comparable with published Inception FIDs. Everything is computed between generated
samples and the real test split.
"""

import functools
import hashlib
import json
import os

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from ml_collections import ConfigDict

from gan_jax import data, losses, models
from gan_jax.logging import atomic_write_bytes, write_report
from gan_jax.state import apply_inference

# Part of the cache key: change it whenever the classifier or its training changes.
CLASSIFIER_VERSION = 1
CLASSIFIER_EPOCHS = 12
CLASSIFIER_BATCH = 64
_MAX_SHIFT = 2  # training augmentation: random translations of up to 2 pixels
_EVAL_BATCH = 500


class Classifier(nn.Module):
  """Conv 32 → Conv 64 (3×3, stride 2) → Dense 128 (the features) → Dense N; [-1, 1] inputs.

  Strided convolutions, not max pooling: on XLA:CPU max pooling's gradient made training 15×
  slower, for no accuracy that 2-pixel shift augmentation does not give back.
  """
  num_classes: int = 10

  @nn.compact
  def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    x = images
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
  padded = jnp.pad(images, ((0, 0), (_MAX_SHIFT,) * 2, (_MAX_SHIFT,) * 2, (0, 0)), constant_values=-1)
  offsets = jax.random.randint(key, (images.shape[0], 2), 0, 2 * _MAX_SHIFT + 1)
  crop = lambda image, offset: jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, image.shape[-1]))
  return jax.vmap(crop)(padded, offsets)


def train_classifier(images: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
  """Params of a Classifier fit to uint8 `images`; deterministic (fixed keys and order)."""
  module = Classifier(num_classes)
  key = jax.random.PRNGKey(0)
  params = module.init(key, jnp.zeros((1, *images.shape[1:])))['params']
  steps_per_epoch = len(images) // CLASSIFIER_BATCH
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
    perm = jax.random.permutation(epoch_key, len(images))[:steps_per_epoch * CLASSIFIER_BATCH]
    batch_keys = jax.random.split(jax.random.fold_in(epoch_key, 1), steps_per_epoch)
    return jax.lax.scan(step, carry, (batch_keys, perm.reshape(steps_per_epoch, -1)))[0]

  carry = (params, tx.init(params))
  for i in range(CLASSIFIER_EPOCHS):
    carry = epoch(carry, i)
  return carry[0]


class EvalClassifier:
  """A trained Classifier: batched logits and features of [-1, 1] images of the data's size."""

  def __init__(self, params: dict, num_classes: int, test_accuracy: float, image_shape):
    self.params, self.test_accuracy = params, test_accuracy
    self.image_shape = tuple(image_shape)
    self._apply = jax.jit(Classifier(num_classes).apply)

  def __call__(self, images) -> tuple[np.ndarray, np.ndarray]:
    images = crop_to(jnp.asarray(images), self.image_shape[0])
    outputs = [self._apply({'params': self.params}, images[i:i + _EVAL_BATCH])
               for i in range(0, len(images), _EVAL_BATCH)]
    return tuple(np.concatenate([np.asarray(o[j]) for o in outputs]) for j in (0, 1))


def crop_to(images: jax.Array, size: int) -> jax.Array:
  """Undoes data.pad_to: the centre size×size of [N, H, W, C] images."""
  top, left = (images.shape[1] - size) // 2, (images.shape[2] - size) // 2
  return images[:, top:top + size, left:left + size]


def load_classifier(dataset: str, data_dir: str | None = None) -> EvalClassifier:
  """The eval classifier of `dataset`, trained on first use and cached by the data's fingerprint."""
  images, labels = data.load_split(dataset, 'train', data_dir)
  num_classes = data.DATASETS[dataset]
  path = os.path.join(cache_dir(), f'classifier_{dataset}_{fingerprint(images, labels)}')
  template = Classifier(num_classes).init(jax.random.PRNGKey(0), jnp.zeros((1, *images.shape[1:])))
  if os.path.exists(f'{path}.msgpack'):
    params = flax.serialization.from_bytes(template['params'], open(f'{path}.msgpack', 'rb').read())
    accuracy = json.load(open(f'{path}.json'))['test_accuracy']
    return EvalClassifier(params, num_classes, accuracy, images.shape[1:])
  params = train_classifier(images, labels, num_classes)
  classifier = EvalClassifier(params, num_classes, 0.0, images.shape[1:])
  test_images, test_labels = data.load_split(dataset, 'test', data_dir)
  logits, _ = classifier(data.to_unit_range(test_images))
  classifier.test_accuracy = float(np.mean(logits.argmax(-1) == test_labels))
  os.makedirs(cache_dir(), exist_ok=True)
  atomic_write_bytes(f'{path}.msgpack', flax.serialization.to_bytes(params))
  atomic_write_bytes(f'{path}.json', json.dumps({'test_accuracy': classifier.test_accuracy}).encode())
  return classifier


# ---- Sample metrics: float64 numpy on [N, D] features. ----

def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
  """‖μa − μb‖² + Tr(Σa + Σb − 2(Σa Σb)^½) of Gaussians fit to the two feature sets."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  # atleast_2d: np.cov of one feature is a scalar.
  cov_a, cov_b = (np.atleast_2d(np.cov(x, rowvar=False)) for x in (a, b))
  # Tr((Σa Σb)^½) = Σ √λ of the symmetric Σa^½ Σb Σa^½: eigh is stable where sqrtm is not.
  values, vectors = np.linalg.eigh(cov_a)
  root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
  cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
  mean_term = np.sum((a.mean(0) - b.mean(0)) ** 2)
  return float(mean_term + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def kernel_distance(a: np.ndarray, b: np.ndarray, subsets: int = 10, subset_size: int = 1000,
                    seed: int = 0) -> float:
  """KID: the unbiased MMD² with kernel (x·y/d + 1)³, averaged over random subsets."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  m = min(subset_size, len(a), len(b))
  rng = np.random.default_rng(seed)
  kernel = lambda x, y: (x @ y.T / a.shape[1] + 1) ** 3
  estimates = []
  for _ in range(subsets):
    x, y = a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)]
    kxx, kyy = kernel(x, x), kernel(y, y)
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    estimates.append(within - 2 * kernel(x, y).mean())
  return float(np.mean(estimates))


def _pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  squared = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
  return np.sqrt(np.clip(squared, 0, None))


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
  """Kynkäänniemi et al. 2019: the share of each set inside the other's k-NN balls.

  Not 1 for two real sets: on the eval classifier's features, 1,000 train images against the
  1,000 test images score 0.87-0.88 and 0.85-0.92 at k=3 (tests/test_evaluation.py).
  """
  real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)

  def coverage_of(manifold, queries):
    # Column k of the sorted self-distances: the k-th neighbour, column 0 being the point itself.
    radii = np.sort(_pairwise_distances(manifold, manifold), axis=1)[:, k]
    return float(np.mean((_pairwise_distances(queries, manifold) <= radii[None, :]).any(axis=1)))

  return coverage_of(real, fake), coverage_of(fake, real)


def class_coverage(predictions: np.ndarray, num_classes: int) -> int:
  """How many classes get at least half their fair share (n / N) of the samples."""
  counts = np.bincount(predictions, minlength=num_classes)
  return int(np.sum(counts >= 0.5 * len(predictions) / num_classes))


def class_entropy(predictions: np.ndarray, num_classes: int) -> float:
  """Entropy (nats) of the predicted-class histogram; log N when every class is equally common."""
  p = np.bincount(predictions, minlength=num_classes) / len(predictions)
  return float(-np.sum(p[p > 0] * np.log(p[p > 0])))


def sample_metrics(classifier: EvalClassifier, real_features: np.ndarray, images,
                   labels: np.ndarray | None = None) -> dict[str, float]:
  """Every sample metric of generated `images`; conditional accuracy if `labels` were asked for."""
  logits, features = classifier(images)
  predictions = logits.argmax(-1)
  num_classes = logits.shape[-1]
  precision, recall = precision_recall(real_features, features)
  metrics = {
      'fid_classifier': frechet_distance(real_features, features),
      'kid_classifier': kernel_distance(real_features, features),
      'precision': precision, 'recall': recall,
      'class_coverage': class_coverage(predictions, num_classes),
      'class_entropy': class_entropy(predictions, num_classes),
  }
  if labels is not None:
    metrics['conditional_accuracy'] = float(np.mean(predictions == labels))
  return metrics


class Evaluator:
  """Scores a GANState of one config: sample metrics of G, and D's class head for SGAN."""

  def __init__(self, config: ConfigDict, generator: nn.Module, discriminator: nn.Module,
               objective: losses.Objective):
    self.config, self.generator, self.discriminator = config, generator, discriminator
    data_dir = config.data.data_dir or None
    self.classifier = load_classifier(config.data.name, data_dir)
    self.num_classes = data.DATASETS[config.data.name]
    test_images, self.test_labels = data.load_split(config.data.name, 'test', data_dir)
    self.test_images = data.to_unit_range(data.pad_to(test_images, config.data.image_size))
    self.real_features = self.classifier(self.test_images)[1]
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
      logits, _ = apply_inference(self.discriminator, d_state, images,
                                  jnp.zeros(images.shape[0], jnp.int32))
      return jnp.argmax(logits[:, :self.num_classes], -1)
    return classify

  def __call__(self, state, seed: int | None = None) -> dict[str, float]:
    """Scores of one run's state; `seed` (default config.seed) is the run's, for its sample noise."""
    metrics = {'classifier_test_accuracy': self.classifier.test_accuracy}
    if self.trains_generator:
      num = self.config.eval.num_samples
      labels = jnp.arange(num, dtype=jnp.int32) % self.num_classes  # balanced, for conditional G
      seed = self.config.seed if seed is None else seed
      key = jax.random.PRNGKey(seed + 2)  # fixed: successive evals differ only by G
      images = self._generate(state.g, key, labels)
      metrics.update(sample_metrics(self.classifier, self.real_features, images,
                                    np.asarray(labels) if self.conditional else None))
    if self.semi_supervised:
      predictions = np.concatenate([
          np.asarray(self._classify(state.d, self.test_images[i:i + _EVAL_BATCH]))
          for i in range(0, len(self.test_images), _EVAL_BATCH)])
      metrics['d_test_accuracy'] = float(np.mean(predictions == self.test_labels))
    return metrics


def save_eval(workdir: str, step: int, metrics: dict[str, float]) -> str:
  """Writes eval.json (atomically) and the run's report.md; returns the eval.json path."""
  path = os.path.join(workdir, 'eval.json')
  atomic_write_bytes(path, json.dumps({'step': step, **metrics}, indent=2).encode())
  write_report(workdir, step, metrics)
  return path
