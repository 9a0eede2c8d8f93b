"""LSGAN (Mao et al. 2017): DCGAN's networks, least-squares losses with a=0, b=1, c=1.

Run:   python launch.py --config=configs/lsgan.py
       3,000 steps at batch 64: 37 min on a 2-core CPU shared with other jobs. FID
       (classifier) 40.3; the last grid shows mostly recognizable digits of all
       classes, about a third malformed.
Smoke: python launch.py --config=configs/lsgan.py:smoke --workdir=$(mktemp -d)
"""

from configs import default

VARIANTS = ('smoke',)  # configs/lsgan.py:VARIANT; several combine, comma-separated


def get_config(arg: str | None = None):
  args = default.parse_args(arg, VARIANTS)
  config = default.base()
  config.train.num_steps = 3000
  config.loss.d_terms = {'lsgan_real': 1.0, 'lsgan_fake': 1.0}
  config.loss.g_terms = {'lsgan_gen': 1.0}
  if 'smoke' in args:
    config = default.smoke(config)
  return config
