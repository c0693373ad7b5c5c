"""FRL-DGT, leave-one-subject-out on the MEGC2019 composite (CASME II + SAMM + SMIC-HS, 3 classes, 68 subjects).

  python launch/sweep.py --config configs/frldgt_composite.py               # prepared real data
  python launch/sweep.py --config configs/frldgt_composite.py:synthetic     # generated corpus
  python launch/sweep.py --config configs/frldgt_composite.py:synthetic,zero --config.folds=0,1

The real data must be prepared first (python launch/prepare_data.py --dataset composite ...). Variants
and every field: frldgt_jax/config_lib.py.
"""
from frldgt_jax.config_lib import frldgt_config


def get_config(arg: str = ""):
  return frldgt_config(dataset="composite", variant=arg)
