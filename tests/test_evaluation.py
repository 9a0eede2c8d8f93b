"""The evaluation metrics: closed forms, sanity on the real data, and --mode=eval end to end.

The eval classifier is trained for real, once per session, into a fresh cache.
"""

import json
import os
import subprocess
import sys
from unittest import mock

from conftest import mnist5k_dataset
import jax
import numpy as np
import pytest
import scipy.linalg
from test_train import load_config, read_metrics

from gan_jax import data, evaluation, metrics, train
from gan_jax.run import Run
from gan_jax.state import apply_inference

SAMPLE_METRICS = {
  'fid_classifier',
  'kid_classifier',
  'kid_classifier_std',
  'precision',
  'recall',
  'class_coverage',
  'class_entropy',
  'classifier_test_accuracy',
}


@pytest.fixture(scope='module')
def features(classifier):
  """Classifier features of the test split (the reference of every metric), of 1,000 train
  images (another real set of the same size) and of uniform noise."""
  test_images, _ = data.load_split('mnist5k', 'test')
  train_images, _ = data.load_split('mnist5k', 'train')
  test = np.asarray(data.to_unit_range(test_images))
  train_subset = np.asarray(data.to_unit_range(train_images[::4]))
  noise = np.random.default_rng(0).uniform(-1, 1, test.shape).astype(np.float32)
  return {
    'test': classifier(test)[1],
    'train': classifier(train_subset)[1],
    'noise': classifier(noise)[1],
    'train_images': train_subset,
  }


# ---- Closed forms ----


def _gaussian_samples(rng, mean, cov, n=500):
  """n points whose sample mean and covariance are exactly `mean` and `cov`."""
  x = rng.standard_normal((n, len(mean)))
  x -= x.mean(0)
  whiten = np.linalg.inv(np.linalg.cholesky(np.atleast_2d(np.cov(x, rowvar=False))))
  return x @ whiten.T @ np.linalg.cholesky(cov).T + mean


def test_frechet_distance_of_one_dimensional_gaussians():
  rng = np.random.default_rng(0)
  a = _gaussian_samples(rng, np.array([1.0]), np.array([[4.0]]))
  b = _gaussian_samples(rng, np.array([-2.0]), np.array([[9.0]]))
  # (μa − μb)² + (σa − σb)²
  assert metrics.frechet_distance(a, b) == pytest.approx(9 + 1, rel=1e-9)
  assert metrics.frechet_distance(a, a) == pytest.approx(0, abs=1e-9)


def test_frechet_distance_of_full_covariance_gaussians_matches_sqrtm():
  rng = np.random.default_rng(1)
  dims = 5
  covs = []
  for _ in range(2):
    m = rng.standard_normal((dims, dims))
    covs.append(m @ m.T + 0.1 * np.eye(dims))
  means = rng.standard_normal((2, dims))
  a, b = (_gaussian_samples(rng, mu, cov) for mu, cov in zip(means, covs))
  expected = np.sum((means[0] - means[1]) ** 2) + np.trace(
    covs[0] + covs[1] - 2 * scipy.linalg.sqrtm(covs[0] @ covs[1]).real
  )
  assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
  assert metrics.frechet_distance(b, a) == pytest.approx(expected, rel=1e-8)


def test_class_coverage_and_entropy_closed_form():
  uniform = np.arange(1000) % 10
  assert metrics.class_coverage(uniform, 10) == 10
  assert metrics.class_entropy(uniform, 10) == pytest.approx(np.log(10))
  single = np.full(100, 7)
  assert metrics.class_coverage(single, 10) == 1
  assert metrics.class_entropy(single, 10) == 0
  assert metrics.class_entropy(np.array([0, 1] * 50), 10) == pytest.approx(np.log(2))
  # 100 samples of 10 classes: a class needs half its fair share of 10, i.e. 5, to count.
  counts = [5, 4, 10, 10, 10, 10, 10, 10, 10, 21]
  assert metrics.class_coverage(np.repeat(np.arange(10), counts), 10) == 9


