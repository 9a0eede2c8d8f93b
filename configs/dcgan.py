"""DCGAN (Radford et al. 2016) on 28×28 digits, BCE with a non-saturating G.

Run:   python launch.py --config=configs/dcgan.py
       3,000 steps at batch 64: 22.8 min on a 2-core CPU shared with other jobs (the
       step alone: 2.7 steps/s). FID (classifier) 38.0; the last grid shows mostly
       recognizable digits of all classes, about a third malformed; at 1,500 steps
       most were still half-formed.
Smoke: python launch.py --config=configs/dcgan.py:smoke --workdir=$(mktemp -d)
EMA:   python launch.py --config=configs/dcgan.py:ema   (samples and scores from an EMA of G's
       weights, decay 0.999: FID 30.8 at 3,000 steps against the raw G's 38.0; README)
Hinge: python launch.py --config=configs/dcgan.py:hinge   (the hinge loss: D max(0, 1 − D(x)) +
       max(0, 1 + D(G(z))), G −D(G(z)); Lim & Ye 2017, Miyato et al. 2018)
"""

from configs import default

VARIANTS = ('ema', 'hinge', 'smoke')  # configs/dcgan.py:VARIANT; several combine, comma-separated


def get_config(arg: str | None = None):
  args = default.parse_args(arg, VARIANTS)
  config = default.base()
  config.train.num_steps = 3000
  if 'ema' in args:
    config.model.g_ema_decay = 0.999
  if 'hinge' in args:
    config.loss.d_terms = {'hinge_real': 1.0, 'hinge_fake': 1.0}
    config.loss.g_terms = {'critic_gen': 1.0}
  if 'smoke' in args:
    config = default.smoke(config)
  return config
