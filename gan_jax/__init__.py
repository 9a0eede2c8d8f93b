"""gan_jax: GANs in JAX/Flax (see README.md)."""