def test_precision_recall_closed_form():
  rng = np.random.default_rng(0)
  real = rng.standard_normal((200, 3))
  assert metrics.precision_recall(real, real) == (1.0, 1.0)
  assert metrics.precision_recall(real, real + 100) == (0.0, 0.0)
  # Samples collapsed on one real point: all of them are real-looking, they cover almost nothing.
  precision, recall = metrics.precision_recall(real, np.repeat(real[:1], 200, axis=0))
  assert precision == 1.0 and recall < 0.1


def test_knn_radii_closed_form():
  points = np.array([[0.0], [1.0], [3.0], [6.0], [10.0]])
  np.testing.assert_array_equal(metrics.knn_radii(points, k=1), [1, 1, 2, 3, 4])
  np.testing.assert_array_equal(metrics.knn_radii(points, k=2), [3, 2, 3, 4, 7])
  # k at or past the set's size: the farthest point.
  np.testing.assert_array_equal(metrics.knn_radii(points[:3], k=3), [3, 2, 3])


def test_precision_recall_uses_the_given_real_radii():
  rng = np.random.default_rng(1)
  real, fake = rng.standard_normal((300, 4)), rng.standard_normal((100, 4)) + 0.5
  radii = metrics.knn_radii(real, k=5)
  assert metrics.precision_recall(real, fake, k=5, real_radii=radii) == metrics.precision_recall(
    real, fake, k=5
  )
  # Balls of radius 0 hold no sample: precision 0, recall (the samples' balls) untouched.
  zero = metrics.precision_recall(real, fake, k=5, real_radii=np.zeros(300))
  assert zero == (0.0, metrics.precision_recall(real, fake, k=5)[1])


# ---- The classifier and the metrics on the real data ----


def test_classifier_reaches_97_percent_and_is_cached(classifier):
  assert classifier.test_accuracy >= 0.97
  with mock.patch.object(evaluation, 'train_classifier', side_effect=AssertionError('retrained')):
    cached = evaluation.load_classifier(mnist5k_dataset())
  assert cached.test_accuracy == classifier.test_accuracy
  jax.tree.map(np.testing.assert_array_equal, cached.params, classifier.params)


def test_training_the_classifier_is_said_on_the_terminal_once(
  classifier, tmp_path, monkeypatch, capfd
):
  """Minutes on a CPU for full MNIST: the first use says what it does, a cached one nothing."""
  monkeypatch.setenv('GAN_JAX_CACHE', str(tmp_path))
  with mock.patch.object(evaluation, 'train_classifier', return_value=classifier.params):
    evaluation.load_classifier(mnist5k_dataset())
    assert capfd.readouterr().err.splitlines() == [
      f'training the eval classifier of mnist5k once (12 epochs over 4,000 images), '
      f'cached in {tmp_path}'
    ]
    evaluation.load_classifier(mnist5k_dataset())
  assert capfd.readouterr().err == ''


def test_fingerprint_changes_with_the_data():
  images = np.zeros((10, 28, 28, 1), np.uint8)
  labels = np.arange(10)
  changed_image = images.copy()
  changed_image[3, 5, 5] = 1
  prints = {
    evaluation.fingerprint(images, labels),
    evaluation.fingerprint(changed_image, labels),
    evaluation.fingerprint(images, labels[::-1]),
  }
  assert len(prints) == 3


def test_fid_of_real_splits_is_far_below_fid_of_noise(features):
  real = metrics.frechet_distance(features['test'], features['train'])
  noise = metrics.frechet_distance(features['test'], features['noise'])
  assert real < noise / 50


