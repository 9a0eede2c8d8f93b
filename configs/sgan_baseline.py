"""Supervised baseline of SGAN: the same D trained on the labeled subset alone.

The SGAN config with every term but the labeled cross-entropy removed: no unlabeled or
generated images, G never trained. Same architecture, label budget (the same seeded
subset for the same seed), batch and steps, so that the gap between the two test
accuracies (`d_test_accuracy` in eval.json) is what the unlabeled data and G bring.

Run:   python launch.py --config=configs/sgan_baseline.py
Smoke: python launch.py --config=configs/sgan_baseline.py:smoke --workdir=$(mktemp -d)
Study: python study.py --budgets=20,50,100,1000 --seeds=3 --out=workdirs/study
       (SGAN and this baseline at each label budget and seed; table and plot)

Its sample grids show G at initialisation: noise, by design.
"""

from configs import sgan

VARIANTS = sgan.VARIANTS


def get_config(arg: str | None = None):
  config = sgan.get_config(arg)
  config.loss.d_terms = {'sgan_labeled': 1.0}
  # All G weights zero: the objective then trains D alone (no G pass, no G update).
  config.loss.g_terms = {'sgan_gen': 0.0, 'feature_matching': 0.0}
  return config
