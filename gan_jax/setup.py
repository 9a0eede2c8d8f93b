"""What a run is made of, checked: its config, data, models, objective and seeds."""

from ml_collections import ConfigDict
import numpy as np

from gan_jax import checks, data, evaluation, models, parallel
from gan_jax.errors import BadInput
from gan_jax.objective import Objective
from gan_jax.rng import INIT_STREAM
from gan_jax.seeds import Seeds
from gan_jax.state import GANState


class Setup:
  """The config, the training split, the models, the objective, the seeds and the mesh, after
  every check of them (config, data, image size, workdir); building it compiles nothing and
  writes nothing in the workdir.
  """

  def __init__(self, config: ConfigDict, workdir: str):
    checks.check_config(config)
    checks.check_workdir(workdir)
    self.config, self.workdir = config, workdir
    self.objective = Objective(config.loss)
    self.seeds = Seeds(config.seed, config.num_seeds)
    # Process 0 prepares the data on first use; the others then read what it wrote.
    self.dataset = parallel.primary_first(lambda: data.open_dataset(config.data), 'data')
    self.images, self.labels = self.dataset.split('train')
    self.num_classes = self.dataset.num_classes
    self.image_shape = self.images.shape[1:]
    checks.check_data(
      config, len(self.labels), np.bincount(self.labels, minlength=self.num_classes)
    )
    needs_labels = (
      self.objective.needs_labels or config.model.generator in models.CONDITIONAL_GENERATORS
    )
    if needs_labels and not self.dataset.labeled:
      raise BadInput(
        f'data.folder={config.data.folder!r} has no class subfolders, and this '
        'system needs labels; put the images of each class in a subfolder of its own'
      )
    self.generator, self.discriminator = models.build(
      config.model, self.num_classes, self.image_shape
    )
    checks.check_image_shape(config, self.generator, self.image_shape)
    self.d_fields = models.model_fields(type(self.discriminator))  # what the advice may set
    self.mesh = parallel.make_mesh()
    self.replicated = parallel.replicated(self.mesh)

  def labeled_subsets(self) -> list[np.ndarray]:
    """A new run's labeled subset of each seed: its indices into the split (none without a
    label budget). Each seed draws its own, or with `data.labeled_seed` all share the one
    openai/improved-gan's `--seed_data` picks."""
    if not self.objective.uses_labels:
      return [np.zeros((0,), np.int32)] * len(self.seeds.values)
    budget, shared = (self.config.data.num_labeled, self.config.data.labeled_seed)
    if shared >= 0:
      subset = data.reference_labeled_subset(
        self.labels, budget, self.num_classes, shared, self.dataset.file_index('train')
      )
      return [subset] * len(self.seeds.values)
    return [
      data.labeled_subset(self.labels, budget, self.num_classes, seed) for seed in self.seeds.values
    ]

  def visible_labels(self, labeled: np.ndarray) -> np.ndarray:
    """The labels the step may see: all of them, or under a label budget those of the labeled
    subset alone (-1 elsewhere), so that no label outside the budget can reach a model."""
    if not self.objective.uses_labels:
      return self.labels.astype(np.int32)
    visible = np.full(len(self.labels), -1, np.int32)
    visible[labeled] = self.labels[labeled]
    return visible

  def init_images(self, seed: int) -> np.ndarray:
    """The [-1, 1] training images D is initialised on in the run of `seed`: model.d_init_batch
    of them, drawn by the seed's init stream."""
    rng = np.random.default_rng([seed, INIT_STREAM])
    count = min(self.config.model.d_init_batch, len(self.images))
    chosen = np.sort(rng.choice(len(self.images), count, replace=False))
    return np.asarray(data.to_unit_range(self.images[chosen]))

  def evaluator(self) -> evaluation.Evaluator:
    """The run's evaluator (process 0 trains and caches its classifier first)."""
    return parallel.primary_first(
      lambda: evaluation.Evaluator(
        self.config, self.dataset, self.generator, self.discriminator, self.objective
      ),
      'eval classifier',
    )

  def score(self, evaluator: evaluation.Evaluator, state: GANState) -> dict[str, float]:
    """The evaluator's scores of every seed, as `Seeds.merge` names them."""
    return self.seeds.merge(
      [evaluator(s, seed) for seed, s in zip(self.seeds.values, self.seeds.split(state))]
    )