def test_fid_grows_with_gaussian_noise(classifier, features):
  rng = np.random.default_rng(0)
  images = features['train_images']
  fids = []
  for sigma in (0.0, 0.1, 0.2, 0.4, 0.8):
    noisy = np.clip(images + sigma * rng.standard_normal(images.shape), -1, 1).astype(np.float32)
    fids.append(metrics.frechet_distance(features['test'], classifier(noisy)[1]))
  assert np.all(np.diff(fids) > 0), fids


def test_precision_and_recall_of_real_against_real_are_high(features):
  """Two real sets of 1,000 score well below 1 at k=3 (here 0.878 and 0.917; 0.869 and 0.851
  for the first 1,000 train images): the k-NN balls of a finite sample miss part of its own
  distribution, the more so the higher the features' intrinsic dimension (Naeem et al. 2020;
  1,000 against 1,000 Gaussian points in 8 dimensions score 0.88 and 0.90). With k=5 the
  balls are wider and both exceed 0.9 (0.947 and 0.953)."""
  precision, recall = metrics.precision_recall(features['test'], features['train'])
  assert precision > 0.8 and recall > 0.8
  precision, recall = metrics.precision_recall(features['test'], features['train'], k=5)
  assert precision > 0.9 and recall > 0.9
  assert metrics.precision_recall(features['test'], features['noise']) == (0.0, 0.0)


def test_kid_of_identical_sets_is_about_zero(features):
  scale, _ = metrics.kernel_distance(features['test'], features['noise'])
  assert abs(metrics.kernel_distance(features['test'], features['test'])[0]) < 1e-2 * scale
  assert metrics.kernel_distance(features['test'], features['train'])[0] < 1e-2 * scale


def test_kid_against_its_closed_form_on_small_sets():
  """Each subset's unbiased MMD² with kernel (x·y/d + 1)³, written out by hand, averaged; the
  subsets hold half of each set, so that they differ (their spread is the reported std)."""
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(8, 3)), rng.normal(1.0, 1.0, size=(8, 3))
  k = lambda x, y: (x @ y.T / 3 + 1) ** 3

  def mmd(x, y):  # m = 4 points each: the within-set sums skip the diagonal, over m(m − 1)
    within = lambda z: (k(z, z).sum() - np.trace(k(z, z))) / 12
    return within(x) + within(y) - 2 * k(x, y).mean()

  draws = np.random.default_rng(7)  # the same draws as kernel_distance(seed=7)
  by_hand = []
  for _ in range(5):
    x, y = a[draws.choice(8, 4, replace=False)], b[draws.choice(8, 4, replace=False)]
    by_hand.append(mmd(x, y))
  mean, std = metrics.kernel_distance(a, b, subsets=5, subset_size=1000, seed=7)
  assert mean == pytest.approx(np.mean(by_hand), rel=1e-12)
  assert std == pytest.approx(np.std(by_hand, ddof=1), rel=1e-12) and std > 0


def test_images_of_a_single_class_cover_one_class(classifier):
  images, labels = data.load_split('mnist5k', 'test')
  logits, _ = classifier(data.to_unit_range(images[labels == 3]))  # 28×28: the classifier's size
  predictions = logits.argmax(-1)
  assert metrics.class_coverage(predictions, 10) == 1
  assert metrics.class_entropy(predictions, 10) < 0.5  # log 10 = 2.3 if spread evenly


# ---- Evaluation of runs ----


