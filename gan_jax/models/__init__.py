"""Generators and discriminators, by name.

Every generator is called as `G(z, labels, train) -> images in [-1, 1]` and every
discriminator as `D(images, labels, train) -> (logits, features)`, where `features` are
the penultimate activations (feature matching, evaluation); a D with a real/fake sigmoid head
beside its logits (SGAN's `sigmoid_head`) returns that head's [B, 1] logit third. Unconditional
models ignore `labels`, so one training step serves every system.
"""

import flax.linen as nn

from gan_jax.errors import BadInput
from gan_jax.models.conditional import ConditionalGenerator, MatchingDiscriminator
from gan_jax.models.dcgan import DCGANDiscriminator, DCGANGenerator
from gan_jax.models.improved_gan import ImprovedGANDiscriminator, ImprovedGANGenerator
from gan_jax.models.mlp import MLPDiscriminator, MLPGenerator
from gan_jax.models.radford import RadfordDiscriminator, RadfordGenerator
from gan_jax.models.seed004 import Seed004Discriminator, Seed004Generator
from gan_jax.models.sgan import SGANDiscriminator, SGANGenerator

GENERATORS = {
  'mlp': MLPGenerator,
  'dcgan': DCGANGenerator,
  'sgan': SGANGenerator,
  'conditional': ConditionalGenerator,
  'radford': RadfordGenerator,
  'seed004': Seed004Generator,
  'improved_gan': ImprovedGANGenerator,
}

# Generators whose samples depend on the labels they are given (scored by conditional accuracy).
CONDITIONAL_GENERATORS = frozenset({'conditional'})

DISCRIMINATORS = {
  'mlp': MLPDiscriminator,
  'dcgan': DCGANDiscriminator,
  'sgan': SGANDiscriminator,
  'matching': MatchingDiscriminator,
  'radford': RadfordDiscriminator,
  'seed004': Seed004Discriminator,
  'improved_gan': ImprovedGANDiscriminator,
}


# What the data decides: each model takes those of these fields it declares.
DATA_FIELDS = ('num_classes', 'channels', 'image_shape')


def model_fields(module: type[nn.Module]) -> list[str]:
  """The constructor fields a config may set (`model.g_kwargs`, `model.d_kwargs`)."""
  return sorted(set(module.__dataclass_fields__) - {'parent', 'name', *DATA_FIELDS})


def _build(
  registry: dict, field: str, name: str, kwargs_field: str, kwargs: dict, data_fields: dict
) -> nn.Module:
  if name not in registry:
    raise BadInput(f'{field}={name!r} is not valid; valid choices: {", ".join(sorted(registry))}')
  module = registry[name]
  valid = model_fields(module)
  unknown = sorted(set(kwargs) - set(valid))
  if unknown:
    raise BadInput(
      f'{kwargs_field}.{unknown[0]} is not a field of {field}={name!r}; valid '
      f'fields: {", ".join(valid) or "none"}'
    )
  declared = set(module.__dataclass_fields__)
  return module(**{k: v for k, v in data_fields.items() if k in declared}, **kwargs)


def build(
  model_config, num_classes: int, image_shape: tuple[int, int, int]
) -> tuple[nn.Module, nn.Module]:
  """G and D of `config.model` for data of `num_classes` classes and images of `image_shape`."""
  data_fields = {
    'num_classes': num_classes,
    'channels': image_shape[-1],
    'image_shape': tuple(image_shape),
  }
  generator = _build(
    GENERATORS,
    'model.generator',
    model_config.generator,
    'model.g_kwargs',
    dict(model_config.g_kwargs),
    data_fields,
  )
  discriminator = _build(
    DISCRIMINATORS,
    'model.discriminator',
    model_config.discriminator,
    'model.d_kwargs',
    dict(model_config.d_kwargs),
    data_fields,
  )
  return generator, discriminator
