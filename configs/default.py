"""Settings every system shares; each configs/<system>.py starts from `base()`."""

from collections.abc import Collection

import ml_collections

from gan_jax import fields


def base() -> ml_collections.ConfigDict:
  """Every field at its declared default: gan_jax/fields.py declares each field once (default,
  meaning, domain, resume rule); docs/fields.md lists them all."""
  return fields.default_config()


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
