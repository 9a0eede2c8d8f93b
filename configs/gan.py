"""Vanilla GAN (Goodfellow et al. 2014): MLP G and D, BCE with one-sided label smoothing (0.9).

Run:   python launch.py --config=configs/gan.py
       20,000 steps at batch 64: 1.5 min on a 2-core CPU (222 steps/s), before
       evaluations. FID (classifier) 78.1, 7 of 10 classes covered; the last grid shows
       recognizable digits, speckled, as a 128-unit MLP gives.
Smoke: python launch.py --config=configs/gan.py:smoke --workdir=$(mktemp -d)
"""

from configs import default

VARIANTS = ('smoke',)  # configs/gan.py:VARIANT; several combine, comma-separated


def get_config(arg: str | None = None):
  args = default.parse_args(arg, VARIANTS)
  config = default.base()
  config.model.generator = 'mlp'
  config.model.discriminator = 'mlp'
  config.loss.hparams.real_target = 0.9
  config.optimizer.g.learning_rate = 2e-3
  config.optimizer.d.learning_rate = 2e-3
  config.train.num_steps = 20000
  config.train.sample_every = 5000
  config.train.checkpoint_every = 5000
  config.eval.every = 5000  # an evaluation takes seconds: thousands of these 5-ms steps
  if 'smoke' in args:
    config = default.smoke(config)
  return config
