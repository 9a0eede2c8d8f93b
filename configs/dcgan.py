"""DCGAN (Radford et al. 2016) on 28×28 digits, BCE with a non-saturating G.

Run:   python launch.py --config=configs/dcgan.py
       3,000 steps at batch 64: 22.8 min on a 2-core CPU shared with other jobs (the
       step alone: 2.7 steps/s). FID (classifier) 38.0; the last grid shows mostly
       recognizable digits of all classes, about a third malformed; at 1,500 steps
       most were still half-formed.
Smoke: python launch.py --config=configs/dcgan.py:smoke --workdir=$(mktemp -d)
"""

from configs import default


def get_config(arg: str | None = None):
  args = default.parse_args(arg)
  config = default.base()
  config.train.num_steps = 3000
  if 'smoke' in args:
    config = default.smoke(config)
  return config
