"""Supervised baselines of SGAN: the same D trained on the labeled subset alone.

Plain (no variant): the SGAN config with every term but the labeled cross-entropy removed: no
unlabeled or generated images, G never trained. Same architecture, label budget (the same
seeded subset for the same seed), batch, optimizer and steps, so that the gap between the two
test accuracies (`d_test_accuracy` in eval.json) is what the unlabeled data and G bring.

Variant `strong`: the same D given its best fair chance (Oliver et al. 2018: a gain over a
weak baseline is no evidence). Its choices were fixed a priori, not tuned on the test split
(nor on anything else), and are the same at every label budget:
- 10,000 steps, 5× SGAN's: with no G, a step costs a fraction of SGAN's, and on a few hundred
  labels D overfits within hundreds of steps, after which regularised training still moves.
  The test curve (`eval/d_test_accuracy` in metrics.jsonl, every 250 steps) shows whether it
  has converged; the study reports the last step, never the best point of the curve.
- DiffAugment translation (`data.augment='translation'`) of the labeled images: shifts of up
  to 1/8 of the size (±4 px at 32×32). A shifted digit is the same digit, and MNIST's digits
  sit in a 20×20 box at the centre of the frame, so a shift rarely cuts one. The padding is
  filled with 0, mid-grey in [-1, 1], as in DiffAugment's reference; test images have no such
  strip, a difference D must learn to ignore. Not `cutout`: its square is half the image
  (16×16) and can erase the strokes that tell digits apart (an 8 becomes a 3, a 7 a 1), so
  the image no longer shows its label. Not `color`: the test images share one background and
  contrast, so brightness and contrast noise regularises towards variation that never comes.
- Dropout 0.25 after each conv, as SGAN's D has it: kept, the usual regulariser of a small
  classifier, and the same D as SGAN's.
- The optimizer stays SGAN's D optimizer (Adam, 2e-4, b1 0.5): the longer run makes up for its
  small step size. Weight decay is not offered by `config.optimizer` (adam, sgd and rmsprop
  without it), so this baseline has none.

Run:   python launch.py --config=configs/sgan_baseline.py[:strong]
       At 100 labels, seed 0, D's test accuracy ends at 68.4% (plain: 2,000 steps, 66 s of
       training on 2 shared CPU cores; flat from step 250, once D fits its 100 images) and
       89.0% (strong: 10,000 steps, 5.3 min; 86.4% at step 2,000, level from about 3,000 at
       87.9 ± 0.9% over its last 10 evaluations). SGAN's seed 0: 91.4%.
Smoke: python launch.py --config=configs/sgan_baseline.py:smoke --workdir=$(mktemp -d)
Study: python study.py --budgets=20,50,100,1000,4000 --seeds=3 --out=workdirs/study
       (SGAN, SGAN + feature matching and both baselines at each label budget and seed)

Its sample grids show G at initialisation: noise, by design. Both evaluate every 250 steps:
with no G to sample, an evaluation is one pass of D over the 1,000 test images.
"""

from configs import default, sgan

VARIANTS = ('smoke', 'strong')


def get_config(arg: str | None = None):
  args = default.parse_args(arg, VARIANTS)
  config = sgan.get_config('smoke' if 'smoke' in args else None)
  config.loss.d_terms = {'sgan_labeled': 1.0}
  # All G weights zero: the objective then trains D alone (no G pass, no G update).
  config.loss.g_terms = {'sgan_gen': 0.0, 'feature_matching': 0.0}
  if 'smoke' not in args:
    config.eval.every = 250
  if 'strong' in args:
    config.data.augment = 'translation'
    if 'smoke' not in args:
      config.train.num_steps = 10_000
  return config
