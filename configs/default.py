"""Settings every system shares; each configs/<system>.py starts from `base()`."""

from collections.abc import Collection

import ml_collections

from gan_jax import losses


def base() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  # K > 1 trains K independent G/D pairs, seeds seed .. seed+K-1, in one vmapped step: seed i
  # is the run of seed+i (its own init, labeled subset, data order and noise). Metrics, grids
  # and scores per seed and as mean ± std.
  config.num_seeds = 1

  config.data = ml_collections.ConfigDict()
  # Embedded, offline: 'mnist5k', or 'openmoji' (colour emoji); 'mnist' and 'fashion_mnist' if
  # prepared by tfds; 'folder' for your own images.
  config.data.name = 'mnist5k'
  config.data.data_dir = ''  # '' = $TFDS_DATA_DIR or ~/tensorflow_datasets
  config.data.image_size = 28
  config.data.batch_size = 64
  config.data.num_labeled = 0  # labels the semi-supervised objective may use
  config.data.labeled_batch_size = 0  # 0 = data.batch_size
  # Training images of at most this many bytes live on the device, where the step gathers its
  # batches; larger data stays on the host, which streams each step's batches with grain. Both
  # give the same batches, bitwise, for the same seed and step.
  config.data.device_bytes = 2**30
  config.data.channels = 1  # 1 (grey) or 3 (RGB): the data is converted to it
  # data.name='folder': your own images (README "Your own images"), one subfolder per class.
  config.data.folder = ''
  config.data.resize = 'crop'  # to a square: centre 'crop', or 'pad' (letterbox)
  config.data.background = (255, 255, 255)  # behind transparent pixels, and the letterbox
  config.data.test_fraction = 0.1  # per class, seeded: the split that evaluation scores against
  # DiffAugment (Zhao et al. 2020) of every image D sees, real and fake: a comma-separated
  # policy of 'color', 'translation', 'cutout', run in the order given (the reference's is
  # 'color,translation,cutout'); '' = off. For small data sets.
  config.data.augment = ''
  # ADA (Karras et al. 2020): > 0 (0.6 in the paper) applies each of data.augment's transforms
  # with a probability p that starts at 0 and moves by batch/500k a step: up while D's
  # r_t = mean sign(D(x)) on real images is above this target (0.6: 80% called real), down while
  # below. 0 = off: every transform on every image.
  config.data.augment_target = 0.0

  config.model = ml_collections.ConfigDict()
  config.model.generator = 'dcgan'
  config.model.discriminator = 'dcgan'
  config.model.latent_dim = 100
  # Constructor arguments of the two networks, e.g. {'hidden': 256} for the MLPs or
  # {'dropout': 0.0} for a D; an unknown name is an error listing the model's fields.
  config.model.g_kwargs = {}
  config.model.d_kwargs = {}
  # 'bfloat16': the training step's layers compute in bfloat16 (for GPUs and TPUs); parameters,
  # optimizer state, BatchNorm statistics and losses stay float32. Sampling and evaluation
  # run in float32.
  config.model.compute_dtype = 'float32'
  # > 0: samples, grids and scores come from an exponential moving average of G's weights and
  # BatchNorm statistics (e.g. 0.999, with a warm-up); the raw G keeps training.
  config.model.g_ema_decay = 0.0

  config.loss = ml_collections.ConfigDict()
  config.loss.d_terms = {'bce_real': 1.0, 'bce_fake': 1.0}
  config.loss.g_terms = {'bce_gen': 1.0}
  config.loss.hparams = losses.default_hparams()

  config.optimizer = ml_collections.ConfigDict()
  # Separate settings for G and D: a common remedy when D overpowers G.
  config.optimizer.g = {'name': 'adam', 'learning_rate': 2e-4, 'b1': 0.5, 'b2': 0.999}
  config.optimizer.d = {'name': 'adam', 'learning_rate': 2e-4, 'b1': 0.5, 'b2': 0.999}

  config.train = ml_collections.ConfigDict()
  config.train.num_steps = 1500
  config.train.d_steps = 1  # D updates per G update
  # Training steps per jitted call (a lax.scan): fewer dispatches and host round trips, the
  # same results. log_every, sample_every, checkpoint_every and eval.every must be multiples.
  config.train.steps_per_call = 1
  config.train.update_order = 'alternating'  # or 'simultaneous'
  # D sees real and fake images in one concatenated pass only where it has no BatchNorm (the
  # same logits, one pass fewer); a BatchNorm D gets one pass per input, so each batch is
  # normalised by its own statistics, as in the papers.
  config.train.log_every = 50
  config.train.sample_every = 500
  config.train.checkpoint_every = 500
  config.train.max_checkpoints = 3
  # On a NaN/Inf loss or gradient norm: 'stop', or 'rollback' to the last checkpoint and
  # skip the offending step, at most max_rollbacks times.
  config.train.on_nonfinite = 'stop'
  config.train.max_rollbacks = 3
  # Resume even if the workdir's checkpoints come from a config that differs in more than
  # the run length and logging.
  config.train.allow_config_change = False

  config.eval = ml_collections.ConfigDict()
  # Scores (gan_jax/evaluation.py) every N steps and at the end, into metrics.jsonl, eval.json
  # and report.md; 0 = only on demand (--mode=eval).
  config.eval.every = 500
  config.eval.num_samples = 1000  # generated images per evaluation (the test split has 1,000)
  return config


def parse_args(arg: str | None, valid: Collection[str]) -> set[str]:
  """`configs/x.py:a,b` → {'a', 'b'}: variants that combine, e.g. `gan_cls.py:bce,smoke`.

  `valid`: the config's variants. An unknown one is a ValueError listing them: ignored, a
  typo would start the full run.
  """
  args = {a.strip() for a in arg.split(',')} - {''} if arg else set()
  unknown = sorted(args - set(valid))
  if unknown:
    raise ValueError(
      f'config variant {unknown[0]!r} is not valid; valid choices: '
      f'{", ".join(sorted(valid)) or "none"}'
    )
  return args


def smoke(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A few tiny steps: for tests and for checking that a config runs at all."""
  config.data.batch_size = 8
  config.train.num_steps = 4
  config.train.log_every = 2
  config.train.sample_every = 4
  config.train.checkpoint_every = 2
  config.eval.every = 0
  config.eval.num_samples = 100
  return config
