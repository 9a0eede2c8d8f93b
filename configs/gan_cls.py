"""GAN-cls (Reed et al. 2016): a matching-aware D scores (image, label) pairs.

D loss: L(D(x, y), real) + ½[L(D(G(z, y), y), fake) + L(D(x, y_wrong), fake)], with
y_wrong = (y + randint(1, N)) % N, so a wrong label never equals the true one.
Base loss L: LSGAN (as the reference), or BCE with `configs/gan_cls.py:bce`.
Sample grids: one row per class.

Run:   python launch.py --config=configs/gan_cls.py
       1,500 steps at batch 64: 18.9 min on a 2-core CPU shared with other jobs. The
       eval classifier labels 99.2% of G(z, y) as y; FID (classifier) 15.3. The last
       grid shows clean digits, row r all digit r.
Smoke: python launch.py --config=configs/gan_cls.py:smoke --workdir=$(mktemp -d)
BCE:   python launch.py --config=configs/gan_cls.py:bce
"""

from configs import default

VARIANTS = ('bce', 'smoke')  # configs/gan_cls.py:VARIANT; several combine, comma-separated


def get_config(arg: str | None = None):
  args = default.parse_args(arg, VARIANTS)
  config = default.base()
  config.model.generator = 'conditional'
  config.model.discriminator = 'matching'
  config.model.latent_dim = 38  # as the reference: 38 noise + 10 one-hot = 48 inputs
  config.loss.d_terms = {'lsgan_real': 1.0, 'lsgan_fake': 0.5, 'lsgan_wrong': 0.5}
  config.loss.g_terms = {'lsgan_gen': 1.0}
  if 'bce' in args:
    config.loss.d_terms = {'bce_real': 1.0, 'bce_fake': 0.5, 'bce_wrong': 0.5}
    config.loss.g_terms = {'bce_gen': 1.0}
  if 'smoke' in args:
    config = default.smoke(config)
  return config
