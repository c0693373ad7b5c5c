"""FRL-DGT, leave-one-subject-out on CASME II alone (3 composite classes).

  python launch/sweep.py --config configs/frldgt_casme2.py               # prepared real data
  python launch/sweep.py --config configs/frldgt_casme2.py:synthetic     # generated corpus
  python launch/sweep.py --config configs/frldgt_casme2.py:synthetic,zero --config.folds=0,1

The real data must be prepared first (python launch/prepare_data.py --dataset casme2 ...). Variants
and every field: frldgt_jax/config_lib.py.
"""
from frldgt_jax.config_lib import frldgt_config


def get_config(arg: str = ""):
  return frldgt_config(dataset="casme2", variant=arg)
