"""The project's own error type for bad input: launch.py reports it as one line, exit status 2."""


class BadInput(ValueError):
  """Input gan_jax refuses (a config field, the data, a workdir, a checkpoint), with a one-line
  message naming what to change. Any other exception is a bug, a ValueError from inside jax or
  tfds included. A ValueError, so that code catching one still catches it."""
