"""FRL-DGT, leave-one-subject-out on CASME II with its 5 classes (happiness, disgust, repression,
surprise, others).

  python launch/sweep.py --config configs/frldgt_casme2_5class.py             # prepared data
  python launch/sweep.py --config configs/frldgt_casme2_5class.py:synthetic   # generated corpus

The real data must be prepared first (python launch/prepare_data.py --dataset casme2 ...).
Variants and every field: frldgt_jax/config_lib.py.
"""
from frldgt_jax.config_lib import frldgt_config


def get_config(arg: str = ""):
  return frldgt_config(dataset="casme2", variant=arg, five_class=True)