def test_eval_mode_writes_every_metric_for_sgan(classifier32, tmp_path):
  """`launch.py --mode=eval` on a trained smoke run: eval.json (with D's test accuracy) and report.md."""
  train.train_and_evaluate(load_config('sgan'), str(tmp_path))
  assert not os.path.exists(tmp_path / 'eval.json')  # smoke runs do not evaluate by themselves
  root = os.path.join(os.path.dirname(__file__), '..')
  result = subprocess.run(
    [
      sys.executable,
      'launch.py',
      '--config=configs/sgan.py:smoke',
      f'--workdir={tmp_path}',
      '--mode=eval',
    ],
    cwd=root,
    capture_output=True,
    text=True,
    env={**os.environ, 'JAX_DISABLE_MOST_OPTIMIZATIONS': '1'},
  )
  assert result.returncode == 0, result.stderr
  scores = json.loads((tmp_path / 'eval.json').read_text())
  assert set(scores) == SAMPLE_METRICS | {'step', 'd_test_accuracy'}
  assert scores['step'] == 4
  assert scores['classifier_test_accuracy'] == classifier32.test_accuracy
  # D's class head by hand: argmax over the 10 real classes of D in inference mode.
  config = load_config('sgan')
  run = Run(config, str(tmp_path))
  run.checkpointer.close()
  images, labels = run.setup.dataset.split('test')
  logits, _ = apply_inference(
    run.setup.discriminator,
    run.state.d,
    data.to_unit_range(images),
    np.zeros(len(labels), np.int32),
  )
  assert scores['d_test_accuracy'] == pytest.approx(
    np.mean(np.argmax(logits[:, :10], -1) == labels)
  )

  # The fake logit is not a class: however large, it leaves the accuracy as it was.
  d = run.state.d
  head = d.params['Dense_0']
  fake_heavy = d.replace(
    params={**d.params, 'Dense_0': {**head, 'bias': head['bias'].at[10].add(1e4)}}
  )
  evaluator = run.setup.evaluator()
  assert evaluator(run.state.replace(d=fake_heavy))['d_test_accuracy'] == scores['d_test_accuracy']
  report = (tmp_path / 'report.md').read_text()
  assert '| d_test_accuracy |' in report and '![samples](samples/step_000004.png)' in report
  assert os.path.getsize(tmp_path / 'loss_curves.png') > 0


def test_periodic_and_on_demand_eval_of_gan_cls(classifier, tmp_path):
  """eval.every=2: eval rows in metrics.jsonl, eval.json at the end; train.evaluate rewrites it."""
  config = load_config('gan_cls')
  config.eval.every = 2
  train.train_and_evaluate(config, str(tmp_path))
  eval_rows = [r for r in read_metrics(tmp_path) if 'eval/fid_classifier' in r]
  assert [r['step'] for r in eval_rows] == [2, 4]
  assert {f'eval/{k}' for k in SAMPLE_METRICS | {'conditional_accuracy'}} <= set(eval_rows[-1])
  during_training = json.loads((tmp_path / 'eval.json').read_text())

  os.remove(tmp_path / 'eval.json')
  os.remove(tmp_path / 'report.md')
  path = train.evaluate(config, str(tmp_path))
  scores = json.loads(open(path).read())
  assert set(scores) == SAMPLE_METRICS | {'step', 'conditional_accuracy'}
  # The same checkpoint, noise and labels: the same scores.
  assert scores == pytest.approx(during_training, rel=1e-5)
  assert '| conditional_accuracy |' in (tmp_path / 'report.md').read_text()


def test_sgan_baseline_trains_d_alone(classifier32, tmp_path):
  """configs/sgan_baseline.py: G stays at its initialisation, D's test accuracy is scored, and
  the grid code still works (on G's noise)."""
  config = load_config('sgan_baseline')
  assert dict(config.loss.d_terms) == {'sgan_labeled': 1.0}
  assert config.data.num_labeled == load_config('sgan').data.num_labeled
  train.train_and_evaluate(config, str(tmp_path))
  assert 'g_loss' not in read_metrics(tmp_path)[-1]
  run = Run(config, str(tmp_path))
  run.checkpointer.close()
  initial = jax.device_get(run.states.fresh())
  jax.tree.map(np.testing.assert_array_equal, initial.g.params, jax.device_get(run.state.g.params))
  assert os.listdir(tmp_path / 'samples') == ['step_000004.png']

  scores = json.loads(open(train.evaluate(config, str(tmp_path))).read())
  assert set(scores) == {'step', 'classifier_test_accuracy', 'd_test_accuracy'}
