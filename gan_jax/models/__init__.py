"""Generators and discriminators, by name.

Every generator is called as `G(z, labels, train) -> images in [-1, 1]` and every
discriminator as `D(images, labels, train) -> (logits, features)`, where `features` are
the penultimate activations (feature matching, evaluation). Unconditional models ignore
`labels`, so one training step serves every system.
"""

import flax.linen as nn

from gan_jax.models.conditional import ConditionalGenerator, MatchingDiscriminator
from gan_jax.models.dcgan import DCGANDiscriminator, DCGANGenerator
from gan_jax.models.mlp import MLPDiscriminator, MLPGenerator
from gan_jax.models.sgan import SGANDiscriminator, SGANGenerator

GENERATORS = {
    'mlp': MLPGenerator,
    'dcgan': DCGANGenerator,
    'sgan': SGANGenerator,
    'conditional': ConditionalGenerator,
}

# Generators whose samples depend on the labels they are given (scored by conditional accuracy).
CONDITIONAL_GENERATORS = frozenset({'conditional'})

DISCRIMINATORS = {
    'mlp': MLPDiscriminator,
    'dcgan': DCGANDiscriminator,
    'sgan': SGANDiscriminator,
    'matching': MatchingDiscriminator,
}


def _get(registry: dict, kind: str, name: str, kwargs: dict) -> nn.Module:
  if name not in registry:
    raise ValueError(f'Unknown {kind}: {name!r}; valid choices: {", ".join(sorted(registry))}')
  module = registry[name]
  # Pass only the fields this module declares: one model config serves every architecture.
  fields = set(module.__dataclass_fields__)
  return module(**{k: v for k, v in kwargs.items() if k in fields})


def get_generator(name: str, **kwargs) -> nn.Module:
  return _get(GENERATORS, 'model.generator', name, kwargs)


def get_discriminator(name: str, **kwargs) -> nn.Module:
  return _get(DISCRIMINATORS, 'model.discriminator', name, kwargs)
