"""Semi-Supervised GAN (Odena 2016): D is an N+1-way classifier, class N = fake.

Run:   python launch.py --config=configs/sgan.py
       2,000 steps at batch 64: 19 min on a 2-core CPU shared with other runs (the
       step alone: 3.8 steps/s). Seed 0 ends with D's test accuracy at 91.1% (its
       labels-only baselines, configs/sgan_baseline.py: 68.4%, and :strong: 89.0%), FID
       (classifier, 32×32) 18.0; the last grid shows mostly recognizable digits, some with
       broken strokes.
Smoke: python launch.py --config=configs/sgan.py:smoke --workdir=$(mktemp -d)

Only `data.num_labeled` (default 100, 10 per class, seeded) training labels are used; the
rest of the embedded train split is used unlabeled. 32×32 images (MNIST centre-padded).

Variant `fm`: G trained by feature matching alone (Salimans et al. 2016, "Improved Techniques
for Training GANs", the semi-supervised MNIST setting): G matches the batch mean of D's
penultimate features on real images, ‖E f(x) − E f(G(z))‖², weight 1, instead of fooling D's
fake class (`sgan_gen` 0). D's objective is unchanged. Salimans et al. found it gives the
better classifier and the worse-looking samples. Not measured here yet.
       python launch.py --config=configs/sgan.py:fm
"""

from configs import default

VARIANTS = ('fm', 'smoke')  # configs/sgan.py:VARIANT; several combine, comma-separated


def get_config(arg: str | None = None):
  args = default.parse_args(arg, VARIANTS)
  config = default.base()
  config.data.image_size = 32
  config.data.num_labeled = 100
  config.model.generator = 'sgan'
  config.model.discriminator = 'sgan'
  config.loss.d_terms = {'sgan_labeled': 1.0, 'sgan_real': 1.0, 'sgan_fake': 1.0}
  config.loss.g_terms = {'sgan_gen': 1.0, 'feature_matching': 0.0}
  if 'fm' in args:
    config.loss.g_terms = {'sgan_gen': 0.0, 'feature_matching': 1.0}
  config.train.num_steps = 2000
  if 'smoke' in args:
    config = default.smoke(config)
    config.data.num_labeled = 20
  return config
